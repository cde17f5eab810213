"""Checkpoints and rewind as ops: ``checkpoint`` and ``rewind`` run on the paused thread,
``checkpoints`` (the list) and ``drop`` on the server thread. The process model is
bridge/checkpoints/ (docs/design-checkpoints.md); what a user sees, docs/howto-rewind.md.

``checkpoint`` forks (``checkpoints.take``). The original process -- the job's pid --
becomes the snapshot's keeper: there :func:`_answer_and_hide` answers the request on the
pause's own way back, then stops the server, which removes its connection file, so the
keeper disappears from clients. The forked child carries the job on: ``take()`` returns
in it inside this op, which raises :class:`~bridge.ops.NewLiveProcess`; the pause loop
(pause.serve) lets go of the parent's sockets without touching them and serves the same
frames again on a server of the child's own (new keys, new port, a connection file that
names the job: ``"job"``, ``"lineage"``, ``"generation"``). A rewind's new process comes
out of the same ``take()`` call, in the keeper, later, and takes the same path.

``rewind`` answers first (what the checkpoint cannot rewind), then calls
``checkpoints.rewind``, which never returns: the keeper kills this timeline. The reply may
not outlive the process that sends it; the client follows the job by its connection files
either way (client/follow.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import FrameType
from typing import Any, Dict, List, Optional, Sequence

import zmq

from . import stack_room
from .frames import frame_label
from .ops import NewLiveProcess, OpError, arg, frame_op, server_op
from .protocol import encode_reply
from .push_sink import PushSink
from .server import Server, current_server, get_server

#: How long a keeper's last reply may take to leave after its server stopped (its ZeroMQ
#: I/O thread delivers it while the keeper keeps the snapshot).
ANSWER_FLUSH_MS = 5000
#: How long a new live process waits for a fixed BRIDGE_PORT that the keeper still holds.
PORT_WAIT_S = 5.0


def _core() -> Any:
    """The checkpoints package, imported at the first use (it loads libc through ctypes)."""
    from . import checkpoints

    return checkpoints


def _op_error(exc: BaseException) -> OpError:
    core = _core()
    if isinstance(exc, core.ThreadsRunning):
        return OpError("ThreadsRunning", str(exc), {"threads": exc.threads})
    if isinstance(exc, core.Unsupported):
        return OpError("Unsupported", str(exc))
    if isinstance(exc, core.CheckpointError):
        return OpError("CheckpointError", str(exc))
    if isinstance(exc, TypeError):
        return OpError("BadRequest", str(exc))
    raise exc


# --- checkpoint ----------------------------------------------------------------------------------


@frame_op("checkpoint")
def _op_checkpoint(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Any:
    force = arg(args, "force", bool, False)
    core = _core()
    reason = core.available()
    if reason is not None:
        raise OpError("Unsupported", reason)
    server = current_server()
    request = pause.request
    label = frame_label(pause.frames[0])
    label["thread"] = pause.thread.name
    before = core.generation()
    rooms = stack_room.carried()
    host = server.host if server is not None else None
    me = os.getpid()

    def answer_and_hide(cp: Any, live: int) -> None:
        _answer_and_hide(server, request, {
            "checkpoint": cp.id, "job": cp.job, "live": live, "generation": before, "depth": cp.depth,
            "label": cp.label, "taken": cp.taken, "cannot_rewind": cp.cannot_rewind,
        })

    try:
        cp = core.take(label, force=force, on_keeper=answer_and_hide, exclude_fds=own_fds(server))
    except BaseException as exc:
        if os.getpid() != me:  # a new process whose set-up failed: never the parent's sockets
            raise NewLiveProcess("checkpoint", {"checkpoint_error": repr(exc)}) from None
        raise _op_error(exc) from None
    # Here in a new live process: the one that carries on from the checkpoint just taken
    # (rewinds == 0), or one that a rewind to it started (rewinds > 0).
    _carry_on(rooms, host)
    raise NewLiveProcess("rewind" if cp.resumed else "checkpoint",
                         {"checkpoint": cp.id, "rewinds": cp.rewinds, "job": cp.job})


def take_here(frame: FrameType, *, force: bool = False) -> Any:
    """``bridge.checkpoint()``: a checkpoint taken by the job's own code, labelled with
    ``frame``. A process that serves clients keeps doing so in its live process (a new
    server); the keeper's server tells its subscribers the job ``moved``, then stops."""
    core = _core()
    server = current_server()
    if server is not None and threading.get_ident() in server.pauses:
        raise RuntimeError("this thread is paused: checkpoint it from the client (Session.checkpoint())")
    label = frame_label(frame)
    label["thread"] = threading.current_thread().name
    before = core.generation()

    def hide_keeper(cp: Any, live: int) -> None:
        if server is not None:
            server.broadcast("moved", {"job": cp.job, "live": live, "generation": before + 1, "checkpoint": cp.id})
            hide(server)

    cp = core.take(label, force=force, on_keeper=hide_keeper, exclude_fds=own_fds(server))
    if server is not None:
        _carry_on(None, server.host)
    return cp


def _answer_and_hide(server: Optional[Server], request: Any, result: Dict[str, Any]) -> None:
    """In the keeper: answer the ``checkpoint`` request, then stop serving. The keeper
    runs no Python thread but its own from here on (its loop holds the GIL), so a server
    left running would only hold clients up; stopped, it removes the connection file and
    the keeper is gone from every client's view. The job's clients follow the live process."""
    sink = request.reply if request is not None else None
    try:
        if sink is not None:
            sink.send(request.identity, encode_reply(request.id, result))
    finally:
        hide(server, sink)


def hide(server: Optional[Server], sink: Any = None) -> None:
    """Stop this process's server after the replies ``sink`` sent (the keeper's end of a
    checkpoint), and free the bulk path's shared memory: a keeper serves no one."""
    if server is not None:
        server.stop(after=sink if isinstance(sink, PushSink) else None, flush_ms=ANSWER_FLUSH_MS)
    if sink is not None:
        sink.close()  # a lane or a push socket: closing lets its last reply out (linger)
    from .bulk import dataport, outgoing

    outgoing.outbox().close()
    dataport.close_data_server()


def _carry_on(rooms: Any, host: Optional[str]) -> None:
    """First steps of a new live process in the pause loop: the pause's room below the
    recursion limit again, and a server of its own (whatever goes wrong here, the caller
    raises NewLiveProcess: the parent's sockets must not be touched)."""
    if rooms is not None:
        stack_room.carry_on(rooms)
    fixed_port = bool(os.environ.get("BRIDGE_PORT", "").strip())
    deadline = time.monotonic() + (PORT_WAIT_S if fixed_port else 0.0)
    while True:
        try:
            get_server(host=host)
            return
        except Exception as exc:  # the pause loop's own start reports it (one line) if it persists
            if time.monotonic() >= deadline:
                print(f"framebridge: the job's new process {os.getpid()} cannot serve yet: {exc}", file=sys.__stderr__)
                return
        time.sleep(0.02)  # the keeper lets go of a fixed BRIDGE_PORT within milliseconds


def own_fds(server: Optional[Server]) -> List[int]:
    """The debugger's descriptors now: what the server's start opened, each pause's pipe,
    sinks and lane, and TCP connections to the server's, a lane's or the data port."""
    if server is None:
        return []
    fds = set(getattr(server, "own_fds", ()))
    ports = {int(server.endpoint.rsplit(":", 1)[1])}
    for pause in server.paused_threads():
        fds.update(pause.inbox.fds())
        lane = pause.lane
        if lane is not None and not lane.socket.closed:
            fds.add(lane.socket.get(zmq.FD))
            ports.add(lane.port)
    from .bulk import dataport

    ports.update(dataport.serving_ports())
    from .checkpoints import inventory

    for item in inventory.open_descriptors(os.getpid(), fds, sockets_only=True):
        local = item.get("local")
        if local and int(str(local).rsplit(":", 1)[1]) in ports:
            fds.add(item["fd"])
    return sorted(fds)


# --- rewind ----------------------------------------------------------------------------------------


@frame_op("rewind")
def _op_rewind(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Any:
    cp_id = arg(args, "id", int)
    core = _core()
    try:
        target = core.rewindable(cp_id)
        answer = {"rewinding": cp_id, "job": core.job_id(), "generation": core.generation(),
                  "checkpoint": target.as_dict()}
    except Exception as exc:
        raise _op_error(exc) from None
    request = pause.request
    if request is not None and request.reply is not None:
        request.reply.send(request.identity, encode_reply(request.id, answer))
    try:
        core.rewind(cp_id)  # never returns: the keeper kills this process
    except core.CheckpointError as exc:
        print(f"framebridge: rewind to checkpoint {cp_id} failed: {exc}", file=sys.__stderr__)
        return dict(answer, failed=str(exc))  # the same request answered again: it did not happen
    raise AssertionError("not reached")


# --- the list, drop (server thread: they also work while the job runs) --------------------------


@server_op("checkpoints")
def _op_checkpoints(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Any:
    core = _core()
    return {
        "available": core.available(),
        "job": core.job_id(),
        "generation": core.generation(),
        "lineage": core.lineage(),
        "checkpoints": [c.as_dict() for c in core.list_checkpoints()],
    }


@server_op("drop")
def _op_drop(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Any:
    cp_id = arg(args, "id", int)
    try:
        _core().drop(cp_id)
    except Exception as exc:
        raise _op_error(exc) from None
    return {"dropped": cp_id}
