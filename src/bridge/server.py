"""The server thread: one CURVE ROUTER socket, authentication, routing, pause events.

The server thread only moves messages. A frame operation is handed to the paused thread
that owns the frame (see pause.py); that thread runs it and sends the reply back through
an inproc PUSH socket of its own, which the server thread forwards to the client. So user
code raised by an ``eval`` is an error reply, never a dead server.

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

from . import bulk, keys, wire
from .ops import FRAME_OPS, NO_VALUE, SERVER_OPS, OpError, Reply, arg, server_op

log = logging.getLogger("bridge")

INTERNAL_ENDPOINT = "inproc://bridge-internal-{}"
#: Heartbeats make ZeroMQ drop a peer that vanished without closing (a killed notebook).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
MAX_SUBSCRIBERS = 64
#: Pause changes closer than this are a burst: the connection file follows them this long
#: after they stop (one rewrite per burst of steps), and at most FILE_REWRITE_MAX_S after
#: the first.
FILE_REWRITE_S = 0.05
FILE_REWRITE_MAX_S = 1.0

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
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        self.handshake_failures = 0
        self.routed_frame_ops = 0
        port = self.bind(self.router, port)
        self.endpoint = f"tcp://{self._bind_host()}:{port}"

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
        self._file_lock = threading.Lock()
        self._file_due: Optional[float] = None  # when the server thread rewrites the file
        self._file_first_change: Optional[float] = None
        self._file_written = float("-inf")  # when a pause change was last written
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
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.LINGER, 0)
        if ":" in self.host and not self.host.startswith("["):
            sock.setsockopt(zmq.IPV6, 1)
        return sock

    def bind(self, sock: zmq.Socket, port: int = 0) -> int:
        """Bind ``sock`` on this server's host, to ``port`` or (0) a random one; return the port."""
        if port:
            sock.bind(f"tcp://{self._bind_host()}:{port}")
            return port
        return sock.bind_to_random_port(f"tcp://{self._bind_host()}")

    def _bind_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host

    # --- called from any thread ------------------------------------------------------

    def post(self, tag: bytes, frames: Sequence[Any]) -> None:
        """Hand frames to the server thread from a thread that has no socket of its own."""
        with self._push_lock:
            self._push.send_multipart([tag, *frames], copy=False)

    def broadcast(self, event: str, body: Dict[str, Any]) -> None:
        """Push an event to every subscribed client."""
        header = dict(body, event=event, time=time.time())
        self.post(TAG_EVENT, wire.make_message(header))

    def register_pause(self, pause: Any) -> None:
        """A thread paused: make it routable, tell clients and the connection file."""
        with self._pauses_lock:
            self.pause_counter += 1
            pause.pause_id = self.pause_counter
            self.pauses[pause.thread_id] = pause
        self._connection_file_changed()  # before the event that wakes the server thread
        self.broadcast("paused", pause.describe())

    def unregister_pause(self, pause: Any, action: str) -> None:
        """A thread resumed."""
        with self._pauses_lock:
            if self.pauses.get(pause.thread_id) is pause:
                del self.pauses[pause.thread_id]
        self._connection_file_changed()
        self.broadcast("resumed", {"thread": pause.thread_id, "pause_id": pause.pause_id, "action": action})

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

    def _connection_file_changed(self) -> None:
        # The pause list changed. The first change after a quiet spell rewrites the file at
        # once (a client that saw the event finds the file up to date); changes in a burst
        # (a client stepping: two per step, ~0.5 ms each on the paused thread, see
        # docs/benchmarks.md) leave it to the server thread, woken by the event broadcast
        # next, once they stop for FILE_REWRITE_S (at most FILE_REWRITE_MAX_S later).
        now = time.monotonic()
        with self._file_lock:
            if self._file_due is None and now - self._file_written >= FILE_REWRITE_S:
                self._file_written = now
                write_now = True
            else:
                write_now = False
                first = self._file_first_change = self._file_first_change or now
                self._file_due = min(now + FILE_REWRITE_S, first + FILE_REWRITE_MAX_S)
        if write_now:
            self._write_connection_file()

    def _rewrite_if_due(self) -> None:
        """On the server thread: the deferred rewrite of the connection file, when due."""
        with self._file_lock:
            due = self._file_due
            if due is None or time.monotonic() < due:
                return
            self._file_due = self._file_first_change = None
            self._file_written = time.monotonic()
        self._write_connection_file()

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
            due = self._file_due
            try:
                ready = dict(poller.poll(None if due is None else max(0, (due - time.monotonic()) * 1000)))
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
            self._rewrite_if_due()
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        for sock in (self.monitor, self.router, self.internal, self._push):
            sock.close(linger=0)

    def _drain_monitor(self) -> None:
        """Count and log (rate-limited) peers whose handshake failed."""
        from zmq.utils.monitor import parse_monitor_message

        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except Exception:  # a malformed monitor frame must not stop the server
                return
            self.handshake_failures += 1
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                continue  # the ZAP handler logged it, with the key's fingerprint
            why = _HANDSHAKE_FAILURE_TEXT.get(
                event["value"],
                f"its handshake failed (a plaintext or non-ZeroMQ peer, or one that hung up; code {event['value']:#x})",
            )
            refusal_log.warning("bridge: refused a connection to %s: %s", self.endpoint, why)

    def _drain_internal(self) -> bool:
        # Hot path (issue 6): ask ZMQ_EVENTS whether more is queued instead of paying for a
        # zmq.Again exception after every message.
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
            if not router.get(zmq.EVENTS) & zmq.POLLIN:  # cheaper than zmq.Again (issue 6)
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

    def reply(self, identity: bytes, request_id: Any, reply: Reply) -> None:
        """Send a successful reply (server thread only)."""
        self._send(identity, encode_reply(request_id, reply))

    def reply_error(self, identity: bytes, request_id: Any, kind: str, message: str, tb: str = "") -> None:
        """Send an error reply (server thread only)."""
        self._send(identity, encode_error(request_id, kind, message, tb))

    def _handle(self, identity: bytes, frames: List[Any]) -> None:
        try:
            request_id, op, args, values = parse_request(frames)
        except BadRequest as exc:
            self.reply_error(identity, exc.request_id, "ProtocolError", str(exc))
            return
        try:
            if op in SERVER_OPS:
                result = SERVER_OPS[op](self, args, values, identity)
                if result is not _DEFERRED:
                    self.reply(identity, request_id, _as_reply(result))
            elif op in FRAME_OPS:
                self._route_to_pause(identity, request_id, op, args, values)
            else:
                raise OpError("UnknownOp", f"unknown op {op!r}")
        except OpError as exc:
            self.reply_error(identity, request_id, exc.kind, str(exc))
        except Exception as exc:  # a bug in a handler must not kill the server thread
            self.reply_error(identity, request_id, type(exc).__name__, str(exc), traceback.format_exc())

    def _route_to_pause(self, identity: bytes, request_id: Any, op: str, args: Dict[str, Any], values: List[Any]) -> None:
        thread_id = arg(args, "thread", int, None)
        if thread_id is None:
            pauses = self.paused_threads()
            if not pauses:
                raise OpError("NotPaused", "no thread of this process is paused")
            pause = pauses[0]
        else:
            pause = self.pauses.get(thread_id)  # one dict read: atomic, no lock needed
            if pause is None:
                raise OpError("NotPaused", f"thread {thread_id} is not paused")
        expected = arg(args, "pause_id", int, None)
        if expected is not None and expected != pause.pause_id:
            raise OpError(
                "NotPaused",
                f"thread {pause.thread_id} resumed since pause {expected} (now at pause {pause.pause_id})",
            )
        self.routed_frame_ops += 1  # how many took this path rather than a lane (tests, diagnostics)
        if not pause.submit(identity, request_id, op, args, values):
            raise OpError("NotPaused", f"thread {pause.thread_id} resumed since pause {pause.pause_id}")


class BadRequest(Exception):
    """A request that does not follow the spec; ``request_id`` is what could be salvaged."""

    def __init__(self, request_id: Any, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def parse_request(frames: List[Any]) -> "tuple[Any, str, Dict[str, Any], List[Any]]":
    """(id, op, args, value frames) of a request message; BadRequest says what is wrong."""
    try:
        header, values = wire.split_message(frames)
    except wire.ProtocolError as exc:
        raise BadRequest(_salvage_id(frames), str(exc)) from None
    request_id = header.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        raise BadRequest(None, "header needs an integer or string 'id'")
    op = header.get("op")
    if not isinstance(op, str):
        raise BadRequest(request_id, "header needs a string 'op'")
    return request_id, op, header.get("args", {}), values


def recv_parts(sock: zmq.Socket, flags: int, small: int) -> List[Any]:
    """One multipart message: its first ``small`` parts as bytes (tag, identity, header:
    small, and a copy is cheaper than a zmq.Frame), the rest as zmq.Frames (values, not
    copied)."""
    parts = [sock.recv(flags)]
    while sock.get(zmq.RCVMORE):
        parts.append(sock.recv(flags) if len(parts) < small else sock.recv(flags, copy=False))
    return parts


_DEFERRED = object()  # a server op that replies later, by itself


def _salvage_id(frames: List[Any]) -> Any:
    """Best effort: the request id of a message whose header failed validation."""
    try:
        import json

        data = json.loads(bytes(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0]))
        rid = data.get("id") if isinstance(data, dict) else None
        return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None
    except Exception:
        return None


def _as_reply(result: Any) -> Reply:
    return result if isinstance(result, Reply) else Reply(result=result)


def encode_reply(request_id: Any, reply: Reply, bulk_mode: Any = None) -> List[Any]:
    """Frames of a successful reply. Pickling errors propagate to the caller.

    ``bulk_mode`` (the request's ``_bulk`` arg: "shm" or "aes") moves big buffers out of
    the CURVE message (bulk.py); the header's ``bulk`` descriptor says where they went.
    """
    frames = reply.frames
    if frames is None and reply.value is not NO_VALUE:
        frames = wire.dump_value(reply.value)
    header = {"id": request_id, "ok": True, "result": reply.result}
    if bulk_mode and frames and any(memoryview(f).nbytes >= bulk.THRESHOLD for f in frames):  # [bulk path] issue 6
        exported, descriptor = bulk.export_reply([b""] + list(frames), bulk_mode)
        if descriptor is not None:
            frames, header["bulk"] = exported[1:], descriptor
    return wire.make_message(header, frames)


def encode_error(request_id: Any, kind: str, message: str, tb: str = "",
                 data: Optional[Dict[str, Any]] = None) -> List[Any]:
    """Frames of an error reply; ``data`` adds JSON fields to the error object (e.g. ``names``)."""
    error = dict(data or {})
    error.update(type=kind, message=message, traceback=tb)
    return wire.make_message({"id": request_id, "ok": False, "error": error})


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
            from .ops import load_all

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


# --- server ops ----------------------------------------------------------------------------


@server_op("hello")
def _op_hello(server: Server, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    server.clients_seen += 1
    info = server.connection_info()
    info["protocol"] = wire.PROTOCOL_VERSION
    info["host"] = bulk.host_identity()  # the client tells a tunnel from a direct connection (lanes)
    return info


@server_op("subscribe")
def _op_subscribe(server: Server, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    server.clients_seen += 1
    if identity not in server.subscribers and len(server.subscribers) >= MAX_SUBSCRIBERS:
        oldest = min(server.subscribers, key=server.subscribers.__getitem__)
        del server.subscribers[oldest]
    server.subscribers[identity] = time.monotonic()
    return {"paused": [p.describe() for p in server.paused_threads()]}


@server_op("unsubscribe")
def _op_unsubscribe(server: Server, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> None:
    server.subscribers.pop(identity, None)
    return None


@server_op("status")
def _op_status(server: Server, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    return {"pid": server.pid, "paused": [p.describe() for p in server.paused_threads()]}


@server_op("threads")
def _op_threads(server: Server, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[Dict[str, Any]]:
    from .pause import describe_threads

    return describe_threads(server)
