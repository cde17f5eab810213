"""A repr that looks at a bounded part of a value: the first characters, bytes, elements.

``reprlib`` does most of this; :class:`BoundedRepr` fixes where it does not bound the
work: it sorts whole dicts and sets (n log n comparisons, user ``__lt__`` included),
builds the full repr of bytes and of huge ints, and picks its method by the *name* of
the type (a user class named ``list`` would be iterated as one). Here the method is
picked by the type itself, a subclass that kept its base's ``__repr__`` is shown the
bounded way too, and ``strict`` mode (used on the paused thread) refuses anything whose
repr could run the user's code by raising :class:`NeedsUserCode` instead.
"""

from __future__ import annotations

import builtins
import collections
import reprlib
import types
from itertools import islice
from typing import Any, Callable, Dict, Iterable

#: Exact types whose repr, as done here, runs no user code and looks at a bounded part of
#: the value (their elements are checked one by one). Modules: their repr reads a few
#: attributes of the module object; functions and classes: their names.
INLINE_TYPES = frozenset({
    int, float, complex, bool, type(None), str, bytes, bytearray, range, list, tuple, dict, set,
    frozenset, collections.deque, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type,
    type(Ellipsis),
})

#: Ints up to this many bits are written in decimal (microseconds); bigger ones by size.
_MAX_INT_BITS = 4000


class NeedsUserCode(Exception):
    """Raised in strict mode: describing this value could run the user's code."""


class BoundedRepr(reprlib.Repr):
    """reprlib's limits, with every builtin type's repr bounded (see the module docstring)."""

    def __init__(self, limit: int, strict: bool) -> None:
        super().__init__()
        self.strict = strict
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdeque = 12
        self.maxset = self.maxfrozenset = 12
        self.maxdict = 8
        self.maxstring = limit
        self.maxlong = 40
        self.maxother = limit
        # By type, not by type name; each also serves subclasses that kept the base's repr.
        self._by_type: Dict[Any, Callable[[Any, int], str]] = {
            str: self.repr_str, bytes: self.repr_bytes, bytearray: self.repr_bytearray, int: self.repr_int,
            list: self.repr_list, tuple: self.repr_tuple, dict: self.repr_dict, set: self.repr_set,
            frozenset: self.repr_frozenset, collections.deque: self.repr_deque,
        }
        self._by_repr = {base.__repr__: method for base, method in self._by_type.items()}

    def repr(self, x: Any) -> str:
        """The repr of ``x``, at most ``limit`` characters."""
        return self._cut(super().repr(x))

    def repr1(self, x: Any, level: int) -> str:
        cls = type(x)
        method = self._by_type.get(cls)
        if method is not None:
            return method(x, level)
        if cls in INLINE_TYPES:  # bool, float, None, a module...: short reprs of their own
            return self._cut(builtins.repr(x))
        if self.strict:
            raise NeedsUserCode(cls)
        method = self._by_repr.get(getattr(cls, "__repr__", None))
        if method is not None:  # a subclass of a builtin that kept its base's repr
            return method(x, level)
        return self.repr_instance(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        return self._cut(builtins.repr(x))

    def repr_int(self, x: int, level: int) -> str:
        # A huge int's decimal text costs quadratic time (3.11+ refuses past 4300 digits).
        bits = x.bit_length()
        if bits > _MAX_INT_BITS:
            return f"<int of {bits} bits>"
        return self._cut(int.__repr__(x), self.maxlong)

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self._cut_bytes(bytes(x[: self.maxstring]), len(x))

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return "bytearray(" + self._cut_bytes(bytes(x[: self.maxstring]), len(x)) + ")"

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in islice(dict.items(x), self.maxdict)]
        return self._enclose(pieces, len(x) > self.maxdict, "{", "}")

    def repr_set(self, x: set, level: int) -> str:
        return self._first_items(x, level, "{", "}", "set()") if type(x) is set else self._subclass_set(x, level)

    def repr_frozenset(self, x: frozenset, level: int) -> str:
        return self._first_items(x, level, "frozenset({", "})", "frozenset()")

    def _subclass_set(self, x: set, level: int) -> str:
        return f"{type(x).__name__}(" + self._first_items(x, level, "{", "}", "") + ")"

    def _first_items(self, x: Iterable, level: int, left: str, right: str, empty: str) -> str:
        # Unsorted (reprlib sorts the whole set first): the first elements, as iteration gives them.
        if not x:
            return empty
        if level <= 0:
            return left + "..." + right
        pieces = [self.repr1(item, level - 1) for item in islice(x, self.maxset)]
        return self._enclose(pieces, len(x) > self.maxset, left, right)

    def _enclose(self, pieces: list, more: bool, left: str, right: str) -> str:
        if more:
            pieces.append("...")
        return left + ", ".join(pieces) + right

    def _cut_bytes(self, head: bytes, total: int) -> str:
        text = builtins.repr(head)
        return self._cut(text if total <= len(head) else text[:-1] + "..." + text[-1])

    def _cut(self, text: str, limit: int = 0) -> str:
        limit = limit or self.maxother
        return text if len(text) <= limit else text[: limit - 3] + "..."
