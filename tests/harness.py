"""The in-process harness: a real bridge server, real pauses and real clients in the test process.

A test of an op needs no target process: the ``inproc`` fixture (conftest.py) starts
bridge's real server in the test process (real CURVE, the test's own keys and
connection file), a *worker* thread of the test process pauses in it (a real
``bridge.set_trace()``, or ``pause.serve`` on frames the test hands over), and a real
``client.Session`` or a :class:`~rawclient.RawClient` talks to it over TCP:

    def test_eval(inproc):
        def job():
            x = 41
            bridge.set_trace()
            return x
        worker = inproc.run_paused(job)      # returns once the worker is paused
        s = inproc.attach()
        assert s.eval("x") == 41
        s.set(x=42)
        s.cont()
        assert worker.join() == 42

Teardown is part of the contract, and it checks: the sessions and raw clients the
harness made are closed (while the pause is still there, so live references are
released), breakpoints and watches are cleared, every pause is resumed and every worker
joined, the server is stopped and forgotten (the next ``get_server()`` starts afresh),
its ZeroMQ context ended, the bulk data port closed. Then it fails the test if anything
is left: a worker still running, a thread or file descriptor the test did not have
before, a shared-memory segment of this process, a live reference still held. Every
wait has a deadline.

Never pause the test's own thread (it would wait for a client that is itself).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import bridge.server as server_module
from bridge import keys, ops, refs
from bridge import pause as pause_loop
from bridge.bulk import dataport, shm

from rawclient import RawClient
from waiting import wait_for

#: Deadline for everything the teardown waits on (resumes, joins, the context's end).
TEARDOWN_TIMEOUT = 10.0
#: Threads that live as long as the process by design, started on first use: the bulk
#: janitor (bridge/bulk/outgoing.py) sleeps while nothing is handed out and holds no fd;
#: the summaries' helper (bridge/guarded.py) waits for the next user ``__repr__`` to run.
LASTING_THREADS = ("bridge-bulk-janitor", "bridge-guarded")


def _fds() -> Set[Tuple[int, str]]:
    """This process's open file descriptors with what each one is (Linux; empty elsewhere)."""
    out: Set[Tuple[int, str]] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            out.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            pass  # the listing's own fd, already closed
    return out


def _own_segments() -> Set[str]:
    """Shared-memory segments this process created that still exist."""
    try:
        prefix = shm.segment_prefix(os.getpid())
        return {name for name in os.listdir(shm.shm_dir()) if name.startswith(prefix)}
    except OSError:
        return set()


def _stack_of(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack: not running)"


class Worker:
    """A thread of the test process running a job that pauses (see :meth:`InProcessBridge.run`)."""

    def __init__(self, harness: "InProcessBridge", fn: Callable[..., Any], args: Sequence[Any],
                 kwargs: Dict[str, Any], name: str) -> None:
        self.harness = harness
        self.name = name
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._last_pause_id = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # kept for join(): the test sees it there
            self.error = exc

    @property
    def ident(self) -> int:
        """The thread id (what ops call ``thread``)."""
        assert self.thread.ident is not None, "the worker has not started"
        return self.thread.ident

    @property
    def pause(self) -> Optional[pause_loop.Pause]:
        """The worker's pause now (the server's :class:`bridge.pause.Pause`), None if it runs."""
        return self.harness.server.pauses.get(self.ident)

    def wait_paused(self, timeout: float = 10.0) -> pause_loop.Pause:
        """The worker's next pause (newer than the one this returned last): the server's
        :class:`bridge.pause.Pause`, with its ``frames``, ``pause_id`` and ``thread_id``."""

        def paused() -> Optional[pause_loop.Pause]:
            p = self.harness.server.pauses.get(self.ident)
            if p is not None and p.pause_id > self._last_pause_id:
                return p
            if not self.thread.is_alive():
                raise AssertionError(f"worker {self.name} ended without pausing again "
                                     f"(returned {self.result!r}, raised {self.error!r})")
            return None

        found = wait_for(paused, timeout, f"worker {self.name} to pause",
                         details=lambda: f"it is at:\n{_stack_of(self.thread)}")
        self._last_pause_id = found.pause_id
        return found

    def join(self, timeout: float = 10.0) -> Any:
        """Wait for the job to end; return what it returned, or raise what it raised."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"worker {self.name} still runs after {timeout:g}s, at:\n{_stack_of(self.thread)}")
        if self.error is not None:
            raise self.error
        return self.result


class InProcessBridge:
    """bridge's server running in the test process, and what a test attaches to it.

    Made by the ``inproc`` fixture; :meth:`close` is its teardown.
    """

    def __init__(self) -> None:
        if server_module.current_server() is not None:
            raise AssertionError("bridge's server already runs in the test process: a test before this one "
                                 "started it and left it (use the inproc fixture, which stops it)")
        ops.load_all()  # imports every op module now, not during the first request
        self._threads_before = set(threading.enumerate())
        self._fds_before = _fds()
        self._segments_before = _own_segments()
        self._refs_before = len(refs.TABLE)
        self._data_server_before = dataport._data_server  # noqa: SLF001 (see _stop_data_server)
        self.workers: List[Worker] = []
        self._sessions: List[Any] = []
        self._raws: List[RawClient] = []
        self.server = server_module.get_server()
        self.pid = os.getpid()

    # --- what a test uses ----------------------------------------------------------------------

    def connection_info(self) -> Dict[str, Any]:
        """The server's connection file, read and checked as a client reads it."""
        assert self.server.connection_file is not None, "the server wrote no connection file"
        return keys.read_connection_file(Path(self.server.connection_file))

    @property
    def info(self) -> Dict[str, Any]:
        """:meth:`connection_info` (what ``RawClient.to`` and ``client.Session`` take)."""
        return self.connection_info()

    def run(self, fn: Callable[..., Any], *args: Any, name: Optional[str] = None, **kwargs: Any) -> Worker:
        """Start ``fn(*args, **kwargs)`` on a worker thread (it pauses by calling
        ``bridge.set_trace()``, ``bridge.post_mortem()``, ..., as often as it likes)."""
        worker = Worker(self, fn, args, kwargs, name or f"inproc-{getattr(fn, '__name__', 'job')}")
        self.workers.append(worker)
        worker.thread.start()
        return worker

    def run_paused(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, name: Optional[str] = None,
                   **kwargs: Any) -> Worker:
        """:meth:`run`, returning once the worker is paused (its first pause)."""
        worker = self.run(fn, *args, name=name, **kwargs)
        worker.wait_paused(timeout)
        return worker

    def pause_frames(self, frames: Sequence[FrameType], reason: str = "test", *, info: Optional[Dict[str, Any]] = None,
                     timeout: float = 10.0) -> Worker:
        """A worker that serves ``frames`` (innermost first) with ``pause.serve``, as a pause
        at them; returns once paused. ``join()`` gives the resume action ("continue", ...).

        The frames must be ones no thread is running: a suspended generator's
        (``gen.gi_frame``), a traceback's (``own_code.traceback_frames(tb)``).
        """
        return self.run_paused(pause_loop.serve, list(frames), reason, info=info, timeout=timeout,
                               name=f"inproc-{reason}")

    def attach(self, *, timeout: float = 10.0, wait: bool = True, **kwargs: Any) -> Any:
        """A real ``client.Session`` on this process (closed at teardown); with ``wait``,
        once it has heard of a pause (``Session.wait``)."""
        import client

        session = client.attach(self.pid, **kwargs)
        self._sessions.append(session)
        if wait:
            session.wait(timeout)
        return session

    def raw(self, *, lane: Any = None, **kwargs: Any) -> RawClient:
        """A :class:`RawClient` on the server socket (or ``lane=pause``'s lane), closed at teardown."""
        raw = RawClient.to(self.info, lane=lane, **kwargs)
        self._raws.append(raw)
        return raw

    # --- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close, resume, stop and forget everything; AssertionError naming what was left.

        Every step runs even when one before it failed, so that the server is always
        stopped and forgotten (the next test must not find it).
        """
        problems: List[str] = []
        for step in (self._close_clients, self._resume_everything, self._stop_server, self._stop_data_server,
                     self._check_leaks):
            try:
                step(problems)
            except Exception as exc:
                problems.append(f"{step.__name__} failed: {exc!r}\n{traceback.format_exc()}")
        if problems:
            raise AssertionError("the in-process harness's teardown found:\n- " + "\n- ".join(problems))

    def _close_clients(self, problems: List[str]) -> None:
        """Close the harness's sessions (first: while still paused, a close releases live
        references) and raw clients."""
        for session in self._sessions:
            try:
                session.close()
            except Exception as exc:
                problems.append(f"closing {session!r} failed: {exc!r}")
        for raw in self._raws:
            raw.close()

    def _resume_everything(self, problems: List[str]) -> None:
        """Clear breakpoints and watches, resume every pause until every worker has ended."""
        if not self.server.thread.is_alive():
            problems.append("the server thread died during the test")
            return
        with RawClient.to(self.server.connection_info()) as control:
            for op in ("clear", "unwatch"):  # process-wide debugger state must not reach the next test
                control.request(op, {"all": True}, timeout=TEARDOWN_TIMEOUT)

            def all_ended() -> bool:
                for p in self.server.paused_threads():  # a NotPaused reply (it just resumed) is fine
                    control.request("cont", {"thread": p.thread_id}, timeout=TEARDOWN_TIMEOUT)
                for worker in self.workers:
                    worker.thread.join(0.05)
                return not any(w.thread.is_alive() for w in self.workers) and not self.server.paused_threads()

            try:
                wait_for(all_ended, TEARDOWN_TIMEOUT, "every worker to end")
            except AssertionError:
                for w in self.workers:
                    if w.thread.is_alive():
                        problems.append(f"worker {w.name} did not end, at:\n{_stack_of(w.thread)}")
                for p in self.server.paused_threads():
                    problems.append(f"thread {p.thread_id} ({p.thread.name}) is still paused")

    def _stop_server(self, problems: List[str]) -> None:
        """Stop the server, forget it as the process's server, end its ZeroMQ context."""
        srv = self.server
        srv.stop(TEARDOWN_TIMEOUT)
        if srv.thread.is_alive():
            problems.append("the server thread did not stop")
        # bridge has no public "forget the process's server" call: a test process is the
        # one place that needs one (a job has one server for its life).
        with server_module._server_lock:  # noqa: SLF001
            if server_module._server is srv:  # noqa: SLF001
                server_module._server = None  # noqa: SLF001
        atexit.unregister(srv.stop)  # where get_server() registered it: a stopped server needs no exit hook
        if srv.connection_file is not None and Path(srv.connection_file).exists():
            problems.append(f"the connection file {srv.connection_file} is still there")
        ender = threading.Thread(target=srv.context.term, name="inproc-context-term", daemon=True)
        ender.start()
        ender.join(TEARDOWN_TIMEOUT)
        if ender.is_alive():  # term() waits for every socket of the context to close
            problems.append("the server's ZeroMQ context did not end: a socket of it is still open "
                            "(a lane, a paused thread's reply socket)")

    def _stop_data_server(self, problems: List[str]) -> None:
        """Close the bulk data port if this test started it, and forget it (it is
        process-wide, started by the first ``bulk_hello``; no public call stops it)."""
        ds = dataport._data_server  # noqa: SLF001
        if ds is None or ds is self._data_server_before:
            return
        ds.close()
        ds.thread.join(TEARDOWN_TIMEOUT)
        if ds.thread.is_alive():
            problems.append("the bulk data port's thread did not end")
        with dataport._data_server_lock:  # noqa: SLF001
            if dataport._data_server is ds:  # noqa: SLF001
                dataport._data_server = None  # noqa: SLF001

    def _check_leaks(self, problems: List[str]) -> None:
        def new_threads() -> List[threading.Thread]:
            return [t for t in threading.enumerate() if t not in self._threads_before
                    and t.name not in LASTING_THREADS and t.is_alive()]

        def new_fds() -> Set[Tuple[int, str]]:
            return _fds() - self._fds_before

        # Threads and sockets end a moment after their owners are told to (a listener's
        # last receive slice, ZeroMQ's reaper): give them the deadline, then name them.
        try:
            wait_for(lambda: not new_threads() and not new_fds(), TEARDOWN_TIMEOUT, "threads and fds to end")
        except AssertionError:
            for t in new_threads():
                problems.append(f"thread {t.name!r} is still alive, at:\n{_stack_of(t)}")
            for fd, what in sorted(new_fds()):
                problems.append(f"file descriptor {fd} ({what}) is still open")
        for name in sorted(_own_segments() - self._segments_before):
            problems.append(f"shared-memory segment {name} is left in {shm.shm_dir()}")
            shm.unlink_own_segment(os.path.join(shm.shm_dir(), name))
        held = len(refs.TABLE) - self._refs_before
        if held > 0:
            problems.append(f"{held} live reference(s) still held in bridge.refs.TABLE: close the session "
                            f"(or release them) while the thread is still paused")
