"""A paused thread's way to the server thread: an inproc PUSH socket per paused thread,
and the tags of the internal messages it carries (server.py reads them)."""

from __future__ import annotations

import zmq

from .protocol import ZERO_COPY_THRESHOLD, Frames

# Tags of internal messages from paused threads to the server thread: the first byte of
# the first frame (a reply's first frame is the tag followed by the client's identity).
TAG_REPLY = b"R"
TAG_STOP = b"S"
# Nothing to do but look again: events are queued (Server.broadcast), or a hub connection
# was dialed and is to be polled (Server.dial_hub).
TAG_WAKE = b"W"


class PushSink:
    """The server path's reply sink: a paused thread's inproc PUSH socket to the server
    thread, which forwards each reply to its client on the ROUTER socket. One per paused
    thread, used only by the thread that made it (ZeroMQ sockets are not shared)."""

    def __init__(self, context: zmq.Context, internal_endpoint: str) -> None:
        self.socket = context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(internal_endpoint)

    def send(self, identity: bytes, frames: Frames) -> None:
        """Hand a reply to the server thread (the tag and identity travel in the first part)."""
        # Zero-copy only pays for big frames: it costs a zmq.Frame object per part.
        small = len(frames) <= 3 and all(len(f) < ZERO_COPY_THRESHOLD for f in frames)
        self.socket.send_multipart([TAG_REPLY + identity, *frames], copy=small)

    def close(self) -> None:
        """Close the socket, letting queued replies out (bounded by its linger)."""
        self.socket.close()
