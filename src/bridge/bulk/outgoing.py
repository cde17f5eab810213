"""Everything this process handed out and nobody has collected yet, and its janitor.

The sender of a transfer cleans up after it: every shared-memory segment, pending
transfer and parked upload connection has a deadline (:data:`TIMEOUT_S`,
``BRIDGE_BULK_TIMEOUT``) after which one janitor thread unlinks or closes it, so a
receiver that dies between the reply and the transfer leaks nothing.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple

from .transfer import TIMEOUT_S, BulkError, Transfer

#: Upload connections held at once until their request claims them. Only a connection
#: with a valid upload token gets here (dataport.py), so this bounds what authorized
#: clients can hold, not strangers.
MAX_PARKED_UPLOADS = 16


def unlink_quietly(path: str) -> None:
    """Remove ``path``; nothing if it is gone or cannot be removed."""
    try:
        os.unlink(path)
    except OSError:
        pass


class Outbox:
    """What this process handed out: segments, transfers, parked uploads.

    One janitor thread (started on first use, asleep while there is nothing to watch)
    unlinks segments, drops transfers and closes parked uploads past their deadline.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Condition()
        self.segments: Dict[str, float] = {}
        self.transfers: Dict[bytes, Transfer] = {}
        self.uploads: Dict[bytes, Tuple[socket.socket, float]] = {}
        self._janitor: Optional[threading.Thread] = None

    def add_segment(self, path: str) -> None:
        """Unlink ``path`` at its deadline unless a receiver (or :meth:`drop_segment`) did."""
        with self._lock:
            self.segments[path] = time.monotonic() + TIMEOUT_S
            self._wake()

    def drop_segment(self, path: str) -> None:
        """Unlink ``path`` if it is still there (idempotent)."""
        with self._lock:
            self.segments.pop(path, None)
        unlink_quietly(path)

    def add_transfer(self, transfer: Transfer) -> None:
        """Hold ``transfer`` for its receiver, until its deadline."""
        with self._lock:
            transfer.deadline = time.monotonic() + TIMEOUT_S
            self.transfers[transfer.token] = transfer
            self._wake()

    def take_transfer(self, token: bytes) -> Optional[Transfer]:
        """The transfer for ``token``, removed (a token works once); None if unknown."""
        with self._lock:
            return self.transfers.pop(token, None)

    def park_upload(self, token: bytes, sock: socket.socket) -> bool:
        """Hold an incoming upload connection until the request that names it is served.

        False (and the caller closes ``sock``) when ``token`` is already parked (the first
        connection wins: a replayed token cannot displace the real upload) or when
        :data:`MAX_PARKED_UPLOADS` are parked already.
        """
        with self._lock:
            if token in self.uploads or len(self.uploads) >= MAX_PARKED_UPLOADS:
                return False
            self.uploads[token] = (sock, time.monotonic() + TIMEOUT_S)
            self._lock.notify_all()
            self._wake()
            return True

    def claim_upload(self, token: bytes, timeout: float) -> socket.socket:
        """The parked upload connection for ``token``, waiting up to ``timeout`` for it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while token not in self.uploads:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BulkError(f"the sender's upload did not arrive within {timeout:g}s")
                self._lock.wait(left)
            return self.uploads.pop(token)[0]

    def _wake(self) -> None:
        # Caller holds the lock.
        if self._janitor is None or not self._janitor.is_alive():
            janitor = threading.Thread(target=self._sweep_loop, name="bridge-bulk-janitor", daemon=True)
            try:
                janitor.start()
            except RuntimeError:
                pass  # no thread to spare now: the next hand-out tries again, or exit cleans up
            else:
                self._janitor = janitor
        self._lock.notify_all()

    def _sweep_loop(self) -> None:
        with self._lock:
            while True:
                deadlines = (list(self.segments.values()) + [t.deadline for t in self.transfers.values()]
                             + [d for _, d in self.uploads.values()])
                if not deadlines:
                    self._lock.wait()  # nothing to watch: sleep until something is handed out
                    continue
                left = min(deadlines) - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        # Caller holds the lock.
        for path, deadline in list(self.segments.items()):
            if deadline <= now:
                del self.segments[path]
                unlink_quietly(path)
        for token, transfer in list(self.transfers.items()):
            if transfer.deadline <= now:
                del self.transfers[token]
                transfer.close()
        for token, (sock, deadline) in list(self.uploads.items()):
            if deadline <= now:
                del self.uploads[token]
                sock.close()

    def close(self) -> None:
        """Unlink every segment still outstanding, drop every transfer and upload (at exit)."""
        if os.getpid() != self.pid:
            return
        with self._lock:
            paths: List[str] = list(self.segments)
            self.segments.clear()
            for transfer in self.transfers.values():
                transfer.close()
            self.transfers.clear()
            for sock, _ in self.uploads.values():
                sock.close()
            self.uploads.clear()
        for path in paths:
            unlink_quietly(path)


_outbox: Optional[Outbox] = None
_outbox_lock = threading.Lock()


def forget_inherited() -> None:
    """In a forked child (bridge/forks.py): a parent's thread may have held the lock at
    the fork; the parent's outbox itself is replaced at first use (its pid differs)."""
    global _outbox_lock
    _outbox_lock = threading.Lock()


def outbox() -> Outbox:
    """This process's outbox (a fresh one after fork: the parent's janitor is not ours)."""
    global _outbox
    with _outbox_lock:
        if _outbox is None or _outbox.pid != os.getpid():
            first = _outbox is None
            _outbox = Outbox()
            if first:
                atexit.register(lambda: _outbox.close() if _outbox is not None else None)
        return _outbox
