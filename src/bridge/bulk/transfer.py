"""The transfer interface every bulk mode implements, and what the modes share.

A *mode* (:class:`TransferMode`) moves the big buffers of one value between two
processes. It has three jobs, and only these:

* :meth:`TransferMode.export`: the sender's buffers -> (descriptor, :class:`Transfer`). The
  descriptor travels inside the CURVE message; the transfer waits for its receiver.
* :meth:`TransferMode.send`: stream a transfer to the receiver at the other end of a
  data-port connection.
* :meth:`TransferMode.receive`: on the receiver, read a descriptor's buffers from such a
  connection into fresh memory.

Around them, hooks with defaults: checking a descriptor before connecting, cleaning up
after a transfer on either side, and the per-session negotiation (what the target offers
in ``bulk_hello``, whether the client can use it).

Which mode serves a descriptor is looked up by its ``mode`` field in one table
(``codec.TRANSFER_MODES``): adding a mode is adding a class there.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

#: Buffers at least this big leave the CURVE message (smaller ones are cheaper inline).
THRESHOLD = int(os.environ.get("BRIDGE_BULK_THRESHOLD") or (1 << 20))
#: Seconds a segment, pending transfer or parked upload may wait for its receiver, and the
#: longest a data-port connection may stall once its token was accepted.
TIMEOUT_S = float(os.environ.get("BRIDGE_BULK_TIMEOUT") or 60.0)
#: A transfer's one-shot token: the only thing a data-port connection must show.
TOKEN_BYTES = 16
#: The largest chunk a descriptor may announce (a receiver allocates nothing bigger per step).
MAX_CHUNK = 64 << 20

ProgressFn = Callable[[int], None]


class BulkError(Exception):
    """A bulk transfer failed (missing segment, bad tag, peer gone, stalled data port);
    the text says which."""


@dataclass
class Transfer:
    """Buffers waiting for their receiver, under a one-shot ``token``.

    A mode subclasses it with what its sender needs (a key, a ring); :meth:`close`
    releases that, and must be idempotent.
    """

    token: bytes
    buffers: List[memoryview]
    chunk: int
    mode: ClassVar[str] = ""
    #: Set by the outbox when the transfer is offered: when the janitor drops it.
    deadline: float = field(default=0.0, compare=False)

    def close(self) -> None:
        """Release what the sender holds for this transfer (nothing, by default)."""


class TransferMode(ABC):
    """One way of moving big buffers: export on the sender, send, receive. See the module
    docstring; the descriptor fields every mode shares are in the package docstring."""

    #: The descriptor's ``mode`` field, and the name ``BRIDGE_BULK`` uses.
    name: ClassVar[str]

    @abstractmethod
    def export(self, buffers: List[memoryview], token: bytes) -> Tuple[Dict[str, Any], Transfer]:
        """Prepare ``buffers`` for sending: (this mode's descriptor fields, the transfer).

        May raise OSError (no room for a ring): the caller then tries another mode.
        """

    @abstractmethod
    def send(self, sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
        """Stream ``transfer`` to the receiver at the other end of ``sock``."""

    @abstractmethod
    def check(self, descriptor: Dict[str, Any]) -> Any:
        """Validate this mode's descriptor fields (BulkError if malformed); what
        :meth:`receive` needs. Runs before any connection is made."""

    @abstractmethod
    def receive(self, sock: socket.socket, checked: Any, sizes: Sequence[int], chunk: int,
                progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
        """Read the buffers (``sizes`` bytes each) from ``sock``; one fresh mapping each."""

    def offer(self) -> Optional[Dict[str, Any]]:
        """Target side, for ``bulk_hello``: the fields a client needs to judge this mode
        (``{}`` if none), or None if this process cannot serve it."""
        return {}

    def usable(self, offer: Dict[str, Any], *, same_host: bool) -> bool:
        """Client side: whether this mode works with the target that sent ``offer``
        (``same_host``: the offer's host identity says same kernel and same user)."""
        return True

    def decline(self, offer: Dict[str, Any]) -> None:
        """Client side: this mode was offered but will not be used; tidy what the offer left."""

    def discard(self, descriptor: Dict[str, Any]) -> None:
        """Receiver side: drop whatever the descriptor names that the receiver may remove
        (called after every receive, successful or not)."""

    def release(self, descriptor: Dict[str, Any]) -> None:
        """Sender side: the receiver is done or failed; drop what it did not collect."""


def start_thread(thread: threading.Thread) -> None:
    """Start a helper thread of a transfer; BulkError if the process has none to spare
    (a thread limit or no memory for a stack): that transfer fails, the process goes on."""
    try:
        thread.start()
    except RuntimeError as exc:
        raise BulkError(f"cannot start a thread for the bulk transfer: {exc}") from None


def recv_exactly(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; BulkError if the peer closes first."""
    got = 0
    total = view.nbytes
    while got < total:
        n = sock.recv_into(view[got:], total - got)
        if n == 0:
            raise BulkError(f"the bulk connection closed after {got} of {total} bytes")
        got += n


def tune(sock: socket.socket) -> None:
    """No Nagle delay (ring signals are one byte) and big kernel buffers (streams)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass
