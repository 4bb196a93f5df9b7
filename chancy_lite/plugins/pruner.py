"""``Pruner``: deletes finished jobs that match a rule, so the file does not grow without bound.

It is a default plugin: ``Chancy(path)`` prunes succeeded and failed jobs older
than a day unless ``no_default_plugins=True`` or another ``Pruner`` is given::

    Chancy(path, plugins=[Pruner((Pruner.Rules.Age() > 3600) | (Pruner.Rules.Queue() == "bulk"))])

Rules compare ``Age()`` (seconds since the job was created; only jobs that also
finished that long ago are pruned), ``Queue()``, ``State()`` and ``Job()`` (the
function path) with ``== != < <= > >=`` and combine with ``&`` and ``|`` (which bind tighter than the
comparisons: parenthesise each comparison).
Only finished jobs are ever pruned, whatever the rule.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chancy_lite.plugin import Plugin

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.worker import Worker

log = logging.getLogger(__name__)

Rule = tuple[Any, ...]  # ("cmp", field, op, value) | ("and" | "or", rule, rule); compiled by the store


class _Combinable:
    rule: Rule

    def __and__(self, other: _Combinable) -> _Expr:
        return _Expr(("and", self.rule, other.rule))

    def __or__(self, other: _Combinable) -> _Expr:
        return _Expr(("or", self.rule, other.rule))


class _Expr(_Combinable):
    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def __repr__(self) -> str:
        return f"<rule {self.rule!r}>"


class _Field:
    name = ""

    def _cmp(self, op: str, value: object) -> _Expr:
        return _Expr(("cmp", self.name, op, value))

    def __eq__(self, value: object) -> _Expr:  # type: ignore[override]
        return self._cmp("==", value)

    def __ne__(self, value: object) -> _Expr:  # type: ignore[override]
        return self._cmp("!=", value)

    def __lt__(self, value: object) -> _Expr:
        return self._cmp("<", value)

    def __le__(self, value: object) -> _Expr:
        return self._cmp("<=", value)

    def __gt__(self, value: object) -> _Expr:
        return self._cmp(">", value)

    def __ge__(self, value: object) -> _Expr:
        return self._cmp(">=", value)

    __hash__ = object.__hash__


class Rules:
    """The fields a pruning rule can test."""

    class Age(_Field):
        name = "age"

    class Queue(_Field):
        name = "queue"

    class State(_Field):
        name = "state"

    class Job(_Field):
        name = "func"


class Pruner(Plugin):
    """Delete up to ``maximum_to_prune`` finished jobs matching ``rule`` every ``poll_interval`` seconds."""

    Rules = Rules

    def __init__(
        self, rule: _Combinable | None = None, *, maximum_to_prune: int = 10_000, poll_interval: float = 60
    ) -> None:
        self.rule = (rule if rule is not None else Rules.Age() > 86_400).rule
        self.maximum_to_prune = maximum_to_prune
        self.poll_interval = poll_interval

    @staticmethod
    def get_identifier() -> str:
        return "chancy.pruner"

    def prune(self, chancy: Chancy) -> int:
        """Prune once, now; returns how many jobs were deleted."""
        return chancy.sync_run_store(chancy.store.prune_jobs, self.rule, now=chancy.now(), limit=self.maximum_to_prune)

    def get_dependencies(self) -> list[str]:
        return ["chancy.leadership"]

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.poll_interval)
            await self.wait_for_leader(worker)  # one worker prunes, not all of them
            deleted = await worker.db(chancy.store.prune_jobs, self.rule, now=chancy.now(),
                                       limit=self.maximum_to_prune)
            if deleted:
                log.info("pruned %d finished jobs", deleted)
