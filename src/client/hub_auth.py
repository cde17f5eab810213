"""Whom a hub admits: the ZAP handler of the client's ZeroMQ context, on the I/O loop.

libzmq asks a ZAP handler (an ``inproc://zeromq.zap.01`` REP socket in the same context)
about every CURVE handshake a server socket sees, and admits the peer only on a ``200``.
The targets run a handler thread of their own (bridge/key_policy.py); the notebook has
its one I/O thread (client/io_loop.py), so its handler is a :class:`~client.io_loop.Pollable`
there: no thread more. Each hub's ROUTER has a ZAP domain of its own, and the handler
asks that hub (:func:`register`) whether the client key is one it authorizes.

Without a handler libzmq would admit every key, so the handler is bound before any
hub's socket (:func:`register` binds it at once), and hub sockets set
``ZMQ_ZAP_ENFORCE_DOMAIN``: no handler, no handshake.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

import zmq
from zmq.utils import z85

from .io_loop import io_loop

ZAP_ENDPOINT = "inproc://zeromq.zap.01"

#: ``decide(client key (z85), peer address) -> admitted``; runs on the I/O thread.
Decide = Callable[[str, str], bool]


class ZapHandler:
    """The context's ZAP handler, polled by the I/O loop; answers by each domain's ``decide``."""

    def __init__(self, context: zmq.Context) -> None:
        self.pid = os.getpid()
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        #: domain -> decide; replaced whole (the loop thread reads it without a lock).
        self.domains: Dict[bytes, Decide] = {}

    def answer(self, request: List[bytes]) -> List[bytes]:
        """The ZAP reply to one request (RFC 27): 200 for an admitted CURVE key, else 400."""
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = request[:6]
        decide = self.domains.get(domain)
        if version != b"1.0" or mechanism != b"CURVE" or decide is None or len(request) < 7 or len(request[6]) != 32:
            return [b"1.0", request_id, b"400", b"not admitted", b"", b""]
        key = z85.encode(request[6]).decode("ascii")
        try:
            admitted = decide(key, address.decode("utf-8", "replace"))
        except Exception:  # a broken policy admits nobody
            admitted = False
        if admitted:
            # The user id is the key: every message of the connection then carries it
            # (its ``User-Id`` property), and the hub checks it on each one.
            return [b"1.0", request_id, b"200", b"OK", key.encode("ascii"), b""]
        return [b"1.0", request_id, b"400", b"not admitted", b"", b""]

    # Pollable (client/io_loop.py)

    def poll_items(self) -> Sequence[Any]:
        return (self.socket,)

    def on_readable(self, item: Any) -> None:
        sock = self.socket
        while not sock.closed and sock.get(zmq.EVENTS) & zmq.POLLIN:
            sock.send_multipart(self.answer(sock.recv_multipart(zmq.NOBLOCK)))

    def on_tick(self, now: float) -> None:
        pass

    def on_removed(self) -> None:
        self.socket.close(linger=0)


_lock = threading.Lock()
_handler: Optional[ZapHandler] = None


def register(domain: bytes, decide: Decide) -> None:
    """Answer handshakes of ZAP domain ``domain`` with ``decide``; the handler is bound
    (and polled by the I/O loop) before this returns."""
    global _handler
    loop = io_loop()
    with _lock:
        if _handler is None or _handler.pid != os.getpid():
            _handler = ZapHandler(loop.context)
            loop.add(_handler)
        _handler.domains = {**_handler.domains, domain: decide}


def unregister(domain: bytes) -> None:
    """Stop admitting anyone to ``domain`` (a closed hub)."""
    with _lock:
        handler = _handler
        if handler is not None and handler.pid == os.getpid():
            handler.domains = {d: f for d, f in handler.domains.items() if d != domain}
