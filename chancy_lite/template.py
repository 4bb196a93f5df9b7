"""The template process: worker children forked on demand from a clean interpreter (the forkserver idea).

A spawned child is a fresh interpreter that imports chancy_lite before it can claim: ~0.1-0.2 s of CPU and
~28 MiB of memory of its own, per child. Instead, a worker spawns one *template* process, once. The template
imports what a child needs (the claim/run/record path, the ``import chancy`` alias when the supervisor has it,
the modules a queue names in ``preload``), moves its objects out of the garbage collector's reach
(``gc.freeze()``, so that collections in the children do not write to the shared pages) and waits. Asked for a
child, it forks: the child sets itself up exactly as a spawned one (its own process group, signal handlers and
connection) and shares the template's memory pages until it writes to them.

The template holds no SQLite connection, no thread and no socket but its control socket when it forks; that is
checked before every fork. A preloaded module that starts a thread or opens a connection or socket at import
makes the template unsafe: it then refuses to fork and the worker spawns its children instead (and says why).

Protocol, over a ``SOCK_SEQPACKET`` socket pair, one JSON object per packet:

* supervisor -> template: first ``{"parent": pid, "sys_path": [...], "alias": bool, "preload": [...]}``, then
  ``{"fork": payload, "preload": [...]}`` per child (``payload`` as ``chancy_lite.child.run`` takes it);
* template -> supervisor: ``{"pid": n}`` with the child's pidfd attached (``SCM_RIGHTS``), or ``{"error": text}``,
  in request order; ``{"exited": n, "code": c}`` once it reaped child ``n`` (``c`` as ``Popen.returncode``).

Closing the supervisor's end asks the template to exit once its children have exited. The template dies with
its supervisor (its parent-death signal is SIGKILL); its children then get theirs (SIGUSR2: interrupt the job,
give it back and exit, as when a supervisor dies) and the supervisor, if alive, replaces them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

#: What every child imports: done once, in the template.
BASE_MODULES = (
    "chancy_lite",
    "chancy_lite.child",
    "chancy_lite.executors.process",
    "chancy_lite.journal",
    "chancy_lite.outcome",
    "resource",
)
_MAX_MESSAGE = 1 << 20
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def supported() -> bool:
    """Whether children can be forked from a template here: Linux, with ``fork``, pidfds and fd passing.

    Elsewhere (macOS: system libraries are not fork-safe) children are spawned.
    """
    return (
        sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(os, "pidfd_open")
        and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")
    )


class TemplateError(Exception):
    """The template could not fork a child (it is gone, unsafe, or did not answer in time)."""


# ------------------------------------------------------------------ supervisor side


class ForkedChild:
    """A child forked by the template (not our own child: the template reaps it and reports its exit code).

    ``sentinel`` is a pidfd, readable once the child has exited.
    """

    def __init__(self, template: Template, pid: int, pidfd: int) -> None:
        self.template = template
        self.pid = pid
        self.sentinel = pidfd

    async def wait(self, timeout: float = 2.0) -> int | None:
        """The exit code (as ``Popen.returncode``) once the template reported it; None if it cannot tell."""
        return await self.template.exit_code(self.pid, timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


class Template:
    """The supervisor's handle on its template process (one per worker, shared by its process executors).

    Start it with ``start()`` from the event loop's thread (its parent-death signal is tied to that thread).
    """

    def __init__(self, *, sys_path: list[str], alias: bool, preload: tuple[str, ...] = ()) -> None:
        self.sys_path = list(sys_path)
        self.alias = alias
        self.preload = set(preload)
        self.popen: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.dead: str | None = None  # why it cannot fork any more
        self.unsafe = False  # it refused to fork: a preloaded module left a thread, connection or socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replies: collections.deque[asyncio.Future[tuple[dict[str, Any], list[int]]]] = collections.deque()
        self._codes: dict[int, int | None] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        """Spawn the template (it boots in the background; fork requests wait for it)."""
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", "from chancy_lite.template import main; main()", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                process_group=0,  # terminal signals (Ctrl-C, Ctrl-Z) go to the supervisor, which decides
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self._send({"parent": os.getpid(), "sys_path": self.sys_path, "alias": self.alias,
                    "preload": sorted(self.preload)})
        self._loop.add_reader(ours.fileno(), self._on_readable)

    async def fork(self, payload: dict[str, Any], *, preload: tuple[str, ...] = (),
                   timeout: float = 20.0) -> ForkedChild:
        """Fork one child that runs ``payload``; TemplateError if the template cannot."""
        if self.dead is not None or self.sock is None or self._loop is None:
            raise TemplateError(self.dead or "the template is not started")
        new = sorted(set(preload) - self.preload)
        self.preload.update(new)
        future: asyncio.Future[tuple[dict[str, Any], list[int]]] = self._loop.create_future()
        self._replies.append(future)
        try:
            self._send({"fork": payload, "preload": new})
        except OSError as exc:
            self._replies.remove(future)
            raise TemplateError(f"could not send the fork request: {exc}") from None
        try:
            reply, fds = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._fail(f"the template did not fork a child within {timeout} s")
            raise TemplateError(f"the template did not fork a child within {timeout} s") from None
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            self.dead = str(reply["error"])
            self.unsafe = bool(reply.get("unsafe"))
            raise TemplateError(self.dead)
        if len(fds) != 1:
            raise TemplateError(f"the template's reply carried {len(fds)} file descriptors, not one pidfd")
        return ForkedChild(self, int(reply["pid"]), fds[0])

    async def exit_code(self, pid: int, timeout: float) -> int | None:
        if pid in self._codes:
            return self._codes.pop(pid)
        if self.dead is not None or self._loop is None:
            return None
        future = self._exits.setdefault(pid, self._loop.create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            self._exits.pop(pid, None)
            self._codes.pop(pid, None)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        self.sock.send(json.dumps(message, separators=(",", ":")).encode())

    def _on_readable(self) -> None:
        assert self.sock is not None
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, _MAX_MESSAGE, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"the template's socket failed: {exc}")
            return
        if not data:
            code = self.popen.poll() if self.popen is not None else None
            self._fail(f"the template exited ({'still running' if code is None else f'code {code}'})")
            return
        message = json.loads(data)
        if "exited" in message:
            pid, code = int(message["exited"]), message.get("code")
            waiter = self._exits.get(pid)
            if waiter is not None and not waiter.done():
                waiter.set_result(code)
            else:
                self._codes[pid] = code
            return
        if not self._replies:
            for fd in fds:
                os.close(fd)
            return
        future = self._replies.popleft()
        if future.done():  # timed out meanwhile: the child is not ours to manage; stop it
            for fd in fds:
                os.close(fd)
            if "pid" in message:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(message["pid"]), signal.SIGKILL)
            return
        future.set_result((message, list(fds)))

    def _fail(self, why: str) -> None:
        """The template cannot serve any more: fail what waits on it and stop it."""
        if self.dead is None:
            self.dead = why
        if self._loop is not None and self.sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(TemplateError(why))
        for exit_code in self._exits.values():
            if not exit_code.done():
                exit_code.set_result(None)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def close(self, timeout: float = 10.0) -> None:
        """Ask the template to exit (once its children have) and wait for it; kill it after ``timeout``."""
        self._fail("the template was closed")
        popen = self.popen
        if popen is None:
            return
        deadline = time.monotonic() + timeout
        while popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if popen.poll() is None:
            log.warning("the template process %s did not exit; killing it", popen.pid)
            popen.kill()
            await asyncio.to_thread(popen.wait)


# ------------------------------------------------------------------ template side


def _recv(sock: socket.socket) -> dict[str, Any] | None:
    data = sock.recv(_MAX_MESSAGE)
    return json.loads(data) if data else None


def unsafe_reason(control_fd: int) -> str | None:
    """Why forking this process now would be unsafe (a thread, an open SQLite connection or another socket),
    or None."""
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return f"a thread runs in the template ({names}), started by an import"
    apsw = sys.modules.get("apsw")
    if apsw is not None and hasattr(apsw, "connections") and apsw.connections():
        return "an SQLite connection is open in the template, opened by an import"
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd == control_fd:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    return "a socket is open in the template, opened by an import"
    return None


class _Server:
    """The template's loop: fork on request, reap children and report their exit codes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.unsafe: str | None = None
        self.closing = False

    def preload(self, modules: list[str]) -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except BaseException as exc:  # the child imports it itself, and reports the error on the job
                print(f"chancy-lite template: could not preload {name}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
        self.unsafe = unsafe_reason(self.sock.fileno())
        gc.collect()
        gc.freeze()

    def serve(self) -> dict[str, Any] | None:
        """Serve until the supervisor closes its end and every child exited (returns None), or, in a forked
        child, return that child's payload."""
        while not (self.closing and not self.children):
            for fd, _ in self.poller.poll():
                if fd != self.sock.fileno():
                    self.reap(fd)
                    continue
                message = _recv(self.sock) if not self.closing else None
                if message is None:
                    self.closing = True
                    self.poller.unregister(self.sock)
                    continue
                payload = self.fork(message)
                if payload is not None:
                    return payload
        return None

    def fork(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("preload"):
            self.preload(message["preload"])
        if self.unsafe is not None:
            self.send({"error": self.unsafe, "unsafe": True})
            return None
        payload: dict[str, Any] = message["fork"]
        payload["config"]["parent_pid"] = os.getpid()  # its parent-death signal comes from us
        pid = os.fork()
        if pid == 0:
            self.become_child()
            return payload
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child: the group exists before anyone hears of the pid
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            self.send({"error": f"pidfd_open: {exc}"})
            return None
        self.children[pidfd] = pid
        self.poller.register(pidfd, select.POLLIN)
        socket.send_fds(self.sock, [json.dumps({"pid": pid}).encode()], [pidfd])
        return None

    def reap(self, pidfd: int) -> None:
        pid = self.children.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
            code: int | None = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = None
        if not self.closing:
            with contextlib.suppress(OSError):
                self.send({"exited": pid, "code": code})

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def become_child(self) -> None:
        """In the forked child: drop what is the template's, and lead a process group of its own."""
        self.sock.close()
        sys.argv[1:] = []  # as a spawned child's (["-c"])
        for pidfd in self.children:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        self.children.clear()
        os.setpgid(0, 0)
        # _SIGNALS stay blocked until the child's own handlers are in place (chancy_lite.child.child_main): a
        # SIGTERM sent to a child this young is delivered then, not lost.


def main() -> None:
    """The template process (``python -c "from chancy_lite.template import main; main()" FD``)."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    from chancy_lite import proc

    proc.set_parent_death_signal(signal.SIGKILL)
    # Blocked, not ignored: the supervisor decides (it closes our socket when it is done), and children inherit
    # the mask, so a signal sent to a child before it has its handlers waits for them (SIG_IGN would be lost).
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    for name in BASE_MODULES:  # while the supervisor gets on with its own start
        importlib.import_module(name)
    init = _recv(sock)
    if init is None or os.getppid() != init["parent"]:
        return  # the supervisor died (before we asked to be told)
    sys.path[:] = init["sys_path"]
    if init.get("alias"):
        from chancy_lite import alias

        alias.install()
    server = _Server(sock)
    server.preload(init.get("preload") or [])
    payload = server.serve()
    if payload is not None:  # a forked child: run as a spawned child would
        from chancy_lite.child import run

        run(payload)
        _exit_quickly()


def _exit_quickly() -> None:
    """End a forked child as a spawned one ends (exit handlers run, output flushed, exit code 0), without the
    interpreter's teardown of every module: that takes tens of milliseconds and writes to most of the pages the
    child shares with the template. Not while a thread a job started keeps the process alive: the interpreter
    then waits for it, as it would in a spawned child."""
    main_thread = threading.main_thread()
    if any(not t.daemon for t in threading.enumerate() if t is not main_thread):
        return
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
