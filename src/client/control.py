"""Session methods of the debugger proper: breakpoints, pause, watches (a mixin).

Breakpoints and watch expressions live in the target (its tracing engine) and survive
this session: another client sees them, and they keep working after ``close()``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List, Optional, Union

from bridge.protocol import Breakpoint  # the one breakpoint schema, shared with the target

from .errors import RemoteError

#: How long :meth:`DebugControl.pause` waits for the pause to land before it says why not.
PAUSE_LANDING_S = 1.0


class BreakpointError(RemoteError, ValueError):
    """The target refused a breakpoint or watch (no such file, no code there, bad expression).

    Both a :class:`RemoteError` and a ``ValueError``, so either ``except`` catches it.
    """


class PausePending(UserWarning):
    """``pause()`` was sent but the thread has not stopped yet (it is inside a long C call,
    such as ``time.sleep`` or a numpy operation); it stops when that call returns."""


class BreakpointList(list):
    """A list of Breakpoint that prints one per line."""

    def __repr__(self) -> str:
        return "\n".join(str(b) for b in self) or "(no breakpoints)"


def _refusal(exc: RemoteError) -> RemoteError:
    """Turn the target's ValueError into a BreakpointError (other errors stay as they are)."""
    if exc.remote_type == "ValueError":
        return BreakpointError(exc.remote_type, exc.remote_message, exc.remote_traceback)
    return exc


class DebugControl:
    """Mixed into Session: breakpoints, pause on demand, watch expressions.

    Relies on Session's ``_request(op, args)``, ``wait(timeout)``, ``pauses()`` and ``pid``.
    """

    # --- breakpoints -----------------------------------------------------------------

    def break_at(self, file: str, line: int, *, condition: Optional[str] = None,
                 temporary: bool = False) -> Breakpoint:
        """Set a breakpoint at ``file:line`` in the target; return it.

        ``file`` is a path as the target sees it (relative paths are relative to the
        target's working directory). A line without code moves to the next line with code
        (``Breakpoint.line`` says where). ``condition``: an expression evaluated in the
        frame; the breakpoint stops, and counts a hit, only when it is true (one that
        raises counts as true and the pause says why). ``temporary``: removed after its
        first stop. Raises :class:`BreakpointError` (a ``ValueError``) when refused.
        """
        args: Dict[str, Any] = {"file": str(file), "line": line, "temporary": bool(temporary)}
        if condition is not None:
            args["condition"] = condition
        try:
            result, _ = self._request("break_at", args)  # type: ignore[attr-defined]
        except RemoteError as exc:
            raise _refusal(exc) from None
        return Breakpoint.from_json(result)

    def breakpoints(self) -> BreakpointList:
        """Every breakpoint of the target, with its current hit count."""
        result, _ = self._request("breakpoints")  # type: ignore[attr-defined]
        return BreakpointList(Breakpoint.from_json(b) for b in result)

    def clear(self, bp: Union[Breakpoint, int, None] = None, *, all: bool = False) -> List[int]:
        """Remove breakpoint ``bp`` (a Breakpoint or its id), or every one with ``all=True``.

        Returns the ids removed. Raises :class:`BreakpointError` for an unknown id.
        """
        if all:
            args: Dict[str, Any] = {"all": True}
        elif bp is None:
            raise TypeError("clear() needs a breakpoint (or its id), or all=True")
        else:
            args = {"id": bp.id if isinstance(bp, Breakpoint) else int(bp)}
        try:
            result, _ = self._request("clear", args)  # type: ignore[attr-defined]
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result["cleared"])

    # --- watch expressions -------------------------------------------------------------

    def watch(self, expr: str) -> List[str]:
        """Evaluate ``expr`` at every pause from now on; the values arrive with the pause
        (``PauseInfo.extra["watches"]``: expression -> short repr, or the error it raised).
        Returns the watch expressions in force."""
        try:
            result, _ = self._request("watch", {"expr": expr})  # type: ignore[attr-defined]
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result)

    def unwatch(self, expr: Optional[str] = None, *, all: bool = False) -> List[str]:
        """Stop watching ``expr`` (or every expression with ``all=True``); returns those left."""
        args: Dict[str, Any] = {"all": True} if all else {"expr": expr}
        if not all and expr is None:
            raise TypeError("unwatch() needs an expression, or all=True")
        try:
            result, _ = self._request("unwatch", args)  # type: ignore[attr-defined]
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result)

    def watches(self) -> List[str]:
        """The watch expressions in force."""
        result, _ = self._request("watches")  # type: ignore[attr-defined]
        return list(result)

    # --- pause on demand -----------------------------------------------------------------

    def pause(self, *, thread: Optional[int] = None, wait: float = PAUSE_LANDING_S) -> Any:
        """Pause the running target (the main thread, or ``thread``) at its next line.

        Returns the pause (a PauseInfo) once it has landed. If it has not landed within
        ``wait`` seconds (the thread is inside a long C call: it stops when the call
        returns) this warns with :class:`PausePending` and returns None; ``wait()`` then
        blocks until it lands. Before Python 3.12 only the main thread can be paused
        (a signal); from 3.12 any thread (``sys.monitoring``).
        """
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            result, _ = self._request("pause", {"thread": thread})  # type: ignore[attr-defined]
            # "already paused" by a pause we just resumed (its thread has not left the
            # pause loop yet): ask again, that stop is over
            if not (result.get("already_paused") and result.get("pause_id") in self._retired  # type: ignore[attr-defined]
                    and time.monotonic() < deadline):
                break
            time.sleep(0.01)
        tid = int(result["thread"])
        with self._state:  # type: ignore[attr-defined]
            while True:
                for p in self.pauses():  # type: ignore[attr-defined]
                    if p.thread == tid:
                        return p
                failure = self._events.failure  # type: ignore[attr-defined]
                if failure is not None:
                    raise failure
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._state.wait(min(left, 0.05))  # type: ignore[attr-defined]
        warnings.warn(
            PausePending(
                f"pause of thread {tid} of pid {self.pid} requested ({result.get('mechanism')}) "  # type: ignore[attr-defined]
                f"but not landed after {wait:g}s: the thread is probably inside a long C call "
                "(sleep, I/O, numpy); it pauses when that call returns. Use wait() to block until it does."
            ),
            stacklevel=2,
        )
        return None
