"""Per-pause lanes: frame operations straight to the paused thread's own socket.

A target opens a *lane* for each pause (``bridge/lane.py``) and names its port and key in
a ``lane`` event right after the ``paused`` one. Frame operations sent there skip the
target's server thread: a small ``eval`` takes ~300 us instead of ~450 to 500 us here
(docs/benchmarks.md).

A lane is a second CURVE connection, and its handshake takes milliseconds, so it is
never waited for: the first requests of a pause go through the server socket as before
while the lane connects beside them, and later requests take the lane once its handshake
has succeeded. A lane that cannot connect (a port that a tunnel does not forward) is
never used, and given up after CONNECT_GIVE_UP_S. Lanes are only tried where the
target's lane port is reachable the way its main port was: on the same machine, or on a
remote one reached directly (not through a tunnel, which the boot id tells apart).

``BRIDGE_LANES=0`` turns lanes off (everything goes through the server socket).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import zmq

from bridge import bulk
from bridge.protocol import endpoint_host, tcp_endpoint

from .errors import AuthenticationError, BridgeError
from .pause_state import PauseState
from .transport import Channel
from .values import PauseInfo

_UNUSABLE = None  # a lane that failed: its pause keeps using the server socket
#: A lane not connected by then is given up (a port nothing forwards): no endless retries.
CONNECT_GIVE_UP_S = 5.0


class Lanes:
    """The lanes of one session, by pause id. Used under the session's request lock."""

    def __init__(self, state: PauseState, main: Channel, context: zmq.Context) -> None:
        self.state = state
        self.main = main  # the session's server channel: its endpoint's host, its bulk path
        self.context = context
        self.enabled = False
        self._by_pause: Dict[int, Optional[Channel]] = {}
        self._opened: Dict[int, float] = {}
        self._retired_seen = 0
        # A thread that steps keeps its lane from one stop to the next (bridge/pause.py):
        # the channel of an ended pause waits here for the next pause to name the same
        # (port, key), which then uses it at once, without a new handshake.
        self._names: Dict[int, Tuple[Any, Any]] = {}  # pause id -> (port, key) of its lane
        self._spare: Dict[Tuple[Any, Any], Tuple[Channel, float]] = {}  # with when it was opened

    def channel(self, pause: PauseInfo) -> Optional[Channel]:
        """The pause's lane if it is connected; otherwise None (and start connecting it)."""
        if not self.enabled:
            return None
        if self.state.retired_count != self._retired_seen:  # a pause ended since: close its lane
            self._close_retired()
        pause_id = pause.pause_id
        if pause_id not in self._by_pause:
            if "lane" not in pause.extra:  # its `lane` event has not come (yet): ask again next time
                return None
            name = (pause.extra.get("lane"), pause.extra.get("lane_key"))
            self._names[pause_id] = name
            spare = self._spare.pop(name, None)
            if spare is not None:  # the lane this thread kept from its last stop
                self._by_pause[pause_id], self._opened[pause_id] = spare
                return self.channel(pause)  # connected, or still connecting
            self._by_pause[pause_id] = self._open(pause)
            self._opened[pause_id] = time.monotonic()
            return None  # this request takes the server socket while the lane connects
        lane = self._by_pause[pause_id]
        if lane is None:
            return None
        if not lane.connected:
            try:
                lane.check_events()
            except BridgeError:  # refused or gone (lane.failure says which): given up below
                pass
            if not lane.connected and (lane.failure is not None
                                       or time.monotonic() - self._opened[pause_id] > CONNECT_GIVE_UP_S):
                lane.close()
                self._by_pause[pause_id] = _UNUSABLE
                return None
        return lane if lane.connected else None

    def await_stop(self, lane: Channel, thread: int, after: int, budget: float) -> bool:
        """After a step asked on ``lane``: wait up to ``budget`` seconds for ``thread``'s
        next stop, which the target announces to the client that stepped on that lane
        before it tells its other subscribers (docs/protocol.md, "Events"); whether it came."""
        get = self.state.get

        def stopped() -> bool:
            pause = get(thread)
            return pause is not None and pause.pause_id > after

        return lane.await_event(time.monotonic() + budget, stopped)

    def alive(self, pause: PauseInfo) -> Callable[[], bool]:
        """A check a waiting request makes: False once the pause has ended (its lane is gone),
        or once the target refused our key (no event, the resume among them, comes any more)."""
        state = self.state
        is_retired = state.is_retired
        pause_id = pause.pause_id
        return lambda: not is_retired(pause_id) and not isinstance(state.failure, AuthenticationError)

    def close_all(self) -> None:
        """Close every lane (the session is closing)."""
        for lane in [*self._by_pause.values(), *(spare for spare, _ in self._spare.values())]:
            if lane is not None:
                lane.close()
        self._by_pause.clear()
        self._opened.clear()
        self._spare.clear()
        self._names.clear()

    def _open(self, pause: PauseInfo) -> Optional[Channel]:
        port = pause.extra.get("lane")
        key = pause.extra.get("lane_key")
        if type(port) is not int or not 0 < port < 65536 or not isinstance(key, str) or len(key) != 40:
            return _UNUSABLE
        main = self.main
        info = dict(main.info, endpoint=tcp_endpoint(endpoint_host(main.endpoint), port), server_key=key)
        try:
            lane = Channel(self.context, info, main.keypair)
        except Exception:  # a socket we cannot make (no descriptors left) is a lane we do without
            return _UNUSABLE
        lane.bulk = main.bulk  # one bulk path per session, whichever socket asks
        lane.recovery = main  # `outcome` is a server op: a lost lane reply is asked for there
        lane.on_event = self.state.apply  # a stepping thread's next stop (await_stop)
        return lane

    def _close_retired(self) -> None:
        self._retired_seen = self.state.retired_count
        spares = {}
        for pause_id in [p for p in self._by_pause if self.state.is_retired(p)]:
            lane = self._by_pause.pop(pause_id)
            opened = self._opened.pop(pause_id, 0.0)
            name = self._names.pop(pause_id, None)
            if lane is not None and lane.failure is None and name is not None:
                spares[name] = (lane, opened)  # for the next pause that names it (connecting or not)
            elif lane is not None:
                lane.close()
        # spares from earlier retirements that no pause took: that thread stopped stepping
        for name, (lane, _) in list(self._spare.items()):
            if name not in spares:
                lane.close()
        self._spare = spares


def lanes_allowed(channel: Any, hello: Dict[str, Any]) -> bool:
    """Whether this session should try lanes: not turned off, and not through a tunnel
    (a loopback endpoint whose target runs under another kernel than ours). ``channel``:
    the session's direct channel or its link's port (anything with ``local``)."""
    if os.environ.get("BRIDGE_LANES", "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    if not channel.local:
        return True
    theirs = (hello.get("host") or {}).get("boot_id")
    return bool(theirs) and theirs == bulk.host_identity()["boot_id"]
