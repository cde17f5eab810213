"""The outcome of a request whose reply may have been lost: a small per-client reply cache.

A connection can drop while a request is in flight and come back moments later: the
target was stopped (SIGSTOP, a debugger, a swapped-out VM) past the heartbeat timeout,
or the network hiccuped. The request may have run, and its reply went to a connection
that no longer exists. Clients keep one routing id per socket across reconnects
(client/transport.py), so the target can tell them what became of a request:
the ``outcome`` server op answers, for one request id of the asking connection,

* ``done``: the reply itself, re-sent as the value frames (the whole message, header first);
* ``ran``: it ran, but its reply was too big to keep (or travelled by the bulk path);
* ``running``: accepted and not answered yet (the reply will come on the new connection);
* ``unseen``: a request id above every id this connection has sent: it never arrived;
* ``forgotten``: older than what the cache holds: the target cannot say.

The cache is bounded in entries and bytes (oldest first out) and keyed by the client's
routing id, so a client only ever sees its own replies. docs/protocol.md, "Lost replies".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .ops import Reply, arg, bad_request, server_op

#: Entries kept at most (all clients together); the oldest goes first.
MAX_ENTRIES = 256
#: Bytes of kept replies at most (all clients together).
MAX_BYTES = 8 * 1024 * 1024
#: A reply bigger than this is remembered as "ran", not kept.
MAX_REPLY_BYTES = 1024 * 1024
#: Connections whose highest request id is remembered (to tell ``unseen`` from ``forgotten``).
MAX_CLIENTS = 256

_RUNNING = "running"


def _size(frames: Sequence[Any]) -> int:
    total = 0
    for f in frames:
        total += len(f) if type(f) is bytes else memoryview(f).nbytes
    return total


def _spilled_bulk(frames: Sequence[Any]) -> bool:
    """Whether a reply whose header was too big names a bulk descriptor in its spill
    frame, the last (bridge/protocol.py)."""
    return len(frames) > 1 and b'"bulk":{' in bytes(frames[-1])


class ReplyCache:
    """Request id -> what became of it, per client routing id. Thread-safe (the server
    thread and paused threads record; the server thread answers ``outcome``)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # (identity, request id) -> "running" | ("done", frames, size) | ("ran", None, 0)
        self._entries: "OrderedDict[Tuple[bytes, Any], Any]" = OrderedDict()
        self._bytes = 0
        self._highest: "OrderedDict[bytes, int]" = OrderedDict()

    def started(self, identity: bytes, request_id: Any) -> None:
        """A request was accepted (before it is routed anywhere)."""
        with self._lock:
            self._entries[(identity, request_id)] = _RUNNING
            if type(request_id) is int:
                highest = self._highest.pop(identity, 0)
                self._highest[identity] = request_id if request_id > highest else highest
                if len(self._highest) > MAX_CLIENTS:
                    self._highest.popitem(last=False)
            self._evict()

    def finished(self, identity: bytes, request_id: Any, frames: Sequence[Any]) -> None:
        """The reply to a request is about to be sent: keep it (or remember that it ran)."""
        key = (identity, request_id)
        size = _size(frames)
        # A reply whose buffers went by the bulk path cannot be sent again (the buffers
        # are gone once read): remember only that it ran. The descriptor is in the header,
        # or in its spill frame when the header was too big.
        head = bytes(frames[0]) if frames else b""
        kept = (bool(frames) and size <= MAX_REPLY_BYTES and b'"bulk":{' not in head
                and not (b'"spill":' in head and _spilled_bulk(frames)))
        with self._lock:
            old = self._entries.pop(key, None)
            if isinstance(old, tuple):
                self._bytes -= old[2]
            if kept:
                self._entries[key] = ("done", list(frames), size)
                self._bytes += size
            else:
                self._entries[key] = ("ran", None, 0)
            self._evict()

    def outcome(self, identity: bytes, request_id: Any) -> Tuple[str, Optional[List[Any]]]:
        """(state, the reply's frames when ``done``) for one request of ``identity``."""
        with self._lock:
            entry = self._entries.get((identity, request_id))
            highest = self._highest.get(identity)
        if entry is None:
            if type(request_id) is int and (highest is None or request_id > highest):
                return "unseen", None
            return "forgotten", None
        if entry == _RUNNING:
            return "running", None
        return entry[0], entry[1]

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self.max_entries or self._bytes > self.max_bytes:
            _, old = entries.popitem(last=False)
            if isinstance(old, tuple):
                self._bytes -= old[2]


#: The process's reply cache (dispatch.py records into it).
CACHE = ReplyCache()

def forget_inherited() -> ReplyCache:
    """In a forked child (bridge/forks.py): the replies are the parent's clients', and a
    parent's thread may have held the lock at the fork. Returns the parent's cache (to be
    kept, not finalized)."""
    global CACHE
    inherited, CACHE = CACHE, ReplyCache()
    return inherited


#: Ops that are not recorded: asking about an outcome is itself never asked about.
UNRECORDED = frozenset({"outcome"})


@server_op("outcome")
def _op_outcome(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Reply:
    """What became of request ``id`` of this connection (or of ``channel``: the hex
    routing id of another socket of the same client, such as a pause's lane)."""
    request_id = args.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        raise bad_request("argument 'id' must be an integer or a string")
    channel = arg(args, "channel", str, None)
    if channel is not None:
        try:
            identity = bytes.fromhex(channel)
        except ValueError:
            raise bad_request("argument 'channel' must be a hex routing id") from None
    state, frames = CACHE.outcome(identity, request_id)
    return Reply(result={"state": state}, frames=frames)
