"""Whom a target serves: its authorized keys, applied at every handshake and every request.

The ZAP handler (:meth:`KeyPolicy.callback`) admits a connection whose client key is
authorized *now*. A key removed from authorized_keys later must stop being served too,
by connections it already has (docs/security.md, "Revoking a key"): libzmq tags every
message of a CURVE connection with the client key the handshake proved (the ``User-Id``
property, set from the ZAP reply), so the server thread and each paused thread's lane
check it on every request (:func:`recv_from_peer`, :meth:`KeyPolicy.admits`), and the
server sends events only to subscribers whose key is still authorized.

The file is re-read at most once a second (and only when it changed), so a change,
``framebridge keys --authorize`` or a revocation, applies to running targets within about
a second, and a flood of handshakes or requests does not hammer the disk.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, FrozenSet, List, Optional, Sequence, Tuple

import zmq

from . import keys
from .protocol import BadRequest, Frames, encode_error, parse_request, recv_parts

log = logging.getLogger("bridge")

#: How stale the served key set may be, in seconds.
REFRESH_S = 1.0


class RateLimitedLog:
    """Log refusals, at most ``burst`` lines per ``window`` seconds (a flood of bad peers
    must not fill the job's log); the next line that gets through says how many were hidden."""

    def __init__(self, burst: int = 10, window: float = 60.0, logger: Optional[logging.Logger] = None) -> None:
        self.logger = logger or log
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        """Log ``message % args`` as a warning, unless this window's burst is spent."""
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
        self.logger.warning(message, *args)


#: Every refused peer (unauthorized or revoked key, failed handshake) is logged through this.
refusal_log = RateLimitedLog()


def _file_stamp() -> Optional[Tuple[int, int, int, int]]:
    """What tells a changed authorized_keys apart (None: no file, or none readable)."""
    try:
        st = (keys.config_dir() / keys.AUTHORIZED_KEYS_FILE).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)


class KeyPolicy:
    """The client keys this target serves: authorized_keys as it is now (within REFRESH_S).

    Used from several threads (the ZAP handler, the server thread, paused threads): the
    key set is replaced whole, never changed in place, so a reader sees one set or the other.
    """

    def __init__(self) -> None:
        # Read at start: a key file that cannot be used stops the server's start-up with
        # its reason (startup.py) before anything is opened.
        self._stamp = _file_stamp()
        self._keys: FrozenSet[str] = frozenset(keys.authorized_keys())
        self._checked = time.monotonic()
        self._refreshing = threading.Lock()

    def admits(self, key: Optional[str]) -> bool:
        """Whether ``key`` (a z85 client key) is authorized now."""
        if time.monotonic() - self._checked > REFRESH_S:
            self._refresh()
        return key in self._keys

    def callback(self, domain: str, client_key: bytes) -> bool:
        """ZAP credentials provider: admit an authorized client key, log any other."""
        key = client_key.decode("ascii", "replace")
        if self.admits(key):
            return True
        refusal_log.warning("bridge: refused a client with an unauthorized key %s", keys.fingerprint(key))
        return False

    def refusal(self, key: Optional[str], frames: Sequence[Any] = (), identity: bytes = b"") -> Frames:
        """The error a connection whose key is no longer authorized gets: the reply to its
        request ``frames`` (only their id is read: nothing of the request is applied), or,
        with no frames, a last message to a dropped event subscriber (no id)."""
        request_id = None
        if frames:
            try:
                request_id = parse_request(frames, identity).id
            except BadRequest as exc:
                request_id = exc.request_id
        name = keys.fingerprint(key) if key else "(none)"
        refusal_log.warning("bridge: refused a request from client key %s: it is no longer authorized", name)
        return encode_error(request_id, "Unauthorized",
                            f"this target no longer serves client key {name}: it was removed from "
                            f"authorized_keys")

    def _refresh(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return  # another thread is at it: use the current set meanwhile
        try:
            self._checked = time.monotonic()
            stamp = _file_stamp()
            if stamp is not None and stamp == self._stamp:
                return
            try:
                fresh = frozenset(keys.authorized_keys())
            except Exception as exc:  # a broken file must not open the door
                log.warning("bridge: cannot read authorized keys (%s); keeping the previous set", exc)
                return
            self._keys, self._stamp = fresh, stamp
        finally:
            self._refreshing.release()


def recv_from_peer(sock: zmq.Socket, flags: int, small: int) -> Tuple[Optional[str], List[Any]]:
    """One message from a CURVE ROUTER socket: (the sender's client key, its parts as
    ``protocol.recv_parts`` gives them, the identity first)."""
    first = sock.recv(flags, copy=False)  # a Frame: it carries the connection's User-Id
    try:
        key: Optional[str] = first.get("User-Id")
    except zmq.ZMQError:  # none: not a connection our ZAP handler admitted
        key = None
    parts = [first.bytes]
    if first.more:
        parts += recv_parts(sock, flags, small - 1)
    return key, parts
