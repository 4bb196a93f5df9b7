"""Job functions WITHOUT ``from __future__ import annotations``: annotations are real objects here."""

import os

from chancy_lite import QueuedJob


def ctx_context(*, context: QueuedJob) -> None:
    context.meta["injected"] = context.id


def ctx_job_info(*, job_info: QueuedJob) -> None:
    job_info.meta["injected"] = job_info.id


def ctx_ctx(*, ctx: QueuedJob) -> None:
    ctx.meta["injected"] = ctx.id


def ctx_generic(*, items: list[str], ctx: QueuedJob, extra: dict[str, list[int]] | None = None) -> None:
    ctx.meta["items"] = items
    ctx.meta["injected"] = ctx.id


def ctx_string_annotation(*, ctx: "QueuedJob") -> None:
    """One explicit string annotation in a module without PEP 563."""
    ctx.meta["injected"] = ctx.id


def ctx_positional(context: QueuedJob | None = None, *, ctx: QueuedJob) -> None:
    ctx.meta["positional"] = None if context is None else context.id
    ctx.meta["injected"] = ctx.id


def pid(*, ctx: QueuedJob) -> None:
    ctx.meta["pid"] = os.getpid()
