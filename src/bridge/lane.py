"""A paused thread's own socket: frame operations straight to the thread that serves them.

Through the server thread, a request reaches a paused thread in two thread hand-offs
(server thread -> paused thread -> server thread), and on a loaded machine each hand-off
(a wake-up plus the Python around it) costs more than the operation itself. So each pause
also opens a *lane*: a second CURVE ROUTER socket with a key pair of its own, behind the
same ZAP handler (only authorized keys), bound on the same host, owned and polled by the
paused thread itself for the length of the pause. Clients learn its port and public key
from the ``lane`` event (``lane``, ``lane_key``) and send frame operations there; the
paused thread answers on the same socket. Everything else (server operations, events) stays on the server socket,
and the server path for frame operations keeps working (it is the fallback).

A lane request must carry the ``pause_id`` it was meant for (a header field,
docs/protocol.md): a lane is closed when its pause ends, and a request that names another
pause is refused, never run in a frame the client did not see.

A lane is one of the paused thread's request sources (pause.py) and the reply sink of the
requests it took in.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional

import zmq

from . import dispatch
from .key_policy import recv_from_peer
from .ops import FRAME_OPS, OpError, arg
from .protocol import ZERO_COPY_THRESHOLD, BadRequest, Request, encode_error
from .server import Server

log = logging.getLogger("bridge")

#: How long a closing lane may still flush its last replies (a resume's answer).
CLOSE_LINGER_MS = 1000


class Lane:
    """One pause's CURVE ROUTER socket. Used only by the paused thread that opened it."""

    def __init__(self, server: Server, thread_id: int, pause_id: int) -> None:
        self.thread_id = thread_id
        self.pause_id = pause_id
        self.policy = server.policy  # a key revoked during the pause is refused here too
        # A key pair of its own: the server's secret lives only inside the server's socket.
        # Clients learn the public half from the lane event, which came over the
        # server's CURVE channel (so it is as trustworthy as the connection file).
        public, secret = zmq.curve_keypair()
        self.public_key = public.decode("ascii")
        self.socket = server.curve_router(public, secret)
        del secret
        try:
            self.port = server.bind(self.socket)
        except zmq.ZMQError:
            self.socket.close(0)
            raise
        #: What the pause loop polls for this source.
        self.pollable = self.socket

    def receive(self) -> Optional[Request]:
        """The frame op waiting on the lane (the caller polled it), or None if there was
        none or it was refused (answered here: malformed, another op, another pause)."""
        try:
            key, (identity, *frames) = recv_from_peer(self.socket, zmq.NOBLOCK, 2)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:  # never into the user's code: this thread is theirs
            log.warning("bridge: lane receive failed: %s", exc)
            return None
        if not self.policy.admits(key):  # revoked since its handshake: nothing of it is applied
            self.send(identity, self.policy.refusal(key, frames, identity))
            return None
        try:
            request = dispatch.accept(frames, identity)
        except BadRequest as exc:
            self.send(identity, encode_error(exc.request_id, "ProtocolError", str(exc)))
            return None
        try:
            self._check(request)
        except OpError as exc:
            self.send(identity, dispatch.refusal(request, exc.kind, str(exc)))
            return None
        request.reply = self
        return request

    def send(self, identity: bytes, frames: List[Any]) -> None:
        """Send a reply; a client that went away is not an error."""
        sock = self.socket
        try:
            # Part by part: send_multipart's checks cost more than the sends.
            # Bytes parts are copied (small), zmq.Frame parts passed on as they are.
            sock.send(identity, zmq.SNDMORE)
            last = len(frames) - 1
            for i, part in enumerate(frames):
                sock.send(part, 0 if i == last else zmq.SNDMORE, copy=len(part) < ZERO_COPY_THRESHOLD)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                log.warning("bridge: lane send failed: %s", exc)

    def send_event(self, identity: bytes, frames: List[Any]) -> bool:
        """Send an event to one client of the lane without waiting (a client that went
        away, or one that reads nothing, does not hold the thread); whether it went."""
        sock = self.socket
        try:
            sock.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
            sock.send_multipart(frames, zmq.NOBLOCK)  # all parts go once the first did
            return True
        except zmq.ZMQError:
            return False

    def close(self) -> None:
        """Close the socket, letting the last replies out (bounded by CLOSE_LINGER_MS)."""
        self.socket.close(linger=CLOSE_LINGER_MS)

    def _check(self, request: Request) -> None:
        """Refuse (OpError) what this lane does not serve: other ops, other pauses, other threads."""
        if request.op not in FRAME_OPS:
            raise OpError("UnknownOp", f"a pause's lane serves frame operations only, not {request.op!r}")
        if request.pause_id is None:
            raise OpError("BadRequest", "a lane request needs the integer 'pause_id' it is meant for")
        if request.pause_id != self.pause_id:
            raise OpError("NotPaused", f"this lane serves pause {self.pause_id}, not pause {request.pause_id} (it resumed)")
        thread = arg(request.args, "thread", int, None)
        if thread is not None and thread != self.thread_id:
            raise OpError("NotPaused", f"this lane serves thread {self.thread_id}, not thread {thread}")
