"""Placeholder until the worker lands."""

class Worker:  # noqa: D101
    pass
