"""The one way tests wait for a condition that has nothing to wait on.

Where there *is* something to wait on, wait on it with a timeout: ``thread.join(t)``,
``event.wait(t)``, ``socket.poll(ms)``, ``Session.wait(t)``, ``proc.wait(t)``. Only state
that gives no notification (a file appearing, a counter a listener thread sets, a table
in another thread) is polled, and only through :func:`wait_for`: it has a deadline, and
its failure says what it waited for, for how long, and what the state was.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

#: Default deadline of a wait, seconds (generous: the suite runs on a loaded 2-core machine).
DEFAULT_TIMEOUT = 10.0
#: Polling interval: short against the deadlines, long enough not to steal the CPU.
DEFAULT_INTERVAL = 0.02


class WaitTimeout(AssertionError):
    """A :func:`wait_for` deadline passed (an AssertionError: the test fails, it does not error)."""


def wait_for(condition: Callable[[], Optional[T]], timeout: float = DEFAULT_TIMEOUT, what: str = "condition",
             *, interval: float = DEFAULT_INTERVAL, details: Optional[Callable[[], str]] = None) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    After ``timeout`` seconds raise :class:`WaitTimeout` naming ``what`` and, if given,
    the text ``details()`` returns then (a process's output, the state seen). The
    condition may raise to end the wait early with a better message (a process that
    exited will never print what we wait for): the exception propagates as it is.
    The condition is always tried once more at the deadline, so a slow poll never
    fails a condition that did become true.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            value = condition()
            if value:
                return value
            message = f"timed out after {timeout:g}s waiting for {what}"
            if details is not None:
                message += f"\n{details()}"
            raise WaitTimeout(message)
        time.sleep(interval)  # polling: the state has no notification to wait on


def wait_until(predicate: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, what: str = "condition",
               interval: float = DEFAULT_INTERVAL) -> None:
    """:func:`wait_for` under its older name (kept for the tests that use it)."""
    wait_for(predicate, timeout, what, interval=interval)
