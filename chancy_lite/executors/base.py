"""What the supervisor needs from an executor, and the slot bookkeeping they share."""

from __future__ import annotations

import abc
import dataclasses
import os
import secrets
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from chancy_lite import alias, execution, hooks, wake
from chancy_lite.child import ChildConfig
from chancy_lite.job import Limit, QueuedJob
from chancy_lite.plugin import pack_plugins
from chancy_lite.queue import Queue

if TYPE_CHECKING:
    from chancy_lite.app import Chancy
    from chancy_lite.template import Template
    from chancy_lite.worker import Worker


@dataclasses.dataclass(frozen=True)
class ExecutorContext:
    """What an executor gets from its worker: settings, the wake-up channel and the child-exit callback.

    Built by ``Worker.executor_context()``; an executor touches its worker only through this.
    """

    chancy: Chancy
    worker_id: str
    allowed_modules: tuple[str, ...] | None
    child_log_level: int | None
    channel: wake.Channel | None
    #: ``await on_child_exit(pid, how, grace)`` once a child process exited: its jobs are recovered.
    on_child_exit: Callable[[int | None, str, float], Awaitable[None]]
    #: The worker's template process (started on first use), which forks children (see chancy_lite.template).
    template: Callable[[], Template] | None = None

    def send_to_child(self, key: str, message: bytes) -> None:
        """Deliver a mailbox datagram to the child named ``key`` (see chancy_lite.wake)."""
        if self.channel is not None:
            self.channel.send_to(wake.child_mailbox(self.channel.directory, key), message)

    def is_idle(self, queue: str, key: str) -> bool:
        """Whether the child named ``key`` advertises itself as idle for ``queue``."""
        return self.channel is not None and os.path.exists(
            os.path.join(self.channel.directory, wake.idle_name(queue, key))
        )


@dataclasses.dataclass
class Slot:
    """One child (process, thread or task) of an executor."""

    key: str
    idle: bool = False  # tracked by executors whose children do not advertise themselves


class Executor(abc.ABC):
    """Runs one queue's jobs with ``concurrency`` children that claim rows themselves.

    The supervisor calls ``wake(n)`` when ``n`` jobs may be waiting that no idle
    child was told of, ``cancel`` for a running job, and ``stop`` to drain
    (then interrupt) the children.
    """

    default_concurrency = 1

    #: The flags of what an executor can do (Chancy 0.26's ``Executor.Capability``).
    Capability: typing.ClassVar[type[execution.Capability]] = execution.Capability
    #: What this executor can do for a job; custom executors declare theirs (Chancy 0.26: default NONE).
    capabilities: typing.ClassVar[execution.Capability] = execution.Capability.NONE

    @classmethod
    def get_capabilities(cls) -> execution.Capability:
        """What this executor can do for a job (a ``Capability`` flag set). As Chancy 0.26."""
        return cls.capabilities

    @classmethod
    def supports(cls, capability: execution.Capability) -> bool:
        """True only when this executor has **every** bit of ``capability``. As Chancy 0.26."""
        return cls.get_capabilities() & capability == capability

    @staticmethod
    def get_limit(job: QueuedJob, type_: Limit.Type) -> int | float | None:
        """The value of the job's first limit of that type, or None."""
        return job.limit(type_)

    @classmethod
    def get_function_and_kwargs(cls, job: QueuedJob) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The job's function and a copy of its kwargs, the ``QueuedJob`` context injected into every
        keyword-only parameter annotated with it (string annotations resolved too).

        Runs where the job runs (the child process for the Process executor), so a subclass that overrides it
        to inject more kwargs must be importable there. As Chancy 0.26 (a classmethod you can override).
        """
        return execution.function_and_kwargs(job)

    def __init__(self, worker: Worker, queue: Queue) -> None:
        self.worker = worker  # as Chancy's executors (custom executors may use it); ours use self.context
        self.context: ExecutorContext = worker.executor_context()
        self.queue = queue
        options = dict(queue.executor_options)
        # Chancy replaces a child after 100 jobs. Spawning a child costs ~0.1 s of CPU, so with short jobs that
        # caps a pool at a few hundred jobs/s: chancy_lite replaces a child when its memory grows past
        # maximum_memory_per_worker instead (what recycling guards against), and after a job count only if asked.
        self.maximum_jobs_per_worker: int | None = options.pop("maximum_jobs_per_worker", None)
        self.maximum_memory_per_worker: int | None = options.pop("maximum_memory_per_worker", 512 * 1024 * 1024)
        self.batch_size: int = int(options.pop("batch_size", 64))
        self.batch_window: float = float(options.pop("batch_window", 0.005))
        self.timeout_grace: float = float(options.pop("timeout_grace", 5.0))
        self.options: dict[str, Any] = options
        self.concurrency = queue.concurrency or self.default_concurrency
        self.slots: dict[str, Slot] = {}
        self.stopping = False
        self._token = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._serial = 0

    def new_key(self) -> str:
        self._serial += 1
        return f"{self._token}-{self._serial}"

    def child_config(self, key: str, *, register_signals: bool = True) -> ChildConfig:
        chancy = self.context.chancy
        return ChildConfig(
            db_path=chancy.path,
            prefix=chancy.prefix,
            busy_timeout=chancy.busy_timeout,
            synchronous=chancy.synchronous,
            queue=self.queue.name,
            worker_id=self.context.worker_id,
            key=key,
            polling_interval=float(self.queue.polling_interval),
            maximum_jobs=self.maximum_jobs_per_worker,
            maximum_rss=self.maximum_memory_per_worker,
            batch_size=self.batch_size,
            batch_window=self.batch_window,
            autocheckpoint=0,  # the supervisor checkpoints in the background
            rate_limit=self.queue.rate_limit,
            rate_limit_window=self.queue.rate_limit_window,
            timeout_grace=self.timeout_grace,
            allowed_modules=self.context.allowed_modules,
            log_level=self.context.child_log_level,
            register_signals=register_signals,
            executor=f"{type(self).__module__}.{type(self).__qualname__}",
            plugins=pack_plugins(hooks.hooked(chancy.plugins.values())),
            alias=alias.installed(),
            parent_pid=os.getpid(),
        )

    # ---- what the worker needs

    #: Whether the pids this executor holds are its own children, which the TIME-limit backstop may kill.
    kills_children = False

    def held_pids(self) -> set[int]:
        """The pids recorded on the rows this executor's children claim (its own process, by default)."""
        return {os.getpid()}

    # ---- wake-ups

    #: Idle children advertise themselves to pushers (see chancy_lite.wake), so the supervisor relays only
    #: wake-ups for any queue ("*": retries, recovered jobs).
    wakes_directly = True

    def wake(self, n: int) -> None:
        for slot in list(self.slots.values()):
            self.poke(slot, wake.work_message())

    def wake_idle(self) -> int:
        """Poke the children that advertise themselves idle through their mailboxes (a pusher could not reach
        them: a queue name too long to address their idle link); returns how many."""
        poked = 0
        for slot in list(self.slots.values()):
            if self.context.is_idle(self.queue.name, slot.key):
                self.poke(slot, wake.work_message())
                poked += 1
        return poked

    def idle_count(self) -> int:
        """How many children are waiting for work right now."""
        if not self.wakes_directly:
            return sum(slot.idle for slot in self.slots.values())
        return sum(self.context.is_idle(self.queue.name, key) for key in self.slots)

    @abc.abstractmethod
    def poke(self, slot: Slot, message: bytes) -> None:
        """Deliver a mailbox message to one child."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self, timeout: float) -> bool | None:
        """Stop claiming; let running jobs finish within ``timeout``; then interrupt them. Returns False when
        jobs had to be interrupted (True or None: a clean stop)."""

    @abc.abstractmethod
    def cancel(self, job_id: str, pid: int | None) -> bool:
        """Interrupt this running job if one of our children holds it."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop at once (second signal): interrupt every running job now."""
