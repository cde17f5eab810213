"""Swap the code that live functions run, and put it back exactly.

Assigning ``function.__code__`` changes what the *next* call of that function object
runs, through every reference to it: the module attribute, bound methods, callbacks
held in lists or dicts, the closure of a ``functools.wraps`` decorator. Frames already
running keep the code they started with (CPython has no way to change that).

Two things make a swap complete:

* **Every function object of a code object.** A nested function (a closure, a
  method defined in a function, a lambda) gets a new function object from the same
  code object each time its ``def`` runs; :func:`functions_running` finds them all
  with one scan of the garbage collector's objects.
* **The enclosing code.** Those future function objects are made from the constants
  of the enclosing function's code; :func:`with_nested_replaced` builds a copy of the
  enclosing code holding the new nested code, and the enclosing function is swapped
  too.

A :class:`CodeJournal` records the code each function ran before a swap and puts it
back (the same code object, so ``f.__code__ is original`` afterwards). Several tools
swap code: breakpoint probes (``bridge.tracing.codepatch``) and patching a function's
source. Each keeps its own journal; :func:`mark_derived` / :func:`base_code` let one
see the program's code behind another's instrumented copy, and swap listeners
(:func:`add_swap_listener`) let breakpoint probes follow a patch.

Limits: a swap keeps the function's free variables (``co_freevars`` must have as
many names as the function's closure has cells: ValueError otherwise); module and
class bodies run once and are never swapped (the import hook of the breakpoint
backend instruments a module before it runs).
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
import weakref
from types import CodeType, FrameType, FunctionType, MethodType
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

__all__ = [
    "CodeJournal",
    "IdentityWeakMap",
    "add_swap_listener",
    "base_code",
    "contains_code",
    "functions_behind",
    "functions_running",
    "live_functions",
    "mark_derived",
    "remove_swap_listener",
    "running_frames",
    "with_nested_replaced",
]

#: ``listener(journal, function, old_code, new_code)``, after any journal's swap or restore.
SwapListener = Callable[["CodeJournal", FunctionType, CodeType, CodeType], None]

class IdentityWeakMap:
    """A mapping from objects, by identity, held weakly. ``WeakKeyDictionary`` compares
    keys by equality, and two distinct code objects compiled alike are equal: an entry
    for one would be dropped when the other dies."""

    def __init__(self) -> None:
        self._entries: Dict[int, Any] = {}  # id -> (weak reference, value)

    def __setitem__(self, key: Any, value: Any) -> None:
        ident = id(key)
        entries = self._entries

        def gone(ref: Any, ident: int = ident) -> None:
            entry = entries.get(ident)
            if entry is not None and entry[0] is ref:
                del entries[ident]

        entries[ident] = (weakref.ref(key, gone), value)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key`` (this very object), or ``default``."""
        entry = self._entries.get(id(key))
        if entry is None or entry[0]() is not key:
            return default
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def keys_for(self, value: Any) -> List[Any]:
        """The live keys whose value is ``value`` (by identity)."""
        out = []
        for ref, held in list(self._entries.values()):
            key = ref()
            if key is not None and held is value:
                out.append(key)
        return out


_derived = IdentityWeakMap()
_listeners: List[SwapListener] = []
_lock = threading.RLock()


# ------------------------------------------------------------------------ finding functions


def live_functions(predicate: Optional[Callable[[FunctionType], bool]] = None) -> List[FunctionType]:
    """Every live Python function object (one scan of ``gc.get_objects()``), or those
    ``predicate`` accepts. Costs about 50 ms per million objects in the process."""
    out = []
    for obj in gc.get_objects():
        if type(obj) is FunctionType and (predicate is None or predicate(obj)):
            out.append(obj)
    return out


def functions_running(code: CodeType, functions: Optional[Iterable[FunctionType]] = None) -> List[FunctionType]:
    """The function objects whose ``__code__`` is ``code`` or a copy derived from it
    (:func:`mark_derived`), among ``functions`` (default: every live function, found with
    ``gc.get_referrers`` of those code objects: one scan in C, ~3x faster than
    :func:`live_functions`)."""
    if functions is None:
        codes = [code, *_derived.keys_for(code)]
        functions = [f for f in gc.get_referrers(*codes) if type(f) is FunctionType]
    return [f for f in functions if f.__code__ is code or base_code(f.__code__) is code]


def functions_behind(obj: Any, depth: int = 4) -> Iterator[FunctionType]:
    """Function objects reachable from ``obj`` the way a name usually holds one: the
    function itself, a bound method, a static or class method, a property's
    accessors, a ``functools.partial``, and what a decorator wraps (``__wrapped__``
    and the cells of the wrapper's closure). Each at most once."""
    seen: set = set()
    todo = [(obj, depth)]
    while todo:
        item, left = todo.pop()
        if id(item) in seen or left < 0:
            continue
        seen.add(id(item))
        if type(item) is FunctionType:
            yield item
            inner = item.__dict__.get("__wrapped__")
            if inner is not None:
                todo.append((inner, left - 1))
            for cell in item.__closure__ or ():
                try:
                    todo.append((cell.cell_contents, left - 1))
                except ValueError:  # an empty cell
                    pass
        elif isinstance(item, MethodType):
            todo.append((item.__func__, left))
        elif isinstance(item, (staticmethod, classmethod)):
            todo.append((item.__func__, left))
        elif isinstance(item, property):
            todo.extend((acc, left) for acc in (item.fget, item.fset, item.fdel) if acc is not None)
        elif isinstance(item, functools.partial):
            todo.append((item.func, left - 1))
        else:
            inner = getattr(item, "__wrapped__", None) if not isinstance(item, type) else None
            if inner is not None:
                todo.append((inner, left - 1))


def running_frames(code: CodeType) -> List[FrameType]:
    """Frames of any thread running ``code`` (or a copy derived from it) right now."""
    out = []
    for top in sys._current_frames().values():
        frame: Optional[FrameType] = top
        while frame is not None:
            if frame.f_code is code or base_code(frame.f_code) is code:
                out.append(frame)
            frame = frame.f_back
    return out


# ------------------------------------------------------------------------ code objects


def contains_code(code: CodeType, target: CodeType) -> bool:
    """Whether ``target`` is ``code`` or nested in it, at any depth."""
    if code is target:
        return True
    return any(isinstance(c, CodeType) and contains_code(c, target) for c in code.co_consts)


def with_nested_replaced(code: CodeType, replace: Callable[[CodeType], Optional[CodeType]]) -> CodeType:
    """A copy of ``code`` in which every nested code object ``c`` (at any depth) is
    replaced by ``replace(c)`` when that is not None; ``code`` itself when nothing
    changes. ``replace`` is not asked about ``code`` itself."""
    consts = list(code.co_consts)
    changed = False
    for i, const in enumerate(consts):
        if not isinstance(const, CodeType):
            continue
        new = replace(const)
        if new is None:
            new = with_nested_replaced(const, replace)
        if new is not const:
            consts[i] = new
            changed = True
    return code.replace(co_consts=tuple(consts)) if changed else code


def mark_derived(derived: CodeType, base: CodeType) -> None:
    """Record that ``derived`` is ``base`` with instrumentation added (breakpoint
    probes): :func:`base_code` of it is ``base``."""
    _derived[derived] = base_code(base)


def base_code(code: CodeType) -> CodeType:
    """The program's code behind an instrumented copy (``code`` itself if it is none)."""
    return _derived.get(code, code)


# ------------------------------------------------------------------------ the journal


def add_swap_listener(listener: SwapListener) -> None:
    """Call ``listener(journal, function, old, new)`` after every swap and restore."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_swap_listener(listener: SwapListener) -> None:
    """Stop calling ``listener``."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _notify(journal: "CodeJournal", function: FunctionType, old: CodeType, new: CodeType) -> None:
    for listener in list(_listeners):
        try:
            listener(journal, function, old, new)
        except Exception:  # a listener's bug must not leave a swap half done
            import traceback

            traceback.print_exc()


class CodeJournal:
    """The code each function ran before this journal swapped it.

    ``swap`` may be called again for the same function (a second breakpoint in it):
    the journal keeps the code from before the *first* swap, and ``restore`` puts that
    back, unless someone else swapped the function since (it then leaves it alone and
    says so). What it keeps is the program's code (:func:`base_code`): a function that
    ran another tool's instrumented copy (breakpoint probes) gets the program's code
    back, and that tool's swap listener instruments it again if it still wants to;
    keeping the copy would hand it instrumentation twice. Another tool's instrumentation on top of what this journal installed
    (:func:`mark_derived`) does not count as such a swap. Thread-safe. Function objects are held weakly: a function that dies
    leaves the journal.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._original: "weakref.WeakKeyDictionary[FunctionType, CodeType]" = weakref.WeakKeyDictionary()
        self._installed: "weakref.WeakKeyDictionary[FunctionType, CodeType]" = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._installed)

    def __contains__(self, function: object) -> bool:
        return function in self._installed

    def functions(self) -> List[FunctionType]:
        """The functions this journal swapped and has not restored."""
        return list(self._installed)

    def original(self, function: FunctionType) -> Optional[CodeType]:
        """The code ``function`` ran before this journal first swapped it."""
        return self._original.get(function)

    def installed(self, function: FunctionType) -> Optional[CodeType]:
        """The code this journal last gave ``function``."""
        return self._installed.get(function)

    def swap(self, function: FunctionType, code: CodeType) -> None:
        """Make ``function`` run ``code`` from its next call. ValueError if ``code``
        needs other free variables than the function's closure provides."""
        with _lock:
            old = function.__code__
            if old is code:
                return
            if len(code.co_freevars) != len(function.__closure__ or ()):
                raise ValueError(
                    f"cannot swap the code of {function.__qualname__}: the new code has "
                    f"{len(code.co_freevars)} free variable(s), the function's closure {len(function.__closure__ or ())}"
                )
            function.__code__ = code
            if function not in self._original:
                self._original[function] = base_code(old)
            self._installed[function] = code
        _notify(self, function, old, code)

    def restore(self, function: FunctionType) -> bool:
        """Put back the code ``function`` ran before this journal swapped it. False
        (and nothing changed) if it was not swapped here, or if something else has
        swapped it since."""
        with _lock:
            installed = self._installed.pop(function, None)
            original = self._original.pop(function, None)
            current = function.__code__
            # what we installed, possibly with another tool's instrumentation on top of it
            if installed is None or original is None or base_code(current) is not base_code(installed):
                return False
            function.__code__ = original
        _notify(self, function, current, original)
        return True

    def forget(self, function: FunctionType) -> None:
        """Drop ``function`` from the journal without touching its code (someone else
        swapped it and owns what it runs now)."""
        with _lock:
            self._installed.pop(function, None)
            self._original.pop(function, None)

    def restore_all(self) -> int:
        """Restore every function swapped here; how many were restored."""
        return sum(self.restore(f) for f in self.functions())
