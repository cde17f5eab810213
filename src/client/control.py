"""Session methods of the debugger proper: breakpoints, pause, watches (a mixin).

Breakpoints and watch expressions live in the target (its tracing engine) and survive
this session: another client sees them, and they keep working after ``close()``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List, Optional, Protocol, Tuple, Union

from bridge.protocol import Breakpoint  # the one breakpoint schema, shared with the target

from .errors import BadRequest, BreakpointError, PausePending, RemoteError, refine
from .pause_state import PauseState
from .values import PauseInfo

__all__ = ["Breakpoint", "BreakpointList", "BreakpointError", "ControlHost", "DebugControl", "PausePending"]

#: How long :meth:`DebugControl.pause` waits for the pause to land before it says why not.
PAUSE_LANDING_S = 1.0


class BreakpointList(list):
    """A list of Breakpoint that prints one per line."""

    def __repr__(self) -> str:
        return "\n".join(str(b) for b in self) or "(no breakpoints)"


def _refusal(exc: RemoteError) -> RemoteError:
    """The target's ValueError from a breakpoint or watch op means it refused: a
    BreakpointError (other errors stay as they are)."""
    return refine(exc, BreakpointError) if exc.remote_type == "ValueError" else exc


class ControlHost(Protocol):
    """What DebugControl needs from the class it is mixed into (Session has it)."""

    pid: int
    pause_state: PauseState

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, *, frames: Optional[List[Any]] = None,
                value: Any = ..., timeout: Optional[float] = None) -> Tuple[Any, List[Any]]:
        ...


class DebugControl:
    """Mixed into Session: breakpoints, pause on demand, watch expressions.

    Each method's ``self`` is a :class:`ControlHost`: it talks to the target through the
    session's public ``request`` and reads its ``pause_state``.
    """

    # --- breakpoints -----------------------------------------------------------------

    def break_at(self: ControlHost, file: str, line: int, *, condition: Optional[str] = None,
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
            result, _ = self.request("break_at", args)
        except RemoteError as exc:
            raise _refusal(exc) from None
        return Breakpoint.from_json(result)

    def breakpoints(self: ControlHost) -> BreakpointList:
        """Every breakpoint of the target, with its current hit count."""
        result, _ = self.request("breakpoints")
        return BreakpointList(Breakpoint.from_json(b) for b in result)

    def clear(self: ControlHost, bp: Union[Breakpoint, int, None] = None, *, all: bool = False) -> List[int]:
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
            result, _ = self.request("clear", args)
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result["cleared"])

    # --- watch expressions -------------------------------------------------------------

    def watch(self: ControlHost, expr: str) -> List[str]:
        """Evaluate ``expr`` at every pause from now on; the values arrive with the pause
        (``PauseInfo.extra["watches"]``: expression -> short repr, or the error it raised).
        Returns the watch expressions in force."""
        try:
            result, _ = self.request("watch", {"expr": expr})
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result)

    def unwatch(self: ControlHost, expr: Optional[str] = None, *, all: bool = False) -> List[str]:
        """Stop watching ``expr`` (or every expression with ``all=True``); returns those left."""
        args: Dict[str, Any] = {"all": True} if all else {"expr": expr}
        if not all and expr is None:
            raise TypeError("unwatch() needs an expression, or all=True")
        try:
            result, _ = self.request("unwatch", args)
        except RemoteError as exc:
            raise _refusal(exc) from None
        return list(result)

    def watches(self: ControlHost) -> List[str]:
        """The watch expressions in force."""
        result, _ = self.request("watches")
        return list(result)

    # --- pause on demand -----------------------------------------------------------------

    def pause(self: ControlHost, *, thread: Optional[int] = None, wait: float = PAUSE_LANDING_S) -> Optional[PauseInfo]:
        """Pause the running target (the main thread, or ``thread``) at its next line.

        Returns the pause (a PauseInfo) once it has landed. If it has not landed within
        ``wait`` seconds (the thread is inside a long C call: it stops when the call
        returns) this warns with :class:`PausePending` and returns None; ``wait()`` then
        blocks until it lands. Before Python 3.12 only the main thread can be paused
        (a signal); from 3.12 any thread (``sys.monitoring``).
        """
        deadline = time.monotonic() + max(0.0, wait)
        state = self.pause_state
        while True:
            try:
                result, _ = self.request("pause", {"thread": thread})
            except RemoteError as exc:  # its ValueError: no such thread, or the server's own
                raise refine(exc, BadRequest) if exc.remote_type == "ValueError" else exc from None
            # "already paused" by a pause we just resumed (its thread has not left the
            # pause loop yet): ask again, that stop is over
            if not (result.get("already_paused") and state.is_retired(result.get("pause_id"))
                    and time.monotonic() < deadline):
                break
            time.sleep(0.01)
        tid = int(result["thread"])
        landed = state.wait_for(lambda: state.get(tid), deadline, poll=0.05)
        if landed is not None:
            return landed
        warnings.warn(
            PausePending(
                f"pause of thread {tid} of pid {self.pid} requested ({result.get('mechanism')}) "
                f"but not landed after {wait:g}s: the thread is probably inside a long C call "
                "(sleep, I/O, numpy); it pauses when that call returns. Use wait() to block until it does."
            ),
            stacklevel=2,
        )
        return None
