"""One authenticated CURVE connection to a target, with honest failure reporting.

ZeroMQ hides connection trouble: a DEALER with the wrong server key reconnects every
100 ms forever, and a request to a dead peer simply waits. A :class:`Channel` watches
its socket's monitor events so that a refused key becomes :class:`AuthenticationError`
at once (and the socket is closed: no retry storm), and a dead target becomes
:class:`SessionLost` within seconds.

This is also the client's one place for the bulk path (bridge/bulk/): a request says
which bulk mode it takes big reply buffers in and sends its own big buffers outside the
message; a reply's buffers that came outside it are put back here (docs/protocol.md).
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

from .errors import AuthenticationError, NotPaused, RemoteError, RequestTimeout, SessionLost, error_from_reply

#: Slice of every blocking receive, so Ctrl-C and liveness checks get a turn.
POLL_SLICE_MS = 100
#: The slice before the first handshake succeeded: a refused key shows within milliseconds.
FIRST_HANDSHAKE_SLICE_MS = 5

_AUTH_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the target refused our client key {key}: it is not in the "
    "target's authorized keys (run `framebridge keys` on both sides)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the target did not prove it holds the server key from its "
    "connection file (a tampered or stale connection file, or another process on that port)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (protocol error: not a framebridge "
    "target, or a plaintext peer)",
}

_request_ids = itertools.count(1)


class Channel:
    """A CURVE DEALER socket to one target, plus its monitor. Not thread-safe by itself."""

    def __init__(self, context: zmq.Context, info: Dict[str, Any], keypair: keys.KeyPair) -> None:
        self.info = info
        self.pid = int(info["pid"])
        self.endpoint = info["endpoint"]
        self.local = _is_loopback(self.endpoint)
        self.keypair = keypair
        self.socket = context.socket(zmq.DEALER)
        self.socket.curve_serverkey = info["server_key"].encode("ascii")
        self.socket.curve_publickey = keypair.public.encode("ascii")
        self.socket.curve_secretkey = keypair.secret.encode("ascii")
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if self.endpoint.startswith("tcp://["):
            self.socket.setsockopt(zmq.IPV6, 1)
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_DISCONNECTED
        )
        self.socket.connect(self.endpoint)
        self.connected = False
        self.closed = False
        self.failure: Optional[Exception] = None
        self.handshakes = 0
        self.abandoned: set = set()
        self._last_alive_check = 0.0
        #: The session's bulk path (bridge.bulk), chosen in :func:`handshake`; None = CURVE only.
        self.bulk: Optional[bulk.BulkPeer] = None
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
                text = _AUTH_FAILURES[event].format(key=keys.fingerprint(self.keypair.public))
                self.fail(AuthenticationError(f"pid {self.pid} at {self.endpoint}: {text}"))
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
        try:
            self.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.socket.close(linger=0)

    # --- request / reply -----------------------------------------------------------------

    def send(self, op: str, args: Optional[Dict[str, Any]] = None, frames: Optional[List[Any]] = None, *,
             pause_id: Optional[int] = None, release: Optional[List[List[int]]] = None,
             bulk: Optional[str] = None, bulk_in: Optional[Dict[str, Any]] = None) -> int:
        """Send a request (``protocol.request_message``); return its id."""
        if self.failure is not None:
            raise self.failure
        if self.closed:
            raise SessionLost("the session is closed")
        request_id = next(_request_ids)
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
        sock = self.socket
        waited = False
        while True:
            # Monitor events matter only to a wait that is not answered at once (a refused
            # key, a dead peer): a reply that is already there needs no check.
            if waited or not self.connected:
                self.check_events()
            elif self.failure is not None:
                raise self.failure
            waited = True
            # Slices, so that Ctrl-C, monitor events and liveness checks get a turn. Until the
            # first handshake they are short: a refused key must fail within milliseconds.
            slice_ms = POLL_SLICE_MS if self.connected else FIRST_HANDSHAKE_SLICE_MS
            if deadline is not None:
                left = deadline - time.monotonic()
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
                if rid in self.abandoned:
                    self.abandoned.discard(rid)
                    _drop_bulk(header)
                elif on_other is not None:
                    on_other(header, values)
                continue
            if not header.get("ok", True) and "error" in header:
                raise error_from_reply(header["error"])
            if "bulk" in header:  # big buffers came outside the CURVE message
                values = self._import_bulk(header["bulk"], values, timeout)
            return header, values

    def _import_bulk(self, descriptor: Dict[str, Any], values: List[Any], timeout: Optional[float]) -> List[Any]:
        """Map / receive the buffers a reply's bulk descriptor names (progress bar if slow);
        every wait on the data port is bounded by the request's ``timeout``."""
        from .progress import transfer_progress

        peer = self.bulk or bulk.BulkPeer()
        total = bulk.total_bytes(descriptor)
        wait = timeout or bulk.TIMEOUT_S
        with transfer_progress(total, f"pid {self.pid}: receiving") as report:
            frames = bulk.import_frames(descriptor, [b""] + list(values), connect=lambda token: peer.connect(token, wait),
                                        progress=report)
        peer.count(descriptor)
        return frames[1:]

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
        mode = peer.mode if peer is not None and peer.mode != "curve" else None
        descriptor = upload = None
        try:
            if mode is not None and frames:
                exported, descriptor, transfer = peer.export_request([b""] + list(frames))  # type: ignore[union-attr]
                if descriptor is not None:
                    frames = exported[1:]
                if transfer is not None:
                    try:
                        upload = _Upload(peer, transfer, self.pid, timeout)  # type: ignore[arg-type]
                    except BaseException:  # no data port, refused: nothing was sent
                        transfer.close()
                        raise
            request_id = self.send(op, args, frames, pause_id=pause_id, release=release, bulk=mode,
                                   bulk_in=descriptor)
            if upload is not None:
                upload.start()
            try:
                header, values = self.receive(timeout, want_id=request_id, still_valid=still_valid)
            except BaseException:
                self.abandoned.add(request_id)
                raise
        finally:
            if upload is not None:
                upload.finish()
            if descriptor is not None:
                bulk.release(descriptor)  # segments the target did not map are gone now
        if descriptor is not None:
            peer.stats["uploads"] += 1  # type: ignore[union-attr]
            peer.count(descriptor)  # type: ignore[union-attr]
        return header.get("result"), values


class _Upload:
    """Sends one upload through the target's data port beside the request's reply wait."""

    def __init__(self, peer: bulk.BulkPeer, transfer: bulk.Transfer, pid: int, timeout: Optional[float]) -> None:
        import threading

        from .progress import Progress

        if peer.data_address is None:
            raise bulk.BulkError("the target offered no data port")
        self.sock = bulk.open_upload(peer.data_address, transfer.token, timeout or bulk.TIMEOUT_S)
        self.transfer = transfer
        self.error: Optional[BaseException] = None
        self.progress = Progress(sum(b.nbytes for b in transfer.buffers), f"pid {pid}: sending")
        self.thread = threading.Thread(target=self._run, name="framebridge-upload", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            bulk.send_transfer(self.sock, self.transfer, self.progress)
        except BaseException as exc:  # the target refused or went away: the reply says why
            self.error = exc

    def finish(self) -> None:
        """After the reply (or an interruption): stop streaming if it still is, close."""
        import socket as _socket

        if self.thread.is_alive():
            try:
                self.sock.shutdown(_socket.SHUT_RDWR)  # unblocks a sendall the target never read
            except OSError:
                pass
            self.thread.join(5.0)
        self.progress.close(self.error is None)
        self.sock.close()
        self.transfer.close()


def _drop_bulk(header: Dict[str, Any]) -> None:
    """An abandoned reply's shared-memory ring is unlinked at once (same user)."""
    descriptor = header.get("bulk")
    if isinstance(descriptor, dict) and descriptor.get("mode") == "shm":
        bulk.unlink_own_segment(descriptor.get("ring"))


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
    forced = os.environ.get("BRIDGE_BULK") or None
    if forced == "curve":
        return None
    try:
        offer, _ = channel.request("bulk_hello", timeout=timeout)
    except RemoteError:  # an older target: everything over CURVE
        return None
    peer = bulk.BulkPeer.negotiate(offer, protocol.endpoint_host(channel.endpoint), loopback=channel.local,
                                   forced=forced)
    return None if peer.mode == "curve" else peer

