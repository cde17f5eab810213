"""The target's connection out to a notebook's hub (``BRIDGE_HUB``; docs/howto-cluster.md).

A worker in a container, on another host or in a Kubernetes pod often cannot be dialed:
nothing forwards a port to it. So the notebook listens instead (``client.Hub``), and a
target whose environment names a hub dials it when its server starts (at its first pause,
or at ``bridge.listen()``): one CURVE DEALER, owned and polled by the server thread beside
its ROUTER. After each handshake the target announces itself (``announce`` event:
identity.py), then serves the requests that come on this connection exactly as those of
its own socket: the server hands them to the same handler under an identity of their own
(:attr:`HubDial.identity`), and replies and events for that identity leave here.

Trust (docs/security.md, "The hub"): the target dials only the hub whose public key it
was given (``BRIDGE_HUB_KEY``): CURVE proves the hub holds the matching secret before a
byte of ours is sent, so a wrong key or an impostor gets a failed handshake and nothing
else. The target's own key is ``BRIDGE_HUB_SECRET`` (a key pair the hub made for its
targets) or, without it, this user's client key, which the hub must authorize.

Failures never touch the job: a hub that cannot be reached within
:data:`CONNECT_REPORT_S`, refuses our key or is not the hub we were told of is reported in
one line on stderr, and the process stays attachable on its own socket as before.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import keys
from .protocol import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, MAX_MESSAGE_BYTES, event_message, recv_parts

#: The environment a target reads (client.Hub.target_env() writes it).
HUB_VAR = "BRIDGE_HUB"
HUB_KEY_VAR = "BRIDGE_HUB_KEY"
HUB_SECRET_VAR = "BRIDGE_HUB_SECRET"

#: A hub not reached by then is reported (once); the target keeps trying quietly.
CONNECT_REPORT_S = 5.0
#: Reconnect back-off: a hub that went away is tried again at most this often.
RECONNECT_IVL_MS = 200
RECONNECT_IVL_MAX_MS = 5000
#: A single TCP connect attempt gives up after this (a firewall that drops packets).
CONNECT_TIMEOUT_MS = 2000
#: How soon an announce that found the new connection not ready yet is tried again.
ANNOUNCE_RETRY_S = 0.02
#: Replies queued for a hub that is away, at most (then they are dropped; the hub asks
#: again after reconnecting: docs/protocol.md, "Lost replies").
SEND_HWM = 1000

#: The prefix of the identity the server knows hub requests by. ROUTER identities that
#: libzmq makes start with a zero byte, and clients' own are random: this one is random too.
IDENTITY_PREFIX = b"hub:"

_MONITORED = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
              | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_DISCONNECTED)


class HubConfigError(ValueError):
    """``BRIDGE_HUB*`` set, but not usable: the message says which and why."""


@dataclass(frozen=True)
class HubConfig:
    """Where the hub is and whom to trust, from the environment."""

    endpoint: str
    hub_key: str
    keypair: keys.KeyPair

    def __repr__(self) -> str:  # never the secret (KeyPair's own repr hides it too)
        return f"HubConfig(endpoint={self.endpoint!r}, hub_key={self.hub_key!r})"


def env_stamp(environ: Optional[Dict[str, str]] = None) -> str:
    """What tells one hub configuration from another ("" for none): a digest, so that the
    secret is not kept in one more place."""
    env = os.environ if environ is None else environ
    if not env.get(HUB_VAR):
        return ""
    joined = "\0".join(env.get(name, "") for name in (HUB_VAR, HUB_KEY_VAR, HUB_SECRET_VAR))
    return hashlib.sha256(joined.encode("utf-8", "replace")).hexdigest()


def config_from_env(environ: Optional[Dict[str, str]] = None) -> Optional[HubConfig]:
    """The hub this process should dial, or None without ``BRIDGE_HUB``.

    Raises HubConfigError (one line: what is wrong) for a hub without a usable key."""
    env = os.environ if environ is None else environ
    endpoint = env.get(HUB_VAR, "").strip()
    if not endpoint:
        return None
    if not endpoint.startswith("tcp://") or ":" not in endpoint[len("tcp://"):]:
        raise HubConfigError(f"{HUB_VAR}={endpoint!r} is not a tcp://HOST:PORT endpoint")
    hub_key = env.get(HUB_KEY_VAR, "").strip()
    if not is_z85_key(hub_key):
        raise HubConfigError(f"{HUB_KEY_VAR} must be the hub's public key (40 z85 characters, from "
                             f"Hub.target_env()): without it the hub cannot be told from an impostor")
    secret = env.get(HUB_SECRET_VAR, "").strip()
    if secret:
        if not is_z85_key(secret):
            raise HubConfigError(f"{HUB_SECRET_VAR} is not a secret key (40 z85 characters)")
        try:
            public = zmq.curve_public(secret.encode("ascii")).decode("ascii")
        except zmq.ZMQError as exc:
            raise HubConfigError(f"{HUB_SECRET_VAR} is not a secret key: {exc}") from None
        keypair = keys.KeyPair(public, secret)
    else:
        try:
            keypair = keys.load_client_keypair()
        except Exception as exc:
            raise HubConfigError(f"no {HUB_SECRET_VAR}, and this user's key cannot be used: {exc}") from None
    return HubConfig(endpoint, hub_key, keypair)


def is_z85_key(text: str) -> bool:
    """Whether ``text`` is a CURVE key in z85 (40 characters, 32 bytes)."""
    if not isinstance(text, str) or len(text) != 40:
        return False
    try:
        from zmq.utils import z85

        return len(z85.decode(text)) == 32
    except Exception:
        return False


class HubDial:
    """One target's DEALER to its hub. Made by the server, then used by the server thread
    only: :meth:`poll_items` beside the server's sockets, :meth:`on_readable` when one is
    ready, :meth:`on_timer` when :meth:`timer_due` comes, :meth:`send` for replies and
    events addressed to :attr:`identity`."""

    def __init__(self, context: zmq.Context, config: HubConfig, announce: Callable[[], Dict[str, Any]]) -> None:
        self.config = config
        self.endpoint = config.endpoint
        self._announce = announce
        #: The identity the server knows this connection's requests by.
        self.identity = IDENTITY_PREFIX + os.urandom(12)
        self.connected = False
        self.handshakes = 0
        self.gave_up = False
        self._reported = False
        self._report_at: Optional[float] = time.monotonic() + CONNECT_REPORT_S
        self._announce_pending = False
        sock = context.socket(zmq.DEALER)
        try:
            sock.curve_serverkey = config.hub_key.encode("ascii")
            sock.curve_publickey = config.keypair.public.encode("ascii")
            sock.curve_secretkey = config.keypair.secret.encode("ascii")
            # Kept across reconnects: the hub knows this target by it (its member, its replies).
            sock.setsockopt(zmq.ROUTING_ID, b"fbt" + os.urandom(13))
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, SEND_HWM)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
            # Queue only on a connection whose handshake is done: nothing waits for a hub
            # that is not there, and nothing is written before the hub proved its key.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            if self.endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            self.monitor = sock.get_monitor_socket(_MONITORED)
            self.monitor.setsockopt(zmq.RCVHWM, 0)  # libzmq's I/O thread must never wait on it
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        self.socket = sock

    # --- the server thread ----------------------------------------------------------------

    def poll_items(self) -> Sequence[zmq.Socket]:
        return (self.socket, self.monitor)

    def on_readable(self, item: Any, handle: Callable[[bytes, List[Any]], None]) -> None:
        """Take what ``item`` holds: monitor events, or requests for ``handle(identity, frames)``."""
        if item is self.monitor:
            self._read_monitor()
            return
        sock = self.socket
        for _ in range(1000):  # bounded: the server's other sockets get a turn
            if sock.closed or not sock.get(zmq.EVENTS) & zmq.POLLIN:
                return
            handle(self.identity, recv_parts(sock, zmq.NOBLOCK, 1))

    def timer_due(self) -> Optional[float]:
        """When :meth:`on_timer` wants to run (monotonic time), or None."""
        if self._announce_pending:
            return time.monotonic() + ANNOUNCE_RETRY_S
        return self._report_at

    def on_timer(self, now: float) -> None:
        if self._announce_pending:
            self._send_announce()
        if self._report_at is not None and now >= self._report_at:
            self._report_at = None
            if self.handshakes == 0 and not self.gave_up:
                self._say(f"bridge: cannot reach the hub at {self.endpoint} (no answer within "
                          f"{CONNECT_REPORT_S:g}s); still trying, and attachable on this host as before")

    def send(self, frames: Sequence[Any]) -> None:
        """A reply or event for the hub; dropped while it is away (never blocks the server)."""
        if self.gave_up or self.socket.closed:
            return
        try:
            self.socket.send_multipart(list(frames), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # away or full: the hub asks again after reconnecting (outcome op)

    def close(self) -> None:
        for sock in (self.monitor, self.socket):
            try:
                sock.close(linger=0)
            except zmq.ZMQError:
                pass

    # --- internals -------------------------------------------------------------------------

    def _read_monitor(self) -> None:
        monitor = self.monitor
        while not monitor.closed and monitor.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except Exception:  # a malformed monitor frame must not stop the server
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.handshakes += 1
                self._send_announce()
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = False
            elif not self.gave_up:
                self._give_up(event)

    def _send_announce(self) -> None:
        # Sent after every handshake: the hub knows a reconnect by it. With ZMQ_IMMEDIATE
        # the new connection may not take messages yet at the instant its handshake is
        # reported: then it goes at the next timer.
        self._announce_pending = False
        if self.gave_up or not self.connected:
            return
        try:
            self.socket.send_multipart(event_message("announce", self._announce()), zmq.NOBLOCK)
        except zmq.Again:
            self._announce_pending = True
        except zmq.ZMQError:
            pass

    def _give_up(self, event: int) -> None:
        # The keys will not change: retrying would only knock on the same door forever.
        self.gave_up = True
        self.connected = False
        self._report_at = None
        try:
            self.socket.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = (f"it refused this process's key {keys.fingerprint(self.config.keypair.public)} (a key "
                   f"the hub does not authorize)")
        else:
            why = (f"it is not the hub whose key {HUB_KEY_VAR} names (the CURVE handshake failed: another "
                   f"hub, or not a hub)")
        self._say(f"bridge: not connecting to the hub at {self.endpoint}: {why}; attachable on this host as before")

    @staticmethod
    def _say(line: str) -> None:
        try:
            print(line, file=sys.__stderr__ or sys.stderr, flush=True)
        except Exception:  # a closed stderr must not break the job
            pass


class HubSlot:
    """The server's hub connection, as the server uses it: dialed from any thread (at
    start, at each pause, at ``listen()``), polled by the server thread, replaced when the
    environment names another hub (a Dask worker plugin sets it in a running process).

    :meth:`dial` may run on any thread; everything else runs on the server thread, which
    owns the sockets: it starts polling a new connection, and closes the one it replaced,
    at its next turn (:meth:`sync`).
    """

    def __init__(self) -> None:
        #: The connection the server sends to (None: no hub).
        self.current: Optional[HubDial] = None
        self._polled: Optional[HubDial] = None
        self._items: Sequence[Any] = ()
        self._tried = ""
        self._lock = threading.Lock()

    def dial(self, context: zmq.Context, announce: Callable[[], Dict[str, Any]]) -> bool:
        """Dial the hub the environment names, unless it was tried already; whether a new
        connection waits for the server thread."""
        wanted = env_stamp()
        if wanted == self._tried:
            return False
        with self._lock:
            if wanted == self._tried:
                return False
            self._tried = wanted
            dialed = open_from_env(context, announce) if wanted else None
            if dialed is not None:
                self.current = dialed
            return dialed is not None

    # --- the server thread ----------------------------------------------------------------

    def owns(self, identity: bytes) -> bool:
        """Whether ``identity`` is the hub's (replies and events for it leave by the hub)."""
        hub = self.current
        return hub is not None and identity == hub.identity

    def send(self, frames: Sequence[Any]) -> None:
        hub = self.current
        if hub is not None:
            hub.send(frames)

    def attached(self, subscribers: Dict[bytes, Any]) -> bool:
        """Whether the hub is connected and subscribed (a client attached, for wait timeouts)."""
        hub = self.current
        return hub is not None and hub.connected and hub.identity in subscribers

    def sync(self, poller: zmq.Poller) -> None:
        """Poll the connection dialed since the last turn; close the one it replaced."""
        hub = self.current
        if hub is self._polled:
            return
        for item in self._items:
            poller.unregister(item)
        if self._polled is not None:
            self._polled.close()
        self._polled, self._items = hub, (hub.poll_items() if hub is not None else ())
        for item in self._items:
            poller.register(item, zmq.POLLIN)

    def due(self, other: Optional[float]) -> Optional[float]:
        """The earlier of ``other`` and the connection's timer (monotonic), or None."""
        mine = self._polled.timer_due() if self._polled is not None else None
        if mine is None:
            return other
        return mine if other is None else min(other, mine)

    def serve(self, ready: Dict[Any, int], handle: Callable[[bytes, List[Any]], None]) -> None:
        """Take what the polled connection has (``ready``: the poll's result) and run its timer."""
        hub = self._polled
        if hub is None:
            return
        for item in self._items:
            if item in ready:
                hub.on_readable(item, handle)
        due = hub.timer_due()
        if due is not None and time.monotonic() >= due:
            hub.on_timer(time.monotonic())

    def close(self) -> None:
        if self._polled is not None:
            self._polled.close()
        self._polled, self._items = None, ()


def open_from_env(context: zmq.Context, announce: Callable[[], Dict[str, Any]]) -> Optional[HubDial]:
    """The hub connection the environment asks for, or None (no hub, or one that cannot
    be used: said in one line on stderr; the server starts all the same)."""
    try:
        config = config_from_env()
        if config is None:
            return None
        return HubDial(context, config, announce)
    except (HubConfigError, zmq.ZMQError) as exc:
        HubDial._say(f"bridge: not connecting to a hub: {exc}")
        return None
