"""Ops that edit running code: ``patch``, ``unpatch``, ``patches``, ``jump``
(docs/howto-patch.md, docs/protocol.md).

* ``patch`` (frame op) {frame, source, name?} -> what was replaced. It runs on the paused
  thread: the new ``def`` statements are evaluated once there (their default values), in
  the globals of the frame's module, or of ``module`` when ``name`` is
  ``"module:qualname"``. A refusal is a ``PatchError`` and changes nothing.
* ``unpatch`` (server op) {name?} -> what was restored; ``patches`` (server op) {} -> the
  patches in force. Both work while the target runs.
* ``jump`` (frame op) {frame, line} -> ``{jumped: true, from, line}`` when the pause
  could move the frame at once (it goes on at the new line; a ``paused`` event with the
  same pause id says where), or ``{jumped: false, deferred: true, from}``: the pause
  ends, and the thread pauses again at the frame's next event, moved (reason
  ``"jump"``, ``jump: {from, to}``; or ``jump_error``: CPython refused it there). A
  refusal is a ``JumpError`` and changes nothing.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from . import jumping, patching
from .ops import OpError, arg, frame_op, server_op


@frame_op("patch")
def _op_patch(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    frame = pause.frame(args)
    try:
        return patching.patch(frame.f_globals, arg(args, "source", str), arg(args, "name", str, None))
    except patching.PatchRefused as exc:
        raise OpError("PatchError", str(exc)) from None


@server_op("unpatch")
def _op_unpatch(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    try:
        return patching.unpatch(arg(args, "name", str, None))
    except patching.PatchRefused as exc:
        raise OpError("PatchError", str(exc)) from None


@server_op("patches")
def _op_patches(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[Dict[str, Any]]:
    return patching.patches()


@frame_op("jump")
def _op_jump(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    pause.frame(args)  # a frame index the stack does not have is a BadRequest
    index = arg(args, "frame", int, 0)
    line = arg(args, "line", int)
    try:
        result = jumping.jump_now_or_later(pause.frames, index, line)
        if result["jumped"]:
            result["pause"] = _announce(pause)
        else:
            jumping.arm_jump(pause.frames, index, line)
            pause.resume_after = "continue"  # the thread pauses again at the frame's next event
    except jumping.JumpRefused as exc:
        raise OpError("JumpError", str(exc)) from None
    return dict(result, thread=pause.thread_id, pause_id=pause.pause_id)


def _announce(pause: Any) -> Dict[str, Any]:
    """Tell clients where the frame is now (the same pause, another line)."""
    from .server import current_server

    described = pause.describe()
    server = current_server()
    if server is not None:
        server.broadcast("paused", described)
    return described
