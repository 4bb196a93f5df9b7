"""The default executor: ``concurrency`` child processes that claim rows themselves.

Children are forked from the worker's template process (chancy_lite.template) where that is safe, else spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time

from chancy_lite import proc, template, wake
from chancy_lite.child import ChildConfig, ProcessRunner
from chancy_lite.executors.base import Executor, Slot

log = logging.getLogger(__name__)

#: ``executor_options["start_method"]`` (or ``CHANCY_LITE_START_METHOD`` for every queue without it): how children
#: start. Unset: forked from the template where that is safe (Linux), else spawned.
START_METHODS = ("forkserver", "spawn")


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def child_payload(config: ChildConfig) -> dict[str, object]:
    """What a child process starts from (``chancy_lite.child.run``): plain data."""
    return {"config": dataclasses.asdict(config), "sys_path": sys.path}


class Child:
    """A spawned child process: a fresh interpreter running ``chancy_lite.child``.

    Children are started with fork+exec of the current Python (what multiprocessing
    calls "spawn") but without multiprocessing's re-import of the parent's main
    module, so a script without an ``if __name__ == "__main__"`` guard works too.
    Their exit is watched through a pidfd.
    """

    def __init__(self, config: ChildConfig) -> None:
        payload = json.dumps(child_payload(config))
        self.popen = subprocess.Popen(
            [sys.executable, "-c", "from chancy_lite.child import main; main()"], stdin=subprocess.PIPE, close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            process_group=0,  # its own group, which the processes its jobs start join (see ProcessRunner)
        )
        assert self.popen.stdin is not None
        self.popen.stdin.write(payload.encode())
        self.popen.stdin.close()
        self.pid = self.popen.pid
        self.sentinel = os.pidfd_open(self.pid)

    async def wait(self) -> int | None:
        """The exit code (the child has exited: its pidfd is readable)."""
        return self.popen.wait()

    def close(self) -> None:
        os.close(self.sentinel)


class ProcessExecutor(Executor):
    """Child processes, replaced whenever one exits (after ``maximum_jobs_per_worker`` jobs, or a crash).

    Options of its own (``executor_options``): ``start_method`` (``"forkserver"``: forked from the worker's
    template process, the default where it is safe; ``"spawn"``: fresh interpreters) and ``preload`` (modules the
    template imports once for every child, such as your job modules).
    """

    default_concurrency = os.cpu_count() or 1
    capabilities = ProcessRunner.capabilities  # what its children do (chancy_lite.child)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.processes: dict[str, Child | template.ForkedChild] = {}
        self._exits: dict[str, asyncio.Future[None]] = {}
        self._restart_delay = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        start_method = self.options.pop("start_method", None) or os.environ.get("CHANCY_LITE_START_METHOD") or None
        if start_method not in (None, *START_METHODS):
            log.warning("queue %s: unknown start_method %r (use %s); children start the default way",
                        self.queue.name, start_method, " or ".join(map(repr, START_METHODS)))
            start_method = None
        if start_method is None:
            start_method = "forkserver" if template.supported() and self.context.template is not None else "spawn"
        self.start_method: str = start_method
        preload = self.options.pop("preload", ())
        self.preload: tuple[str, ...] = (preload,) if isinstance(preload, str) else tuple(preload or ())

    async def start(self) -> None:
        await asyncio.gather(*(self.spawn() for _ in range(self.concurrency)))

    async def spawn(self) -> None:
        """Start one child (from the event loop's thread, which the parent-death signal is tied to)."""
        key = self.new_key()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        exited = self._exits[key] = loop.create_future()  # stop() waits for a child still starting too
        try:
            process = await self.start_child(self.child_config(key))
        except BaseException:
            self._exits.pop(key, None)
            exited.set_result(None)
            raise
        self.processes[key] = process
        self.slots[key] = Slot(key)
        loop.add_reader(process.sentinel, self._on_exit, key, started)
        if self.stopping:  # stop() signalled the children while this one was starting
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)

    async def start_child(self, config: ChildConfig) -> Child | template.ForkedChild:
        """A child forked from the worker's template, or spawned (the option, or the template cannot fork)."""
        if self.start_method == "forkserver" and self.context.template is not None:
            forker = self.context.template()
            if forker.dead is None:
                try:
                    return await forker.fork(child_payload(config), preload=self.preload)
                except template.TemplateError as exc:
                    log.warning("queue %s: cannot fork children from the template (%s); spawning them instead",
                                self.queue.name, exc)
        return Child(config)

    def _on_exit(self, key: str, started: float) -> None:
        process = self.processes.pop(key)
        self.slots.pop(key, None)
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.sentinel)
        proc.kill_group(process.pid)  # whatever its jobs started and left running dies with it
        if self.context.channel is not None:  # no push may hand a job to it any more
            wake.remove_child_files(self.context.channel.directory, self.queue.name, key)
        lived = time.monotonic() - started
        task = loop.create_task(self._after_exit(key, process, lived))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_exit(self, key: str, process: Child | template.ForkedChild, lived: float) -> None:
        pid = process.pid
        replacement: asyncio.Future[None] | None = None
        try:
            code = await process.wait()
            process.close()
            expected = code == 0 or (self.stopping and code == -signal.SIGTERM)
            log.log(
                logging.DEBUG if expected else logging.WARNING, "child %s of queue %s exited (%s)",
                pid, self.queue.name, describe_exit(code),
            )
            # A child that dies right after starting (a broken file, a bad import) is restarted with backoff; any
            # other is replaced at once, while its jobs are recovered (the new child claims what that frees).
            self._restart_delay = 0.0 if lived > 5 or code == 0 else min(max(self._restart_delay * 2, 0.1), 30.0)
            if not self.stopping and not self._restart_delay:
                replacement = asyncio.ensure_future(self.spawn())
            await self.context.on_child_exit(pid, describe_exit(code), self.timeout_grace)
            if replacement is None and not self.stopping:
                await asyncio.sleep(self._restart_delay)
                if not self.stopping:
                    await self.spawn()
        finally:
            try:
                if replacement is not None:
                    await replacement
            finally:
                future = self._exits.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(None)

    kills_children = True

    def held_pids(self) -> set[int]:
        return {child.pid for child in self.processes.values()}

    def poke(self, slot: Slot, message: bytes) -> None:
        self.context.send_to_child(slot.key, message)

    def cancel(self, job_id: str, pid: int | None) -> bool:
        for key, process in self.processes.items():
            if process.pid == pid:
                self.context.send_to_child(key, wake.child_cancel_message(job_id))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGUSR1)
                return True
        return False

    def _signal_all(self, sig: int) -> None:
        for process in list(self.processes.values()):
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    async def _wait_exits(self, timeout: float) -> bool:
        pending = [f for f in self._exits.values() if not f.done()]
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=max(timeout, 0))
        return not still

    async def stop(self, timeout: float) -> bool:
        self.stopping = True
        # SIGTERM alone (no mailbox "s" as well): a second signal could land while a child that already
        # stopped is finalising, when Python has restored the default handlers, and kill it.
        self._signal_all(signal.SIGTERM)
        if await self._wait_exits(timeout):
            return True
        log.warning("queue %s: jobs still running after %.1f s; interrupting them (their stacks follow on stderr)",
                    self.queue.name, timeout)
        self._signal_all(signal.SIGWINCH)  # each child prints its threads' stacks (see ProcessRunner.install_signals)
        self._signal_all(signal.SIGUSR2)
        if await self._wait_exits(self.timeout_grace):
            return False
        log.warning("queue %s: children did not stop; killing them", self.queue.name)
        self._signal_all(signal.SIGKILL)
        await self._wait_exits(10)
        return False

    def kill(self) -> None:
        self.stopping = True
        self._signal_all(signal.SIGUSR2)
