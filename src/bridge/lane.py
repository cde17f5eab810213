"""A paused thread's own socket: frame operations straight to the thread that serves them.

Through the server thread, a request reaches a paused thread in two thread hand-offs
(server thread -> paused thread -> server thread), and on a loaded machine each hand-off
(a wake-up plus the Python around it) costs more than the operation itself. So each pause
also opens a *lane*: a second CURVE ROUTER socket with a key pair of its own, behind the
same ZAP handler (only authorized keys), bound on the same host, owned and polled by the
paused thread itself for the length of the pause. Clients learn its port and public key
from the ``paused`` event (``lane``, ``lane_key``) and send frame operations there; the paused thread answers on
the same socket. Everything else (server operations, events) stays on the server socket,
and the server path for frame operations keeps working (it is the fallback).

A lane request must carry the ``pause_id`` it was meant for: a lane is closed when its
pause ends, and a request that names another pause is refused, never run in a frame the
client did not see.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

import zmq

from . import wire
from .ops import FRAME_OPS, OpError
from .server import BadRequest, Server, encode_error, parse_request, recv_parts

log = logging.getLogger("bridge")

#: How long a closing lane may still flush its last replies (a resume's answer).
CLOSE_LINGER_MS = 1000

Request = Tuple[bytes, Any, str, dict, List[Any]]


class Lane:
    """One pause's CURVE ROUTER socket. Used only by the paused thread that opened it."""

    def __init__(self, server: Server) -> None:
        # A key pair of its own: the server's secret lives only inside the server's socket.
        # Clients learn the public half from the paused event, which came over the
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

    def receive(self, thread_id: int, pause_id: int) -> Optional[Request]:
        """The frame op waiting on the lane (the caller polled it), or None if there was
        none or it was refused (answered here: malformed, another op, another pause)."""
        try:
            identity, *frames = recv_parts(self.socket, zmq.NOBLOCK, 2)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:  # never into the user's code: this thread is theirs
            log.warning("bridge: lane receive failed: %s", exc)
            return None
        try:
            request_id, op, args, values = parse_request(frames)
        except BadRequest as exc:
            self.send(identity, encode_error(exc.request_id, "ProtocolError", str(exc)))
            return None
        problem = _refusal(op, args, thread_id, pause_id)
        if problem is not None:
            self.send(identity, encode_error(request_id, problem.kind, str(problem)))
            return None
        return identity, request_id, op, args, values

    def send(self, identity: bytes, frames: List[Any]) -> None:
        """Send a reply; a client that went away is not an error."""
        sock = self.socket
        try:
            # Part by part: send_multipart's checks cost more than the sends (issue 6).
            # Bytes parts are copied (small), zmq.Frame parts passed on as they are.
            sock.send(identity, zmq.SNDMORE)
            last = len(frames) - 1
            for i, part in enumerate(frames):
                sock.send(part, 0 if i == last else zmq.SNDMORE, copy=len(part) < wire.ZERO_COPY_THRESHOLD)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                log.warning("bridge: lane send failed: %s", exc)

    def close(self) -> None:
        """Close the socket, letting the last replies out (bounded by CLOSE_LINGER_MS)."""
        self.socket.close(linger=CLOSE_LINGER_MS)


def _refusal(op: str, args: Any, thread_id: int, pause_id: int) -> Optional[OpError]:
    if op not in FRAME_OPS:
        return OpError("UnknownOp", f"a pause's lane serves frame operations only, not {op!r}")
    expected = args.get("pause_id")
    if type(expected) is not int:
        return OpError("BadRequest", "a lane request needs the integer 'pause_id' it is meant for")
    if expected != pause_id:
        return OpError("NotPaused", f"this lane serves pause {pause_id}, not pause {expected} (it resumed)")
    thread = args.get("thread")
    if thread is not None and thread != thread_id:
        return OpError("NotPaused", f"this lane serves thread {thread_id}, not thread {thread}")
    return None
