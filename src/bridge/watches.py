"""Watch expressions: process-wide, evaluated on the paused thread at every pause and sent
with the ``paused`` event.

The set of expressions is replaced, never changed in place, so that a pausing thread can
read it without a lock while the server thread (``watch`` / ``unwatch`` ops) changes it.
"""

from __future__ import annotations

from types import FrameType
from typing import Dict, List, Sequence

from . import frames as frame_access
from .summaries import frame_deadline, summarize

_watched: tuple = ()


def watched() -> List[str]:
    """The watch expressions in force, oldest first."""
    return list(_watched)


def add(expr: str) -> List[str]:
    """Watch ``expr`` (ValueError if it does not compile); returns the expressions in force."""
    global _watched
    try:
        compile(expr, "<watch>", "eval")
    except SyntaxError as exc:
        raise ValueError(f"watch expression {expr!r} does not compile: {exc.msg}") from None
    if expr not in _watched:
        _watched = _watched + (expr,)
    return list(_watched)


def remove(expr: str) -> List[str]:
    """Stop watching ``expr`` (ValueError if it is not watched); returns the expressions in force."""
    global _watched
    if expr not in _watched:
        raise ValueError(f"{expr!r} is not watched")
    _watched = tuple(e for e in _watched if e != expr)
    return list(_watched)


def clear() -> List[str]:
    """Stop watching everything."""
    global _watched
    _watched = ()
    return []


def evaluate(frame: FrameType, exprs: Sequence[str]) -> Dict[str, str]:
    """repr of each watch expression in ``frame`` (errors shown as text, never raised)."""
    out = {}
    deadline = frame_deadline()  # their reprs together are bounded like a frame's summaries
    for expr in exprs:
        try:
            value = frame_access.run_code(frame, compile(expr, "<watch>", "eval"), eval_mode=True)
            out[expr] = summarize(value, deadline=deadline)["repr"]
        except Exception as exc:
            out[expr] = f"<{type(exc).__name__}: {exc}>"
    return out
