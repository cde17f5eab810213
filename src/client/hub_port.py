"""A member's connection through a hub: the :class:`~client.ports.Port` of a target that dialed in.

A hub (client/hub.py) owns one ROUTER that every target dials; each target is one
ZeroMQ identity on it. A :class:`HubPort` is that identity as a
:class:`~client.link.Link` sees it: messages the hub reads from the identity go to the
link, and what the link sends goes out with the identity in front. Nothing above the
port knows that the target dialed (docs/groups.md, "A member's connection").

Everything here runs on the I/O loop thread, as every Port does.
"""

from __future__ import annotations

from typing import Any, List, Optional, Protocol

from .io_loop import IOLoop
from .ports import PortSink


class HubSocket(Protocol):
    """What a HubPort asks of its hub (client/hub.py's Hub): the loop thread only."""

    def attach_port(self, port: "HubPort") -> bool:
        """Route the target's messages to ``port``; whether the target is connected."""

    def detach_port(self, port: "HubPort") -> None:
        """Route them nowhere any more."""

    def send_to(self, identity: bytes, frames: List[Any]) -> None:
        """Send a message to the target (zmq.ZMQError when it cannot be queued)."""

    def gone_error(self, identity: bytes) -> BaseException:
        """The error that says the target left."""


class HubPort:
    """One target's way through the hub's ROUTER (identity ``routing_id``)."""

    def __init__(self, hub: HubSocket, identity: bytes, where: str) -> None:
        #: Where the target is, for messages: its address as the hub saw it, and its pid.
        self.where = where
        #: Never checked by pid: a target behind a hub may be in another host's (or
        #: container's) pid space; the hub says when its connection ends instead.
        self.local_pid: Optional[int] = None
        #: The target's identity on the hub's socket.
        self.routing_id = identity
        self._hub = hub
        self._sink: Optional[PortSink] = None
        self._closed = False

    def start(self, loop: IOLoop, sink: PortSink) -> None:
        if self._closed:
            return
        self._sink = sink
        if self._hub.attach_port(self):
            sink.on_connected()  # the target's handshake with the hub is done already
        else:
            self.left(self._hub.gone_error(self.routing_id))

    def send(self, frames: List[Any]) -> None:
        self._hub.send_to(self.routing_id, frames)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink = None
        self._hub.detach_port(self)

    # --- called by the hub (the loop thread) ----------------------------------------------

    def deliver(self, frames: List[Any]) -> None:
        """A whole message from the target."""
        if self._sink is not None:
            self._sink.on_message(frames)

    def reconnected(self) -> None:
        """The target dialed in again (and announced itself): the link re-subscribes and
        asks what became of its requests in flight."""
        if self._sink is not None:
            self._sink.on_connected()

    def left(self, exc: BaseException) -> None:
        """The target is gone for good: the link fails with ``exc``."""
        sink = self._sink
        self.close()
        if sink is not None:
            sink.on_failure(exc)

    def tick(self, now: float) -> None:
        if self._sink is not None:
            self._sink.on_tick(now)
