"""The server thread: one CURVE ROUTER socket, authentication, routing, pause events.

The server thread only moves messages. A frame operation is handed to the paused thread
that owns the frame (pause.py); that thread runs it and sends the reply back through its
:class:`PushSink`, an inproc PUSH socket of its own, which the server thread forwards to
the client. So user code raised by an ``eval`` is an error reply, never a dead server.
Server operations (server_ops.py, debug_ops.py) run here, on the server thread.

Clients connect a DEALER socket. Two kinds of client identity exist: request sockets
(any op) and event sockets (which send ``subscribe`` and then only receive events).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

import zmq
from zmq.auth.thread import ThreadAuthenticator

from . import dispatch, keys
from .ops import FRAME_OPS, SERVER_OPS, OpError, arg, load_all
from .protocol import (
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    MAX_MESSAGE_BYTES,
    ZERO_COPY_THRESHOLD,
    BadRequest,
    Frames,
    Request,
    encode_error,
    event_message,
    recv_parts,
    tcp_endpoint,
)

log = logging.getLogger("bridge")

INTERNAL_ENDPOINT = "inproc://bridge-internal-{}"

# Tags of internal messages from paused threads to the server thread: the first byte of
# the first frame (a reply's first frame is the tag followed by the client's identity).
TAG_REPLY = b"R"
TAG_EVENT = b"E"
TAG_STOP = b"S"


class _RateLimitedLog:
    """Log refusals, at most ``burst`` lines per ``window`` seconds (a flood of bad peers
    must not fill the job's log); the next line that gets through says how many were hidden."""

    def __init__(self, burst: int = 10, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start > self.window:
                self._window_start, self._count = now, 0
            self._count += 1
            if self._count > self.burst:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += f" ({suppressed} similar refusals not logged)"
        log.warning(message, *args)


#: Every refused peer (unauthorized key, failed handshake) is logged through this.
refusal_log = _RateLimitedLog()

# Server-side handshake failures, as the ROUTER's monitor reports them. An unauthorized
# client key is logged by the ZAP handler (with its fingerprint), so it is only counted.
_HANDSHAKE_FAILURE_TEXT = {
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "its CURVE handshake did not decrypt: the client used a wrong "
    "server key (a stale or tampered connection file?)",
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "it does not speak CURVE (a plaintext ZeroMQ client, or "
    "not ZeroMQ at all)",
}


class _KeyPolicy:
    """ZAP credentials provider: admit only authorized client keys, log every refusal."""

    def __init__(self) -> None:
        self._keys = keys.authorized_keys()
        self._loaded = time.monotonic()

    def callback(self, domain: str, client_key: bytes) -> bool:
        # Re-read at most once a second so `framebridge keys --authorize` applies to
        # running targets without letting a flood of handshakes hammer the disk.
        now = time.monotonic()
        if now - self._loaded > 1.0:
            try:
                self._keys = keys.authorized_keys()
            except Exception as exc:  # a broken file must not open the door
                log.warning("bridge: cannot read authorized keys (%s); keeping the previous set", exc)
            self._loaded = now
        key = client_key.decode("ascii", "replace")
        if key in self._keys:
            return True
        refusal_log.warning("bridge: refused a client with an unauthorized key %s", keys.fingerprint(key))
        return False


class Server:
    """Owns the ROUTER socket and the thread that serves it. One per process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pid = os.getpid()
        self.context = zmq.Context()  # our own: never share the user's zmq context
        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger("bridge.zap"))
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_KeyPolicy())
        public, secret = zmq.curve_keypair()
        self.public_key = public.decode("ascii")
        self.host = host

        # The secret key lives only inside the socket from here on (no attribute holds it).
        self.router = self.curve_router(public, secret)
        del secret
        # Handshake failures (wrong server key, plaintext or garbage peers) never reach the
        # ZAP handler; the socket's monitor is the only place they show, so they are logged from there.
        self.monitor = self.router.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
        )
        self.handshake_failures = 0
        self._connections: set = set()  # fds of the connections open now (the monitor's accepted - disconnected)
        self.routed_frame_ops = 0
        port = self.bind(self.router, port)
        self.endpoint = tcp_endpoint(host, port)

        self.internal_endpoint = INTERNAL_ENDPOINT.format(id(self))
        self.internal = self.context.socket(zmq.PULL)
        self.internal.bind(self.internal_endpoint)
        self._push_lock = threading.Lock()
        self._push = self.context.socket(zmq.PUSH)  # for threads that are not paused
        self._push.connect(self.internal_endpoint)

        self.subscribers: Dict[bytes, float] = {}
        self.clients_seen = 0
        self.pauses: Dict[int, Any] = {}  # thread id -> pause.Pause
        self._pauses_lock = threading.Lock()
        self.pause_counter = 0
        self.started = time.time()
        self.thread = threading.Thread(target=self._run, name="bridge-server", daemon=True)
        self._stopped = threading.Event()
        self.connection_file = None
        self._write_connection_file()
        self.thread.start()

    def curve_router(self, public_key: bytes, secret_key: bytes) -> zmq.Socket:
        """A CURVE server ROUTER socket with these keys and the server's limits (the ZAP
        handler of :attr:`context` admits only authorized clients on every such socket)."""
        sock = self.context.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_publickey = public_key
        sock.curve_secretkey = secret_key
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.LINGER, 0)
        if ":" in self.host and not self.host.startswith("["):
            sock.setsockopt(zmq.IPV6, 1)
        return sock

    def bind(self, sock: zmq.Socket, port: int = 0) -> int:
        """Bind ``sock`` on this server's host, to ``port`` or (0) a random one; return the port."""
        if port:
            sock.bind(tcp_endpoint(self.host, port))
            return port
        return sock.bind_to_random_port(tcp_endpoint(self.host))

    def reply_sink(self) -> "PushSink":
        """A reply sink for the calling thread (a paused thread's way back to its clients)."""
        return PushSink(self)

    # --- called from any thread ------------------------------------------------------

    def post(self, tag: bytes, frames: Sequence[Any]) -> None:
        """Hand frames to the server thread from a thread that has no socket of its own."""
        with self._push_lock:
            self._push.send_multipart([tag, *frames], copy=False)

    def broadcast(self, event: str, body: Dict[str, Any]) -> None:
        """Push an event to every subscribed client."""
        self.post(TAG_EVENT, event_message(event, body))

    def register_pause(self, pause: Any) -> None:
        """A thread paused: make it routable, tell clients and the connection file."""
        with self._pauses_lock:
            self.pause_counter += 1
            pause.pause_id = self.pause_counter
            self.pauses[pause.thread_id] = pause
        self.broadcast("paused", pause.describe())
        self._write_connection_file()

    def unregister_pause(self, pause: Any, action: str) -> None:
        """A thread resumed."""
        with self._pauses_lock:
            if self.pauses.get(pause.thread_id) is pause:
                del self.pauses[pause.thread_id]
        self.broadcast("resumed", {"thread": pause.thread_id, "pause_id": pause.pause_id, "action": action})
        self._write_connection_file()

    def clients_attached(self) -> bool:
        """Whether a client is attached: a connection is open and some client subscribed.

        A Session subscribes when it attaches and holds its connections until it closes;
        a killed one's connections close at once, a vanished one's when the heartbeat gives
        up (protocol.HEARTBEAT_TIMEOUT_MS). An unauthorized peer can open a connection but
        never subscribe. (docs/security.md: a wait timeout counts time with no client attached.)
        """
        return bool(self._connections) and bool(self.subscribers)

    def paused_threads(self) -> List[Any]:
        """Snapshot of the current pauses."""
        with self._pauses_lock:
            return list(self.pauses.values())

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, remove the connection file. Safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            try:
                self.post(TAG_STOP, [b""])
            except zmq.ZMQError:
                pass
            self.thread.join(timeout)
        self._remove_connection_file()
        try:
            self.auth.stop()
        except Exception:
            pass

    # --- connection file ---------------------------------------------------------------

    def connection_info(self) -> Dict[str, Any]:
        """What clients need to find and trust this process."""
        return {
            "endpoint": self.endpoint,
            "server_key": self.public_key,
            "pid": self.pid,
            "argv": list(sys.argv),
            "python": keys.python_description(),
            "executable": sys.executable,
            "cwd": os.getcwd(),
            "started": self.started,
            "paused": [p.describe() for p in self.paused_threads()],
        }

    def _write_connection_file(self) -> None:
        if self._stopped.is_set() or os.getpid() != self.pid:
            return
        try:
            self.connection_file = keys.write_connection_file(self.connection_info())
        except OSError as exc:  # a full disk must not break the job
            log.warning("bridge: cannot write connection file: %s", exc)

    def _remove_connection_file(self) -> None:
        if self.connection_file is not None and os.getpid() == self.pid:
            try:
                self.connection_file.unlink()
            except FileNotFoundError:
                pass

    # --- the server thread -----------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.internal, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while True:
            try:
                ready = dict(poller.poll())
            except zmq.ZMQError as exc:
                if exc.errno == zmq.ETERM:
                    break
                raise
            if self.internal in ready:
                if not self._drain_internal():
                    break
            if self.router in ready:
                self._drain_router()
            if self.monitor in ready:
                self._drain_monitor()
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        for sock in (self.monitor, self.router, self.internal, self._push):
            sock.close(linger=0)

    def _drain_monitor(self) -> None:
        """Track open connections; count and log (rate-limited) peers whose handshake failed."""
        from zmq.utils.monitor import parse_monitor_message

        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except Exception:  # a malformed monitor frame must not stop the server
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._connections.add(event["value"])
                continue
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._connections.discard(event["value"])
                continue
            self.handshake_failures += 1
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                continue  # the ZAP handler logged it, with the key's fingerprint
            why = _HANDSHAKE_FAILURE_TEXT.get(
                event["value"],
                f"its handshake failed (a plaintext or non-ZeroMQ peer, or one that hung up; code {event['value']:#x})",
            )
            refusal_log.warning("bridge: refused a connection to %s: %s", self.endpoint, why)

    def _drain_internal(self) -> bool:
        # Hot path: ask ZMQ_EVENTS whether more is queued instead of paying for a
        # zmq.Again exception after every message (docs/benchmarks.md).
        internal = self.internal
        while internal.get(zmq.EVENTS) & zmq.POLLIN:
            first, *frames = recv_parts(internal, zmq.NOBLOCK, 2)
            tag = first[:1]
            if tag == TAG_REPLY:  # the reply's first part is the tag and the client identity in one
                self._send(first[1:], frames)
            elif tag == TAG_EVENT:
                for identity in list(self.subscribers):
                    self._send(identity, frames)
            elif tag == TAG_STOP:
                return False
        return True

    def _drain_router(self) -> None:
        router = self.router
        for _ in range(1000):  # bounded: let internal traffic (replies) through too
            if not router.get(zmq.EVENTS) & zmq.POLLIN:  # cheaper than zmq.Again
                return
            identity, *frames = recv_parts(router, zmq.NOBLOCK, 2)
            self._handle(identity, frames)

    def _send(self, identity: bytes, frames: Sequence[Any]) -> None:
        try:
            # copy=True copies only the small bytes parts; zmq.Frame parts (big values,
            # received without copying) are passed on as they are.
            self.router.send_multipart([identity, *frames])
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client went away
                self.subscribers.pop(identity, None)
            else:
                log.warning("bridge: send failed: %s", exc)

    def _handle(self, identity: bytes, frames: List[Any]) -> None:
        try:
            request = dispatch.accept(frames, identity)
        except BadRequest as exc:
            self._send(identity, encode_error(exc.request_id, "ProtocolError", str(exc)))
            return
        op = request.op
        if op in SERVER_OPS:
            self._send(identity, dispatch.run_server_op(self, request))
        elif op in FRAME_OPS:
            try:
                self._route_to_pause(request)
            except OpError as exc:
                self._send(identity, encode_error(request.id, exc.kind, str(exc)))
            except Exception as exc:  # a bug in routing must not kill the server thread
                self._send(identity, encode_error(request.id, type(exc).__name__, str(exc), traceback.format_exc()))
        else:
            self._send(identity, encode_error(request.id, "UnknownOp", f"unknown op {op!r}"))

    def _route_to_pause(self, request: Request) -> None:
        thread_id = arg(request.args, "thread", int, None)
        if thread_id is None:
            pauses = self.paused_threads()
            if not pauses:
                raise OpError("NotPaused", "no thread of this process is paused")
            pause = pauses[0]
        else:
            pause = self.pauses.get(thread_id)  # one dict read: atomic, no lock needed
            if pause is None:
                raise OpError("NotPaused", f"thread {thread_id} is not paused")
        expected = request.pause_id
        if expected is not None and expected != pause.pause_id:
            raise OpError(
                "NotPaused",
                f"thread {pause.thread_id} resumed since pause {expected} (now at pause {pause.pause_id})",
            )
        self.routed_frame_ops += 1  # how many took this path rather than a lane (tests, diagnostics)
        if not pause.submit(request, self):
            raise OpError("NotPaused", f"thread {pause.thread_id} resumed since pause {pause.pause_id}")


class PushSink:
    """The server path's reply sink: a paused thread's inproc PUSH socket to the server
    thread, which forwards each reply to its client on the ROUTER socket. One per paused
    thread, used only by the thread that made it (ZeroMQ sockets are not shared)."""

    def __init__(self, server: Server) -> None:
        self.socket = server.context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(server.internal_endpoint)

    def send(self, identity: bytes, frames: Frames) -> None:
        """Hand a reply to the server thread (the tag and identity travel in the first part)."""
        # Zero-copy only pays for big frames: it costs a zmq.Frame object per part.
        small = len(frames) <= 3 and all(len(f) < ZERO_COPY_THRESHOLD for f in frames)
        self.socket.send_multipart([TAG_REPLY + identity, *frames], copy=small)

    def close(self) -> None:
        """Close the socket, letting queued replies out (bounded by its linger)."""
        self.socket.close()


# --- the process-wide server -------------------------------------------------------------

_server: Optional[Server] = None
_server_lock = threading.Lock()


def get_server(host: Optional[str] = None, port: Optional[int] = None) -> Server:
    """The process's server, started on first use (BRIDGE_HOST / BRIDGE_PORT apply)."""
    global _server
    with _server_lock:
        if _server is None or _server.pid != os.getpid():
            host = host or os.environ.get("BRIDGE_HOST") or "127.0.0.1"
            if port is None:
                port = int(os.environ.get("BRIDGE_PORT") or 0)
            load_all()
            _server = Server(host, port)
            atexit.register(_server.stop)
        return _server


def current_server() -> Optional[Server]:
    """The running server of this process, if any (no start)."""
    return _server if _server is not None and _server.pid == os.getpid() else None


def _forget_server_in_child() -> None:
    # A forked child has the parent's objects but none of its threads: start afresh.
    global _server, _server_lock
    _server = None
    _server_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_server_in_child)
