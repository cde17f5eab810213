"""The client's one ZeroMQ context and one I/O thread, shared by every session of the process.

A ZeroMQ context costs two threads (its I/O thread and its reaper) and a handful of file
descriptors, and starting one at the open-file limit makes libzmq abort the process
(``epoll_create`` fails inside it: ``Too many open files (src/epoll.cpp)``). So the
process has one, started once under a check of the headroom (:func:`shared_context`),
and never terminated by anything but the process's exit: a finalizer that closes a
session closes its sockets (linger 0), which never blocks.

The :class:`IOLoop` is one thread that polls the sockets of every target a session or a
group talks to outside a request (events, group requests): one thread however many
members a group has. What it polls are :class:`Pollable` objects (client/link.py has the
one that dials a target); every socket is used by the loop thread only, and other threads
hand it work with :meth:`IOLoop.call`, which never blocks.

It waits with the operating system's selector (epoll) on each ZeroMQ socket's ``ZMQ_FD``,
not with ``zmq.Poller``: ``zmq_poll`` asks every socket for its events on every call
(about 1.3 us a socket here: 340 us a poll for a group of 64 members, whose links and
lanes are 256 sockets, docs/benchmarks.md), where a selector costs only what is ready.
``ZMQ_FD`` only says that a socket's state *may* have changed, so a socket whose fd is
ready is read until its ``ZMQ_EVENTS`` has no ``POLLIN`` left, and a socket just sent on
is checked at once (:meth:`IOLoop.check`: libzmq may have taken in its incoming messages
during the send without signalling the fd again); every second the loop checks them all,
in case.

File descriptors: :func:`ensure_fd_headroom` is asked before sockets are opened and
raises :class:`~client.errors.ResourceLimit` (after raising the soft limit toward the hard
one, as ``ulimit -n`` would) rather than let a socket fail half-way.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import selectors
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, Optional, Protocol, Sequence, Set, Tuple

import zmq

from .errors import ResourceLimit

#: File descriptors a process keeps free for everything else it does (its own files).
FD_RESERVE = 16
#: File descriptors the context needs to start (mailboxes and epoll sets of its threads).
CONTEXT_FDS = 8
#: Sockets the context may hold (libzmq's default, 1023, is 250 group members).
MAX_SOCKETS = 32768
#: The loop's timer: liveness checks and retries run this often.
TICK_S = 0.25
#: Every this many ticks the loop asks every socket whether it has input (a signal a
#: Pollable lost by not calling IOLoop.check after a send costs a second, never a hang).
SWEEP_TICKS = 4
#: Highest soft open-file limit the client raises itself to.
MAX_AUTO_NOFILE = 65536

_lock = threading.Lock()
_context: Optional[zmq.Context] = None
_context_pid = 0
_loop: Optional["IOLoop"] = None


# --- file descriptors ---------------------------------------------------------------------------


def open_fd_count() -> Optional[int]:
    """How many file descriptors this process has open (None where the OS does not say)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # listdir's own descriptor
        except OSError:
            continue
    return None


#: Counting descriptors lists /proc/self/fd (about a millisecond at a thousand): while the
#: last count plus what was opened since stays this far below the limit, nobody counts.
FD_COUNT_SLACK = 256
_fd_estimate = [0, 0.0]  # [descriptors open at the last count + opened since, when counted]


def ensure_fd_headroom(needed: int, what: str) -> None:
    """Raise ResourceLimit unless ``needed`` more descriptors fit under the open-file limit
    with FD_RESERVE to spare; first raise the soft limit toward the hard one if that helps."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to check
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    estimate, counted = _fd_estimate
    now = time.monotonic()
    # The estimate only grows (closing frees descriptors it still counts): below the limit
    # by the slack, it is safe without a count.
    if now - counted < 1.0 and estimate + needed + FD_RESERVE + FD_COUNT_SLACK <= soft:
        _fd_estimate[0] = estimate + needed
        return
    used = open_fd_count()
    if used is None:
        return
    _fd_estimate[:] = [used + needed, now]
    want = used + needed + FD_RESERVE
    if want <= soft:
        return
    ceiling = MAX_AUTO_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_AUTO_NOFILE)
    if want <= ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, min(ceiling, soft * 2)), hard))
            return
        except (ValueError, OSError):
            pass
    raise ResourceLimit(
        f"{what} needs about {needed} more file descriptors, and this process has {used} open "
        f"of its limit of {soft} (ulimit -n; hard limit {hard}), keeping {FD_RESERVE} free for "
        f"its own files: nothing was opened. Close sessions you no longer use, or raise the limit."
    )


def zmq_resource_error(exc: zmq.ZMQError, what: str) -> BaseException:
    """The error to raise for a ZeroMQ failure while opening sockets: ResourceLimit for
    EMFILE (descriptors or the context's socket limit), else the error itself."""
    if exc.errno in (zmq.EMFILE, getattr(zmq, "ENFILE", -1)):
        return ResourceLimit(f"{what}: ZeroMQ could not open another socket ({exc}): nothing was opened")
    return exc


# --- the context ----------------------------------------------------------------------------------


def shared_context() -> zmq.Context:
    """The process's ZeroMQ context for every framebridge connection (a new one in a
    forked child: the parent's must never be used there)."""
    global _context, _context_pid
    context = _context
    if context is not None and _context_pid == os.getpid():
        return context
    with _lock:
        if _context is None or _context_pid != os.getpid():
            ensure_fd_headroom(CONTEXT_FDS, "starting ZeroMQ")
            context = zmq.Context()
            try:
                context.set(zmq.MAX_SOCKETS, min(MAX_SOCKETS, context.get(zmq.SOCKET_LIMIT)))
                # Start the context's threads now, under the check above: libzmq aborts
                # the process if it cannot create their epoll sets later.
                context.socket(zmq.PAIR).close(linger=0)
            except zmq.ZMQError as exc:
                raise zmq_resource_error(exc, "starting ZeroMQ") from exc
            _context, _context_pid = context, os.getpid()
        return _context  # type: ignore[return-value]


# --- the loop ---------------------------------------------------------------------------------------


_POLLIN = int(zmq.POLLIN)  # a plain int: the flag enum's & costs a microsecond per use
_EVENTS = int(zmq.EVENTS)


class Pollable(Protocol):
    """What the I/O loop polls. Every method runs on the loop thread.

    A ZeroMQ socket's readiness is edge-signalled (module docstring): ``on_readable``
    reads until nothing is left, and after sending on one of its sockets a pollable calls
    :meth:`IOLoop.check` for it."""

    def poll_items(self) -> Sequence[Any]:
        """The sockets (or file descriptors) to poll for input."""

    def on_readable(self, item: Any) -> None:
        """``item`` (one of :meth:`poll_items`) may be readable: take all that is there, do not block."""

    def on_tick(self, now: float) -> None:
        """Called every TICK_S seconds: liveness checks, retries."""

    def on_removed(self) -> None:
        """The loop no longer polls it: close its sockets (linger 0, never blocking)."""


class IOLoop:
    """One thread polling every registered :class:`Pollable`; see the module docstring."""

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.pid = os.getpid()
        self._selector = selectors.DefaultSelector()
        self._items: Dict[Any, Tuple[Pollable, Any]] = {}  # socket or fd -> (owner, its fd)
        self._pollables: Set[Pollable] = set()
        self._commands: Deque[Tuple[Callable[..., Any], Tuple[Any, ...]]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self._batching = threading.local()  # per thread: one thread's batch never holds back another's calls
        self._stopping = False
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="framebridge-io", daemon=True)
        self._thread.start()

    # --- any thread ---------------------------------------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread soon. Never blocks; safe from finalizers."""
        self._commands.append((fn, args))
        if not self._woken and not getattr(self._batching, "depth", 0):
            self._wake()  # one wake-up byte covers every command queued before the loop runs

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Calls made in the block wake the loop once, at its end: a group's N sends go
        out in one turn of the loop instead of the loop waking at the first and taking
        the interpreter lock from the caller for each (docs/benchmarks.md, groups)."""
        batching = self._batching
        batching.depth = getattr(batching, "depth", 0) + 1
        try:
            yield
        finally:
            batching.depth -= 1
            if not batching.depth and self._commands and not self._woken:
                self._wake()

    def _wake(self) -> None:
        self._woken = True
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full of wake-ups (or closed at exit)

    def add(self, pollable: Pollable) -> None:
        """Start polling ``pollable``."""
        self.call(self._add, pollable)

    def remove(self, pollable: Pollable) -> None:
        """Stop polling ``pollable`` and let it close its sockets."""
        self.call(self._remove, pollable)

    def in_loop(self) -> bool:
        """Whether the caller is the loop thread."""
        return threading.current_thread() is self._thread

    @property
    def thread(self) -> threading.Thread:
        """The loop's thread (tests count threads)."""
        return self._thread

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread (at exit): every pollable closes its sockets."""
        self._stopping = True
        self.call(lambda: None)
        if self._thread.is_alive() and not self.in_loop():
            self._thread.join(timeout)

    # --- the loop thread ---------------------------------------------------------------------

    def check(self, pollable: Pollable, sock: zmq.Socket) -> None:
        """After sending on ``sock`` (loop thread): if it has input, let its owner read it
        (libzmq may have taken it in during the send without signalling the socket's fd)."""
        if not sock.closed and sock.get(_EVENTS) & _POLLIN:
            self._commands.append((pollable.on_readable, (sock,)))

    def _add(self, pollable: Pollable) -> None:
        if pollable in self._pollables:
            return
        self._pollables.add(pollable)
        for item in pollable.poll_items():
            fd = item.get(zmq.FD) if isinstance(item, zmq.Socket) else item
            self._items[item] = (pollable, fd)
            try:
                self._selector.register(fd, selectors.EVENT_READ, (pollable, item))
            except KeyError:  # its number was a socket's that closed unregistered: that entry is stale
                self._selector.unregister(fd)
                self._selector.register(fd, selectors.EVENT_READ, (pollable, item))
        self._sweep(pollable)  # what came before its fd was watched

    def _remove(self, pollable: Pollable) -> None:
        if pollable in self._pollables:
            self._pollables.discard(pollable)
            for item in pollable.poll_items():
                entry = self._items.pop(item, None)
                if entry is not None:
                    try:
                        self._selector.unregister(entry[1])
                    except (KeyError, ValueError, OSError):
                        pass
        _guarded(pollable.on_removed)

    def _sweep(self, pollable: Pollable) -> None:
        """Let ``pollable`` read whatever its sockets hold (a missed signal costs a tick, never a hang)."""
        for item in pollable.poll_items():
            if isinstance(item, zmq.Socket) and not item.closed and item.get(_EVENTS) & _POLLIN:
                _guarded(pollable.on_readable, item)

    def _run_commands(self) -> None:
        os_read = os.read
        try:
            while os_read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._woken = False
        commands = self._commands
        while commands:
            fn, args = commands.popleft()
            _guarded(fn, *args)

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        ticks = 0
        select = self._selector.select
        try:
            while not self._stopping:
                # commands queued by the last turn (IOLoop.check from on_tick) run at once
                timeout = 0.0 if self._commands else max(0.0, next_tick - time.monotonic()) + 0.001
                try:
                    ready = select(timeout)
                except (OSError, ValueError):  # EINTR; or a descriptor closed under us
                    continue
                woken = False
                for key, _ in ready:
                    if key.data is None:
                        woken = True
                        continue
                    owner, item = key.data
                    if owner in self._pollables:
                        _guarded(owner.on_readable, item)
                if woken or self._commands:
                    self._run_commands()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    ticks += 1
                    sweep = ticks % SWEEP_TICKS == 0
                    for pollable in list(self._pollables):
                        if sweep:
                            self._sweep(pollable)
                        _guarded(pollable.on_tick, now)
            for pollable in list(self._pollables):
                self._remove(pollable)
        except BaseException:  # interpreter shutdown tears modules down under a daemon thread
            pass


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run a handler on the loop thread; what it raises is printed, never the loop's end."""
    try:
        fn(*args)
    except Exception as exc:
        try:
            print(f"framebridge: I/O loop handler {getattr(fn, '__qualname__', fn)} failed: {exc!r}",
                  file=sys.stderr)
        except Exception:
            pass


def io_loop() -> IOLoop:
    """The process's I/O loop, started on first use (a new one in a forked child)."""
    global _loop
    loop = _loop
    if loop is not None and loop.pid == os.getpid():
        return loop
    context = shared_context()
    with _lock:
        if _loop is None or _loop.pid != os.getpid():
            _loop = IOLoop(context)
        return _loop


def client_threads() -> int:
    """Threads this process runs for framebridge: the loop's and the context's two."""
    loop = _loop
    own = 1 if loop is not None and loop.pid == os.getpid() and loop.thread.is_alive() else 0
    return own + (2 if _context is not None and _context_pid == os.getpid() else 0)


@atexit.register
def _stop_at_exit() -> None:
    # Stop polling before the interpreter tears modules down; the context is left to the
    # process's exit (terminating it could wait on a socket another thread still holds).
    loop = _loop
    if loop is not None and loop.pid == os.getpid():
        loop.stop()
