"""A target served by the I/O loop: its events, and requests of which many may be in flight.

Every session has a :class:`Link`: the I/O loop (client/io_loop.py) reads the target's
events from it for the session's pause state, and a group sends a request to N members
as N :meth:`Link.submit` calls (N sends on the loop thread) and one gather of their
:class:`PendingReply` objects, each with a deadline of its own.

A link talks to its target through a :class:`~client.ports.Port` (client/ports.py: one
that dials, or one a hub gives), and sends a group's frame requests through each
pause's lane when it can (client/link_lanes.py).

A link holds no reference to its session, so a session nobody holds is collected (its
finalizer closes the link) while the loop keeps polling the others.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import zmq

from bridge import keys, protocol

from .bulk_path import drop_bulk
from .errors import RequestTimeout, SessionLost, error_from_reply
from .events import EventFeed
from .pause_state import PauseState
from .io_loop import IOLoop, io_loop
from .link_lanes import LinkLanes
from .ports import Port
from .transport import lost_reply, next_request_id, outcome_state

#: How often the link checks that a target on this host still runs.
ALIVE_CHECK_S = 0.5
#: After a reconnect, an ``unseen`` request is asked about once more this much later.
UNSEEN_RECHECK_S = 0.3

Raw = Tuple[Dict[str, Any], List[Any]]
_EVENT_LOCK = threading.Lock()


class PendingReply:
    """A request in flight on a link. :meth:`raw` waits for it until its own deadline."""

    __slots__ = ("id", "op", "pid", "deadline", "timeout", "header", "values", "error", "callback",
                 "unseen", "thread", "pause_id", "via", "latch", "_done", "_event", "_link")

    def __init__(self, link: "Link", request_id: int, op: str, timeout: Optional[float],
                 callback: Optional[Callable[["PendingReply"], None]] = None) -> None:
        self.id = request_id
        self.op = op
        self.pid = link.pid
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.header: Optional[Dict[str, Any]] = None
        self.values: List[Any] = []
        self.error: Optional[BaseException] = None
        #: Called on the loop thread when the request ends (requests the link makes itself).
        self.callback = callback
        self.unseen = 0
        #: The paused thread and pause a frame request is for (its lane may carry it).
        self.thread: Optional[int] = None
        self.pause_id: Optional[int] = None
        #: The port it went out by (a lost reply is asked for under that port's id).
        self.via: Optional[Port] = None
        #: A gather waiting for it with others (woken once, by the last of them).
        self.latch: Optional[_Latch] = None
        self._done = False
        # Made by the first wait that finds it not done: a group's requests are waited for
        # together (gather) and never need one each.
        self._event: Optional[threading.Event] = None
        self._link = link

    @property
    def done(self) -> bool:
        """Whether the reply (or a failure) is in."""
        return self._done

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait up to ``timeout`` seconds for the reply (or a failure); whether it is in."""
        if self._done:
            return True
        event = self._event
        if event is None:
            with _EVENT_LOCK:  # two waiters make one event
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
            if self._done:  # finished before it saw the event
                return True
        return event.wait(timeout)

    def raw(self) -> Raw:
        """The reply's (header, values), error replies included; raises RequestTimeout at
        the deadline, or the link's failure (SessionLost, AuthenticationError, ReplyLost)."""
        while not self._done:
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if left is not None and left <= 0:
                self._link.abandon(self)
                if not self._done:
                    raise RequestTimeout(f"pid {self.pid} did not answer within {self.timeout:g}s (still "
                                         f"running a long operation? pass a larger timeout)")
                break
            self.wait(0.2 if left is None else min(left, 0.2))  # slices: Ctrl-C gets a turn
        if self.error is not None:
            raise self.error
        return self.header, self.values  # type: ignore[return-value]

    # --- the loop thread ----------------------------------------------------------------------

    def complete(self, header: Dict[str, Any], values: List[Any]) -> None:
        if self._done:
            return
        self.header, self.values = header, values
        self._finish()

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self.error = exc
        self._finish()

    def _finish(self) -> None:
        try:
            if self.callback is not None:
                self.callback(self)
        finally:
            self._done = True  # then the event: a waiter that made one after this sees _done
            event = self._event
            if event is not None:
                event.set()
            latch = self.latch
            if latch is not None:
                latch.arrive(self)


class _Latch:
    """Set once every one of a gather's requests has ended: the gathering thread wakes
    once, not once per reply (each wake-up takes the interpreter lock from the loop
    thread, which is reading the next replies; docs/benchmarks.md, groups)."""

    def __init__(self, count: int) -> None:
        self.done = threading.Event()
        self._left = count
        self._arrived: set = set()
        self._lock = threading.Lock()

    def arrive(self, pending: PendingReply) -> None:
        with self._lock:
            if id(pending) in self._arrived:  # the gatherer saw it done, and its finish came too
                return
            self._arrived.add(id(pending))  # by identity: the gather holds every one alive
            self._left -= 1
            last = self._left == 0
        if last:
            self.done.set()


def gather(pending: Sequence[PendingReply]) -> None:
    """Wait until every request has its reply or has passed its own deadline."""
    latch = _Latch(len(pending))
    for p in pending:
        p.latch = latch
        if p.done:  # finished before it knew of the latch
            latch.arrive(p)
    while not latch.done.is_set():
        now = time.monotonic()
        waiting = [p for p in pending if not p.done and (p.deadline is None or p.deadline > now)]
        if not waiting:
            return  # the rest passed their deadlines: their raw() raises RequestTimeout
        deadlines = [p.deadline for p in waiting if p.deadline is not None]
        left = min(deadlines) - now if len(deadlines) == len(waiting) else None
        # slices: Ctrl-C gets a turn, as in PendingReply.raw
        latch.done.wait(0.2 if left is None else min(left, 0.2))


class Link:
    """One target served by the I/O loop: a :class:`Port`, the requests in flight on it,
    and the :class:`EventFeed` its events go to. Thread-safe: :meth:`submit` and
    :meth:`close` from any thread; the rest runs on the loop thread."""

    def __init__(self, port: Port, feed: EventFeed, pid: int, loop: Optional[IOLoop] = None) -> None:
        self.port = port
        self.feed = feed
        self.pid = pid
        self.loop = loop or io_loop()
        #: Why the link gave up (requests then fail with it at once).
        self.failure: Optional[BaseException] = None
        #: Successful handshakes so far (more than one: it reconnected).
        self.handshakes = 0
        self.subscribed = False
        self._pending: Dict[int, PendingReply] = {}
        self._rechecks: List[Tuple[float, PendingReply]] = []
        self._next_alive_check = 0.0
        self._seen_dead = False
        self._closed = False
        #: Lanes to the paused threads, for frame requests (client/link_lanes.py).
        self.lanes = LinkLanes(self)

    def open(self) -> None:
        """Start the port on the loop thread."""
        self.loop.call(self.port.start, self.loop, self)

    # --- any thread ---------------------------------------------------------------------------

    def submit(self, op: str, args: Optional[Dict[str, Any]] = None, frames: Optional[List[Any]] = None, *,
               timeout: Optional[float] = 30.0, pause_id: Optional[int] = None,
               release: Optional[List[List[int]]] = None, bulk: Optional[str] = None,
               bulk_in: Optional[Dict[str, Any]] = None,
               callback: Optional[Callable[[PendingReply], None]] = None) -> PendingReply:
        """Send a request (on the loop thread, soon); its PendingReply at once."""
        request_id = next_request_id()
        pending = PendingReply(self, request_id, op, timeout, callback)
        if pause_id is not None and args:
            pending.thread, pending.pause_id = args.get("thread"), pause_id
        if self.failure is not None or self._closed:
            pending.fail(self.failure or SessionLost("this session is closed; attach again"))
            return pending
        message = protocol.request_message(request_id, op, args, frames, pause_id=pause_id, release=release,
                                           bulk=bulk, bulk_in=bulk_in)
        self._pending[request_id] = pending
        self.loop.call(self._send, pending, message)
        return pending

    def abandon(self, pending: PendingReply) -> None:
        """The caller stopped waiting: a late reply is dropped."""
        self._pending.pop(pending.id, None)

    def close(self) -> None:
        """Fail what is in flight and close the port (never blocks; safe from finalizers)."""
        if not self._closed:
            self._closed = True
            self.loop.call(self._close)

    def mute(self) -> Callable[[], None]:
        """Hand the target's events (and its loss) to no one from now on: its process is
        about to end or hide, and the session moves on (a checkpoint, a rewind). Returns
        what undoes it (the move did not happen)."""
        feed = self.feed
        self.feed = EventFeed(PauseState(), self.pid)

        def undo() -> None:
            self.feed = feed

        return undo

    def subscribe(self, timeout: Optional[float]) -> PendingReply:
        """Subscribe to the target's events; the reply's pauses replace the pause state."""
        return self.submit("subscribe", timeout=timeout, callback=self._subscribed)

    # --- the loop thread ----------------------------------------------------------------------

    def _send(self, pending: PendingReply, message: List[Any]) -> None:
        if pending.done:
            return
        if self.failure is not None:
            self._pending.pop(pending.id, None)
            pending.fail(self.failure)
            return
        port = self.lanes.port_for(pending.thread, pending.pause_id) or self.port
        pending.via = port
        try:
            port.send(message)
        except zmq.ZMQError as exc:
            self._pending.pop(pending.id, None)
            pending.fail(SessionLost(f"pid {self.pid}: cannot send to {port.where} ({exc})"))

    def _subscribed(self, pending: PendingReply) -> None:
        header = pending.header
        if header is not None and header.get("ok", True):
            self.subscribed = True
            self.feed.reset((header.get("result") or {}).get("paused") or [])

    def _close(self) -> None:
        self._fail_pending(SessionLost("this session is closed; attach again"))
        self.lanes.close_all()
        self.port.close()

    def fail(self, exc: BaseException) -> None:
        """Give up for good: every request in flight fails with ``exc``, the session hears it."""
        if self.failure is None:
            self.failure = exc
        self._fail_pending(exc)
        self.lanes.close_all()
        self.port.close()
        if not self._closed:
            self.feed.lost(exc)

    def _fail_pending(self, exc: BaseException) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        self._rechecks.clear()
        for p in pending:
            p.fail(exc)

    # PortSink

    def on_message(self, frames: List[Any], *, from_lane: bool = False) -> None:
        try:
            header, values = protocol.split_message(frames)
        except protocol.ProtocolError:
            return  # not for anyone: a request that waits for it times out and says so
        event = header.get("event")
        if event is not None and "id" not in header:
            if from_lane:  # a stepping thread's next stop, ahead of the server socket's events,
                if isinstance(event, str):  # which the subscribers hear (docs/protocol.md)
                    self.feed.state.apply(event, header)
            elif event == protocol.EVENTS_BATCH:  # several, in order
                for each in header.get("events") or ():
                    if isinstance(each, dict):
                        self._event(each.get("event"), each)
            else:
                self._event(event, header)
            return
        pending = self._pending.pop(header.get("id"), None)  # type: ignore[arg-type]
        error = header.get("error")
        revoked = isinstance(error, dict) and error.get("type") == "Unauthorized"
        if pending is None:
            if revoked:
                self.fail(error_from_reply(error))  # type: ignore[arg-type]  # a target that revoked our key says so once
                return
            drop_bulk(header)  # abandoned: its shared-memory ring is unlinked at once
            return
        pending.complete(header, values)
        if revoked:  # our key was revoked (docs/security.md): every later request fails at once
            self.fail(error_from_reply(error))  # type: ignore[arg-type]
            return
        if pending.via is not self.port:
            self.lanes.sweep()  # the last answer an ended pause's lane owed

    def _event(self, event: Any, header: Dict[str, Any]) -> None:
        if isinstance(event, str):
            self.feed.deliver(event, header)
            if event == "resumed" and type(header.get("pause_id")) is int:
                self.lanes.retire(header["pause_id"], header.get("thread"), header.get("action"))

    def on_connected(self) -> None:
        self.handshakes += 1
        if self.handshakes == 1 or self._closed:
            return
        # Reconnected: the target may have forgotten our subscription, and replies sent
        # while we were away are lost; ask what became of each request in flight.
        if self.subscribed:
            self.subscribe(timeout=10.0)
        self.ask_outcomes(via=self.port)

    def ask_outcomes(self, via: Port) -> None:
        """``via`` reconnected: ask what became of each request in flight that went out by it."""
        for pending in list(self._pending.values()):
            if pending.callback is None and pending.via is via:
                self._ask_outcome(pending)

    def ports_in_use(self) -> set:
        """The ports that requests in flight went out by."""
        return {pending.via for pending in list(self._pending.values())}  # a copy: submit() adds from other threads

    def lane_failed(self, lane: Port, exc: BaseException) -> None:
        """A lane gave up: what it carried fails as the lane did (the pause is gone, or the
        target: the server socket says which soon after)."""
        for pending in list(self._pending.values()):
            if pending.via is lane:
                self._pending.pop(pending.id, None)
                pending.fail(exc)

    def on_failure(self, exc: BaseException) -> None:
        self.fail(exc)

    def on_tick(self, now: float) -> None:
        if self.failure is not None or self._closed:
            return
        local = self.port.local_pid
        if local is not None and now >= self._next_alive_check:
            self._next_alive_check = now + ALIVE_CHECK_S
            if keys.process_alive(local):
                self._seen_dead = False
            elif not self._seen_dead:
                self._seen_dead = True  # its last replies may still be on their way: one more turn
                self._next_alive_check = now
            else:
                self.fail(SessionLost(f"the target process {local} has exited"))
                return
        self.lanes.sweep()  # requests abandoned at their deadline free their lanes too
        if self._rechecks:
            due = [p for at, p in self._rechecks if at <= now]
            self._rechecks = [(at, p) for at, p in self._rechecks if at > now]
            for p in due:
                if not p.done:
                    self._ask_outcome(p)

    # lost replies (bridge/outcomes.py)

    def _ask_outcome(self, pending: PendingReply) -> None:
        args: Dict[str, Any] = {"id": pending.id}
        if pending.via is not None and pending.via is not self.port:  # a lane's: asked on the server socket
            args["channel"] = pending.via.routing_id.hex()
        self.submit("outcome", args, timeout=10.0, callback=lambda answer: self._outcome_answered(pending, answer))

    def _outcome_answered(self, pending: PendingReply, answer: PendingReply) -> None:
        if pending.done or answer.header is None:
            return  # answered meanwhile; or no answer yet (the next reconnect asks again)
        state, reply = outcome_state(answer.header, answer.values)
        if reply is not None:
            self._pending.pop(pending.id, None)
            pending.complete(*reply)
        elif state == "unseen" and pending.unseen == 0:
            pending.unseen = 1  # its bytes may still come out of the old connection: ask again
            self._rechecks.append((time.monotonic() + UNSEEN_RECHECK_S, pending))
        elif state not in ("running", "retry"):
            self._pending.pop(pending.id, None)
            pending.fail(lost_reply(state, pending.id, self.pid))
