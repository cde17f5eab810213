"""One authenticated CURVE connection to a target, with honest failure reporting.

ZeroMQ hides connection trouble: a DEALER with the wrong server key reconnects every
100 ms forever, and a request to a dead peer simply waits. A :class:`Channel` watches
its socket's monitor events so that a refused key becomes :class:`AuthenticationError`
at once (and the socket is closed: no retry storm), and a dead target becomes
:class:`SessionLost` within seconds.

Every socket keeps one routing id across reconnects, so that a reply lost while the
connection was down can be asked for: when a channel notices a reconnect while it waits
for a reply, it asks the target for the outcome of that request (``outcome``,
bridge/outcomes.py) and delivers the reply, or raises :class:`ReplyLost` at once saying
whether the request ran (docs/protocol.md, "Lost replies").

A channel is used by the thread that makes a request (the fast path of a single
session, client/session.py); the connections the I/O loop serves are links
(client/link.py). Both take big values through client/bulk_path.py (the bulk path,
bridge/bulk/).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import zmq
from zmq.utils.monitor import parse_monitor_message

from bridge import bulk, keys, protocol
from bridge.protocol import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS

from .bulk_path import Outgoing, choose_bulk, drop_bulk, finish_reply
from .errors import AuthenticationError, NotPaused, RemoteError, ReplyLost, RequestTimeout, SessionLost
from .io_loop import ensure_fd_headroom, zmq_resource_error

#: Slice of every blocking receive, so Ctrl-C and liveness checks get a turn.
POLL_SLICE_MS = 100
#: The slice before the first handshake succeeded: a refused key shows within milliseconds.
FIRST_HANDSHAKE_SLICE_MS = 5

#: Descriptors one channel takes: its socket's mailbox and connection, its monitor's two mailboxes.
CHANNEL_FDS = 4
#: After a reconnect, an ``unseen`` request is asked about once more this much later (its
#: bytes may still come out of the old connection's buffers).
UNSEEN_RECHECK_S = 0.3
#: How long one ``outcome`` question may take.
OUTCOME_TIMEOUT_S = 5.0

#: Monitor events every channel (and link, client/link.py) watches.
MONITORED_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_DISCONNECTED)

_AUTH_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the target refused our client key {key}: it is not in the "
    "target's authorized keys (run `framebridge keys` on both sides)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the target did not prove it holds the server key from its "
    "connection file (a tampered or stale connection file, or another process on that port)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (protocol error: not a framebridge "
    "target, or a plaintext peer)",
}

_request_ids = itertools.count(1)


def next_request_id() -> int:
    """A request id unique in this process (ids only grow: the target tells a request that
    never arrived from one it forgot by them, bridge/outcomes.py)."""
    return next(_request_ids)


def new_routing_id() -> bytes:
    """A socket's routing id, kept across its reconnects (random: it also names the
    socket's replies in the target's reply cache; a leading zero byte is libzmq's)."""
    return b"fb" + os.urandom(14)


def open_dealer(context: zmq.Context, info: Dict[str, Any], keypair: keys.KeyPair,
                routing_id: bytes) -> Tuple[zmq.Socket, zmq.Socket]:
    """A CURVE DEALER connected to ``info``'s endpoint, and its monitor socket.

    ResourceLimit (nothing left open) when the process is too close to its file limit.
    """
    endpoint = info["endpoint"]
    ensure_fd_headroom(CHANNEL_FDS, f"connecting to pid {info.get('pid')}")
    sock = None
    try:
        sock = context.socket(zmq.DEALER)
        sock.curve_serverkey = info["server_key"].encode("ascii")
        sock.curve_publickey = keypair.public.encode("ascii")
        sock.curve_secretkey = keypair.secret.encode("ascii")
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if endpoint.startswith("tcp://["):
            sock.setsockopt(zmq.IPV6, 1)
        monitor = open_monitor(context, sock, MONITORED_EVENTS)
        sock.connect(endpoint)
        return sock, monitor
    except zmq.ZMQError as exc:
        if sock is not None:
            sock.close(linger=0)
        raise zmq_resource_error(exc, f"connecting to pid {info.get('pid')}") from exc


_monitor_ids = itertools.count(1)


def open_monitor(context: zmq.Context, sock: zmq.Socket, events: int) -> zmq.Socket:
    """``sock``'s monitor socket, with no high-water mark: libzmq's I/O thread sends each
    event blocking, holding a lock that ``disable_monitor`` needs, and one I/O thread now
    serves every connection of the process (client/io_loop.py), so a monitor nobody read
    for a while must never make it wait. Close it with :func:`close_monitored`."""
    address = f"inproc://framebridge-monitor-{os.getpid()}-{next(_monitor_ids)}"
    sock.monitor(address, events)
    monitor = context.socket(zmq.PAIR)
    monitor.setsockopt(zmq.RCVHWM, 0)
    monitor.setsockopt(zmq.LINGER, 0)
    monitor.connect(address)
    return monitor


def close_monitored(sock: zmq.Socket, monitor: zmq.Socket) -> None:
    """Close a socket and its monitor, in the one order that never blocks: stop the
    monitor while its reading end still exists (libzmq would otherwise wait for a
    reader, holding a lock), then the reading end, then the socket."""
    if not sock.closed:
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
    monitor.close(linger=0)
    sock.close(linger=0)


def auth_failure(event: int, pid: int, endpoint: str, keypair: keys.KeyPair) -> Optional[AuthenticationError]:
    """The AuthenticationError a monitor event means, or None if it means none."""
    text = _AUTH_FAILURES.get(event)
    if text is None:
        return None
    return AuthenticationError(f"pid {pid} at {endpoint}: {text.format(key=keys.fingerprint(keypair.public))}")


class _Reconnected(Exception):
    """Raised inside a wait: the channel reconnected since the request was sent."""


class Channel:
    """A CURVE DEALER socket to one target, plus its monitor. Not thread-safe by itself.

    ``recovery`` is the channel to ask about a lost reply (``outcome`` is a server op, so
    a pause's lane asks through its session's main channel); None: this one.
    """

    def __init__(self, context: zmq.Context, info: Dict[str, Any], keypair: keys.KeyPair) -> None:
        self.info = info
        self.pid = int(info["pid"])
        self.endpoint = info["endpoint"]
        self.local = _is_loopback(self.endpoint)
        self.keypair = keypair
        self.routing_id = new_routing_id()
        self.socket, self.monitor = open_dealer(context, info, keypair, self.routing_id)
        self.recovery: Optional[Channel] = None
        self.connected = False
        self.closed = False
        self.failure: Optional[Exception] = None
        self.handshakes = 0
        self.abandoned: set = set()
        self._last_alive_check = 0.0
        #: The session's bulk path (bulk.py), chosen in :func:`handshake`; None = CURVE only.
        self.bulk: Optional[bulk.BulkPeer] = None
        #: ``on_event(event, header)``: an event that came on this socket (a pause's lane
        #: tells the client that stepped of the thread's next stop, docs/protocol.md).
        self.on_event: Optional[Callable[[str, Dict[str, Any]], None]] = None
        self._rcvtimeo = -1

    # --- failure detection -----------------------------------------------------------

    def check_events(self) -> None:
        """Read monitor events; raise AuthenticationError/SessionLost when they say so."""
        while True:
            try:
                # ZMQ_EVENTS first: a zmq.Again per request costs more than the check.
                if not self.monitor.get(zmq.EVENTS) & zmq.POLLIN:
                    break
                msg = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            event = parse_monitor_message(msg)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.handshakes += 1
            elif event in _AUTH_FAILURES:
                if self.local and not keys.process_alive(self.pid):  # it died mid-handshake: no key problem
                    self.fail(SessionLost(f"the target process {self.pid} has exited"))
                else:
                    self.fail(auth_failure(event, self.pid, self.endpoint, self.keypair))  # type: ignore[arg-type]
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = False
        if self.failure is not None:
            raise self.failure
        now = time.monotonic()
        if self.local and now - self._last_alive_check > 0.25:
            self._last_alive_check = now
            if not keys.process_alive(self.pid):
                self.fail(SessionLost(f"the target process {self.pid} has exited"))
                raise self.failure  # type: ignore[misc]

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the first handshake; whether it succeeded
        (a refused key or a dead target raise)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_events()
            left = deadline - time.monotonic()
            if self.connected or left <= 0:
                return self.connected
            self.monitor.poll(max(1, int(left * 1000)))

    def fail(self, exc: Exception) -> None:
        """Record a permanent failure and stop the socket from retrying."""
        if self.failure is None:
            self.failure = exc
        self.close()

    def close(self) -> None:
        """Close the socket and its monitor (idempotent)."""
        if self.closed:
            return
        self.closed = True
        close_monitored(self.socket, self.monitor)

    # --- request / reply -----------------------------------------------------------------

    def send(self, op: str, args: Optional[Dict[str, Any]] = None, frames: Optional[List[Any]] = None, *,
             pause_id: Optional[int] = None, release: Optional[List[List[int]]] = None,
             bulk: Optional[str] = None, bulk_in: Optional[Dict[str, Any]] = None) -> int:
        """Send a request (``protocol.request_message``); return its id."""
        if self.failure is not None:
            raise self.failure
        if self.closed:
            raise SessionLost("the session is closed")
        request_id = next_request_id()
        msg = protocol.request_message(request_id, op, args, frames, pause_id=pause_id, release=release,
                                       bulk=bulk, bulk_in=bulk_in)
        if len(msg) > 1:  # value frames, or a header too big to be one (protocol.py: spill)
            self.socket.send_multipart(msg, copy=False)
        else:  # the common case: one small frame, sent as a copy
            self.socket.send(msg[0])
        return request_id

    def receive(self, timeout: Optional[float], *, want_id: Optional[int] = None,
                on_other: Optional[Callable[[Dict[str, Any], List[Any]], None]] = None,
                still_valid: Optional[Callable[[], bool]] = None) -> Tuple[Dict[str, Any], List[Any]]:
        """Wait for the reply to ``want_id`` (or any message if None); errors raise.

        ``timeout`` None waits without limit (still ending on a dead target or Ctrl-C).
        ``still_valid`` is asked while waiting: once it says False (the pause a lane
        served has ended, see lanes.py) the wait ends with NotPaused.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        header, values = self._receive(deadline, timeout, want_id=want_id, on_other=on_other,
                                        still_valid=still_valid)  # type: ignore[misc]
        return finish_reply(header, values, self.bulk, self.pid, timeout)

    def _receive(self, deadline: Optional[float], timeout: Optional[float], *, want_id: Optional[int] = None,
                 on_other: Optional[Callable[[Dict[str, Any], List[Any]], None]] = None,
                 still_valid: Optional[Callable[[], bool]] = None, since: int = 0,
                 until: Optional[float] = None) -> Optional[Tuple[Dict[str, Any], List[Any]]]:
        """The raw reply to ``want_id`` (error replies included), or any message.

        RequestTimeout at ``deadline``; None at ``until`` (a soft end: the caller wants a
        turn); _Reconnected once the channel has reconnected after handshake ``since``
        (0: do not watch).
        """
        sock = self.socket
        waited = False
        while True:
            # Monitor events matter only to a wait that is not answered at once (a refused
            # key, a dead peer): a reply that is already there needs no check.
            if waited or not self.connected:
                self.check_events()
                if since and self.handshakes > since:
                    raise _Reconnected()
            elif self.failure is not None:
                raise self.failure
            waited = True
            # Slices, so that Ctrl-C, monitor events and liveness checks get a turn. Until the
            # first handshake they are short: a refused key must fail within milliseconds.
            slice_ms = POLL_SLICE_MS if self.connected else FIRST_HANDSHAKE_SLICE_MS
            now = time.monotonic()
            if until is not None:
                if now >= until:
                    return None
                slice_ms = min(slice_ms, max(1, int((until - now) * 1000)))
            if deadline is not None:
                left = deadline - now
                if left <= 0:
                    if want_id is not None:
                        self.abandoned.add(want_id)
                    raise RequestTimeout(
                        f"pid {self.pid} did not answer within {timeout:g}s (still running a long "
                        f"operation? pass a larger timeout)"
                    )
                slice_ms = min(slice_ms, max(1, int(left * 1000)))
            if slice_ms != self._rcvtimeo:
                sock.setsockopt(zmq.RCVTIMEO, slice_ms)
                self._rcvtimeo = slice_ms
            try:
                # A blocking receive with a timeout is one C call; a poller costs several
                # Python steps per request (docs/benchmarks.md).
                frames = [sock.recv()]  # the header: small, a copy is cheaper than a Frame
            except zmq.Again:
                if still_valid is not None and not still_valid():
                    if want_id is not None:
                        self.abandoned.add(want_id)
                    raise NotPaused(f"pid {self.pid}: the thread resumed before it answered") from None
                continue
            except KeyboardInterrupt:
                if want_id is not None:
                    self.abandoned.add(want_id)
                raise
            while sock.get(zmq.RCVMORE):
                frames.append(sock.recv(copy=False))  # values: not copied
            header, values = protocol.split_message(frames)
            rid = header.get("id")
            if want_id is not None and rid != want_id:
                if rid is None and "event" in header:
                    self._event(header)
                elif rid in self.abandoned:
                    self.abandoned.discard(rid)
                    drop_bulk(header)
                elif on_other is not None:
                    on_other(header, values)
                continue
            return header, values

    def _event(self, header: Dict[str, Any]) -> None:
        event = header.get("event")
        if isinstance(event, str) and self.on_event is not None:
            self.on_event(event, header)

    def await_event(self, until: float, done: Callable[[], bool]) -> bool:
        """Take in the events that come on this socket (``on_event``) until ``done()``
        says True (returns True) or ``until`` (time.monotonic) has passed (False).
        Replies nobody waits for any more are dropped on the way."""
        while not done():
            got = self._receive(None, None, until=until)
            if got is None:
                return False
            header, _ = got
            rid = header.get("id")
            if rid is None and "event" in header:
                self._event(header)
            else:
                self.abandoned.discard(rid)
                drop_bulk(header)
        return True

    def _await(self, request_id: int, timeout: Optional[float], still_valid: Optional[Callable[[], bool]],
               since: int) -> Tuple[Dict[str, Any], List[Any]]:
        """The raw reply to ``request_id``; after a reconnect, recovered through ``outcome``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # A request sent before the first handshake went out on it: only a later
            # handshake is a reconnect.
            return self._receive(deadline, timeout, want_id=request_id, still_valid=still_valid,  # type: ignore[return-value]
                                 since=since if since > 1 else 1)
        except _Reconnected:
            return self._recover(request_id, deadline, timeout, still_valid)

    def _recover(self, request_id: int, deadline: Optional[float], timeout: Optional[float],
                 still_valid: Optional[Callable[[], bool]]) -> Tuple[Dict[str, Any], List[Any]]:
        """After a reconnect: ask what became of ``request_id`` (and wait on) until its
        reply is in hand, or raise ReplyLost saying whether it ran."""
        recheck_at: Optional[float] = None
        unseen = 0
        while True:
            since = self.handshakes
            state, reply = self._outcome(request_id, deadline)
            if reply is not None:
                self.abandoned.add(request_id)  # the original may still come on this socket
                return reply
            recheck_at = None
            if state == "unseen" and not unseen:
                unseen = 1  # its bytes may still come out of the old connection: ask again soon
                recheck_at = time.monotonic() + UNSEEN_RECHECK_S
            elif state not in ("running", "retry"):
                self.abandoned.add(request_id)
                raise lost_reply(state, request_id, self.pid)
            try:
                got = self._receive(deadline, timeout, want_id=request_id, still_valid=still_valid,
                                    since=since, until=recheck_at)
                if got is not None:
                    return got
            except _Reconnected:
                pass

    def _outcome(self, request_id: int, deadline: Optional[float]) -> Tuple[str, Optional[Tuple[Dict[str, Any], List[Any]]]]:
        """Ask the target what became of ``request_id``: (state, the reply when it kept it).
        State "retry": no answer yet (the next reconnect asks again)."""
        ask = self.recovery or self
        args: Dict[str, Any] = {"id": request_id}
        if ask is not self:
            args["channel"] = self.routing_id.hex()
        late: List[Tuple[Dict[str, Any], List[Any]]] = []

        def keep_original(header: Dict[str, Any], values: List[Any]) -> None:
            if header.get("id") == request_id:
                late.append((header, values))

        limit = OUTCOME_TIMEOUT_S if deadline is None else max(0.001, min(OUTCOME_TIMEOUT_S, deadline - time.monotonic()))
        try:
            outcome_id = ask.send("outcome", args)
            header, values = ask._receive(time.monotonic() + limit, limit, want_id=outcome_id,
                                          on_other=keep_original if ask is self else None)  # type: ignore[misc]
        except RequestTimeout:
            return "retry", None
        if late:
            return "done", late[0]
        return outcome_state(header, values)

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, frames: Optional[List[Any]] = None, *,
                timeout: Optional[float] = 30.0, pause_id: Optional[int] = None,
                release: Optional[List[List[int]]] = None,
                still_valid: Optional[Callable[[], bool]] = None) -> Tuple[Any, List[Any]]:
        """Send a request and wait for its reply: (result, value frames).

        ``pause_id`` and ``release`` are the request's transport fields (docs/protocol.md);
        the bulk fields are added here: big reply buffers may come outside the CURVE
        message, and big ``frames`` of this request go outside it.
        """
        peer = self.bulk
        if not frames or peer is None or peer.mode == "curve":  # the common case: nothing to move aside
            since = self.handshakes
            request_id = self.send(op, args, frames, pause_id=pause_id, release=release,
                                   bulk=None if peer is None or peer.mode == "curve" else peer.mode)
            try:
                header, values = self._await(request_id, timeout, still_valid, since)
            except BaseException:
                self.abandoned.add(request_id)
                raise
            if "bulk" in header or not header.get("ok", True):
                header, values = finish_reply(header, values, peer, self.pid, timeout)
            return header.get("result"), values
        out = Outgoing(peer, frames, self.pid, timeout)
        try:
            since = self.handshakes
            request_id = self.send(op, args, out.frames, pause_id=pause_id, release=release, bulk=out.mode,
                                   bulk_in=out.descriptor)
            out.sent()
            try:
                header, values = self._await(request_id, timeout, still_valid, since)
            except BaseException:
                self.abandoned.add(request_id)
                raise
        finally:
            out.close()
        header, values = finish_reply(header, values, peer, self.pid, timeout)
        out.count()
        return header.get("result"), values


def outcome_state(header: Dict[str, Any], values: List[Any]) -> Tuple[str, Optional[Tuple[Dict[str, Any], List[Any]]]]:
    """An ``outcome`` reply read: (state, the original reply when the target kept it)."""
    if not header.get("ok", True):
        error = header.get("error") or {}
        return ("unsupported" if error.get("type") in ("UnknownOp", "ProtocolError") else "retry"), None
    state = str((header.get("result") or {}).get("state", "forgotten"))
    if state == "done" and values:
        try:
            return "done", protocol.split_message(values)
        except protocol.ProtocolError:
            return "forgotten", None
    return state, None


def lost_reply(state: str, request_id: int, pid: int) -> ReplyLost:
    """The ReplyLost for an outcome that delivers nothing."""
    head = f"pid {pid}: the connection dropped while request {request_id} was in flight"
    if state == "ran":
        return ReplyLost(f"{head}; it ran, but its reply was too big to keep: ask for the result again", ran=True)
    if state == "unseen":
        return ReplyLost(f"{head}, and the target never received it: nothing ran; run it again if you "
                         f"still want it", ran=False)
    if state == "unsupported":
        return ReplyLost(f"{head}; this target cannot tell whether it ran (an older framebridge): "
                         f"check the frame's state before running it again")
    return ReplyLost(f"{head}; the target no longer knows whether it ran: check the frame's state "
                     f"before running it again")


def _is_loopback(endpoint: str) -> bool:
    host = protocol.endpoint_host(endpoint)
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def handshake(channel: Channel, timeout: float) -> Dict[str, Any]:
    """Say hello; AuthenticationError within ~ms on a refused key, SessionLost on silence."""
    try:
        result, _ = channel.request("hello", {"client_pid": os.getpid()}, timeout=timeout)
    except RequestTimeout:
        channel.close()
        raise SessionLost(
            f"pid {channel.pid} at {channel.endpoint} did not answer within {timeout:g}s"
        ) from None
    channel.bulk = negotiate_bulk(channel, timeout)
    return result


def negotiate_bulk(channel: Channel, timeout: float) -> Optional[bulk.BulkPeer]:
    """Choose this session's bulk path (``BRIDGE_BULK`` = shm | aes | curve forces one)."""
    if os.environ.get("BRIDGE_BULK") == "curve":
        return None
    try:
        offer, _ = channel.request("bulk_hello", timeout=timeout)
    except RemoteError:  # an older target: everything over CURVE
        return None
    return choose_bulk(offer, channel.endpoint, channel.local)
