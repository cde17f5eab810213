"""Server ops of the session itself: hello, events, status, threads, the bulk offer.

They run on the server thread (quick, no user code). ``server`` is the process's
:class:`~bridge.server.Server`.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence

from . import bulk
from .ops import server_op
from .protocol import PROTOCOL_VERSION
from .threads import describe_threads

#: Event subscribers kept at most; the oldest goes when a new one comes.
MAX_SUBSCRIBERS = 64


@server_op("hello")
def _op_hello(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    server.clients_seen += 1
    info = server.connection_info()
    info["protocol"] = PROTOCOL_VERSION
    info["host"] = bulk.host_identity()  # the client tells a tunnel from a direct connection (lanes)
    info["stops_on_lane"] = True  # a step asked on a lane: the next stop is announced there (pause.py)
    return info


@server_op("subscribe")
def _op_subscribe(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    server.clients_seen += 1
    if identity not in server.subscribers and len(server.subscribers) >= MAX_SUBSCRIBERS:
        oldest = min(server.subscribers, key=server.subscribers.__getitem__)
        del server.subscribers[oldest]
    server.subscribers[identity] = time.monotonic()
    return {"paused": [p.describe() for p in server.paused_threads()]}


@server_op("unsubscribe")
def _op_unsubscribe(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> None:
    server.subscribers.pop(identity, None)
    return None


@server_op("status")
def _op_status(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    return {"pid": server.pid, "paused": [p.describe() for p in server.paused_threads()]}


@server_op("threads")
def _op_threads(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> List[Dict[str, Any]]:
    return describe_threads(server)


@server_op("bulk_hello")
def _op_bulk_hello(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    """Offer the bulk modes this target can serve (the client picks, per session)."""
    return bulk.hello_reply(server.host)
