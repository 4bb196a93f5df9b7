"""Plugins shipped with chancy_lite."""
