"""Frame ops behind jump_context and live references.

``mount_snapshot``  the selected frame's variables, each by value or as a live reference,
                    with a target-side version per name, the pause id and the mount's
                    token (mount_state.py: what the notebook's copies stand for).
``mount_write``     write back what the notebook changed, in one all-or-nothing step:
                    new bindings, deletions, and changes applied in place to the target's
                    own objects (inplace.py); refused when a name's target value changed
                    since its base version.
``mount_end``       forget a mount's objects (the notebook is done with it).
``ref``             one operation on a live reference (attribute, call, special method).

All run on the paused thread (frame ops): a lock acquired through a proxy is owned by the
paused thread, and writing locals is only safe there. The handles a client dropped ride in
any request's ``release`` header field and are applied before the op is routed
(dispatch.py), so ``ref`` with action ``release`` only carries them and reports what is held.
"""

from __future__ import annotations

import operator
import sys
import threading
from typing import Any, Callable, Dict, List, Sequence, Tuple

from . import frames as frame_access
from . import inplace, mount_state, refs
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
    """Values of the frame's variables (or ``names``), each encoded on its own stream.

    With ``identity`` (the default) copied values share one pickle memo and the target
    keeps the objects behind it for the mount (mount_state.py); ``mount`` in the result
    names them for ``mount_write``.
    """
    frame = pause.frame(args)
    names = str_list(args, "names", None)
    copy = set(str_list(args, "copy", []))
    live = set(str_list(args, "live", []))
    identity = arg(args, "identity", bool, True)
    limit = _size_limit(args)
    ns = frame_access.frame_variables(frame)
    if names is None:
        names = list(ns)
    missing = [n for n in names + sorted(copy | live) if n not in ns]
    if missing:
        raise OpError("NameError", f"not defined in {frame.f_code.co_name}: {', '.join(sorted(set(missing)))}")
    encoder = mount_state.SnapshotEncoder()
    digests = mount_state.DigestCache()
    kept = set(frame_access.undeletable(frame, names))
    out_vars: List[Dict[str, Any]] = []
    out_frames: List[Any] = []
    for name in names:
        value = ns[name]
        try:
            if identity:
                enc, shared = encoder.encode(value, size_limit=limit, force_live=name in live,
                                             force_copy=name in copy)
            else:
                enc, shared = refs.encode(value, size_limit=limit, force_live=name in live,
                                          force_copy=name in copy), False
        except Exception as exc:
            raise OpError("Unpicklable", f"{name} cannot be copied ({type(exc).__name__}: {exc}); "
                                         f"leave it out of copy= to mount it live") from None
        out_vars.append({"name": name, "nframes": len(enc.frames), "live": enc.live, "type": refs.type_name(value),
                         "size": enc.size, "version": mount_state.version(value, digests, live=enc.live),
                         "shared": shared, "deletable": name not in kept})
        out_frames.extend(enc.frames)
    objects = encoder.objects()
    token = mount_state.open_mount(pause, objects) if objects else None
    result = {"pause_id": pause.pause_id, "thread": pause.thread_id, "frame": arg(args, "frame", int, 0),
              "module_frame": frame_access.is_module_frame(frame), "can_delete": frame_access.can_delete(frame),
              "hash": refs.HASH_NAME, "mount": token, "vars": out_vars}
    return Reply(result=result, frames=out_frames)


def _refused(kind: str, why: str) -> OpError:
    return OpError(kind, f"write-back refused, nothing written: {why}")


def _payload(args: Dict[str, Any], pause: Any, values: Sequence[Any]) -> Tuple[Any, Dict[str, Any], List[Any]]:
    """The mount (or None), the names to bind and the in-place changes a write-back carries."""
    token = arg(args, "mount", int, None)
    mount = mount_state.mount_of(pause, token) if token is not None else None
    if not values:
        return mount, {}, []
    try:
        payload = mount_state.load_payload(list(values), mount)
    except (refs.StaleReference, ModuleNotFoundError) as exc:
        raise _refused("BadRequest", str(exc)) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("bind", {}), dict) \
            or not isinstance(payload.get("sync", []), list):
        raise bad_request("mount_write expects {'bind': {name: value}, 'sync': [(object, kind, state)]}")
    syncs = payload.get("sync", [])
    if syncs and mount is None:
        raise bad_request("in-place changes need the mount they belong to ('mount')")
    if not all(isinstance(s, tuple) and len(s) == 3 and isinstance(s[1], str) for s in syncs):
        raise bad_request("each in-place change must be (object, kind, state)")
    return mount, payload.get("bind", {}), syncs


@frame_op("mount_write")
def _op_mount_write(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    """Bind ``bind``, delete ``delete`` and apply ``sync`` in place, all or nothing, if
    every ``base`` version holds.

    Everything is decided before the first write: conflicts, which deletions this Python
    can do (the others are ``kept`` and reported, not refused), and whether each in-place
    change fits its object. Writes then go in an order that lets a failure be undone:
    in-place changes that can fail, the frame's bindings, and last the array writes that
    cannot fail (inplace.py).
    """
    frame = pause.frame(args)
    base = arg(args, "base", dict, {})
    deletes = str_list(args, "delete", [])
    mount, binds, syncs = _payload(args, pause, values)
    ns = frame_access.read_locals(frame)
    digests = mount_state.digests_for_write(pause, mount.token if mount is not None else None)
    conflicts = []
    for name, version in base.items():
        if not isinstance(version, str):
            raise bad_request(f"base version of {name!r} must be a string")
        if name not in ns or mount_state.version_like(ns[name], version, digests) != version:
            conflicts.append(name)
    if conflicts:
        raise OpError(
            "WriteBackConflict",
            f"changed in the target since the mount: {', '.join(sorted(conflicts))}; nothing was written",
            data={"names": sorted(conflicts)},
        )
    bad = [n for n in list(binds) + deletes if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise _refused("FrameWriteError", f"{', '.join(map(repr, bad))}: not valid variable names")
    gone = [n for n in deletes if n not in ns]
    if gone:
        raise _refused("FrameWriteError", f"cannot delete {', '.join(gone)}: not defined")
    kept = {name: _why_kept(name) for name in frame_access.undeletable(frame, deletes)}
    deletes = [n for n in deletes if n not in kept]
    steps, problems = [], []
    for index, kind, state in syncs:
        obj = mount.resolve(index)
        label = f"object #{index} ({type(obj).__name__})"
        try:
            step = inplace.prepare(kind, obj, state)
        except inplace.InPlaceError as exc:
            problems.append(f"{label} cannot be changed in place: {exc}")
            continue
        step.label = label
        steps.append((obj, step))
    if problems:
        raise _refused("FrameWriteError", "; ".join(problems))
    _apply(frame, ns, binds, deletes, steps)
    for obj, step in steps:
        if step.byte_ranges:
            digests.rewritten(obj, step.byte_ranges)
    now = frame_access.read_locals(frame)
    versions = {name: mount_state.version_like(now[name], base.get(name, ""), digests)
                for name in set(base) | set(binds) if name in now}
    if mount is not None and arg(args, "end", bool, False):
        mount_state.end_mount(pause, mount.token)
    return {"written": sorted(binds), "in_place": len(steps), "deleted": sorted(deletes), "kept": kept,
            "versions": versions}


def _why_kept(name: str) -> str:
    return (f"Python {sys.version_info.major}.{sys.version_info.minor} cannot delete {name}, a local variable "
            f"of a running function (only 3.11 and older can); it keeps its value")


def _apply(frame: Any, ns: Dict[str, Any], binds: Dict[str, Any], deletes: List[str],
           steps: List[Tuple[Any, inplace.Step]]) -> None:
    """Write, undoing what was done if anything fails (module docstring of inplace.py)."""
    fallible = [step for _, step in steps if step.fallible]
    sure = [step for _, step in steps if not step.fallible]
    try:
        inplace.apply_all(fallible)
    except inplace.StepFailed as exc:
        raise _refused("FrameWriteError", f"changing {exc.step.label} in place failed ({type(exc.cause).__name__}: "
                                          f"{exc.cause}); the changes made before it were undone") from None
    try:
        frame_access.write_locals(frame, binds, deletes)
    except Exception as exc:
        inplace.undo_all(fallible)
        raise _refused("FrameWriteError", str(exc)) from None
    try:
        inplace.apply_all(sure)
    except inplace.StepFailed as exc:  # pragma: no cover - checked writes of the same dtype do not fail
        try:
            frame_access.write_locals(frame, {n: ns[n] for n in list(binds) + deletes if n in ns},
                                      [n for n in binds if n not in ns])
        finally:
            inplace.undo_all(fallible)
        raise _refused("FrameWriteError", f"writing {exc.step.label} failed ({type(exc.cause).__name__}: "
                                          f"{exc.cause}); the other changes were undone") from None


@frame_op("mount_end")
def _op_mount_end(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    """Forget mount ``mount``'s objects (the notebook will write nothing more through it)."""
    return {"ended": mount_state.end_mount(pause, arg(args, "mount", int))}


@frame_op("mount_check")
def _op_mount_check(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    """Digest the buffers of ``names`` for mount ``mount``'s write-back, if it comes next
    (mount_state.check_ahead): the notebook sends this before it looks for its changes."""
    token = arg(args, "mount", int)
    mount_state.mount_of(pause, token)
    ns = frame_access.read_locals(pause.frame(args))
    return {"checked": mount_state.check_ahead(pause, token, [ns[n] for n in str_list(args, "names") if n in ns])}


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
