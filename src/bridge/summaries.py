"""Short descriptions of values that never send the values: type, repr, size.

Bounded in time and size, whatever a frame holds (``locals`` must answer, and must leave
the paused thread able to answer the next request):

* Builtin values (numbers, str, bytes, and lists, tuples, dicts, sets of them) are
  described on the paused thread by a repr that looks at a bounded part of each value
  (bounded_repr.py): a 512 MiB bytes object or a 20-million-element list costs
  microseconds, never the full repr.
* Anything else may run the user's code (``__repr__``, a ``shape`` property behind
  ``__getattr__``, ``__len__``, ``__sizeof__``), which may be slow, raise or block for
  ever. It runs under a deadline per value (:data:`VALUE_DEADLINE_S`) and per frame
  (:data:`FRAME_DEADLINE_S`) on a helper thread (guarded.py); past the deadline the value
  gets a placeholder repr, and so do later values of a type whose earlier repr still runs.
* Each part of a summary is computed on its own: a ``__getattr__`` that raises costs that
  value its ``shape``, a ``__repr__`` that raises (even ``SystemExit``) its repr, and
  never another value's summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Dict, Mapping, Optional

from . import guarded
from .bounded_repr import INLINE_TYPES, BoundedRepr, NeedsUserCode

#: Longest repr a summary carries.
REPR_LIMIT = 120
#: Longest the user's code may take to describe one value.
VALUE_DEADLINE_S = 1.0
#: Longest the user's code may take to describe all the values of one frame; the values
#: left after it get placeholders (builtin values are still described).
FRAME_DEADLINE_S = 3.0
#: Less time than this left in a frame's budget is not worth a helper's call.
_MIN_BUDGET_S = 0.05

_LENGTH_TYPES = (list, tuple, dict, set, frozenset, str, bytes, bytearray)


def type_label(value: Any) -> str:
    """``module.Qualname`` of a value's type (just the name for builtins)."""
    cls = type(value)
    try:
        return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    except Exception:  # a metaclass with odd attributes
        return object.__repr__(cls)


def safe_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """A repr of at most ``limit`` characters that never raises and never takes longer
    than :data:`VALUE_DEADLINE_S` (a placeholder says why when it would)."""
    return summarize(value, limit=limit)["repr"]


def summarize(value: Any, *, limit: int = REPR_LIMIT, deadline: Optional[float] = None) -> Dict[str, Any]:
    """Type, short repr and size of a value (and its shape or length), without sending it.

    ``deadline`` (a ``time.monotonic()`` value) bounds the user's code further, for a frame.
    """
    if type(value) in INLINE_TYPES:
        try:
            return _describe(value, limit, strict=True)
        except NeedsUserCode:  # a container holding something else: the guarded way
            pass
    budget = VALUE_DEADLINE_S if deadline is None else min(VALUE_DEADLINE_S, deadline - time.monotonic())
    if budget < _MIN_BUDGET_S:
        return _placeholder(value, "skipped: the frame's time for summaries ran out")
    try:
        ok, out = guarded.run(lambda v: _describe(v, limit, strict=False), value, budget)
    except guarded.GuardedError as exc:
        return _placeholder(value, str(exc))
    return out if ok else _placeholder(value, f"failed: {type(out).__name__}")


def summarize_frame(namespace: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """:func:`summarize` of every variable, the user's code bounded by :data:`FRAME_DEADLINE_S` in all."""
    deadline = frame_deadline()
    return {name: summarize(value, deadline=deadline) for name, value in namespace.items()}


def frame_deadline() -> float:
    """The ``deadline`` for the summaries of one frame (or one pause's watches) starting now."""
    return time.monotonic() + FRAME_DEADLINE_S


def _describe(value: Any, limit: int, strict: bool) -> Dict[str, Any]:
    """The summary (strict: NeedsUserCode where the user's code would run). Each part on its own."""
    out: Dict[str, Any] = {"type": type_label(value)}
    try:
        out["repr"] = BoundedRepr(limit, strict).repr(value)
    except NeedsUserCode:
        raise
    except BaseException as exc:  # noqa: B902 - a broken __repr__ (even SystemExit) is this value's problem
        out["repr"] = f"<{out['type']} object; repr failed: {type(exc).__name__}>"
    out["size"] = sys.getsizeof(value) if strict else value_size(value)
    if strict:
        if isinstance(value, _LENGTH_TYPES):
            out["len"] = len(value)
        return out
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple):
            out["shape"] = [int(n) for n in shape]
        elif isinstance(value, _LENGTH_TYPES):
            out["len"] = len(value)
    except BaseException:  # noqa: B902 - a __getattr__ or __len__ that raises costs only this part
        pass
    return out


def value_size(value: Any) -> Optional[int]:
    """Bytes of data behind a value: nbytes for arrays, memory_usage for frames, else getsizeof."""
    try:
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        mem = getattr(value, "memory_usage", None)
        if callable(mem) and type(value).__name__ in ("DataFrame", "Series"):
            total = mem(deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        return sys.getsizeof(value)
    except BaseException:  # noqa: B902 - a broken __getattr__ or __sizeof__
        return None


def _placeholder(value: Any, why: str) -> Dict[str, Any]:
    label = type_label(value)
    return {"type": label, "repr": f"<{label} object: repr {why}>", "size": None}
