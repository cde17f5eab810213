"""A paused thread's command loop, and the frame operations it serves.

When a thread pauses it registers a :class:`Pause` with the server and then serves
requests for its own frames until a client resumes it. Requests arrive through a queue
(from the server thread); replies leave through an inproc PUSH socket the paused thread
owns for the length of the pause (ZeroMQ sockets are not shared between threads).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import traceback
from types import FrameType, TracebackType
from typing import Any, Dict, List, Optional, Sequence, Tuple

import zmq

from . import bulk
from . import frames as frame_access
from . import refs, wire
from .capture import captured_output, routing
from .ops import FRAME_OPS, RESUME_OPS, OpError, Reply, arg, frame_op, str_list
from .lane import Lane
from .server import TAG_REPLY, Server, encode_error, encode_reply, get_server

log = logging.getLogger("bridge")

#: How often a paused thread wakes to check its wait timeout.
_POLL_S = 0.25
_BRIDGE_DIR = os.path.dirname(os.path.abspath(__file__))
_THREADING_FILE = os.path.abspath(threading.__file__)


class Pause:
    """One paused thread: its frames and the queue of requests for them."""

    def __init__(self, frames: List[FrameType], reason: str, info: Optional[Dict[str, Any]] = None) -> None:
        self.thread = threading.current_thread()
        self.thread_id = threading.get_ident()
        self.frames = frames  # innermost first
        self.reason = reason
        self.info = dict(info or {})
        self.pause_id = 0  # set by the server on registration
        # Requests routed by the server thread: a queue, plus a pipe whose read end the
        # paused thread polls beside its lane (lane.py), written once per request.
        self.inbox: "queue.SimpleQueue[Tuple[bytes, Any, str, Dict[str, Any], Sequence[Any]]]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inbox_lock = threading.Lock()
        self._inbox_open = True
        self.last_activity = time.monotonic()
        self.watches: Dict[str, Any] = {}

    def describe(self) -> Dict[str, Any]:
        """JSON summary used in events, status and the connection file."""
        top = self.frames[0]
        out = {
            "thread": self.thread_id,
            "name": self.thread.name,
            "reason": self.reason,
            "pause_id": self.pause_id,
            **frame_access.frame_label(top),
        }
        out.update(self.info)
        return out

    def submit(self, identity: bytes, request_id: Any, op: str, args: Dict[str, Any], values: Sequence[Any]) -> bool:
        """Queue a request (called on the server thread); False once the pause has ended."""
        with self._inbox_lock:  # never write to the pipe after close: its fd number may be reused
            if not self._inbox_open:
                return False
            self.inbox.put((identity, request_id, op, args, values))
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups already: the thread will look
                pass
            return True

    def take_routed(self) -> Optional[Tuple[bytes, Any, str, Dict[str, Any], Sequence[Any]]]:
        """The next request the server thread routed here, or None (paused thread only).

        Called when the wake-up pipe polled readable. One wake-up byte is written per
        request, so one is read per request taken: the pipe stays readable exactly while
        requests are waiting.
        """
        try:
            os.read(self._wake_r, 1)
        except BlockingIOError:
            pass
        try:
            return self.inbox.get_nowait()
        except queue.Empty:
            return None

    def close_inbox(self) -> None:
        """Refuse further routed requests and release the pipe (paused thread, at the end)."""
        with self._inbox_lock:
            self._inbox_open = False
            os.close(self._wake_r)
            os.close(self._wake_w)

    def frame(self, args: Dict[str, Any]) -> FrameType:
        """The frame a request names (``frame`` index, innermost = 0)."""
        index = arg(args, "frame", int, 0)
        if not 0 <= index < len(self.frames):
            raise OpError("BadRequest", f"frame {index} does not exist (the stack has {len(self.frames)})")
        return self.frames[index]


def user_frames(frame: Optional[FrameType]) -> List[FrameType]:
    """``frame`` and its callers, innermost first, without framebridge's own frames."""
    out = []
    while frame is not None:
        if not _is_internal(frame):
            out.append(frame)
        frame = frame.f_back
    return out


def traceback_frames(tb: TracebackType) -> List[FrameType]:
    """Frames of a traceback innermost first, then the callers of its outermost frame."""
    chain = []
    while tb is not None:
        chain.append(tb.tb_frame)
        tb = tb.tb_next
    chain.reverse()
    return chain + user_frames(chain[-1].f_back) if chain else []


def _is_internal(frame: FrameType) -> bool:
    return os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _BRIDGE_DIR


def serve(frames: List[FrameType], reason: str, *, timeout: Optional[float] = None,
          info: Optional[Dict[str, Any]] = None, server: Optional[Server] = None) -> str:
    """Pause the calling thread at ``frames`` and serve them until a client resumes it.

    Returns the resume action ("continue", "step", "next" or "step_out"). With
    ``timeout``: resume with "continue" after that many seconds without any request
    (a client that attached and walked away counts as none), printing one line to stderr.
    """
    if not frames:
        raise ValueError("nothing to pause at: no frames")
    server = server or get_server()
    pause = Pause(frames, reason, info)
    kept_lane, push = _take_kept(pause)
    try:
        pause.watches = dict(_watches)
        if pause.watches:  # evaluated here, on the paused thread, so they arrive with the event
            pause.info["watches"] = evaluate_watches(frames[0], list(pause.watches))
        if push is None:
            push = server.context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 1000)
            push.connect(server.internal_endpoint)
        server.register_pause(pause)
    except BaseException:  # not paused after all: leave no pipe or socket behind
        pause.close_inbox()
        if push is not None:
            push.close(0)
        if kept_lane is not None:
            kept_lane.close()
        raise
    action = "continue"
    lane: Optional[Lane] = None
    output_routing = routing()  # held for the pause: each eval's capture is then cheap
    output_routing.__enter__()
    try:
        # The lane opens after the pause is announced (the `paused` event does not wait
        # for its bind) and is named by an event of its own; until a client hears of it,
        # its requests come through the server socket. A thread that steps keeps its lane
        # (named in the `paused` event itself).
        lane = kept_lane if kept_lane is not None else _open_lane(server, pause)
        poller = zmq.Poller()
        poller.register(pause._wake_r, zmq.POLLIN)
        if lane is not None:
            poller.register(lane.socket, zmq.POLLIN)
        lane_socket = lane.socket if lane is not None else None
        prefer_lane = True
        while True:
            # One poll per request: it says where the request is (issue 6: asking each
            # socket first costs more than the poll).
            ready = poller.poll(_POLL_S * 1000)
            if not ready:
                if not pause.inbox.empty():  # its wake-up was lost to a full pipe (a flood)
                    ready = [(pause._wake_r, zmq.POLLIN)]
                elif timeout is not None and time.monotonic() - pause.last_activity > timeout:
                    print(
                        f"bridge: no client continued pid {os.getpid()} within {timeout:g}s; resuming",
                        file=sys.__stderr__,
                    )
                    break
                else:
                    continue
            on_lane = on_pipe = False
            for item, _ in ready:
                if item is lane_socket:
                    on_lane = True
                else:
                    on_pipe = True
            # Both ready: take turns, so that neither way starves the other.
            request, via_lane = None, False
            if on_lane and (prefer_lane or not on_pipe):
                request = lane.receive(pause.thread_id, pause.pause_id)  # type: ignore[union-attr]
                via_lane = request is not None
            if request is None and on_pipe:
                request = pause.take_routed()
            if request is None:
                continue  # a refused lane request (answered), or a stale wake-up (drained)
            prefer_lane = not via_lane
            pause.last_activity = time.monotonic()
            identity, request_id, op, args, values = request
            frames_out = _run_op(pause, request_id, op, args, values)
            resume = RESUME_OPS.get(op)  # decided before the send: after it, this thread should only wait
            if via_lane:
                lane.send(identity, frames_out)  # type: ignore[union-attr]
            else:
                # Zero-copy only pays for big frames (issue 6: it costs a Frame object per part).
                small = len(frames_out) <= 3 and all(len(f) < wire.ZERO_COPY_THRESHOLD for f in frames_out)
                push.send_multipart([TAG_REPLY + identity, *frames_out], copy=small)
            if resume is not None:
                action = resume
                break
    finally:
        output_routing.__exit__(None, None, None)
        pause.close_inbox()
        server.unregister_pause(pause, action)
        _answer_leftovers(pause, push)
        if lane is not None and action in _STEPPING:
            _kept[pause.thread_id] = (lane, push)
        else:
            if lane is not None:
                lane.close()
            push.close()
    return action


# The lane and reply socket of a thread that steps, kept from one stop to the next (thread
# id -> both): stepping makes a new pause every few hundred microseconds, and a new lane
# costs a key pair and a bind here and a CURVE handshake at the client (docs/benchmarks.md,
# step round trip). The pause id in each lane request still tells the pauses apart.
_kept: Dict[int, Tuple[Lane, zmq.Socket]] = {}
_STEPPING = ("step", "next", "step_out")


def _take_kept(pause: Pause) -> Tuple[Optional[Lane], Optional[zmq.Socket]]:
    """The lane (named in ``pause.info``) and reply socket this thread kept from its last
    stop; those of threads that ended while stepping are closed (nobody can use them)."""
    lane, push = _kept.pop(pause.thread_id, (None, None))
    if _kept:
        alive = {t.ident for t in threading.enumerate()}
        for tid in [t for t in _kept if t not in alive]:
            dead_lane, dead_push = _kept.pop(tid)
            dead_lane.close()
            dead_push.close()
    if lane is not None:
        pause.info = dict(pause.info, lane=lane.port, lane_key=lane.public_key)
    return lane, push


if hasattr(os, "register_at_fork"):  # a forked child must not touch its parent's sockets
    os.register_at_fork(after_in_child=_kept.clear)


def _open_lane(server: Server, pause: Pause) -> Optional[Lane]:
    """Open the pause's lane and name it to clients; None (the server path serves) if that fails."""
    lane = None
    try:
        lane = Lane(server)
        named = {"lane": lane.port, "lane_key": lane.public_key}
        pause.info = dict(pause.info, **named)  # rebound at once: the server thread's describe() sees old or new
        server.broadcast("lane", dict(named, thread=pause.thread_id, pause_id=pause.pause_id))
        return lane
    except zmq.ZMQError as exc:  # no free port, too many files: the server path still works
        log.warning("bridge: cannot open a lane for this pause (%s); requests go through the server", exc)
        if lane is not None:
            lane.close()
        return None


def _answer_leftovers(pause: Pause, push: zmq.Socket) -> None:
    # Requests the server routed here after the last one served: say the pause ended.
    while True:
        try:
            identity, request_id, *_ = pause.inbox.get_nowait()
        except queue.Empty:
            return
        message = f"thread {pause.thread_id} resumed since pause {pause.pause_id}"
        push.send_multipart([TAG_REPLY + identity, *encode_error(request_id, "NotPaused", message)])


def _run_op(pause: Pause, request_id: Any, op: str, args: Dict[str, Any], values: Sequence[Any]) -> List[Any]:
    """Run one frame op on this thread; the reply's frames (an error reply if it failed)."""
    try:
        if "_bulk_in" in args:  # [bulk path] big request buffers came outside CURVE (issue 6)
            try:
                values = bulk.import_request(args, values)
            except bulk.BulkError as exc:
                raise OpError("BulkError", str(exc)) from None
        result = FRAME_OPS[op](pause, args, values)
        reply = result if isinstance(result, Reply) else Reply(result=result)
        try:
            return encode_reply(request_id, reply, args.get("_bulk"))
        except Exception as exc:
            raise OpError("Unpicklable", f"the result cannot be sent: {type(exc).__name__}: {exc}") from None
    except OpError as exc:
        return encode_error(request_id, exc.kind, str(exc), data=exc.data)
    except BaseException as exc:  # user code raised (even SystemExit): an error reply, the job goes on
        return encode_error(request_id, type(exc).__name__, _exc_message(exc), _user_traceback(exc))


def _exc_message(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _user_traceback(exc: BaseException) -> str:
    """The traceback without framebridge's own frames (they are noise to the user)."""
    tb = exc.__traceback__
    while tb is not None and _is_internal(tb.tb_frame):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


# --- watch expressions (process-wide, evaluated at every pause) ---------------------------

_watches: Dict[str, Any] = {}


def evaluate_watches(frame: FrameType, exprs: Sequence[str]) -> Dict[str, str]:
    """repr of each watch expression in ``frame`` (errors shown as text, never raised)."""
    out = {}
    for expr in exprs:
        try:
            value = frame_access.run_code(frame, compile(expr, "<watch>", "eval"), eval_mode=True)
            out[expr] = summarize(value)["repr"]
        except Exception as exc:
            out[expr] = f"<{type(exc).__name__}: {exc}>"
    return out


# --- summaries ---------------------------------------------------------------------------------

REPR_LIMIT = 120


def safe_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """A short repr that never raises (a broken __repr__ must not break `locals`)."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def value_size(value: Any) -> Optional[int]:
    """Bytes of data behind a value: nbytes for arrays, memory_usage for frames, else getsizeof."""
    try:
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        mem = getattr(value, "memory_usage", None)
        if callable(mem) and type(value).__name__ in ("DataFrame", "Series"):
            total = mem(deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        return sys.getsizeof(value)
    except Exception:
        return None


def summarize(value: Any) -> Dict[str, Any]:
    """Type, short repr and size of a value, without sending it."""
    cls = type(value)
    out: Dict[str, Any] = {
        "type": cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}",
        "repr": safe_repr(value),
        "size": value_size(value),
    }
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        out["shape"] = list(shape)
    else:
        try:
            if isinstance(value, (list, tuple, dict, set, frozenset, str, bytes)):
                out["len"] = len(value)
        except Exception:
            pass
    return out


# --- frame ops ---------------------------------------------------------------------------------


_compiled: Dict[Tuple[str, str], Tuple[Any, bool]] = {}
_COMPILED_MAX = 256


def _compile(source: str, mode: str) -> Tuple[Any, bool]:
    """(code, whether it needs the locals overlay) for ``source``, cached.

    Cached (issue 6): a notebook re-evaluates the same expressions (panels, watches,
    loops), and compile() is a large share of a small eval's round trip. Code objects are
    immutable.
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
def _op_stack(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    return {
        "thread": pause.thread_id,
        "pause_id": pause.pause_id,
        "reason": pause.reason,
        "frames": [dict(frame_access.frame_label(f), index=i) for i, f in enumerate(pause.frames)],
    }


@frame_op("locals")
def _op_locals(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    frame = pause.frame(args)
    ns = frame_access.read_locals(frame)
    if frame_access.is_module_frame(frame):
        ns = {k: v for k, v in ns.items() if not (k.startswith("__") and k.endswith("__"))}
    return {name: summarize(value) for name, value in ns.items()}


@frame_op("eval")
def _op_eval(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
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
        # pickling, and one message part less each way (issue 6).
        result["value"] = value
        return Reply(result=result, frames=[])
    # A value that cannot be copied (an open file, a lock) comes back as a live reference.
    enc = refs.encode(value, size_limit=size_limit)
    result["live"] = enc.live
    if enc.plain:
        result["plain"] = True
    return Reply(result=result, frames=enc.frames)


@frame_op("exec")
def _op_exec(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    frame = pause.frame(args)
    code, overlay = _compile(arg(args, "code", str), "exec")
    with captured_output() as out:
        frame_access.run_code(frame, code, eval_mode=False, overlay=overlay)
    return {"output": out.getvalue()}


@frame_op("get")
def _op_get(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    names = str_list(args, "names")
    ns = frame_access.read_locals(frame)
    missing = [n for n in names if n not in ns]
    if missing:
        raise OpError("NameError", f"not defined in {frame.f_code.co_name}: {', '.join(missing)}")
    return Reply(frames=refs.encode({n: ns[n] for n in names}).frames)  # unpicklable parts go live


@frame_op("set")
def _op_set(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
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


def _resume_op(pause: Pause, args: Dict[str, Any], values: Sequence[Any]) -> Dict[str, Any]:
    # The pause id tells the client which pause ended: the thread may pause again before
    # the client reads this reply, and that new pause must not be mistaken for this one.
    return {"thread": pause.thread_id, "pause_id": pause.pause_id}


for _name in RESUME_OPS:
    frame_op(_name)(_resume_op)


# --- threads ---------------------------------------------------------------------------------


def describe_threads(server: Server) -> List[Dict[str, Any]]:
    """Every thread of the process: id, name, paused or running, and where it is."""
    paused = {p.thread_id: p for p in server.paused_threads()}
    current = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        ident = thread.ident
        # framebridge's own threads are all named "bridge-*"; the ZAP authenticator's is not.
        if ident is None or thread.name.startswith("bridge-") or thread is getattr(server.auth, "thread", None):
            continue
        entry: Dict[str, Any] = {"thread": ident, "name": thread.name, "daemon": thread.daemon,
                                 "main": thread is threading.main_thread()}
        if ident in paused:
            entry.update(state="paused", **{k: v for k, v in paused[ident].describe().items() if k != "thread"})
        else:
            frames = user_frames(current.get(ident))
            entry["state"] = "running"
            # Say where the user's code is: a waiting thread's innermost frames are
            # threading.py's (Condition.wait), which tells the user nothing.
            own = [f for f in frames if os.path.abspath(f.f_code.co_filename) != _THREADING_FILE]
            if own or frames:
                entry.update(frame_access.frame_label((own or frames)[0]))
        out.append(entry)
    return out
