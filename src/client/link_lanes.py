"""A link's lanes: frame requests of a group straight to each paused thread's own socket.

A target opens a lane for every pause (bridge/lane.py, client/lanes.py): a socket the
paused thread serves itself, which spares a frame request the two thread hand-offs of
the server path. A group asks every paused member at once, so what each member's target
spends on a request is what the group waits for: its links use lanes too. A link opens
a pause's lane (one more :class:`~client.ports.DirectPort`, on the I/O thread) at the
first request for that pause after the target named the lane, sends frame requests for
that pause through it once its handshake succeeded, and closes it when the pause ends.
Until then, and where lanes are not allowed, requests take the server socket.

A thread that steps keeps its lane from one stop to the next (bridge/pause.py: the
``resumed`` event's ``action`` is a step, and the next ``paused`` event names the same
lane): the link keeps that lane too, as the thread's spare, and the next pause uses it
at once, without a new handshake (client/lanes.py does the same for a session).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import zmq

from bridge import keys
from bridge.protocol import endpoint_host, tcp_endpoint

from .ports import DirectPort

#: A lane not connected by then is given up (a port nothing forwards): no endless retries.
CONNECT_GIVE_UP_S = 5.0
#: Resume actions after which the target keeps the thread's lane for its next stop.
STEPPING = ("step", "next", "step_out")


class LinkLane:
    """One pause's lane as a link uses it: its port, and whether it is connected."""

    def __init__(self, link: Any, port: DirectPort, name: Tuple[int, str]) -> None:
        self.link = link
        self.port = port
        #: (port, key) as the target names the lane: a stepping thread's next pause names it again.
        self.name = name
        self.opened = time.monotonic()
        self.handshakes = 0
        self.usable = True

    @property
    def connected(self) -> bool:
        return self.usable and self.handshakes > 0

    # PortSink (the loop thread)

    def on_message(self, frames: List[Any]) -> None:
        self.link.on_message(frames, from_lane=True)

    def on_connected(self) -> None:
        self.handshakes += 1
        if self.handshakes > 1:  # reconnected: what it carried may have lost its reply
            self.link.ask_outcomes(via=self.port)

    def on_failure(self, exc: BaseException) -> None:
        self.usable = False
        self.link.lane_failed(self.port, exc)

    def on_tick(self, now: float) -> None:
        if not self.connected and now - self.opened > CONNECT_GIVE_UP_S:
            self.usable = False


class LinkLanes:
    """The lanes of one link, by pause id. The loop thread only."""

    def __init__(self, link: Any) -> None:
        self.link = link
        #: Set by the session once it knows lanes reach the target (client/lanes.py lanes_allowed).
        self.enabled = False
        self.info: Dict[str, Any] = {}
        self.keypair: Optional[keys.KeyPair] = None
        self.context: Optional[zmq.Context] = None
        self._by_pause: Dict[int, Optional[LinkLane]] = {}
        self._retiring: List[LinkLane] = []
        #: thread id -> the lane it kept from its last stop (it was stepping).
        self._spare: Dict[int, LinkLane] = {}

    def enable(self, info: Dict[str, Any], keypair: keys.KeyPair, context: zmq.Context) -> None:
        """Use lanes from now on (any thread: the loop reads these once set)."""
        self.info, self.keypair, self.context = info, keypair, context
        self.enabled = True

    def port_for(self, thread: Optional[int], pause_id: Optional[int]) -> Optional[DirectPort]:
        """The connected lane of ``thread``'s pause ``pause_id``, or None (and start opening it)."""
        if not self.enabled or pause_id is None or thread is None:
            return None
        if pause_id not in self._by_pause:
            pause = self.link.feed.state.get(thread)
            if pause is None or pause.pause_id != pause_id or "lane" not in pause.extra:
                return None  # its `lane` event has not come (yet): the server socket serves
            name = (pause.extra.get("lane"), pause.extra.get("lane_key"))
            spare = self._spare.pop(thread, None) or self._stepped_from(name, pause_id)
            if spare is not None and spare.usable and spare.name == name:
                self._by_pause[pause_id] = spare  # the lane this thread kept from its last stop
            else:
                if spare is not None:
                    self._let_go(spare)
                self._by_pause[pause_id] = self._open(pause.extra)
                return None
        lane = self._by_pause[pause_id]
        if lane is None or not lane.connected:
            if lane is not None and not lane.usable:
                lane.port.close()
                self._by_pause[pause_id] = None
            return None
        return lane.port

    def retire(self, pause_id: int, thread: Optional[int] = None, action: Optional[str] = None) -> None:
        """Pause ``pause_id`` of ``thread`` ended by ``action``: after a step the lane is
        kept as the thread's spare; otherwise it closes once no request waits on it (the
        ``resumed`` event can come on the server socket before a resume's reply on the lane)."""
        lane = self._by_pause.pop(pause_id, None)
        stepping = action in STEPPING and thread is not None
        if lane is None:  # no request of this pause used a lane: a spare stays while the thread steps
            if not stepping and thread in self._spare:
                self._let_go(self._spare.pop(thread))  # type: ignore[arg-type]
            return
        if stepping and lane.usable:
            older = self._spare.pop(thread, None)  # type: ignore[arg-type]
            if older is not None and older is not lane:
                self._let_go(older)
            self._spare[thread] = lane  # type: ignore[index]
        else:
            self._let_go(lane)

    def _stepped_from(self, name: Tuple[Any, Any], pause_id: int) -> Optional[LinkLane]:
        """The lane of an earlier pause that names the same lane: its thread stepped, and
        the stop came on the lane before the step's ``resumed`` event (docs/protocol.md)."""
        for older, lane in list(self._by_pause.items()):
            if older < pause_id and lane is not None and lane.name == name:
                del self._by_pause[older]
                return lane
        return None

    def _let_go(self, lane: LinkLane) -> None:
        self._retiring.append(lane)
        self.sweep()

    def sweep(self) -> None:
        """Close the lanes of ended pauses that no request waits on any more."""
        if self._retiring:
            busy = self.link.ports_in_use()
            for lane in [lane for lane in self._retiring if lane.port not in busy]:
                self._retiring.remove(lane)
                lane.port.close()

    def close_all(self) -> None:
        for lane in list(self._by_pause.values()) + self._retiring + list(self._spare.values()):
            if lane is not None:
                lane.port.close()
        self._by_pause.clear()
        self._retiring.clear()
        self._spare.clear()

    def _open(self, extra: Dict[str, Any]) -> Optional[LinkLane]:
        port, key = extra.get("lane"), extra.get("lane_key")
        if type(port) is not int or not 0 < port < 65536 or not isinstance(key, str) or len(key) != 40:
            return None
        endpoint = tcp_endpoint(endpoint_host(str(self.info["endpoint"])), port)
        try:
            lane_port = DirectPort(dict(self.info, endpoint=endpoint, server_key=key), self.keypair,  # type: ignore[arg-type]
                                   self.context)  # type: ignore[arg-type]
        except Exception:  # no descriptors left, say: the server socket serves this pause
            return None
        lane = LinkLane(self.link, lane_port, (port, key))
        lane_port.start(self.link.loop, lane)
        return lane
