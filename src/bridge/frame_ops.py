"""The core frame ops: stack, locals, eval, exec, get, set, and the resume ops.

Frame ops run on the paused thread, against its own frames (``pause.frame(args)``: the
``frame`` argument, innermost = 0); the pause loop (pause.py) calls them through the op
registry (ops.py) and dispatch.py turns what they return into the reply.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from . import frames as frame_access
from . import refs
from .capture import captured_output
from .ops import RESUME_OPS, OpError, Reply, arg, frame_op, str_list
from .summaries import summarize_frame

_compiled: Dict[Tuple[str, str], Tuple[Any, bool]] = {}
_COMPILED_MAX = 256


def _compile(source: str, mode: str) -> Tuple[Any, bool]:
    """(code, whether it needs the locals overlay) for ``source``, cached.

    Cached because a notebook re-evaluates the same expressions (panels, watches, loops),
    and compile() is a large share of a small eval's round trip (docs/benchmarks.md).
    Code objects are immutable.
    """
    key = (source, mode)
    entry = _compiled.get(key)
    if entry is None:
        code = compile(source, "<remote>", mode)
        entry = (code, frame_access.needs_overlay(code))
        if len(_compiled) >= _COMPILED_MAX:
            _compiled.pop(next(iter(_compiled)))
        _compiled[key] = entry
    return entry


@frame_op("stack")
def _op_stack(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    return {
        "thread": pause.thread_id,
        "pause_id": pause.pause_id,
        "reason": pause.reason,
        "frames": [dict(frame_access.frame_label(f), index=i) for i, f in enumerate(pause.frames)],
    }


@frame_op("locals")
def _op_locals(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    return summarize_frame(frame_access.frame_variables(pause.frame(args)))


@frame_op("eval")
def _op_eval(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    code, overlay = _compile(arg(args, "expr", str), "eval")
    with captured_output() as out:
        value = frame_access.run_code(frame, code, eval_mode=True, overlay=overlay)
    size_limit = arg(args, "size_limit", int, None)
    result: Dict[str, Any] = {"live": False}
    output = out.getvalue()
    if output:
        result["output"] = output
    if refs.fits_header(value, size_limit):
        # The commonest result (a number, a short string) rides in the JSON header: no
        # pickling, and one message part less each way (docs/benchmarks.md).
        result["value"] = value
        return Reply(result=result, frames=[])
    # A value that cannot be copied (an open file, a lock) comes back as a live reference.
    enc = refs.encode(value, size_limit=size_limit)
    result["live"] = enc.live
    if enc.plain:
        result["plain"] = True
    return Reply(result=result, frames=enc.frames)


@frame_op("exec")
def _op_exec(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    frame = pause.frame(args)
    code, overlay = _compile(arg(args, "code", str), "exec")
    with captured_output() as out:
        frame_access.run_code(frame, code, eval_mode=False, overlay=overlay)
    return {"output": out.getvalue()}


@frame_op("get")
def _op_get(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    names = str_list(args, "names")
    ns = frame_access.read_locals(frame)
    missing = [n for n in names if n not in ns]
    if missing:
        raise OpError("NameError", f"not defined in {frame.f_code.co_name}: {', '.join(missing)}")
    return Reply(frames=refs.encode({n: ns[n] for n in names}).frames)  # unpicklable parts go live


@frame_op("set")
def _op_set(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    frame = pause.frame(args)
    deletes = str_list(args, "delete", [])
    updates = refs.load(values) if values else {}  # live references resolve to their objects
    if not isinstance(updates, dict):
        raise OpError("BadRequest", "set expects a dict of name -> value")
    try:
        frame_access.write_locals(frame, updates, deletes)
    except frame_access.FrameWriteError as exc:
        raise OpError("FrameWriteError", str(exc)) from None
    return {"set": sorted(updates), "deleted": sorted(deletes)}


def _resume_op(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    # The pause loop resumes after sending this reply (ops.RESUME_OPS). The pause id tells
    # the client which pause ended: the thread may pause again before the client reads
    # this reply, and that new pause must not be mistaken for this one.
    return {"thread": pause.thread_id, "pause_id": pause.pause_id}


for _name in RESUME_OPS:
    frame_op(_name)(_resume_op)
