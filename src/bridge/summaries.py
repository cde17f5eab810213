"""Short descriptions of values that never send the values: type, repr, size."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

#: Longest repr a summary carries.
REPR_LIMIT = 120


def safe_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """A short repr that never raises (a broken __repr__ must not break `locals`)."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    except Exception:
        return None


def summarize(value: Any) -> Dict[str, Any]:
    """Type, short repr and size of a value (and its shape or length), without sending it."""
    cls = type(value)
    out: Dict[str, Any] = {
        "type": cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}",
        "repr": safe_repr(value),
        "size": value_size(value),
    }
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        out["shape"] = list(shape)
    else:
        try:
            if isinstance(value, (list, tuple, dict, set, frozenset, str, bytes)):
                out["len"] = len(value)
        except Exception:
            pass
    return out
