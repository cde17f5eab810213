"""A paused thread's command loop.

When a thread pauses it registers a :class:`Pause` with the server and then serves
requests for its own frames until a client resumes it. Requests come from the pause's
*sources*, which the loop polls together:

* its :class:`Inbox`: requests the server thread routed here (a queue, plus a wake-up pipe
  the loop polls), whose replies leave through a sink back to the server thread
  (push_sink.PushSink);
* its lane (lane.py): a socket of the pause's own, which answers on itself.

Every request names the :class:`~bridge.protocol.ReplySink` its reply leaves by, so the
loop has one way to answer whichever source a request came from: another transport is
one more source. The ops themselves live in op modules (frame_ops.py, mount_ops.py, ...)
and run through dispatch.py.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import zmq

from . import dispatch, watches
from . import frames as frame_access
from .capture import routing
from .lane import Lane
from .ops import RESUME_OPS, NewLiveProcess, OpError, arg
from .protocol import Frames, ReplySink, Request, encode_error
from .server import Server, get_server

log = logging.getLogger("bridge")

#: How often a paused thread wakes to check its wait timeout.
_POLL_S = 0.25


class RequestSource(Protocol):
    """Where a paused thread's requests come from (the loop polls ``pollable``): the Inbox, a Lane."""

    pollable: Any

    def receive(self) -> Optional[Request]:
        """The next request (its ``reply`` sink set), or None: nothing there, or refused and answered."""


class Router(Protocol):
    """A thread that routes requests to pauses (the server thread): it makes each pause a
    reply sink back to itself, on the paused thread that will use it."""

    def reply_sink(self) -> ReplySink:
        """A new sink for the calling thread."""


class Inbox:
    """Requests routed to one pause by other threads, and the sinks their replies leave by.

    A router (the server thread) puts a request in the queue and writes one byte to a pipe
    whose read end the paused thread polls beside its lane: one wake-up byte per request,
    so the pipe stays readable exactly while requests are waiting. Each router has its own
    sink back to it, made on the paused thread (ZeroMQ sockets are not shared between
    threads): the server's at the start of the pause, another one's on its first request.

    A thread that steps keeps its inbox from one stop to the next (:func:`serve`): the
    pipe and the sinks serve each of its pauses in turn, and each pause takes only the
    requests routed to it (:meth:`serve`, :meth:`end`).
    """

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[Tuple[Router, Request]]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._open = True
        self._closed = False
        self._owner: Any = None  # the pause it takes requests for
        self._sinks: Dict[Router, ReplySink] = {}
        #: What the pause loop polls for this source.
        self.pollable = self._wake_r

    def serve(self, pause: Any) -> None:
        """Take requests for ``pause`` from now on (a new inbox, or one kept from the
        thread's last stop)."""
        with self._lock:
            self._owner = pause
            self._open = True

    def submit(self, request: Request, router: Router, pause: Any = None) -> bool:
        """Queue a request (on the router's thread); False once the pause has ended
        (``pause``: the one it was routed to; another pause of a kept inbox refuses it)."""
        with self._lock:  # never write to the pipe after close: its fd number may be reused
            if not self._open or (pause is not None and pause is not self._owner):
                return False
            self._queue.put((router, request))
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups already: the thread will look
                pass
            return True

    def open_sink(self, router: Router) -> None:
        """Make ``router``'s reply sink now (on the paused thread): a failure shows before the pause is announced."""
        if router not in self._sinks:
            self._sinks[router] = router.reply_sink()

    def receive(self) -> Optional[Request]:
        """The next routed request, or None (paused thread only, after the pipe polled readable)."""
        try:
            os.read(self._wake_r, 1)
        except BlockingIOError:
            pass
        try:
            router, request = self._queue.get_nowait()
        except queue.Empty:
            return None
        sink = self._sinks.get(router)
        if sink is None:
            try:
                sink = self._sinks[router] = router.reply_sink()
            except Exception as exc:  # never into the user's code: this thread is theirs
                log.warning("bridge: cannot answer a routed request (%s)", exc)
                return None
        request.reply = sink
        return request

    def waiting(self) -> bool:
        """Whether requests are queued (a wake-up can be lost to a full pipe in a flood)."""
        return not self._queue.empty()

    def fds(self) -> List[int]:
        """The descriptors this inbox holds: its pipe, and each sink's ZeroMQ socket (the
        debugger's own, never the job's: a checkpoint leaves them out of what it lists)."""
        out = [self._wake_r, self._wake_w]
        for sink in list(self._sinks.values()):
            sock = getattr(sink, "socket", None)
            if sock is not None and not sock.closed:
                out.append(sock.get(zmq.FD))
        return out

    def let_go(self) -> None:
        """In a process forked from the one that made this inbox (a checkpoint's live
        process): close this process's copies of the pipe, and nothing else (the sinks and
        the requests left over are the parent's). No lock: the parent's server thread may
        have held it at the fork, and it has no thread here to release it."""
        self._lock = threading.Lock()
        if self._closed:
            return
        self._closed = True
        self._open = False
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def end(self, pause_id: int, thread_id: int) -> None:
        """The pause ended: refuse further requests and answer those left over
        ("NotPaused"); the pipe and the sinks stay for the thread's next pause."""
        with self._lock:
            self._open = False
            self._owner = None  # no cycle: a stopped frame goes when its function returns
        message = f"thread {thread_id} resumed since pause {pause_id}"
        while True:
            try:
                router, request = self._queue.get_nowait()
            except queue.Empty:
                break
            try:  # its wake-up byte: the next pause of a kept inbox must not see it
                os.read(self._wake_r, 1)
            except BlockingIOError:
                pass
            sink = self._sinks.get(router)
            if sink is not None:
                sink.send(request.identity, encode_error(request.id, "NotPaused", message))

    def close(self, pause_id: int, thread_id: int) -> None:
        """Refuse further requests, answer those left over ("NotPaused"), close the sinks."""
        self.end(pause_id, thread_id)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        for sink in self._sinks.values():
            sink.close()
        self._sinks.clear()


class Pause:
    """One paused thread: its frames, and its inbox of requests from the server thread."""

    def __init__(self, frames: List[FrameType], reason: str, info: Optional[Dict[str, Any]] = None,
                 inbox: Optional[Inbox] = None) -> None:
        self.thread = threading.current_thread()
        self.thread_id = threading.get_ident()
        self.frames = frames  # innermost first
        self.reason = reason
        self.info = dict(info or {})
        self.pause_id = 0  # set by the server on registration
        #: Set by a frame op that ends the pause itself (a jump that takes the frame's next
        #: event, jumping.py): the action to resume with once its reply is sent.
        self.resume_after: Optional[str] = None
        #: The request that resumed it (set by the pause loop).
        self.resumed_by: Optional[Request] = None
        self.inbox = inbox or Inbox()  # a stepping thread's is kept from its last stop
        self.inbox.serve(self)
        self.last_activity = time.monotonic()
        #: Requests served so far (a write-back uses what the request before it prepared,
        #: mount_state.digests_for_write).
        self.served = 0
        #: The process that paused (a checkpoint's fork serves the same frames in another).
        self.pid = os.getpid()
        #: The pause's lane, once open (None: requests come through the server only).
        self.lane: Optional[Lane] = None
        #: The request the loop is running: an op that must answer before it returns (a
        #: checkpoint's keeper, a rewind) sends its reply through ``request.reply`` itself.
        self.request: Optional[Request] = None

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

    def submit(self, request: Request, router: Router) -> bool:
        """Queue a request routed by ``router`` (the server thread); False once the pause has ended."""
        return self.inbox.submit(request, router, self)

    def frame(self, args: Dict[str, Any]) -> FrameType:
        """The frame a request names (``frame`` index, innermost = 0)."""
        index = arg(args, "frame", int, 0)
        if not 0 <= index < len(self.frames):
            raise OpError("BadRequest", f"frame {index} does not exist (the stack has {len(self.frames)})")
        return self.frames[index]


def serve(frames: List[FrameType], reason: str, *, timeout: Optional[float] = None,
          info: Optional[Dict[str, Any]] = None, server: Optional[Server] = None) -> str:
    """Pause the calling thread at ``frames`` and serve them until a client resumes it.

    Returns the resume action ("continue", "step", "next" or "step_out"). With
    ``timeout``: resume with "continue" once no client has been attached (nor sent a
    request) for that many seconds, printing one line to stderr.
    """
    if not frames:
        raise ValueError("nothing to pause at: no frames")
    while True:
        try:
            return _serve(frames, reason, timeout, info, server)
        except NewLiveProcess as moved:
            # A checkpoint or a rewind made this process (checkpoint_ops.py): the same
            # frames, paused again, on a server of its own.
            reason, info, server = moved.reason, dict(info or {}, **moved.info), None


def _serve(frames: List[FrameType], reason: str, timeout: Optional[float], info: Optional[Dict[str, Any]],
           server: Optional[Server]) -> str:
    server = server or get_server()
    kept = _take_kept()
    pause = Pause(frames, reason, info, inbox=kept.inbox if kept is not None else None)
    kept_lane = kept.lane if kept is not None else None
    if kept_lane is not None:
        pause.info = dict(pause.info, lane=kept_lane.port, lane_key=kept_lane.public_key)
    try:
        exprs = watches.watched()
        if exprs:  # evaluated here, on the paused thread, so they arrive with the event
            pause.info["watches"] = watches.evaluate(frames[0], exprs)
        pause.inbox.open_sink(server)
        announce = None
        if kept is not None and kept.stepper is not None and kept_lane is not None:
            announce = _announcer(kept_lane, kept.stepper, pause)
        server.register_pause(pause, announce=announce)
    except BaseException:  # not paused after all: leave no pipe or socket behind
        pause.inbox.close(pause.pause_id, pause.thread_id)
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
        if kept_lane is not None:
            kept_lane.pause_id = pause.pause_id
        lane = pause.lane = kept_lane if kept_lane is not None else _open_lane(server, pause)
        sources: List[RequestSource] = [pause.inbox] if lane is None else [pause.inbox, lane]
        action = _serve_requests(pause, sources, timeout, server.clients_attached) or action
    finally:
        output_routing.__exit__(None, None, None)
        if os.getpid() == pause.pid:
            _end(server, pause, lane, action)
        else:
            # A forked process carries the job on (a NewLiveProcess on its way up): the
            # server, the lane and the sinks are the parent's, and one send on them would
            # reach the parent's clients (docs/design-checkpoints.md, "Integration").
            pause.inbox.let_go()
    return action


def _end(server: Server, pause: Pause, lane: Optional[Lane], action: str) -> None:
    """The pause is over: tell the clients; a stepping thread keeps its lane and inbox,
    the others are closed."""
    stepping = action in _STEPPING
    by = pause.resumed_by
    # A step asked on the lane: the client that asked hears the thread's next stop on
    # that lane, at once; the server socket's subscribers hear both a little later.
    stepper = by.identity if stepping and lane is not None and by is not None and by.reply is lane else None
    try:
        server.unregister_pause(pause, action, defer=stepper is not None)
    finally:
        if stepping:
            pause.inbox.end(pause.pause_id, pause.thread_id)
            _kept[pause.thread_id] = _Kept(lane, pause.inbox, stepper)
        else:
            if lane is not None:
                lane.close()
            pause.inbox.close(pause.pause_id, pause.thread_id)


class _Kept:
    """What a thread that steps keeps from one stop to the next: stepping makes a new pause
    every few hundred microseconds, and a new lane costs a key pair and a bind here and a
    CURVE handshake at the client, a new inbox a pipe and a socket to the server thread
    (docs/benchmarks.md, step round trip). The pause id in each request still tells the
    pauses apart. ``stepper``: the lane's client that asked for the step, which the next
    stop is announced to on the lane (docs/protocol.md, "Events")."""

    __slots__ = ("lane", "inbox", "stepper")

    def __init__(self, lane: Optional[Lane], inbox: Inbox, stepper: Optional[bytes]) -> None:
        self.lane = lane
        self.inbox = inbox
        self.stepper = stepper

    def close(self, thread_id: int) -> None:
        if self.lane is not None:
            self.lane.close()
        self.inbox.close(0, thread_id)


_kept: Dict[int, _Kept] = {}  # thread id -> what it kept
_STEPPING = ("step", "next", "step_out")


def _take_kept() -> Optional[_Kept]:
    """What this thread kept from its last stop; what threads that ended while stepping
    kept is closed (nobody can use it again)."""
    kept = _kept.pop(threading.get_ident(), None)
    if _kept:
        alive = {t.ident for t in threading.enumerate()}
        for tid in [t for t in _kept if t not in alive]:
            _kept.pop(tid).close(tid)
    return kept


def _announcer(lane: Lane, stepper: bytes, pause: Pause) -> Callable[[Frames], bool]:
    """The stepping client's delivery of the ``paused`` event: on the lane, before the
    server thread hears of it."""

    def announce(event: Frames) -> bool:
        lane.pause_id = pause.pause_id  # its requests for this pause are this lane's from now on
        return lane.send_event(stepper, event)

    return announce


def forget_inherited() -> Dict[int, _Kept]:
    """In a forked child (bridge/forks.py): forget what stepping threads kept (lanes,
    inboxes); they are the parent's sockets. Returned, so that the caller keeps them from
    being closed."""
    kept = dict(_kept)
    _kept.clear()
    return kept


def _serve_requests(pause: Pause, sources: List[RequestSource], timeout: Optional[float],
                    attached: Callable[[], bool] = lambda: False) -> Optional[str]:
    """Serve requests from ``sources`` until a resume op (its action) or the wait timeout
    (None): ``timeout`` seconds with no request and no client ``attached`` (API.md)."""
    poller = zmq.Poller()
    for source in sources:
        poller.register(source.pollable, zmq.POLLIN)
    inbox = pause.inbox
    while True:
        # One poll per request: it says where the request is (asking each source first
        # costs more than the poll, docs/benchmarks.md).
        ready = poller.poll(_POLL_S * 1000)
        if not ready:
            if inbox.waiting():  # its wake-up was lost to a full pipe (a flood)
                ready = [(inbox.pollable, zmq.POLLIN)]
            elif timeout is not None and attached():  # an attached client (with a mount open, maybe) keeps it
                pause.last_activity = time.monotonic()
                continue
            elif timeout is not None and time.monotonic() - pause.last_activity > timeout:
                print(
                    f"bridge: no client continued pid {os.getpid()} within {timeout:g}s; resuming",
                    file=sys.__stderr__,
                )
                return None
            else:
                continue
        request = _take(sources, ready)
        if request is None:
            continue  # a refused request (answered), or a stale wake-up (drained)
        pause.last_activity = time.monotonic()
        pause.served += 1
        pause.request = request
        frames_out = dispatch.run_frame_op(pause, request)
        # decided before the send: after it, this thread should only wait
        resume = RESUME_OPS.get(request.op) or pause.resume_after
        request.reply.send(request.identity, frames_out)  # type: ignore[union-attr]
        if resume is not None:
            pause.resumed_by = request
            return resume


def _take(sources: List[RequestSource], ready: List[Any]) -> Optional[Request]:
    """The next request from the ready sources, taking turns: the source served moves to
    the back, so that no way in starves another."""
    readable = [item for item, _ in ready]
    for i, source in enumerate(sources):
        if source.pollable in readable:
            request = source.receive()
            if request is not None:
                if i < len(sources) - 1:
                    sources.append(sources.pop(i))
                return request
    return None


def _open_lane(server: Server, pause: Pause) -> Optional[Lane]:
    """Open the pause's lane and name it to clients; None (the server path serves) if that fails."""
    lane = None
    try:
        lane = Lane(server, pause.thread_id, pause.pause_id)
        named = {"lane": lane.port, "lane_key": lane.public_key}
        pause.info = dict(pause.info, **named)  # rebound at once: the server thread's describe() sees old or new
        server.broadcast("lane", dict(named, thread=pause.thread_id, pause_id=pause.pause_id))
        return lane
    except zmq.ZMQError as exc:  # no free port, too many files: the server path still works
        log.warning("bridge: cannot open a lane for this pause (%s); requests go through the server", exc)
        if lane is not None:
            lane.close()
        return None
