"""Frame ops behind jump_context and live references.

``mount_snapshot``  the selected frame's variables, each by value or as a live reference,
                    with a target-side version per name and the pause id.
``mount_write``     write back what the notebook changed, in one all-or-nothing step,
                    refusing names whose target value changed since their base version.
``ref``             one operation on a live reference (attribute, call, special method).

All three run on the paused thread (frame ops): a lock acquired through a proxy is owned
by the paused thread, and writing locals is only safe there. The handles a client dropped
ride in any request's ``release`` header field and are applied before the op is routed
(dispatch.py), so ``ref`` with action ``release`` only carries them and reports what is held.
"""

from __future__ import annotations

import operator
import threading
from typing import Any, Callable, Dict, List, Sequence

from . import frames as frame_access
from . import refs
from .ops import OpError, Reply, arg, bad_request, frame_op, str_list
from .protocol import BINARY_OPERATORS, DEFAULT_SIZE_LIMIT, REF_SPECIALS

#: Blocking lock acquires through a proxy get this timeout unless the client sends one.
DEFAULT_ACQUIRE_TIMEOUT = 10.0
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Semaphore)


def _size_limit(args: Dict[str, Any]) -> Any:
    if "size_limit" in args and args["size_limit"] is None:
        return None
    return arg(args, "size_limit", int, DEFAULT_SIZE_LIMIT)


@frame_op("mount_snapshot")
def _op_mount_snapshot(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    """Values of the frame's variables (or ``names``), each encoded on its own."""
    frame = pause.frame(args)
    names = str_list(args, "names", None)
    copy = set(str_list(args, "copy", []))
    live = set(str_list(args, "live", []))
    limit = _size_limit(args)
    ns = frame_access.frame_variables(frame)
    if names is None:
        names = list(ns)
    missing = [n for n in names + sorted(copy | live) if n not in ns]
    if missing:
        raise OpError("NameError", f"not defined in {frame.f_code.co_name}: {', '.join(sorted(set(missing)))}")
    out_vars: List[Dict[str, Any]] = []
    out_frames: List[Any] = []
    for name in names:
        value = ns[name]
        try:
            enc = refs.encode(value, size_limit=limit, force_live=name in live, force_copy=name in copy)
        except Exception as exc:
            raise OpError("Unpicklable", f"{name} cannot be copied ({type(exc).__name__}: {exc}); "
                                         f"leave it out of copy= to mount it live") from None
        out_vars.append({"name": name, "nframes": len(enc.frames), "live": enc.live, "type": refs.type_name(value),
                         "size": enc.size, "version": enc.version})
        out_frames.extend(enc.frames)
    result = {"pause_id": pause.pause_id, "thread": pause.thread_id, "frame": arg(args, "frame", int, 0),
              "module_frame": frame_access.is_module_frame(frame), "can_delete": frame_access.can_delete(frame),
              "hash": refs.HASH_NAME, "vars": out_vars}
    return Reply(result=result, frames=out_frames)


@frame_op("mount_write")
def _op_mount_write(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    """Write back ``values`` (a dict) and ``delete``, all or nothing, if ``base`` versions hold."""
    frame = pause.frame(args)
    base = arg(args, "base", dict, {})
    deletes = str_list(args, "delete", [])
    try:
        updates = refs.load(values) if values else {}
    except (refs.StaleReference, ModuleNotFoundError) as exc:
        raise OpError("BadRequest", f"write-back refused, nothing written: {exc}") from None
    if not isinstance(updates, dict):
        raise bad_request("mount_write expects a dict of name -> value")
    ns = frame_access.read_locals(frame)
    conflicts = []
    for name, version in base.items():
        if not isinstance(version, str):
            raise bad_request(f"base version of {name!r} must be a string")
        if name not in ns or refs.version_of(ns[name], version) != version:
            conflicts.append(name)
    if conflicts:
        raise OpError(
            "WriteBackConflict",
            f"changed in the target since the mount: {', '.join(sorted(conflicts))}; nothing was written",
            data={"names": sorted(conflicts)},
        )
    try:
        frame_access.write_locals(frame, updates, deletes)
    except frame_access.FrameWriteError as exc:
        raise OpError("FrameWriteError", f"write-back refused, nothing written: {exc}") from None
    # New base versions, so that a later write-back from the same mount is checked against
    # what we just wrote.
    return {"written": sorted(updates), "deleted": sorted(deletes),
            "versions": {name: refs.version_of(value, "") for name, value in updates.items()}}


# --- live references ----------------------------------------------------------------------

def _reflected(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda obj, other: op(other, obj)


_OPERATIONS: Dict[str, Callable[..., Any]] = {
    "__len__": len, "__iter__": iter, "__next__": next, "__reversed__": reversed,
    "__getitem__": operator.getitem, "__setitem__": operator.setitem, "__delitem__": operator.delitem,
    "__contains__": lambda obj, item: item in obj, "__bool__": bool, "__str__": str, "__repr__": repr,
    "__hash__": hash, "__int__": int, "__float__": float, "__index__": operator.index,
    "__call__": lambda obj, *a, **k: obj(*a, **k),
    "__enter__": lambda obj: type(obj).__enter__(obj),
    "__exit__": lambda obj, *a: type(obj).__exit__(obj, *a),
    "__eq__": operator.eq, "__ne__": operator.ne, "__lt__": operator.lt, "__le__": operator.le,
    "__gt__": operator.gt, "__ge__": operator.ge,
    "__neg__": operator.neg, "__pos__": operator.pos, "__abs__": abs, "__invert__": operator.invert,
    "__dir__": dir,
}
for _op in BINARY_OPERATORS:
    _fn = getattr(operator, _op + "_" if _op in ("and", "or") else _op)
    _OPERATIONS[f"__{_op}__"] = _fn
    _OPERATIONS[f"__r{_op}__"] = _reflected(_fn)
    _OPERATIONS[f"__i{_op}__"] = getattr(operator, f"i{_op}")

#: Special methods a proxy forwards (protocol.REF_SPECIALS: the one list both sides use),
#: as functions of (obj, *args) run here. A name without an operation fails at import.
SPECIALS: Dict[str, Callable[..., Any]] = {name: _OPERATIONS[name] for name in REF_SPECIALS}


def _bounded(obj: Any, name: str, a: Sequence[Any], k: Dict[str, Any], timeout: float) -> Any:
    """Run special method ``name`` on ``obj``; a blocking lock acquire gets ``timeout``.

    A lock acquired through a proxy is acquired by the paused thread, the one that must
    answer the client: a blocking acquire of a lock another thread holds would freeze it
    (and the client) forever.
    """
    if name == "__call__" and getattr(obj, "__name__", "") == "acquire" and isinstance(
            getattr(obj, "__self__", None), _LOCK_TYPES) and "timeout" not in k and len(a) < 2:
        blocking = a[0] if a else k.get("blocking", True)
        return obj(True, timeout) if blocking else obj(False)
    if name == "__enter__" and isinstance(obj, _LOCK_TYPES):
        if not obj.acquire(True, timeout):
            raise TimeoutError(f"could not acquire {refs.type_name(obj)} within {timeout:g}s (held elsewhere)")
        return obj
    return SPECIALS[name](obj, *a, **k)


@frame_op("ref")
def _op_ref(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    """One operation on a live reference; the result comes back by value or as a new ref."""
    action = arg(args, "action", str)
    ref = arg(args, "ref", int, None)
    if action == "release":
        return Reply(result={"held": len(refs.TABLE)})
    if ref is None:
        raise bad_request("missing argument 'ref'")
    name = arg(args, "name", str, "")
    try:
        obj = refs.TABLE.get(ref)
        call_args = refs.load(values) if values else ((), {})
    except refs.StaleReference as exc:
        raise OpError("StaleReference", str(exc)) from None
    if not (isinstance(call_args, tuple) and len(call_args) == 2 and isinstance(call_args[1], dict)):
        raise bad_request("ref call arguments must be (args tuple, kwargs dict)")
    a, k = tuple(call_args[0]), call_args[1]
    if action == "getattr":
        result = getattr(obj, name)
    elif action == "setattr":
        setattr(obj, name, a[0])
        result = None
    elif action == "delattr":
        delattr(obj, name)
        result = None
    elif action == "special":
        if name not in SPECIALS:
            raise bad_request(f"{name!r} is not a special method a live reference forwards")
        result = _bounded(obj, name, a, k, arg(args, "timeout", float, DEFAULT_ACQUIRE_TIMEOUT))
        if name == "__dir__":
            result = sorted(result)
    else:
        raise bad_request(f"unknown ref action {action!r}")
    enc = refs.encode(result, size_limit=_size_limit(args))
    return Reply(result={"live": enc.live}, frames=enc.frames)
