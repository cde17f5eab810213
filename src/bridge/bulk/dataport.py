"""The target's data port: where every bulk transfer is collected, and the target's side
of the request path (offer a reply's buffers, claim a request's upload).

A plain TCP listener beside the CURVE endpoint. A connection must start with a
:data:`HEAD_BYTES`-byte head within :data:`TOKEN_DEADLINE_S`: ``GET <token>`` (pull a
pending transfer) or ``PUT <token>`` (an upload the paused thread will claim). Only a
transfer's one-shot token, which travelled inside the CURVE channel, gets anything; an
upload token must carry a MAC under this process's upload key (given to clients in
``bulk_hello``, inside CURVE), so a stranger's upload is refused at once instead of
parked. What flows after the head is AES-GCM ciphertext or ring signals.

Any local user can connect, so the port is built not to be a lever on the job
(docs/security.md, "The data port"). One thread serves every connection until its head
is read, with a selector, not a thread each; at most :data:`MAX_PENDING` connections may
be waiting for their head (the oldest is dropped for a new one); accept errors such as
EMFILE pause accepting briefly and never end the loop; a transfer is streamed by one of at
most :data:`MAX_SENDERS` threads, started only for a valid token, and a thread that cannot
be started fails that transfer, not the port.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import hmac
import os
import secrets
import selectors
import socket
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .codec import TRANSFER_MODES, export_with_fallback, import_frames, send_transfer
from .outgoing import outbox
from .transfer import TIMEOUT_S, TOKEN_BYTES, BulkError, Transfer, tune

GET = b"GET "
PUT = b"PUT "
HEAD_BYTES = len(GET) + TOKEN_BYTES
#: Seconds a new connection has to send its head. A real client sends it with its first
#: packet; a second is plenty even across hosts, and an idle stranger is gone quickly.
TOKEN_DEADLINE_S = 2.0
#: Connections accepted and still waiting for their head, at most.
MAX_PENDING = 16
#: Threads streaming transfers at once; further valid requests queue for a free one.
MAX_SENDERS = 8
#: Connections accepted per wake-up, so that heads already waiting are read first.
ACCEPT_BATCH = 16
LISTEN_BACKLOG = 64
#: Accept errors that mean "no resources now" (EMFILE: our fd limit, ENFILE: the
#: system's): stop accepting for a while (doubling up to the maximum), then try again.
_ACCEPT_BACKOFF_S = (0.05, 1.0)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_MAC_BYTES = 8


def upload_token(key: bytes) -> bytes:
    """A fresh upload token the data port of the holder of ``key`` accepts (client side)."""
    nonce = secrets.token_bytes(TOKEN_BYTES - _MAC_BYTES)
    return nonce + hmac.new(key, PUT + nonce, hashlib.sha256).digest()[:_MAC_BYTES]


def upload_token_valid(key: bytes, token: bytes) -> bool:
    """Whether ``token`` was made by :func:`upload_token` under ``key``."""
    nonce, mac = token[:-_MAC_BYTES], token[-_MAC_BYTES:]
    return hmac.compare_digest(mac, hmac.new(key, PUT + nonce, hashlib.sha256).digest()[:_MAC_BYTES])


class _Pending:
    """An accepted connection that has not sent its whole head yet."""

    __slots__ = ("sock", "head", "got", "deadline")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = bytearray(HEAD_BYTES)
        self.got = 0
        self.deadline = time.monotonic() + TOKEN_DEADLINE_S


class DataServer:
    """This process's data port (see the module docstring). ``stats`` counts what it did."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, 0))
            self.listener.listen(LISTEN_BACKLOG)
            self.listener.setblocking(False)
            self.port: int = self.listener.getsockname()[1]
            self.pid = os.getpid()
            self.upload_key = secrets.token_bytes(32)
            self.stats: Dict[str, int] = collections.Counter()
            self._selector = selectors.DefaultSelector()
            self._selector.register(self.listener, selectors.EVENT_READ, None)
            self._pending: Dict[socket.socket, _Pending] = {}  # oldest first
            self._resume_at: Optional[float] = None
            self._backoff = _ACCEPT_BACKOFF_S[0]
            self._lock = threading.Lock()
            self._senders = 0
            self._queued: Deque[Tuple[socket.socket, Transfer]] = collections.deque()
            self._closed = False
            self.thread = threading.Thread(target=self._serve, name="bridge-bulk-data", daemon=True)
            self.thread.start()
        except BaseException as exc:
            self.listener.close()
            if isinstance(exc, RuntimeError):  # no thread to spare: no data port, the session uses CURVE
                raise BulkError(f"cannot start the data port's thread: {exc}") from None
            raise

    # --- the selector thread ---------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed:
            listener_ready = False
            for key, _ in self._selector.select(self._next_wait()):
                if key.data is None:
                    listener_ready = True
                else:
                    self._read_head(key.data)
            if listener_ready:
                self._accept_some()
            self._expire(time.monotonic())
        for pending in list(self._pending.values()):
            self._drop(pending)
        self._selector.close()
        self.listener.close()

    def _next_wait(self) -> Optional[float]:
        times = [p.deadline for p in self._pending.values()]
        if self._resume_at is not None:
            times.append(self._resume_at)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _accept_some(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self._closed:
                    return
                if exc.errno in _OUT_OF_RESOURCES:
                    self.stats["accept_errors"] += 1
                    self._pause_accepting()
                    return
                continue  # that one connection failed (ECONNABORTED, ...): the next may not
            self._backoff = _ACCEPT_BACKOFF_S[0]
            self.stats["accepted"] += 1
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.stats["evicted"] += 1
            self._drop(next(iter(self._pending.values())))
        pending = _Pending(conn)
        try:
            conn.setblocking(False)
            tune(conn)
            self._selector.register(conn, selectors.EVENT_READ, pending)
        except (OSError, ValueError):
            conn.close()
            return
        self._pending[conn] = pending

    def _read_head(self, pending: _Pending) -> None:
        try:
            n = pending.sock.recv_into(memoryview(pending.head)[pending.got:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if n == 0:
            self._drop(pending)
            return
        pending.got += n
        if pending.got == HEAD_BYTES:
            self._unwatch(pending)
            self._route(pending.sock, bytes(pending.head))

    def _route(self, conn: socket.socket, head: bytes) -> None:
        verb, token = head[:len(GET)], head[len(GET):]
        try:
            conn.setblocking(True)
            conn.settimeout(TIMEOUT_S)
        except OSError:
            conn.close()
            return
        if verb == PUT and upload_token_valid(self.upload_key, token):
            if outbox().park_upload(token, conn):
                self.stats["uploads"] += 1
                return  # the paused thread owns it now
        elif verb == GET:
            transfer = outbox().take_transfer(token)
            if transfer is not None:
                self.stats["downloads"] += 1
                self._start_sending(conn, transfer)
                return
        self.stats["refused"] += 1
        conn.close()

    def _expire(self, now: float) -> None:
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self.stats["timed_out"] += 1
            self._drop(pending)
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            try:
                self._selector.register(self.listener, selectors.EVENT_READ, None)
            except (OSError, ValueError):
                self._closed = True  # the listener is gone (close())

    def _pause_accepting(self) -> None:
        self._selector.unregister(self.listener)
        self._resume_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _ACCEPT_BACKOFF_S[1])

    def _unwatch(self, pending: _Pending) -> None:
        self._pending.pop(pending.sock, None)
        try:
            self._selector.unregister(pending.sock)
        except (KeyError, ValueError):
            pass

    def _drop(self, pending: _Pending) -> None:
        self._unwatch(pending)
        pending.sock.close()

    # --- sender threads ----------------------------------------------------------------------

    def _start_sending(self, conn: socket.socket, transfer: Transfer) -> None:
        with self._lock:
            if self._senders >= MAX_SENDERS:
                self._queued.append((conn, transfer))
                return
            self._senders += 1
        try:
            threading.Thread(target=self._send_loop, args=(conn, transfer), name="bridge-bulk-send",
                             daemon=True).start()
        except RuntimeError:  # no thread to spare: this transfer fails, the port goes on
            with self._lock:
                self._senders -= 1
            self.stats["thread_failures"] += 1
            transfer.close()
            conn.close()

    def _send_loop(self, conn: socket.socket, transfer: Transfer) -> None:
        item: Optional[Tuple[socket.socket, Transfer]] = (conn, transfer)
        while item is not None:
            conn, transfer = item
            try:
                send_transfer(conn, transfer)
            except Exception:
                pass  # the receiver went away (Ctrl-C, crash, stall): this transfer is over
            finally:
                transfer.close()
                conn.close()
                with self._lock:
                    item = self._queued.popleft() if self._queued else None
                    if item is None:
                        self._senders -= 1

    def close(self) -> None:
        """Stop serving: the selector thread wakes, closes what it holds and ends."""
        self._closed = True
        try:
            # Wakes the selector. Not close(): a closed fd leaves epoll before its wake-up
            # is delivered; the thread closes the listener on its way out.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_data_server: Optional[DataServer] = None
_data_server_lock = threading.Lock()


def forget_inherited() -> None:
    """In a forked child (bridge/forks.py): a parent's thread may have held the lock at
    the fork (a client's first ``bulk_hello``); the parent's data server is replaced at
    first use (its pid differs)."""
    global _data_server_lock
    _data_server_lock = threading.Lock()


def serving_ports() -> List[int]:
    """The port of this process's data server, if it runs ([] otherwise)."""
    server = _data_server
    return [server.port] if server is not None and server.pid == os.getpid() and not server._closed else []


def close_data_server() -> None:
    """Stop this process's data server, if it runs (a checkpoint's keeper: it serves no one)."""
    server = _data_server
    if server is not None and server.pid == os.getpid():
        server.close()


def data_server(host: str) -> DataServer:
    """This process's data server, started on first use (OSError or BulkError if it cannot)."""
    global _data_server
    with _data_server_lock:
        if _data_server is None or _data_server.pid != os.getpid():
            _data_server = DataServer(host)
        return _data_server


def _serving() -> bool:
    return _data_server is not None and _data_server.pid == os.getpid()


# --- the target's side of a request -------------------------------------------------------------


def export_reply(frames: Sequence[Any], mode: Any) -> Tuple[List[Any], Optional[Dict[str, Any]]]:
    """Target side: take big buffers out of reply ``frames`` (header first) for ``mode``.

    A mode that cannot export (a full /dev/shm) falls back to the next (codec.FALLBACK);
    if none can, or there is no data port, the frames stay as they were: the value still
    arrives, over CURVE.
    """
    if mode not in TRANSFER_MODES or len(frames) < 2 or not _serving():
        return list(frames), None  # both modes are collected through the data port
    try:
        out, descriptor, transfer = export_with_fallback(frames, mode)
    except OSError:
        return list(frames), None
    if transfer is not None:
        outbox().add_transfer(transfer)
    return out, descriptor


def import_request(descriptor: Optional[Dict[str, Any]], values: Sequence[Any],
                   timeout: float = TIMEOUT_S) -> List[Any]:
    """Target side: restore the big buffers of a request's values (its ``_bulk_in``
    descriptor) from the upload the client sent to the data port, before its op runs."""
    if not descriptor:
        return list(values)
    frames = [b""] + list(values)  # descriptors index value frames from 1 (frame 0 is the header)
    frames = import_frames(descriptor, frames, connect=lambda token: outbox().claim_upload(token, timeout))
    return frames[1:]


# --- the client's side: connections to a target's data port -------------------------------------


def _connect(address: Tuple[str, int], head: bytes, timeout: float) -> socket.socket:
    where = f"{address[0]}:{address[1]}"
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except socket.timeout:
        raise BulkError(f"the target's data port {where} did not accept a connection within {timeout:g}s") from None
    except OSError as exc:
        raise BulkError(f"cannot connect to the target's data port {where}: {exc}") from None
    try:
        tune(sock)
        sock.sendall(head)
    except OSError as exc:
        sock.close()
        raise BulkError(f"the target's data port {where} dropped the connection: {exc}") from None
    return sock


def open_download(address: Tuple[str, int], token: bytes, timeout: float = TIMEOUT_S) -> socket.socket:
    """Connect to the target's data port and ask for the transfer ``token``; every later
    wait on the socket is bounded by ``timeout`` too."""
    return _connect(address, GET + token, timeout)


def open_upload(address: Tuple[str, int], token: bytes, timeout: float = TIMEOUT_S) -> socket.socket:
    """Connect to the target's data port for an upload; then :func:`send_transfer` the transfer.

    Send it beside waiting for the reply: the target reads the upload while it serves
    the request that names it. ``token`` must come from :func:`upload_token`.
    """
    return _connect(address, PUT + token, timeout)
