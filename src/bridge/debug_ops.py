"""Server ops of the debugger proper: breakpoints, pause on demand, watch expressions.

They run on the server thread and only talk to the tracing engine (bridge.tracing),
which is thread-safe; the engine makes the stops happen on the user's threads.

Ops (their ``args``):

* ``break_at``  {file, line, condition?, temporary?} -> the breakpoint
* ``breakpoints`` {} -> every breakpoint (with current hit counts)
* ``clear``     {id} or {all: true} -> the ids removed
* ``pause``     {thread?} -> {thread, mechanism, already_paused}
* ``watch`` / ``unwatch`` {expr} -> the watch expressions now in force
* ``watches``   {} -> the watch expressions
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from . import watches
from .ops import OpError, arg, server_op
from .tracing import get_debugger
from .tracing_hook import engine


@server_op("break_at")
def _op_break_at(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    file = arg(args, "file", str)
    line = arg(args, "line", int)
    condition = arg(args, "condition", str, None)
    temporary = arg(args, "temporary", bool, False)
    try:
        bp = engine().set_break(file, line, condition=condition, temporary=temporary)
    except ValueError as exc:  # no such file, no code at/after the line, bad condition
        raise OpError("ValueError", str(exc)) from None
    return bp.to_json()


@server_op("breakpoints")
def _op_breakpoints(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[Dict[str, Any]]:
    return [bp.to_json() for bp in get_debugger().breakpoints()]


@server_op("clear")
def _op_clear(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    dbg = get_debugger()
    if arg(args, "all", bool, False):
        ids = [bp.id for bp in dbg.breakpoints()]
        dbg.clear_all_breaks()
        return {"cleared": ids}
    bp_id = arg(args, "id", int)
    try:
        dbg.clear_break(bp_id)
    except KeyError:
        raise OpError("ValueError", f"no breakpoint with id {bp_id} (temporary ones go away once hit)") from None
    return {"cleared": [bp_id]}


@server_op("pause")
def _op_pause(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    import threading

    thread_id = arg(args, "thread", int, None)
    tid = threading.main_thread().ident if thread_id is None else thread_id
    if tid == server.thread.ident:
        raise OpError("ValueError", "the bridge-server thread cannot be paused")
    for p in server.paused_threads():
        if p.thread_id == tid:
            # asking the engine again would stop the thread a second time right after it
            # resumes; the pause_id lets a client tell a pause that is just ending
            return {"thread": tid, "mechanism": None, "already_paused": True, "pause_id": p.pause_id}
    try:
        mechanism = engine().request_pause(tid)
    except ValueError as exc:  # no such thread
        raise OpError("ValueError", str(exc)) from None
    except RuntimeError as exc:  # not possible on this Python (a worker thread before 3.12)
        raise OpError("Unsupported", str(exc)) from None
    return {"thread": tid, "mechanism": mechanism, "already_paused": False}


@server_op("watch")
def _op_watch(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[str]:
    try:
        return watches.add(arg(args, "expr", str))
    except ValueError as exc:  # does not compile
        raise OpError("ValueError", str(exc)) from None


@server_op("unwatch")
def _op_unwatch(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[str]:
    if arg(args, "all", bool, False):
        return watches.clear()
    try:
        return watches.remove(arg(args, "expr", str))
    except ValueError as exc:  # not watched
        raise OpError("ValueError", str(exc)) from None


@server_op("watches")
def _op_watches(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[str]:
    return watches.watched()
