"""Run a piece of the user's code that framebridge only needs to *look* (a ``__repr__``, a
``shape`` property) under a deadline, off the paused thread.

The paused thread must stay responsive to its client, whatever the user's ``__repr__``
does: loop for ever, wait on a lock the paused thread holds, read from a socket. A thread
cannot be killed, so such code runs on a helper thread (``bridge-guarded``) while the
paused thread waits with a timeout. Past the timeout the paused thread gives up on that
call and the helper is *abandoned*: an exception (:class:`Abandoned`) is raised into it,
which ends code that loops in Python (a call blocked in C stays blocked until it
returns), and the next call gets a fresh helper. While an abandoned call still runs,
calls for values of the same type are refused at once (:func:`busy_with`): they would
most likely block the same way, and each would leave one more thread behind. At most
:data:`MAX_ABANDONED` helpers are left running; past that nothing is run until one ends.

What runs here sees the value from another thread than the paused one: a ``__repr__``
that reads thread-local state shows that thread's view.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

#: Abandoned helpers that may still run at once; past this, nothing more is run.
MAX_ABANDONED = 8


class Abandoned(BaseException):
    """Raised into a helper whose call overran its deadline (BaseException: the user's
    ``except Exception`` must not swallow it)."""


class GuardedError(Exception):
    """Why a guarded call gave no result (timed out, refused); the text says which."""


class _Call:
    __slots__ = ("fn", "arg", "result", "error", "done", "kind")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg
        self.kind = type(arg)
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()


class _Helper:
    """One helper thread running calls one at a time."""

    def __init__(self) -> None:
        self.calls: "queue.SimpleQueue[Optional[_Call]]" = queue.SimpleQueue()
        self.abandoned = False
        self.current: Optional[_Call] = None
        self.since = 0.0
        self.thread = threading.Thread(target=self._run, name="bridge-guarded", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.abandoned:
                call = self.calls.get()
                if call is None:
                    return
                self.current, self.since = call, time.monotonic()
                try:
                    call.result = call.fn(call.arg)
                except BaseException as exc:  # noqa: B902 - the user's code may raise anything
                    call.error = exc
                finally:
                    self.current = None
                    call.done.set()
        except BaseException:  # an Abandoned that landed between calls: this helper is done
            pass

    def abandon(self) -> None:
        """Give up on the running call: end the thread when it returns, and try to make it return."""
        self.abandoned = True
        self.calls.put(None)
        ident = self.thread.ident
        if ident is not None and self.current is not None:
            _raise_in(ident, Abandoned)


def _raise_in(ident: int, exc_type: type) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next Python instruction (CPython's
    PyThreadState_SetAsyncExc; nothing where ctypes is missing)."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    except Exception:
        pass


_lock = threading.Lock()
_idle: List[_Helper] = []
_abandoned: List[_Helper] = []


def _take() -> _Helper:
    with _lock:
        return _idle.pop() if _idle else _Helper()


def _still_running() -> List[_Helper]:
    # Caller holds _lock.
    _abandoned[:] = [h for h in _abandoned if h.thread.is_alive()]
    return _abandoned


def busy_with(kind: type) -> Optional[str]:
    """Why calls on a value of type ``kind`` are refused now, or None if they may run."""
    with _lock:
        running = _still_running()
        for helper in running:
            call = helper.current
            if call is not None and call.kind is kind:
                return f"an earlier one has been running for {time.monotonic() - helper.since:.0f}s"
        if len(running) >= MAX_ABANDONED:
            return f"{len(running)} earlier calls are still running"
    return None


def run(fn: Callable[[Any], Any], arg: Any, timeout: float) -> Tuple[bool, Any]:
    """``fn(arg)`` on a helper thread within ``timeout`` seconds.

    Returns (True, result), or (False, the exception ``fn`` raised); GuardedError if it
    overran (the helper is abandoned) or is refused (:func:`busy_with`).
    """
    why = busy_with(type(arg))
    if why is not None:
        raise GuardedError(f"skipped: {why}")
    helper = _take()
    call = _Call(fn, arg)
    helper.calls.put(call)
    if call.done.wait(timeout):
        with _lock:
            _idle.append(helper)
        return (True, call.result) if call.error is None else (False, call.error)
    with _lock:
        _abandoned.append(helper)
    helper.abandon()
    raise GuardedError(f"did not finish within {timeout:.2g}s")


def forget_inherited() -> None:
    """In a forked child: the helpers' threads are the parent's and do not exist here (forks.py)."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()
    _abandoned.clear()
