"""Where the target takes a request in and turns it into a reply: the one place on this side
where a request's transport fields are applied.

* :func:`accept` is called where a request arrives (the server thread for the server
  socket, the paused thread for a lane): it checks the header (``protocol.parse_request``)
  and applies the ``release`` handles, before the op is routed anywhere.
* :func:`run_frame_op` (on the paused thread) and :func:`run_server_op` (on the server
  thread) run the handler: a frame op's big request buffers come in first (``bulk_in``),
  and the reply's big buffers go out the way the request asked (``bulk``). Whatever the
  handler raises becomes an error reply, never a dead thread.
"""

from __future__ import annotations

import traceback
from typing import Any, List, Sequence

from . import bulk, outcomes, refs
from .ops import FRAME_OPS, SERVER_OPS, NewLiveProcess, OpError, Reply, bad_request
from .own_code import user_traceback
from .protocol import Frames, Request, encode_error, encode_reply, parse_request


def accept(frames: Sequence[Any], identity: bytes) -> Request:
    """The request in ``frames`` from client ``identity``, its releases applied.

    Raises ``protocol.BadRequest`` (nothing applied) when the message does not follow the spec.
    """
    request = parse_request(frames, identity)
    if request.release:
        # Applied whatever becomes of the op: the client counts them delivered once it
        # has a reply. The objects are let go on a paused thread (refs.RefTable.release).
        refs.TABLE.release(request.release)
    if request.op not in outcomes.UNRECORDED:  # a lost reply can be asked for (outcomes.py)
        outcomes.CACHE.started(identity, request.id)
    return request


def refusal(request: Request, kind: str, message: str) -> Frames:
    """The error reply refusing an accepted request (routing found no pause, a lane's
    checks): recorded like any reply, so a client that lost it can still learn it."""
    return _recorded(request, encode_error(request.id, kind, message))


def run_frame_op(pause: Any, request: Request) -> Frames:
    """Run a frame op on the paused thread that owns ``pause``; the reply's frames."""
    return _recorded(request, _run_frame_op(pause, request))


def run_server_op(server: Any, request: Request) -> Frames:
    """Run a server op on the server thread; the reply's frames."""
    return _recorded(request, _run_server_op(server, request))


def _recorded(request: Request, frames: Frames) -> Frames:
    if request.op not in outcomes.UNRECORDED:
        outcomes.CACHE.finished(request.identity, request.id, frames)
    return frames


def _run_frame_op(pause: Any, request: Request) -> Frames:
    try:
        refs.TABLE.drop_released()  # here, on a user thread: see refs.RefTable.release
        values = request.values
        if request.bulk_in is not None:
            try:
                values = bulk.import_request(request.bulk_in, values)
            except bulk.BulkError as exc:
                raise OpError("BulkError", str(exc)) from None
        result = FRAME_OPS[request.op](pause, request.args, values)
        try:
            return _encode(request, result)
        except Exception as exc:
            raise OpError("Unpicklable", f"the result cannot be sent: {type(exc).__name__}: {exc}") from None
    except OpError as exc:
        return encode_error(request.id, exc.kind, str(exc), data=exc.data)
    except NewLiveProcess:  # not an outcome: this is another process now (pause.serve takes it)
        raise
    except BaseException as exc:  # user code raised (even SystemExit): an error reply, the job goes on
        return encode_error(request.id, type(exc).__name__, _exc_message(exc), _user_traceback(exc))


def _run_server_op(server: Any, request: Request) -> Frames:
    try:
        if request.bulk_in is not None:  # the upload would hold up the server thread
            raise bad_request(f"{request.op} is a server op: it takes no bulk upload")
        return _encode(request, SERVER_OPS[request.op](server, request.args, request.values, request.identity))
    except OpError as exc:
        return encode_error(request.id, exc.kind, str(exc), data=exc.data)
    except Exception as exc:  # a bug in a handler must not kill the server thread
        return encode_error(request.id, type(exc).__name__, str(exc), traceback.format_exc())


def _encode(request: Request, result: Any) -> Frames:
    """A handler's result as reply frames, big buffers moved out as ``request.bulk`` asks."""
    reply = result if isinstance(result, Reply) else Reply(result=result)
    frames = reply.frames
    descriptor = None
    if request.bulk and frames and _has_big(frames):
        exported, descriptor = bulk.export_reply([b""] + list(frames), request.bulk)
        if descriptor is not None:
            frames = exported[1:]
    return encode_reply(request.id, reply.result, frames, descriptor)


def _has_big(frames: List[Any]) -> bool:
    return any(memoryview(f).nbytes >= bulk.THRESHOLD for f in frames)


def _exc_message(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _user_traceback(exc: BaseException) -> str:
    """The traceback without framebridge's own frames (they are noise to the user)."""
    return "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
