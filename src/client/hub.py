"""The hub: the notebook listens, targets dial in (docs/howto-cluster.md).

Workers in containers, on other hosts or in Kubernetes pods usually cannot be dialed.
A :class:`Hub` binds one CURVE ROUTER in the notebook; a target started with
:meth:`Hub.target_env` in its environment dials it when it pauses or listens
(bridge/hub_dial.py), announces itself, and from then on serves requests on that
connection as on its own socket. Each target becomes a member of the hub's live group
(:meth:`Hub.group`): a :class:`~client.session.Session` whose
:class:`~client.hub_port.HubPort` sends through the hub's socket.

Who may dial in (docs/security.md, "The hub"): the hub's ZAP domain admits only keys it
authorizes: the key pair it made for its targets (``BRIDGE_HUB_SECRET`` in
:meth:`target_env`), this user's own client key, and keys given to :meth:`authorize`.
Every message is checked against the key its connection proved, so a target can
neither speak for another nor outlive a :meth:`revoke`. A refused peer gets a failed
handshake and nothing else, and is logged (rate-limited) with its key's fingerprint.

Threads: the socket is polled by the process's I/O thread (client/io_loop.py) like every
other connection; opening the sessions of targets that announced themselves (which waits
for their answers) happens on one thread of the hub's own.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import zmq
from zmq.utils.monitor import parse_monitor_message

from bridge import keys, protocol
from bridge.hub_dial import HUB_KEY_VAR, HUB_SECRET_VAR, HUB_VAR, is_z85_key
from bridge.key_policy import RateLimitedLog

from . import hub_auth
from .errors import BridgeError, SessionLost
from .group import Group
from .hub_port import HubPort
from .io_loop import io_loop
from .session import DEFAULT_TIMEOUT, Session, open_sessions
from .transport import close_monitored, open_monitor

__all__ = ["Hub", "HubGroup", "TargetEnv"]

log = logging.getLogger("client.hub")
#: Refused peers are logged through this (a flood of them must not fill the notebook).
refusal_log = RateLimitedLog(logger=log)

#: A target whose connection closed and did not come back within this is marked lost
#: (a network blip reconnects well within it; a process that exited does not).
LEAVE_GRACE_S = 1.0
#: How long opening a member's session may wait for its first answers.
OPEN_TIMEOUT_S = 10.0

_MONITORED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
              | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_WILDCARD_HOSTS = ("0.0.0.0", "*", "::", "[::]")


class TargetEnv(dict):
    """The environment a target needs to dial a hub. A dict (``os.environ.update(env)``,
    ``subprocess.Popen(env={**os.environ, **env})``) whose repr hides the secret key, so
    that printing it in a notebook or a log does not leak it."""

    def __repr__(self) -> str:
        shown = {k: ("<secret>" if k == HUB_SECRET_VAR else v) for k, v in self.items()}
        return f"TargetEnv({shown!r})"

    __str__ = __repr__


@dataclass
class _Target:
    """One target that dialed in, as the hub knows it (the loop thread's)."""

    identity: bytes
    key: str
    info: Dict[str, Any]
    peer: str
    fd: int = -1
    announced: float = field(default_factory=time.monotonic)
    leaving_at: Optional[float] = None
    gone: bool = False

    @property
    def name(self) -> str:
        return str(self.info["name"])


class HubGroup(Group):
    """The live group of a hub's targets (:meth:`Hub.group`); keeps its hub alive."""

    def __init__(self, hub: "Hub", timeout: float) -> None:
        super().__init__(timeout=timeout)
        #: The hub its members dialed.
        self.hub = hub
        self._on_close: List[Callable[[], None]] = []

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the group is closed (attach_dask unregisters its plugin)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Close every member (the targets keep running, or stay paused); a group that
        ``attach_dask``/``attach_ray`` made closes its hub too."""
        super().close()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                log.warning("framebridge: closing the hub's group: %s", exc)


class Hub:
    """A CURVE server in the notebook that targets dial (see the module docstring).

    ``bind``: where to listen (default loopback, a random port; ``"tcp://0.0.0.0:5555"``
    serves a cluster). ``advertise``: the endpoint targets are told to dial, when that is
    not ``bind`` (a wildcard bind, a NAT or a Kubernetes service); by default the bind
    address, or this host's name for a wildcard bind. ``authorized_keys``: more client
    keys to admit (workers that bring their own key); ``own_key``: admit this user's own
    client key too. ``timeout``: the group's default per-member deadline.
    """

    def __init__(self, bind: str = "tcp://127.0.0.1:0", *, advertise: Optional[str] = None,
                 authorized_keys: Iterable[str] = (), own_key: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._loop = io_loop()
        context = self._loop.context
        public, secret = zmq.curve_keypair()
        #: The hub's public key: what targets check (BRIDGE_HUB_KEY).
        self.public_key = public.decode("ascii")
        target_public, target_secret = zmq.curve_keypair()
        #: The key pair the hub made for its targets (BRIDGE_HUB_SECRET): never written anywhere.
        self._target_keys = keys.KeyPair(target_public.decode("ascii"), target_secret.decode("ascii"))
        authorized = {self._target_keys.public, *authorized_keys}
        if own_key:
            authorized.add(keys.load_client_keypair().public)
        self._authorized = frozenset(authorized)
        self._domain = b"framebridge-hub-" + os.urandom(8).hex().encode("ascii")
        hub_auth.register(self._domain, self._admits)  # before the socket exists: no handler, no handshake
        #: Peers refused at the handshake (unauthorized keys, wrong hub key, not CURVE).
        self.refused = 0
        #: Messages dropped from peers that had not announced themselves.
        self.dropped = 0
        self._targets: Dict[bytes, _Target] = {}
        self._ports: Dict[bytes, HubPort] = {}
        self._closed = False
        self._router, self.endpoint = self._open(context, bind, public, secret, self._domain)
        del secret
        self.monitor = open_monitor(context, self._router, _MONITORED)
        self.advertised = advertise or _advertised(self.endpoint)
        self._group = HubGroup(self, timeout)
        self._admissions: "queue.SimpleQueue[Optional[_Target]]" = queue.SimpleQueue()
        self._admitter = threading.Thread(target=self._admit_loop, name="framebridge-hub", daemon=True)
        self._admitter.start()
        self._loop.add(self)

    @staticmethod
    def _open(context: zmq.Context, bind: str, public: bytes, secret: bytes,
              domain: bytes) -> "tuple[zmq.Socket, str]":
        sock = context.socket(zmq.ROUTER)
        try:
            sock.zap_domain = domain  # hub_auth asks this hub about each handshake
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a target that left fails, never vanishes
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)   # a target that reconnects keeps its identity
            sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
            sock.setsockopt(zmq.HEARTBEAT_IVL, protocol.HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, protocol.HEARTBEAT_TIMEOUT_MS)
            sock.setsockopt(zmq.LINGER, 0)
            host = protocol.endpoint_host(bind)
            if ":" in host:
                sock.setsockopt(zmq.IPV6, 1)
            if bind.rsplit(":", 1)[-1] in ("0", "*"):
                bind = bind.rsplit(":", 1)[0] + ":*"
            sock.bind(bind)
            endpoint = sock.get(zmq.LAST_ENDPOINT).decode("ascii")
        except BaseException:
            sock.close(linger=0)
            raise
        return sock, endpoint

    # --- the public surface ------------------------------------------------------------------

    def target_env(self, *, own_key: bool = False) -> TargetEnv:
        """The environment a target needs: ``BRIDGE_HUB`` (where to dial), ``BRIDGE_HUB_KEY``
        (the hub's public key: the target dials no other) and ``BRIDGE_HUB_SECRET`` (the
        key pair the hub made for its targets; treat it like a password). ``own_key=True``
        leaves the secret out: the target then uses its user's own client key, which the
        hub must admit (this user's is, by default; others through :meth:`authorize`)."""
        env = TargetEnv({HUB_VAR: self.advertised, HUB_KEY_VAR: self.public_key})
        if not own_key:
            env[HUB_SECRET_VAR] = self._target_keys.secret
        return env

    def group(self) -> HubGroup:
        """The live group of the targets that dialed in: it grows as they do, and a member
        whose connection ended is marked ``lost``. After ``close()`` of the group a new one
        is made, with every target connected now."""
        if self._closed:
            raise BridgeError("this hub is closed")
        if self._group.closed:
            self._group = HubGroup(self, self.timeout)
            for target in list(self._targets.values()):
                if not target.gone:
                    self._admissions.put(target)
        return self._group

    def authorize(self, public_key: str) -> None:
        """Admit targets that bring this client key (z85, 40 characters) from now on."""
        if not is_z85_key(public_key):
            raise ValueError(f"not a public key (40 z85 characters): {public_key!r}")
        self._authorized = self._authorized | {public_key}

    def revoke(self, public_key: str) -> None:
        """Admit ``public_key`` no more; its targets' connections are dropped and their
        members marked lost."""
        self._authorized = self._authorized - {public_key}
        self._loop.call(self._drop_key, public_key)

    @property
    def fingerprint(self) -> str:
        """A short name of the hub's public key (to compare with a target's logs)."""
        return keys.fingerprint(self.public_key)

    def close(self) -> None:
        """Stop listening; the members' sessions close (the targets go on, attachable on
        their own hosts as before)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._group.close()
        finally:
            hub_auth.unregister(self._domain)
            self._admissions.put(None)
            self._loop.remove(self)

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len([t for t in self._targets.values() if not t.gone])} targets"
        return f"<Hub {self.endpoint} (targets dial {self.advertised}) key {self.fingerprint}: {state}>"

    # --- for HubPort (the loop thread) ----------------------------------------------------------

    def attach_port(self, port: HubPort) -> bool:
        """Messages of ``port``'s target go to it from now on; whether the target is connected."""
        target = self._targets.get(port.routing_id)
        if target is None or target.gone or self._closed:
            return False
        self._ports[port.routing_id] = port
        return True

    def detach_port(self, port: HubPort) -> None:
        if self._ports.get(port.routing_id) is port:
            del self._ports[port.routing_id]

    def send_to(self, identity: bytes, frames: List[Any]) -> None:
        """Send one message to a target; raises zmq.ZMQError if it cannot be queued now
        (the target left: ROUTER_MANDATORY says so at once)."""
        if self._closed:
            raise zmq.ZMQError(zmq.ENOTSOCK, "the hub is closed")
        small = all(type(f) is bytes for f in frames)
        self._router.send_multipart([identity, *frames], zmq.NOBLOCK, copy=small)

    def gone_error(self, identity: bytes) -> SessionLost:
        target = self._targets.get(identity)
        name = target.name if target is not None else "the target"
        return SessionLost(f"{name} left the hub at {self.endpoint} (its connection closed: the process "
                           f"ended, or the network between it and this notebook failed)")

    # --- Pollable (client/io_loop.py) ------------------------------------------------------------

    def poll_items(self) -> Sequence[Any]:
        return (self.monitor, self._router)

    def on_readable(self, item: Any) -> None:
        # The monitor first, always: a connection's end is known before messages of the
        # next one that may reuse its file descriptor.
        self._read_monitor()
        if item is self._router:
            self._read_router()

    def on_tick(self, now: float) -> None:
        for target in list(self._targets.values()):
            if target.leaving_at is not None and now >= target.leaving_at and not target.gone:
                self._gone(target, self.gone_error(target.identity))
        for port in list(self._ports.values()):
            port.tick(now)

    def on_removed(self) -> None:
        for port in list(self._ports.values()):
            port.left(SessionLost(f"the hub at {self.endpoint} was closed"))
        close_monitored(self._router, self.monitor)

    # --- the loop thread ------------------------------------------------------------------------

    def _admits(self, key: str, address: str) -> bool:
        if key in self._authorized and not self._closed:
            return True
        self.refused += 1
        refusal_log.warning("framebridge hub %s: refused a connection from %s: its key %s is not one this "
                            "hub authorizes", self.endpoint, address or "?", keys.fingerprint(key))
        return False

    def _read_monitor(self) -> None:
        monitor = self.monitor
        while not monitor.closed and monitor.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except Exception:
                return
            kind = event["event"]
            if kind == zmq.EVENT_DISCONNECTED:
                for target in self._targets.values():
                    if target.fd == event["value"] and not target.gone:
                        target.leaving_at = time.monotonic() + LEAVE_GRACE_S
                        target.fd = -1
            elif kind != zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # AUTH: _admits logged it, with the key
                self.refused += 1
                refusal_log.warning("framebridge hub %s: refused a connection: its handshake failed (a target "
                                    "given another hub's key, or a peer that does not speak CURVE)", self.endpoint)

    def _read_router(self) -> None:
        router = self._router
        for _ in range(1000):  # bounded: the loop's other sockets get a turn
            if router.closed or not router.get(zmq.EVENTS) & zmq.POLLIN:
                return
            first = router.recv(zmq.NOBLOCK, copy=False)
            try:
                key = first.get("User-Id")
                fd = first.get(zmq.SRCFD)
                peer = first.get("Peer-Address")
            except zmq.ZMQError:  # not a connection our ZAP handler admitted
                key, fd, peer = None, -1, "?"
            frames = protocol.recv_parts(router, zmq.NOBLOCK, 1) if first.more else []
            self._on_message(first.bytes, key, fd, peer, frames)

    def _on_message(self, identity: bytes, key: Optional[str], fd: int, peer: str, frames: List[Any]) -> None:
        if key is None or key not in self._authorized or not frames:
            self.dropped += 1
            return
        target = self._targets.get(identity)
        if target is not None and target.key != key:  # another key speaking for this identity
            self.dropped += 1
            return
        header = frames[0]
        if type(header) is bytes and b'"event":"announce"' in header:
            self._on_announce(identity, key, fd, peer, frames, target)
            return
        if target is None or target.gone:
            self.dropped += 1
            return
        # Only an announcement says the target (re)connected: messages still queued from a
        # connection that closed can come after its end was seen.
        port = self._ports.get(identity)
        if port is not None:
            port.deliver(frames)

    def _on_announce(self, identity: bytes, key: str, fd: int, peer: str, frames: List[Any],
                     known: Optional[_Target]) -> None:
        try:
            header, _ = protocol.split_message(frames)
            info = _member_info(header)
        except (protocol.ProtocolError, ValueError, KeyError, TypeError) as exc:
            self.dropped += 1
            refusal_log.warning("framebridge hub %s: ignored a malformed announcement from %s: %s",
                                self.endpoint, peer, exc)
            return
        if known is not None and not known.gone:  # it reconnected: same identity, same key
            known.fd, known.leaving_at = fd, None
            port = self._ports.get(identity)
            if port is not None:
                port.reconnected()
            return
        target = _Target(identity, key, info, peer, fd)
        self._targets[identity] = target
        if not self._group.closed:
            self._admissions.put(target)

    def _gone(self, target: _Target, exc: BaseException) -> None:
        target.gone = True
        target.leaving_at = None
        port = self._ports.get(target.identity)
        if port is not None:
            port.left(exc)

    def _drop_key(self, public_key: str) -> None:
        for target in list(self._targets.values()):
            if target.key == public_key and not target.gone:
                self._gone(target, SessionLost(f"{target.name}: its key {keys.fingerprint(public_key)} was "
                                               f"revoked at this hub"))

    # --- the admitting thread -------------------------------------------------------------------

    def _admit_loop(self) -> None:
        while True:
            first = self._admissions.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    more = self._admissions.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                batch.append(more)
            try:
                self._admit(batch)
            except Exception as exc:  # never the end of the thread
                log.warning("framebridge hub: could not add members: %r", exc)

    def _admit(self, batch: List[_Target]) -> None:
        group = self._group
        batch = [t for t in batch if not t.gone]
        if not batch or group.closed:
            return
        ports = [HubPort(self, t.identity, f"{t.peer} (pid {t.info['pid']}, through the hub)") for t in batch]
        opened = open_sessions([t.info for t in batch], ports=ports, timeout=min(self.timeout, OPEN_TIMEOUT_S))
        for target, result in zip(batch, opened):
            if isinstance(result, Session):
                if group.closed:
                    result.close()
                    continue
                result.name = _free_name(group, target)
                group.add(result)
            else:
                group.attach_errors[target.name] = result


def _member_info(header: Dict[str, Any]) -> Dict[str, Any]:
    """A session's info from an announcement (no endpoint: a hub member is never dialed)."""
    pid = header["pid"]
    if type(pid) is not int or pid <= 0:
        raise ValueError(f"pid {pid!r}")
    host = str(header.get("host") or "?")
    argv = header.get("argv") or []
    if not isinstance(argv, list):
        raise ValueError("argv is not a list")
    info: Dict[str, Any] = {
        "pid": pid,
        "host": host,
        "name": str(header.get("name") or f"{host}:{pid}")[:200],
        "argv": [str(a) for a in argv],
        "hub": True,
    }
    for field_name in ("python", "executable", "cwd", "started", "announced", "rank", "local_rank"):
        if field_name in header:
            info[field_name] = header[field_name]
    return info


def _free_name(group: Group, target: _Target) -> str:
    """The member name for ``target``: its announced name, unless a live member has it
    (a forked child inherits its parent's BRIDGE_HUB_NAME): then name/pid. A lost
    member of that name (a worker that restarted) gives way."""
    name = target.name
    if name in group:
        old = group[name]
        if old.closed or old.pause_state.failure is not None:
            group.discard(name)
            return name
        name = f"{name}/{target.info['pid']}"
        count = 2
        while name in group:
            name = f"{target.name}/{target.info['pid']}.{count}"
            count += 1
    return name


def _advertised(endpoint: str) -> str:
    """What targets are told to dial for a socket bound at ``endpoint``."""
    host = protocol.endpoint_host(endpoint)
    if host in _WILDCARD_HOSTS or host == "":
        return protocol.tcp_endpoint(socket.getfqdn(), int(endpoint.rsplit(":", 1)[1]))
    return endpoint
