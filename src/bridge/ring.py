"""Streaming big buffers through a small shared-memory ring (the same-host bulk path).

The sender owns a few *slots* of an owner-only tmpfs segment that both processes map
(bulk.py creates, checks and names it). For each chunk of the buffers, in stream order,
the sender copies the chunk into the next free slot and writes one byte, ``F``, on a
socket; the receiver copies the slot out into the chunk's place in its destination and
answers one byte, ``A``, which frees the slot. Only these bytes cross the socket.

Why a ring, and not one segment the size of the value that the receiver maps: a fresh
tmpfs page costs more than the bytes it holds (the kernel allocates and zeroes it, and on
hosts whose tmpfs has no huge pages that is one page per 4 KiB). A ring of a few MiB is
allocated once per transfer and then reused, so the sender's copy runs at memory speed,
the receiver's destination is ordinary anonymous memory (huge pages where granted), and
the two copies run at the same time on two cores (docs/benchmarks.md has the numbers).

Copies go through ``ctypes.memmove``, which releases the GIL: the target's other threads
keep running while its data server copies, and so does the client's event listener.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
from typing import Callable, Iterator, Optional, Sequence, Tuple

#: Signal bytes: a slot was filled (sender → receiver), a slot was freed (receiver → sender).
FILLED = b"F"
FREED = b"A"

ProgressFn = Callable[[int], None]


class RingError(Exception):
    """The peer went away or broke the ring protocol; the text says which."""


def plan(sizes: Sequence[int], chunk: int) -> Iterator[Tuple[int, int, int]]:
    """(buffer index, offset, length) of every chunk, in stream order."""
    for b, size in enumerate(sizes):
        for offset in range(0, size, chunk):
            yield b, offset, min(chunk, size - offset)


def ring_shape(sizes: Sequence[int], slot: int, max_slots: int) -> Tuple[int, int]:
    """(chunk bytes, slot count) for moving ``sizes`` through a ring of ``slot``-sized slots.

    Small transfers get a ring no bigger than their largest buffer: a 2 MiB value does not
    pay for allocating a 16 MiB segment.
    """
    chunk = max(1, min(slot, max(sizes, default=1)))
    chunks = sum(-(-size // chunk) for size in sizes)
    return chunk, max(1, min(max_slots, chunks))


class _Region:
    """The address of a buffer for ``ctypes.memmove``, held exported while we copy.

    ``from_buffer`` needs a writable buffer; a read-only one (``bytes``) has no address
    we can take without a copy, so it is copied with a memoryview slice instead (the same
    speed, but it keeps the GIL).
    """

    def __init__(self, buf: memoryview) -> None:
        self.view = buf
        try:
            self._anchor: Optional[ctypes.Array] = (ctypes.c_char * buf.nbytes).from_buffer(buf)
            self.address: Optional[int] = ctypes.addressof(self._anchor)
        except (TypeError, ValueError, BufferError):
            self._anchor = None
            self.address = None

    def copy_to(self, offset: int, dest: "_Region", dest_offset: int, n: int) -> None:
        if self.address is not None and dest.address is not None:
            ctypes.memmove(dest.address + dest_offset, self.address + offset, n)
        else:
            dest.view[dest_offset:dest_offset + n] = self.view[offset:offset + n]

    def release(self) -> None:
        self._anchor = None  # the export ends with the ctypes object


def _recv_signals(sock: socket.socket, expected: bytes) -> int:
    """Block for at least one signal byte; return how many arrived (all must be ``expected``)."""
    data = sock.recv(4096)
    if not data:
        raise RingError("the peer closed the bulk connection mid-transfer")
    if data.strip(expected):
        raise RingError(f"unexpected bytes on the bulk connection: {data[:16]!r}")
    return len(data)


def send_ring(sock: socket.socket, ring: mmap.mmap, buffers: Sequence[memoryview], chunk: int,
              progress: Optional[ProgressFn] = None) -> None:
    """Copy ``buffers`` through ``ring`` (``len(ring) // chunk`` slots), signalling on ``sock``."""
    slots = len(ring) // chunk
    dest = _Region(memoryview(ring))
    sources = [_Region(buf) for buf in buffers]
    in_use, done = 0, 0  # slots filled and not yet freed by the receiver
    try:
        for k, (b, offset, n) in enumerate(plan([s.view.nbytes for s in sources], chunk)):
            while in_use == slots:
                in_use -= _recv_signals(sock, FREED)
            sources[b].copy_to(offset, dest, (k % slots) * chunk, n)
            sock.sendall(FILLED)
            in_use += 1
            done += n
            if progress is not None:
                progress(done)
        while in_use > 0:  # the receiver has everything only once it freed every slot
            in_use -= _recv_signals(sock, FREED)
    finally:
        for region in sources + [dest]:
            region.release()
        dest.view.release()


def recv_ring(sock: socket.socket, ring: mmap.mmap, destinations: Sequence[mmap.mmap], chunk: int,
              progress: Optional[ProgressFn] = None) -> None:
    """Fill ``destinations`` (one per buffer, sized to it) from ``ring``, slot by slot."""
    slots = len(ring) // chunk
    source = _Region(memoryview(ring))
    dests = [_Region(memoryview(d)) for d in destinations]
    filled, done = 0, 0
    try:
        for k, (b, offset, n) in enumerate(plan([len(d) for d in destinations], chunk)):
            while filled == 0:
                filled += _recv_signals(sock, FILLED)
            source.copy_to((k % slots) * chunk, dests[b], offset, n)
            sock.sendall(FREED)
            filled -= 1
            done += n
            if progress is not None:
                progress(done)
    finally:
        for region in dests + [source]:
            region.release()
            region.view.release()

