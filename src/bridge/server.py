"""The server thread: one CURVE ROUTER socket, authentication, routing, pause events.

The server thread only moves messages. A frame operation is handed to the paused thread
that owns the frame (pause.py); that thread runs it and sends the reply back through its
:class:`~push_sink.PushSink`, an inproc PUSH socket of its own, which the server thread forwards to
the client. So user code raised by an ``eval`` is an error reply, never a dead server.
Server operations (server_ops.py, debug_ops.py) run here, on the server thread.

Clients connect a DEALER socket. Two kinds of client identity exist: request sockets
(any op) and event sockets (which send ``subscribe`` and then only receive events).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

import zmq
from zmq.auth.thread import ThreadAuthenticator

from . import dispatch, hub_dial, keys, startup
from . import identity as process_identity
from .descriptors import open_fds
from .event_queue import EventQueue
from .push_sink import TAG_REPLY, TAG_STOP, TAG_WAKE, PushSink
from .key_policy import KeyPolicy, recv_from_peer, refusal_log
from .ops import FRAME_OPS, SERVER_OPS, OpError, arg, load_all
from .protocol import (
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    MAX_MESSAGE_BYTES,
    BadRequest,
    Frames,
    Request,
    encode_error,
    event_header,
    event_message_of,
    recv_parts,
    tcp_endpoint,
)

log = logging.getLogger("bridge")

INTERNAL_ENDPOINT = "inproc://bridge-internal-{}"
#: Pause changes closer than this are a burst: the connection file follows them this long
#: after they stop (one rewrite per burst of steps), and at most FILE_REWRITE_MAX_S after
#: the first.
FILE_REWRITE_S = 0.05
FILE_REWRITE_MAX_S = 1.0



# Server-side handshake failures, as the ROUTER's monitor reports them. An unauthorized
# client key is logged by the ZAP handler (with its fingerprint), so it is only counted.
_HANDSHAKE_FAILURE_TEXT = {
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "its CURVE handshake did not decrypt: the client used a wrong "
    "server key (a stale or tampered connection file?)",
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "it does not speak CURVE (a plaintext ZeroMQ client, or "
    "not ZeroMQ at all)",
}


class Server:
    """Owns the ROUTER socket and the thread that serves it. One per process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pid = os.getpid()
        self.host = host
        # Read first: a key file that cannot be used stops the start before anything is opened.
        self.policy = KeyPolicy()
        self.context = zmq.Context()  # our own: never share the user's zmq context
        self.auth: Optional[ThreadAuthenticator] = None
        self.connection_file: Optional[Any] = None
        before = open_fds()
        try:
            self._open(port)
            #: The descriptors the start opened (ZeroMQ's threads, the sockets): the
            #: debugger's, not the job's (a checkpoint does not list them as the job's).
            self.own_fds = open_fds() - before
        except BaseException:
            # A failed start leaves nothing behind: no ZAP thread, no socket, no fd.
            self._discard()
            raise

    def _open(self, port: int) -> None:
        self.auth = ThreadAuthenticator(self.context, log=logging.getLogger("bridge.zap"))
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=self.policy)
        public, secret = zmq.curve_keypair()
        self.public_key = public.decode("ascii")

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
        self.endpoint = tcp_endpoint(self.host, port)

        self.internal_endpoint = INTERNAL_ENDPOINT.format(id(self))
        self.internal = self.context.socket(zmq.PULL)
        self.internal.bind(self.internal_endpoint)
        self._push_lock = threading.Lock()
        self._push = self.context.socket(zmq.PUSH)  # for threads that are not paused
        self._push.connect(self.internal_endpoint)

        self.subscribers: Dict[bytes, float] = {}
        #: The client key of each subscriber: events go only to those still authorized.
        self.subscriber_keys: Dict[bytes, Optional[str]] = {}
        self.clients_seen = 0
        self.pauses: Dict[int, Any] = {}  # thread id -> pause.Pause
        self._pauses_lock = threading.Lock()
        self.pause_counter = 0
        self.started = time.time()
        #: The connection out to a notebook's hub, when BRIDGE_HUB names one (hub_dial.py).
        self.hub = hub_dial.HubSlot()
        self.thread = threading.Thread(target=self._run, name="bridge-server", daemon=True)
        self._stopped = threading.Event()
        self._router_linger_ms = 0
        self.connection_file = None
        self._file_lock = threading.Lock()
        self._file_due: Optional[float] = None  # when the server thread rewrites the file
        self._file_first_change: Optional[float] = None
        self._file_written = float("-inf")  # when a pause change was last written
        self._events = EventQueue()  # what the server thread publishes, in order
        try:
            # Written before the thread starts: without it nobody could ever attach, so a
            # target that cannot write it does not pause (startup.py says why).
            self.connection_file = keys.write_connection_file(self.connection_info())
        except OSError as exc:
            raise startup.StartError(f"cannot write connection file: {exc}") from None
        self.dial_hub()
        self.thread.start()

    def _discard(self) -> None:
        """Undo a start that failed half-way (nothing else has seen this server yet)."""
        self._remove_connection_file()
        if self.auth is not None:
            try:
                self.auth.stop()  # joins the ZAP thread, closes its sockets
            except Exception:
                pass
        self.context.destroy(linger=0)  # closes every socket opened so far, then terminates

    def curve_router(self, public_key: bytes, secret_key: bytes) -> zmq.Socket:
        """A CURVE server ROUTER socket with these keys and the server's limits (the ZAP
        handler of :attr:`context` admits only authorized clients on every such socket)."""
        sock = self.context.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_publickey = public_key
        sock.curve_secretkey = secret_key
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Clients keep their routing id across reconnects (docs/protocol.md, "Lost replies"):
        # the new connection takes the id over. Without this, libzmq keeps the old one and
        # reads the new connection's first message as its id, losing that request.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
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
        return PushSink(self.context, self.internal_endpoint)

    # --- called from any thread ------------------------------------------------------

    def post(self, tag: bytes, frames: Sequence[Any]) -> None:
        """Hand frames to the server thread from a thread that has no socket of its own."""
        with self._push_lock:
            self._push.send_multipart([tag, *frames], copy=False)

    def broadcast(self, event: str, body: Dict[str, Any], *, defer: bool = False) -> None:
        """Send an event to every subscribed client, after the events queued before it.

        ``defer``: within event_queue.STEP_EVENT_DELAY_S rather than at once (a stepping
        thread's events, which its stepping client has already had on the lane)."""
        self.queue_event(event_header(event, body), defer=defer)

    def queue_event(self, header: Dict[str, Any], frames: Optional[Frames] = None, *, defer: bool = False) -> None:
        """Queue an event (its header, and its frames if it was encoded already) for the
        subscribers (see :meth:`broadcast`)."""
        if self._events.put(header, frames, defer=defer):
            self.post(TAG_WAKE, [b""])

    def register_pause(self, pause: Any, *, announce: Optional[Callable[[Frames], bool]] = None) -> None:
        """A thread paused: make it routable, tell clients and the connection file.

        ``announce(event)``: deliver the ``paused`` event to one client first (a stepping
        thread's, on its lane, pause.py); when it did, the subscribers hear it deferred
        (:meth:`broadcast`)."""
        pause.info.update(process_identity.task_labels())  # read here, on the paused thread (its task)
        with self._pauses_lock:
            self.pause_counter += 1
            pause.pause_id = self.pause_counter
            self.pauses[pause.thread_id] = pause
        self._connection_file_changed()  # before the event that wakes the server thread
        header = event_header("paused", pause.describe())
        frames = None
        if announce is not None:
            frames = event_message_of(header)
            if not announce(frames):
                announce = None
        self.queue_event(header, frames, defer=announce is not None)

    def unregister_pause(self, pause: Any, action: str, *, defer: bool = False) -> None:
        """A thread resumed (``defer``: see :meth:`broadcast`)."""
        with self._pauses_lock:
            if self.pauses.get(pause.thread_id) is pause:
                del self.pauses[pause.thread_id]
        self._connection_file_changed()
        self.broadcast("resumed", {"thread": pause.thread_id, "pause_id": pause.pause_id, "action": action},
                       defer=defer)

    def dial_hub(self) -> None:
        """Dial the hub that the environment names (``BRIDGE_HUB``...), unless this server
        dialed that one already (any thread; at start, at each pause and at ``listen()``:
        a Dask worker plugin sets the variables in a process whose server runs already,
        and a new hub replaces an old one). A hub that cannot be used is said in one line,
        once (hub_dial.py)."""
        if self.hub.dial(self.context, self._announcement) and self.thread.is_alive():
            self.post(TAG_WAKE, [b""])  # the server thread polls the new socket from its next turn

    def clients_attached(self) -> bool:
        """Whether a client is attached: a connection is open and some client subscribed.

        A Session subscribes when it attaches and holds its connections until it closes;
        a killed one's connections close at once, a vanished one's when the heartbeat gives
        up (protocol.HEARTBEAT_TIMEOUT_MS). An unauthorized peer can open a connection but
        never subscribe. (docs/security.md: a wait timeout counts time with no client attached.)
        """
        return self.hub.attached(self.subscribers) or (bool(self._connections) and bool(self.subscribers))

    def paused_threads(self) -> List[Any]:
        """Snapshot of the current pauses."""
        with self._pauses_lock:
            return list(self.pauses.values())

    def stop(self, timeout: float = 2.0, *, after: Optional["PushSink"] = None, flush_ms: int = 0) -> None:
        """Stop serving, remove the connection file. Safe to call twice.

        ``after``: a paused thread's sink whose replies are forwarded first (the stop goes
        behind them, in the same pipe); ``flush_ms``: how long what the server thread sent
        last may take to leave after it (a checkpoint's keeper answers, then stops: the
        process lives on, so its ZeroMQ I/O thread still delivers it).
        Does nothing in a forked child: there the server is the parent's (its threads do not
        exist, its sockets are the parent's), and touching it would hang the child (forks.py).
        """
        if self._stopped.is_set() or os.getpid() != self.pid:
            return
        self._stopped.set()
        self._router_linger_ms = flush_ms
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            try:
                if after is not None:
                    after.socket.send_multipart([TAG_STOP, b""])
                else:
                    self.post(TAG_STOP, [b""])
            except zmq.ZMQError:
                pass
            self.thread.join(timeout)
        self._remove_connection_file()
        try:
            self.auth.stop()  # type: ignore[union-attr]  # set by every started server
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
            # A job with checkpoints: "job", "lineage", "generation" (a client follows the
            # job from one live process to the next: docs/howto-rewind.md).
            **_checkpoint_identity(),
        }

    def _announcement(self) -> Dict[str, Any]:
        """What this process tells a hub it dialed (identity.py): no endpoint, no key."""
        return process_identity.describe_process(self.started, [p.describe() for p in self.paused_threads()])

    def _connection_file_changed(self) -> None:
        # The pause list changed. The first change after a quiet spell rewrites the file at
        # once (a client that saw the event finds the file up to date); changes in a burst
        # (a client stepping: two per step, ~0.5 ms each on the paused thread, see
        # docs/benchmarks.md) leave it to the server thread, which the event queued next
        # wakes (or finds it awake), once they stop for FILE_REWRITE_S (at most
        # FILE_REWRITE_MAX_S later).
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
            self.hub.sync(poller)  # a hub dialed since the last turn (dial_hub)
            due = self.hub.due(self._events.sleep_until(self._file_due))
            try:
                # whole milliseconds, rounded up: a fraction would be truncated to a busy 0
                ready = dict(poller.poll(None if due is None else max(0, math.ceil((due - time.monotonic()) * 1000))))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.ETERM:
                    break
                raise
            if self.internal in ready:
                if not self._drain_internal():
                    self._publish_events(force=True)  # the last events (a step's resume) still go out
                    break
            if self.router in ready:
                self._drain_router()
            if self.monitor in ready:
                self._drain_monitor()
            self.hub.serve(ready, self._handle)  # the hub proved its key: no client key to check
            self._publish_events()
            self._rewrite_if_due()
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        self.hub.close()
        for sock in (self.monitor, self.router, self.internal, self._push):
            sock.close(linger=self._router_linger_ms if sock is self.router else 0)

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
            elif tag == TAG_STOP:
                return False
            # TAG_WAKE: the loop looks at the event queue after this
        return True

    def _publish_events(self, force: bool = False) -> None:
        """Publish the queued events once the first of them is due (event_queue.py)."""
        for frames in self._events.take(force):
            self._publish(frames)

    def _publish(self, frames: Sequence[Any]) -> None:
        """Send an event to every subscriber whose key is still authorized (a revoked one is dropped)."""
        admits = self.policy.admits
        for identity in list(self.subscribers):
            key = self.subscriber_keys.get(identity)
            if admits(key) or self.hub.owns(identity):
                self._send(identity, frames)
            else:  # told once, so that its session fails now instead of waiting for events
                self.subscribers.pop(identity, None)
                self.subscriber_keys.pop(identity, None)
                self._send(identity, self.policy.refusal(key))

    def _drain_router(self) -> None:
        router = self.router
        admits = self.policy.admits
        for _ in range(1000):  # bounded: let internal traffic (replies) through too
            if not router.get(zmq.EVENTS) & zmq.POLLIN:  # cheaper than zmq.Again
                return
            key, (identity, *frames) = recv_from_peer(router, zmq.NOBLOCK, 2)
            if not admits(key):  # revoked since its handshake: nothing of it is applied
                self.subscribers.pop(identity, None)
                self.subscriber_keys.pop(identity, None)
                self._send(identity, self.policy.refusal(key, frames, identity))
                continue
            self._handle(identity, frames)
            if identity in self.subscribers and identity not in self.subscriber_keys:
                self._remember_subscriber_key(identity, key)

    def _remember_subscriber_key(self, identity: bytes, key: Optional[str]) -> None:
        self.subscriber_keys[identity] = key
        if len(self.subscriber_keys) > 2 * len(self.subscribers) + 16:  # forget those that left
            self.subscriber_keys = {i: k for i, k in self.subscriber_keys.items() if i in self.subscribers}

    def _send(self, identity: bytes, frames: Sequence[Any]) -> None:
        if self.hub.owns(identity):
            self.hub.send(frames)
            return
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
                self._send(identity, dispatch.refusal(request, exc.kind, str(exc)))
            except Exception as exc:  # a bug in routing must not kill the server thread
                self._send(identity, encode_error(request.id, type(exc).__name__, str(exc), traceback.format_exc()))
        else:
            self._send(identity, dispatch.refusal(request, "UnknownOp", f"unknown op {op!r}"))

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


# --- the process-wide server -------------------------------------------------------------

_server: Optional[Server] = None
_server_lock = threading.Lock()
_stop_registered = False


def get_server(host: Optional[str] = None, port: Optional[int] = None) -> Server:
    """The process's server, started on first use (BRIDGE_HOST / BRIDGE_PORT apply).

    Raises :class:`startup.StartError` (one line: what is wrong, how to fix it) when it
    cannot start; a failed start leaves no thread or socket behind, and the next call tries again.
    """
    global _server, _stop_registered
    with _server_lock:
        if _server is None or _server.pid != os.getpid():
            host = host or os.environ.get("BRIDGE_HOST") or "127.0.0.1"
            if port is None:
                port = startup.port_from_env()
            try:
                load_all()
                server = Server(host, port)
            except Exception as exc:
                raise startup.explain(exc, host, port) from None
            _server = server
            if not _stop_registered:
                _stop_registered = True
                atexit.register(_stop_at_exit)
            from .capture import install

            install(record=True)  # the job's output tail, for as long as bridge is active
        server = _server
    server.dial_hub()  # BRIDGE_HUB may have been set since the server started
    return server


def _checkpoint_identity() -> Dict[str, Any]:
    chain = sys.modules.get("bridge.checkpoints")  # loaded by the first checkpoint: no cost before
    return chain.identity() if chain is not None else {}


def current_server() -> Optional[Server]:
    """The running server of this process, if any (no start)."""
    return _server if _server is not None and _server.pid == os.getpid() else None


def _stop_at_exit() -> None:
    # Registered once: the server of the process that is exiting, never an inherited one.
    server = current_server()
    if server is not None:
        server.stop()


def serves_thread(ident: int) -> bool:
    """Whether thread ``ident`` is one framebridge runs: the server thread, or a thread
    paused in it. Asked in a forked child of the inherited server (forks.py): a fork made
    there is framebridge's own (the playground's), never a child to make attachable."""
    server = _server
    return server is not None and (ident == server.thread.ident or ident in server.pauses)


def forget_inherited() -> None:
    """In a forked child, right after fork: forget the parent's server (forks.py).

    The child has the parent's Server object but none of its threads, and its sockets are
    the parent's; it starts a server of its own if it ever needs one.
    """
    global _server, _server_lock
    _server = None
    _server_lock = threading.Lock()  # another thread may have held it at the fork
