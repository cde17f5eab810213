"""How a link reaches its target: the :class:`Port` interface, and :class:`DirectPort`, which dials.

A :class:`~client.link.Link` talks to its target through a Port. :class:`DirectPort`
dials the target's server socket (or a pause's lane) with a CURVE DEALER; a connection
the target dialed (a hub in the notebook) is another Port, and nothing above needs to
know which (docs/groups.md, "A member's connection"). Everything a Port does runs on the
I/O loop thread (client/io_loop.py); its sockets are touched by no other thread.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Sequence

import zmq
from zmq.utils.monitor import parse_monitor_message

from bridge import keys, protocol

from .errors import SessionLost
from .io_loop import IOLoop
from .transport import auth_failure, close_monitored, new_routing_id, open_dealer


_POLLIN, _EVENTS, _NOBLOCK = int(zmq.POLLIN), int(zmq.EVENTS), int(zmq.NOBLOCK)  # ints: enum ops cost a microsecond


class PortSink(Protocol):
    """What a Port reports to (its :class:`Link`); called on the loop thread only."""

    def on_message(self, frames: List[Any]) -> None:
        """A whole message from the target: header frame first, then value frames."""

    def on_connected(self) -> None:
        """A handshake with the target succeeded: the first one, or a reconnect."""

    def on_failure(self, exc: BaseException) -> None:
        """The port gave up for good (a refused key, a vanished peer): ``exc`` says why."""

    def on_tick(self, now: float) -> None:
        """The loop's timer (every io_loop.TICK_S seconds)."""


class Port(Protocol):
    """One target's message path, as a Link uses it. Every method runs on the loop thread.

    A Port delivers whole messages to its sink, reports each successful handshake (so the
    link re-subscribes to events and asks about requests in flight after a reconnect)
    and its permanent failure, and keeps one ``routing_id`` across reconnects: the
    target's reply cache (bridge/outcomes.py) knows the client's replies by it.
    """

    #: Where the target is, for messages ("tcp://127.0.0.1:40123").
    where: str
    #: The target's pid when it runs on this host (the link checks that it lives), else None.
    local_pid: Optional[int]
    #: The id the target knows this connection by.
    routing_id: bytes

    def start(self, loop: IOLoop, sink: PortSink) -> None:
        """Begin delivering to ``sink`` (register with ``loop`` whatever must be polled)."""

    def send(self, frames: List[Any]) -> None:
        """Queue one message to the target; never blocks (raise if it cannot be queued)."""

    def close(self) -> None:
        """Stop and release everything (never blocks); no sink call follows."""


class DirectPort:
    """A Port that dials the target's server socket: a CURVE DEALER and its monitor.

    The sockets are made on the calling thread (so that ResourceLimit reaches the
    caller), then used by the loop thread only.
    """

    def __init__(self, info: Dict[str, Any], keypair: keys.KeyPair, context: zmq.Context) -> None:
        self.where = str(info["endpoint"])
        self.pid = int(info["pid"])
        host = protocol.endpoint_host(self.where)
        #: Whether the endpoint is a loopback one (the target, or a tunnel to it, is on this host).
        self.local = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        self.local_pid: Optional[int] = self.pid if self.local else None
        self.keypair = keypair
        self.routing_id = new_routing_id()
        self.socket, self.monitor = open_dealer(context, info, keypair, self.routing_id)
        self._loop: Optional[IOLoop] = None
        self._sink: Optional[PortSink] = None
        self._closed = False

    def start(self, loop: IOLoop, sink: PortSink) -> None:
        self._loop, self._sink = loop, sink
        loop.add(self)

    def send(self, frames: List[Any]) -> None:
        sock = self.socket
        if len(frames) == 1 and type(frames[0]) is bytes:  # the common case: one small header
            sock.send(frames[0], _NOBLOCK)
        else:
            sock.send_multipart(frames, _NOBLOCK, copy=all(type(f) is bytes for f in frames))
        if self._loop is not None:
            self._loop.check(self, sock)  # its input may have been taken in by the send

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sink = None
        if self._loop is not None:
            self._loop.remove(self)  # the loop closes the sockets (on_removed)
        else:
            self.on_removed()

    # --- Pollable (io_loop.py) -----------------------------------------------------------------

    def poll_items(self) -> Sequence[Any]:
        return (self.socket, self.monitor)

    def on_readable(self, item: Any) -> None:
        if item is self.monitor:
            self._read_monitor()
            return
        sock = self.socket
        while self._sink is not None and not sock.closed and sock.get(_EVENTS) & _POLLIN:
            self._sink.on_message(protocol.recv_parts(sock, _NOBLOCK, 1))

    def on_tick(self, now: float) -> None:
        if self._sink is not None:
            self._sink.on_tick(now)

    def on_removed(self) -> None:
        close_monitored(self.socket, self.monitor)

    def _read_monitor(self) -> None:
        monitor = self.monitor
        while self._sink is not None and not monitor.closed and monitor.get(_EVENTS) & _POLLIN:
            event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._sink.on_connected()
            else:
                failure = auth_failure(event, self.pid, self.where, self.keypair)
                if failure is not None and self.local_pid is not None and not keys.process_alive(self.local_pid):
                    failure = SessionLost(f"the target process {self.pid} has exited")  # died mid-handshake
                if failure is not None:  # the key will not change: no retry storm
                    sink = self._sink
                    self.close()
                    sink.on_failure(failure)
