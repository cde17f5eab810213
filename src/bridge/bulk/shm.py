"""The same-host mode: buffers stream through a small shared-memory ring.

**Segments.** An owner-only file in the shared-memory directory (``/dev/shm``, or
``BRIDGE_SHM_DIR``), created ``O_CREAT|O_EXCL|O_NOFOLLOW`` with mode 0600 and named
``framebridge-<uid>-<pid>-<random>``, that both processes map. The receiver opens it,
checks it is its own user's and owner-only, and unlinks it at once; the sender's outbox
unlinks it at its deadline if no receiver did, and segments of dead processes are swept
when a process starts serving bulk data. ``multiprocessing.shared_memory`` was not used:
its resource tracker unlinks or warns about segments another process owns, which is
exactly our hand-over.

**The ring.** The sender owns a few *slots* of one segment. For each chunk of the
buffers, in stream order, it copies the chunk into the next free slot and writes one
byte, ``F``, on the data-port connection; the receiver copies the slot out into the
chunk's place in its destination and answers one byte, ``A``, which frees the slot. Only
these bytes cross the socket.

Why a ring, and not one segment the size of the value that the receiver maps: a fresh
tmpfs page costs more than the bytes it holds (the kernel allocates and zeroes it, and on
hosts whose tmpfs has no huge pages that is one page per 4 KiB). A ring of a few MiB is
allocated once per transfer and then reused, so the sender's copy runs at memory speed,
the receiver's destination is ordinary anonymous memory (huge pages where granted), and
the two copies run at the same time on two cores (docs/benchmarks.md has the numbers).

Copies go through ``ctypes.memmove``, which releases the GIL: the target's other threads
keep running while its data server copies, and so does the client's I/O thread.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple

from ..keys import process_alive
from .memory import MAP_POPULATE, anonymous, bytes_view
from .outgoing import outbox, unlink_quietly
from .transfer import TIMEOUT_S, BulkError, ProgressFn, Transfer, TransferMode

DEFAULT_SHM_DIR = "/dev/shm"
#: Slot size and slot count of a ring. Rings of 16 MiB (4 x 4, 2 x 8, 8 x 2 MiB) measured
#: alike on the benchmark VM; 32 MiB ones were slower, their fresh pages costing more than
#: fewer signals save (docs/benchmarks.md).
RING_SLOT_BYTES = 4 << 20
RING_SLOTS = 4
#: Signal bytes: a slot was filled (sender -> receiver), a slot was freed (receiver -> sender).
FILLED = b"F"
FREED = b"A"
#: Size of the probe segment whose random cookie proves a client sees our /dev/shm.
PROBE_BYTES = 16


# --- segments -------------------------------------------------------------------------------------


def shm_dir() -> str:
    """The directory segments live in: ``BRIDGE_SHM_DIR`` (a tmpfs of the user's choice,
    or a test's), else ``/dev/shm``. Both processes of a session must see the same one."""
    return os.path.abspath(os.environ.get("BRIDGE_SHM_DIR") or DEFAULT_SHM_DIR)


def segment_prefix(pid: Optional[int] = None) -> str:
    """Name prefix of this user's segments (of process ``pid`` when given)."""
    base = f"framebridge-{os.getuid()}-"
    return base if pid is None else f"{base}{pid}-"


def shm_available() -> bool:
    """Whether this host has a shared-memory directory we can create files in."""
    where = shm_dir()
    return os.path.isdir(where) and os.access(where, os.W_OK | os.X_OK)


def is_own_segment(path: Any) -> bool:
    """Whether ``path`` names one of this user's segments (by name and place only)."""
    return (isinstance(path, str) and os.path.dirname(path) == shm_dir()
            and os.path.basename(path).startswith(segment_prefix()))


def unlink_own_segment(path: Any) -> None:
    """Unlink ``path`` if it names one of this user's segments (nothing else, whatever it says)."""
    if is_own_segment(path):
        unlink_quietly(path)


def sweep_dead_segments() -> List[str]:
    """Unlink this user's segments whose creating process is gone (a SIGKILLed sender)."""
    removed: List[str] = []
    where, prefix = shm_dir(), segment_prefix()
    try:
        names = os.listdir(where)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not process_alive(pid):
            path = os.path.join(where, name)
            unlink_quietly(path)
            removed.append(path)
    return removed


def create_segment(size: int) -> Tuple[str, mmap.mmap]:
    """A new owner-only segment of ``size`` bytes, mapped read-write; (path, mapping).

    The path is registered for cleanup: the janitor unlinks it if no receiver does. A full
    shared-memory directory raises OSError (ENOSPC) here, with nothing left behind.
    """
    path = os.path.join(shm_dir(), f"{segment_prefix(os.getpid())}{secrets.token_hex(12)}")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    box = outbox()
    box.add_segment(path)
    try:
        os.fchmod(fd, 0o600)  # exact, whatever the umask
        if hasattr(os, "posix_fallocate"):
            # Reserve the pages first: a full tmpfs fails here with ENOSPC, cleanly,
            # instead of with SIGBUS on first touch of the mapping.
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
        return path, mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        box.drop_segment(path)
        raise
    finally:
        os.close(fd)


def map_segment(path: str, size: int) -> mmap.mmap:
    """Map another process's segment read-write after checking it, and unlink it at once."""
    if not is_own_segment(path):
        raise BulkError(f"refusing to map {path!r}: not a framebridge segment of this user")
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BulkError(f"shared-memory segment {path} is gone (expired after {TIMEOUT_S:g}s?)") from None
    try:
        os.unlink(path)  # from now on only our mapping keeps the pages alive
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise BulkError(f"refusing segment {path}: not owner-only ({oct(st.st_mode & 0o777)})")
        if st.st_size != size:
            raise BulkError(f"segment {path} has {st.st_size} bytes, expected {size}")
        # MAP_POPULATE: one kernel pass maps every page (about 4x cheaper here than taking
        # a page fault per 4 KiB page on first touch).
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | MAP_POPULATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def probe_shm(probe: Optional[Dict[str, Any]]) -> bool:
    """Client side: can we read the target's probe segment (so: same /dev/shm, same user)?"""
    if not isinstance(probe, dict):
        return False
    try:
        mem = map_segment(probe["path"], PROBE_BYTES)
    except (BulkError, OSError, KeyError, TypeError):
        return False
    try:
        return bytes(mem[:PROBE_BYTES]).hex() == probe.get("cookie")
    finally:
        mem.close()


# --- the ring -------------------------------------------------------------------------------------


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
        raise BulkError("the peer closed the bulk connection mid-transfer")
    if data.strip(expected):
        raise BulkError(f"unexpected bytes on the bulk connection: {data[:16]!r}")
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


# --- the mode -------------------------------------------------------------------------------------


@dataclass
class ShmTransfer(Transfer):
    """A transfer whose buffers go through the shared-memory ring ``ring``."""

    mode: ClassVar[str] = "shm"
    ring: Optional[mmap.mmap] = None

    def close(self) -> None:
        """Unmap the ring (the receiver keeps its own mapping while it reads)."""
        if self.ring is not None:
            try:
                self.ring.close()
            except BufferError:
                pass  # a sender thread still copies (its peer hung): unmapped when it lets go
            self.ring = None


class ShmMode(TransferMode):
    """Same host, same user: a ring of owner-only shared memory, signals on the data port.

    Descriptor fields of its own: ``ring`` (the segment's path), ``ring_bytes`` (its size,
    a multiple of ``chunk``).
    """

    name = "shm"

    def export(self, buffers: List[memoryview], token: bytes) -> Tuple[Dict[str, Any], Transfer]:
        chunk, slots = ring_shape([b.nbytes for b in buffers], RING_SLOT_BYTES, RING_SLOTS)
        try:
            path, segment = create_segment(chunk * slots)
        except OSError as exc:  # the message names the place: a full tmpfs is the user's to fix
            raise OSError(exc.errno, f"{exc.strerror or exc} (a {chunk * slots / 2**20:.1f} MiB ring in "
                                     f"{shm_dir()})") from exc
        transfer = ShmTransfer(token=token, buffers=buffers, chunk=chunk, ring=segment)
        return {"ring": path, "ring_bytes": chunk * slots}, transfer

    def send(self, sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
        """Stream through the ring; the ring is unmapped when this returns, sent or not."""
        assert isinstance(transfer, ShmTransfer) and transfer.ring is not None
        try:
            send_ring(sock, transfer.ring, [bytes_view(buf) for buf in transfer.buffers], transfer.chunk, progress)
        finally:
            transfer.close()

    def check(self, descriptor: Dict[str, Any]) -> Tuple[str, int]:
        try:
            path, ring_bytes, chunk = descriptor["ring"], int(descriptor["ring_bytes"]), int(descriptor["chunk"])
        except (KeyError, ValueError, TypeError) as exc:
            raise BulkError(f"malformed bulk descriptor: {exc}") from None
        if not isinstance(path, str) or ring_bytes <= 0 or chunk <= 0 or ring_bytes % chunk:
            raise BulkError("malformed bulk descriptor: bad ring")
        return path, ring_bytes

    def receive(self, sock: socket.socket, checked: Tuple[str, int], sizes: Sequence[int], chunk: int,
                progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
        path, ring_bytes = checked
        segment = map_segment(path, ring_bytes)
        out = [anonymous(size) for size in sizes]
        ok = False
        try:
            recv_ring(sock, segment, out, chunk, progress)
            ok = True
        finally:
            segment.close()
            if not ok:
                for mem in out:
                    mem.close()
        return out

    def offer(self) -> Optional[Dict[str, Any]]:
        """A probe segment with a random cookie lets the client prove it sees our /dev/shm
        (boot ids match across containers that do not share it)."""
        if not shm_available():
            return None
        sweep_dead_segments()
        cookie = secrets.token_bytes(PROBE_BYTES)
        try:
            path, segment = create_segment(PROBE_BYTES)
        except OSError:
            return None
        segment[:] = cookie
        segment.close()
        return {"probe": {"path": path, "cookie": cookie.hex()}}

    def usable(self, offer: Dict[str, Any], *, same_host: bool) -> bool:
        return same_host and probe_shm(offer.get("probe"))

    def decline(self, offer: Dict[str, Any]) -> None:
        probe = offer.get("probe")
        if isinstance(probe, dict):
            unlink_own_segment(probe.get("path"))  # ours to tidy if we can see it

    def discard(self, descriptor: Dict[str, Any]) -> None:
        # Gone already once mapped; this covers any failure before.
        unlink_own_segment(descriptor.get("ring"))

    def release(self, descriptor: Dict[str, Any]) -> None:
        ring = descriptor.get("ring")
        if isinstance(ring, str):
            outbox().drop_segment(ring)
