"""One request sent through a session's link without waiting (:meth:`Session.submit`),
and the BridgeError a transport failure means: what a group does for each member."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import zmq

from bridge import bulk, wire

from .bulk_path import Outgoing, finish_reply
from .errors import BridgeError, ProtocolError, SessionLost, TransferError
from .link import Link

#: A reply: (result, value frames).
Reply = Tuple[Any, List[Any]]


class MemberReply:
    """A request sent through a session's link (:meth:`Session.submit`): ``result()``
    waits for it until its own deadline. ``link``, ``peer`` and ``pid``: the session's
    link, bulk peer (None: everything inside CURVE) and target pid."""

    def __init__(self, link: Link, peer: Optional[bulk.BulkPeer], pid: int, op: str,
                 args: Optional[Dict[str, Any]], frames: Optional[List[Any]], timeout: Optional[float],
                 pause_id: Optional[int] = None, release: Optional[List[List[int]]] = None) -> None:
        self.op = op
        self._peer = peer
        self._pid = pid
        self._out = Outgoing(peer, frames, pid, timeout)
        try:
            self.pending = link.submit(op, args, self._out.frames, timeout=timeout, pause_id=pause_id,
                                       release=release, bulk=self._out.mode, bulk_in=self._out.descriptor)
            self._out.sent()
        except BaseException:
            self._out.close()
            raise

    @property
    def done(self) -> bool:
        """Whether the reply (or a failure) is in."""
        return self.pending.done

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait up to ``timeout`` seconds for the reply; whether it is in."""
        return self.pending.wait(timeout)

    def result(self) -> Reply:
        """(result, value frames), or the member's error (a BridgeError)."""
        try:
            try:
                header, values = self.pending.raw()
            finally:
                self._out.close()
            header, values = finish_reply(header, values, self._peer, self._pid, self.pending.timeout)
        except BridgeError:
            raise
        except Exception as exc:
            raise as_bridge_error(exc, self._pid) from exc
        self._out.count()
        return header.get("result"), values


def as_bridge_error(exc: Exception, pid: int) -> Exception:
    """The BridgeError a transport failure means."""
    if isinstance(exc, (bulk.BulkError, OSError)):  # OSError: only the bulk path uses plain sockets
        return TransferError("BulkError", f"pid {pid}: {type(exc).__name__}: {exc}")
    if isinstance(exc, wire.ProtocolError):
        return ProtocolError("ProtocolError", f"pid {pid} sent a reply we cannot read: {exc}")
    if isinstance(exc, zmq.ZMQError):
        return SessionLost(f"pid {pid}: the connection failed ({exc})")
    return exc
