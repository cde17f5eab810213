"""Read and write a paused frame's variables, correctly on CPython 3.9 to 3.14.

Every function here must run on the frame's own thread (the paused thread serves its own
frame), because writing locals is only safe there.

Two worlds:

* **Up to 3.12** ``frame.f_locals`` is a snapshot dict, and every read of it re-snapshots,
  wiping edits not yet pushed back. So we read it once, change that dict, and push it into
  the fast locals at once with ``PyFrame_LocalsToFast(frame, 1)`` (``clear=1`` so a
  deleted name really becomes unbound). Cells get the new value, so closures see it.
* **From 3.13** (PEP 667) ``frame.f_locals`` is a write-through proxy. Writes land at
  once; a real local cannot be deleted (we say so before touching anything).

Module-level frames have ``f_locals is f_globals``: a dict write is all it takes.

A new name written into a function frame is visible to later ``eval``/``exec`` in that
frame but not to the function's compiled code, which looks that name up as a global.
"""

from __future__ import annotations

import ctypes
import inspect
import sys
from types import CodeType, FrameType
from typing import Any, Dict, Iterable, List, Mapping, Optional

PEP667 = sys.version_info >= (3, 13)
#: 3.12 turns a deleted fast local into None (with a RuntimeWarning) rather than unbind a
#: variable its LOAD_FAST assumes bound; 3.13+ refuses outright. Either way: refuse first.
CAN_DELETE_FAST_LOCALS = sys.version_info < (3, 12)

if not PEP667:
    _locals_to_fast = ctypes.pythonapi.PyFrame_LocalsToFast
    _locals_to_fast.argtypes = [ctypes.py_object, ctypes.c_int]
    _locals_to_fast.restype = None


class FrameWriteError(Exception):
    """A write the running Python cannot do; nothing was changed."""


def is_module_frame(frame: FrameType) -> bool:
    """True for a frame whose variables live in a plain dict (module, class body, exec).

    Decided from the code flags, never by reading ``f_locals``: on 3.12 and before, each
    read of a function frame's ``f_locals`` re-snapshots it.
    """
    return not frame.f_code.co_flags & inspect.CO_OPTIMIZED


def read_locals(frame: FrameType) -> Dict[str, Any]:
    """A fresh dict of the frame's variables (locals, cells, free variables)."""
    return dict(frame.f_locals)


def frame_variables(frame: FrameType) -> Dict[str, Any]:
    """The frame's variables as the user sees them: :func:`read_locals`, without a module's
    dunders (``__name__``, ``__builtins__``: the module's machinery, not its variables)."""
    ns = read_locals(frame)
    if is_module_frame(frame):
        ns = {k: v for k, v in ns.items() if not (k.startswith("__") and k.endswith("__"))}
    return ns


def can_delete(frame: FrameType) -> bool:
    """Whether this Python can delete a variable of ``frame``."""
    return CAN_DELETE_FAST_LOCALS or is_module_frame(frame)


def undeletable(frame: FrameType, names: Iterable[str]) -> List[str]:
    """The names among ``names`` that this Python cannot delete from ``frame``: a running
    function's own locals, from 3.12 on (module-level names can always go)."""
    if CAN_DELETE_FAST_LOCALS or is_module_frame(frame):
        return []
    code = frame.f_code
    fast = set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
    return [n for n in names if n in fast]


def _refuse_fast_deletes(frame: FrameType, deletes: Iterable[str]) -> None:
    real = undeletable(frame, deletes)
    if real:
        raise FrameWriteError(
            f"Python {sys.version_info.major}.{sys.version_info.minor} cannot delete the local "
            f"variable(s) {', '.join(real)} of a running function (only 3.11 and older can); "
            f"assign None instead"
        )


def write_locals(
    frame: FrameType,
    updates: Mapping[str, Any],
    deletes: Iterable[str] = (),
) -> None:
    """Bind ``updates`` and unbind ``deletes`` in ``frame``, all or nothing.

    Everything that could fail is checked before the first write, so a FrameWriteError
    leaves the frame as it was.
    """
    deletes = list(deletes)
    for name in list(updates) + deletes:
        if not isinstance(name, str) or not name.isidentifier():
            raise FrameWriteError(f"{name!r} is not a valid variable name")
    if is_module_frame(frame):
        # The real dict: globals for a module, the namespace for a class body.
        _apply(frame.f_locals, updates, deletes)
        return
    if not CAN_DELETE_FAST_LOCALS:
        _refuse_fast_deletes(frame, deletes)
    # ≤3.12: the one snapshot read (no other read until the push below); 3.13+: the
    # write-through proxy, where only extra (non-fast) locals can be deleted, as checked.
    _apply(frame.f_locals, updates, deletes)
    if not PEP667:
        _locals_to_fast(frame, 1)


def _apply(ns: Any, updates: Mapping[str, Any], deletes: List[str]) -> None:
    missing = [n for n in deletes if n not in ns]
    if missing:
        raise FrameWriteError(f"cannot delete {', '.join(missing)}: not defined")
    for name, value in updates.items():
        ns[name] = value
    for name in deletes:
        del ns[name]


def needs_overlay(code: Any) -> bool:
    """Whether ``code`` holds nested code (lambda, genexp, comprehension before 3.12, def).

    Only nested code looks names up as globals and so needs the frame's locals overlaid on
    its globals; top-level code looks them up with LOAD_NAME, locals first. Callers that
    run the same code often (frame_ops.py) compute this once and pass it to :func:`run_code`.
    """
    return any(isinstance(const, CodeType) for const in code.co_consts)


def run_code(frame: FrameType, code: Any, *, eval_mode: bool, overlay: Optional[bool] = None) -> Any:
    """Evaluate or execute compiled ``code`` in ``frame``; assignments change the frame.

    Code with nested scopes runs with the frame's globals overlaid with its locals, so
    that comprehensions, lambdas and nested functions see the frame's locals (with
    separate globals and locals they would not: class-body scoping). Assignments at the
    top level go to the locals; a ``global`` statement's assignment goes to the real
    globals. ``overlay`` is :func:`needs_overlay` of ``code`` when the caller knows it.
    """
    if is_module_frame(frame):
        return eval(code, frame.f_globals, frame.f_locals) if eval_mode else exec(code, frame.f_globals, frame.f_locals)
    if overlay is None:
        overlay = needs_overlay(code)
    if not overlay:
        return _run_plain(frame, code, eval_mode)
    real_globals = frame.f_globals
    local_ns = frame.f_locals  # ≤3.12: the one snapshot read; 3.13+: write-through proxy
    overlay_ns = dict(real_globals)
    overlay_ns.update(local_ns)
    initial_locals = set(local_ns)
    before = {name: overlay_ns[name] for name in real_globals if name not in initial_locals}
    try:
        if eval_mode:
            return eval(code, overlay_ns, local_ns)
        exec(code, overlay_ns, local_ns)
        return None
    finally:
        if not PEP667:
            if not CAN_DELETE_FAST_LOCALS:
                _keep_deleted_fast_locals(frame, local_ns, overlay_ns, initial_locals)
            _locals_to_fast(frame, 1)
        # Names assigned under `global` landed in the overlay copy: carry them over.
        for name, old in before.items():
            if name in overlay_ns and overlay_ns[name] is not old:
                real_globals[name] = overlay_ns[name]
            elif name not in overlay_ns:
                real_globals.pop(name, None)
        # Only names the code created under `global`: never a local (one it deleted included).
        for name in overlay_ns.keys() - before.keys() - initial_locals - set(local_ns) - {"__builtins__"}:
            if name not in real_globals:
                real_globals[name] = overlay_ns[name]


def _run_plain(frame: FrameType, code: Any, eval_mode: bool) -> Any:
    # The common case: no nested scopes, so the real globals serve as they are
    # (no copy of a module's namespace per eval) and `global` statements write them directly.
    local_ns = frame.f_locals  # ≤3.12: the one snapshot read; 3.13+: write-through proxy
    # Only 3.12 needs the values from before (its LocalsToFast would turn a deleted one into None).
    initial = None if PEP667 or CAN_DELETE_FAST_LOCALS else dict(local_ns)
    try:
        return eval(code, frame.f_globals, local_ns) if eval_mode else exec(code, frame.f_globals, local_ns)
    finally:
        # ≤3.12: push back what the code wrote (even an expression can: a walrus, exec(), locals()[...]).
        if initial is not None:
            _keep_deleted_fast_locals(frame, local_ns, initial, initial)
        if not PEP667:
            _locals_to_fast(frame, 1)


def _keep_deleted_fast_locals(frame: FrameType, local_ns: Dict[str, Any], overlay: Dict[str, Any],
                              initial_locals: Iterable[str]) -> None:
    # 3.12's LocalsToFast would turn a `del`eted fast local into None; keep its value and say so.
    code = frame.f_code
    fast = set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
    for name in sorted(set(initial_locals) - set(local_ns)):
        if name in fast:
            local_ns[name] = overlay[name]  # the overlay still holds the value from before the code ran
            print(f"framebridge: Python 3.12 cannot delete the local variable {name!r} of a running "
                  f"function; it keeps its value", file=sys.stderr)


def frame_label(frame: FrameType) -> Dict[str, Any]:
    """JSON-friendly description of a frame."""
    code = frame.f_code
    return {
        "file": code.co_filename,
        "line": frame.f_lineno,
        "function": code.co_qualname if hasattr(code, "co_qualname") else code.co_name,
        "module": frame.f_globals.get("__name__", "?"),
    }

