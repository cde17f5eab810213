"""The bulk path: big buffers of a value travel outside the CURVE channel.

CURVE caps bulk data at about 0.2 GB/s (FACTS.md), so buffers of at least
:data:`THRESHOLD` bytes in a pickled value (the out-of-band ``PickleBuffer`` frames of
:func:`wire.dump_value`) are taken out of the message and moved another way. The message
keeps an empty frame in their place and a *descriptor* saying where each one went:

``shm`` (same host)
    The buffers stream through a small *ring*: an owner-only file under ``/dev/shm``
    (created ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600, named
    ``framebridge-<uid>-<pid>-<random>``) of a few slots that both processes map. The
    sender copies chunk after chunk into free slots, the receiver copies each out into its
    destination (a fresh anonymous mapping, huge pages where granted) and frees the slot;
    one byte per chunk each way on the data port (below) says which slots are full. One
    copy on each side, both at memory speed and at the same time (ring.py says why this
    beats one segment the size of the value). The receiver opens the ring, checks it is
    its own user's and owner-only, and unlinks it at once.
    ``multiprocessing.shared_memory`` was not used: its resource tracker unlinks or warns
    about segments that another process owns, which is exactly our hand-over.
``aes`` (across hosts; forced on loopback with ``BRIDGE_BULK=aes``)
    The buffers stream over a plain TCP connection to the target's *data port*, every
    chunk (:data:`CHUNK` bytes) sealed with AES-256-GCM (``cryptography``, AES-NI). The
    key and a one-shot token are fresh for each transfer and travel inside the
    CURVE-encrypted message, so the key agreement is the CURVE channel's. The nonce is
    (buffer index, chunk index): unique under a one-transfer key, and it pins every chunk
    to its place. The receiver reads each chunk's ciphertext straight into its place in
    the destination (a fresh anonymous mapping, huge pages where granted, faulted in by a
    helper thread ahead of the stream) and opens it there in place (``update_into``), so
    the receiver has no intermediate buffer at all and the sender a few chunk-sized ones.
``curve``
    No bulk path: everything stays in the CURVE message (the fallback, and small values).

Both modes are *transfers* collected through the target's data port with a one-shot
token (``GET`` for a reply's buffers, ``PUT`` for a request's). Leftovers are cleaned up
by the sender: every segment, pending transfer and parked upload has a deadline
(:data:`TIMEOUT_S`, ``BRIDGE_BULK_TIMEOUT``) after which a janitor thread unlinks or
closes it, so a client that dies between the reply and the transfer leaks
nothing; segments of dead processes are swept when a process starts serving bulk data.

Both directions use this module: the target exports reply values and imports request
values (``set``, write-back); the client does the reverse.
"""

from __future__ import annotations

import atexit
import base64
import functools
import mmap
import os
import queue
import secrets
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import ring

#: Buffers at least this big leave the CURVE message (smaller ones are cheaper inline).
THRESHOLD = int(os.environ.get("BRIDGE_BULK_THRESHOLD") or (1 << 20))
#: Bytes sealed per AES-GCM chunk: big enough to amortise the per-chunk Python and
#: syscall cost, small enough that a chunk is likely still in the shared cache when the
#: next stage touches it (the sender's socket copy after sealing, the receiver's opening
#: after ``recv_into``). 1, 4 and 8 MiB measured within noise of each other on the
#: benchmark VM, 4 MiB most often ahead (docs/benchmarks.md).
CHUNK = 4 << 20
#: Slot size and slot count of a shared-memory ring (ring.py). Rings of 16 MiB (4 x 4,
#: 2 x 8, 8 x 2 MiB) measured alike on the benchmark VM; 32 MiB ones were slower, their
#: fresh pages costing more than fewer signals save (docs/benchmarks.md).
RING_SLOT_BYTES = 4 << 20
RING_SLOTS = 4
#: Seconds a segment, pending transfer or parked upload may wait for its receiver.
TIMEOUT_S = float(os.environ.get("BRIDGE_BULK_TIMEOUT") or 60.0)
SHM_DIR = "/dev/shm"
MODES = ("shm", "aes", "curve")
TAG_BYTES = 16
TOKEN_BYTES = 16
_GET = b"GET "
_PUT = b"PUT "

ProgressFn = Callable[[int], None]


class BulkError(Exception):
    """A bulk transfer failed (missing segment, bad tag, peer gone); the text says which."""


def segment_prefix(pid: Optional[int] = None) -> str:
    """Name prefix of this user's segments (of process ``pid`` when given)."""
    base = f"framebridge-{os.getuid()}-"
    return base if pid is None else f"{base}{pid}-"


def shm_available() -> bool:
    """Whether this host has a tmpfs at /dev/shm we can create files in."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


def host_identity() -> Dict[str, Any]:
    """What tells two processes they share a kernel: boot id, hostname, uid."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    return {"boot_id": boot_id, "hostname": socket.gethostname(), "uid": os.getuid()}


# --- the sender's registry of outstanding things, and its janitor ----------------------------


@dataclass
class Transfer:
    """Buffers waiting for their receiver: a one-shot token, and either the AES key that
    seals them (``aes``) or the shared-memory ring they go through (``shm``)."""

    token: bytes
    key: bytes
    buffers: List[memoryview]
    chunk: int = CHUNK
    deadline: float = 0.0
    ring: Optional[mmap.mmap] = None

    def close(self) -> None:
        """Unmap the ring, if any (the receiver keeps its own mapping while it reads)."""
        if self.ring is not None:
            try:
                self.ring.close()
            except BufferError:
                pass  # a sender thread still copies (its peer hung): unmapped when it lets go
            self.ring = None


class Outbox:
    """Everything this process handed out and nobody has collected yet.

    One janitor thread (started on first use, asleep while there is nothing to watch)
    unlinks segments, drops transfers and closes parked uploads past their deadline.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Condition()
        self.segments: Dict[str, float] = {}
        self.transfers: Dict[bytes, Transfer] = {}
        self.uploads: Dict[bytes, Tuple[socket.socket, float]] = {}
        self._janitor: Optional[threading.Thread] = None

    def add_segment(self, path: str) -> None:
        with self._lock:
            self.segments[path] = time.monotonic() + TIMEOUT_S
            self._wake()

    def drop_segment(self, path: str) -> None:
        """Unlink ``path`` if it is still there (idempotent)."""
        with self._lock:
            self.segments.pop(path, None)
        _unlink_quietly(path)

    def add_transfer(self, transfer: Transfer) -> None:
        with self._lock:
            transfer.deadline = time.monotonic() + TIMEOUT_S
            self.transfers[transfer.token] = transfer
            self._wake()

    def take_transfer(self, token: bytes) -> Optional[Transfer]:
        with self._lock:
            return self.transfers.pop(token, None)

    def park_upload(self, token: bytes, sock: socket.socket) -> None:
        """An incoming upload connection, held until the request that names it is served."""
        with self._lock:
            old = self.uploads.pop(token, None)
            if old is not None:
                old[0].close()
            self.uploads[token] = (sock, time.monotonic() + TIMEOUT_S)
            self._lock.notify_all()
            self._wake()

    def claim_upload(self, token: bytes, timeout: float) -> socket.socket:
        """The parked upload connection for ``token``, waiting up to ``timeout`` for it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while token not in self.uploads:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BulkError(f"the sender's upload did not arrive within {timeout:g}s")
                self._lock.wait(left)
            return self.uploads.pop(token)[0]

    def _wake(self) -> None:
        # Caller holds the lock.
        if self._janitor is None or not self._janitor.is_alive():
            self._janitor = threading.Thread(target=self._sweep_loop, name="bridge-bulk-janitor", daemon=True)
            self._janitor.start()
        self._lock.notify_all()

    def _sweep_loop(self) -> None:
        with self._lock:
            while True:
                deadlines = (list(self.segments.values()) + [t.deadline for t in self.transfers.values()]
                             + [d for _, d in self.uploads.values()])
                if not deadlines:
                    self._lock.wait()  # nothing to watch: sleep until something is handed out
                    continue
                left = min(deadlines) - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        # Caller holds the lock.
        for path, deadline in list(self.segments.items()):
            if deadline <= now:
                del self.segments[path]
                _unlink_quietly(path)
        for token, transfer in list(self.transfers.items()):
            if transfer.deadline <= now:
                del self.transfers[token]
                transfer.close()
        for token, (sock, deadline) in list(self.uploads.items()):
            if deadline <= now:
                del self.uploads[token]
                sock.close()

    def close(self) -> None:
        """Unlink every segment still outstanding (at exit)."""
        if os.getpid() != self.pid:
            return
        with self._lock:
            paths = list(self.segments)
            self.segments.clear()
            for transfer in self.transfers.values():
                transfer.close()
            self.transfers.clear()
            for sock, _ in self.uploads.values():
                sock.close()
            self.uploads.clear()
        for path in paths:
            _unlink_quietly(path)


_outbox: Optional[Outbox] = None
_outbox_lock = threading.Lock()


def outbox() -> Outbox:
    """This process's outbox (a fresh one after fork: the parent's janitor is not ours)."""
    global _outbox
    with _outbox_lock:
        if _outbox is None or _outbox.pid != os.getpid():
            first = _outbox is None
            _outbox = Outbox()
            if first:
                atexit.register(lambda: _outbox.close() if _outbox is not None else None)
        return _outbox


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


def sweep_dead_segments() -> List[str]:
    """Unlink this user's segments whose creating process is gone (a SIGKILLed sender)."""
    from .keys import process_alive

    removed = []
    prefix = segment_prefix()
    try:
        names = os.listdir(SHM_DIR)
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
            path = os.path.join(SHM_DIR, name)
            _unlink_quietly(path)
            removed.append(path)
    return removed


# --- shared memory ------------------------------------------------------------------------------


def create_segment(size: int) -> Tuple[str, mmap.mmap]:
    """A new owner-only segment of ``size`` bytes, mapped read-write; (path, mapping).

    The path is registered for cleanup: the janitor unlinks it if no receiver does.
    """
    path = os.path.join(SHM_DIR, f"{segment_prefix(os.getpid())}{secrets.token_hex(12)}")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    box = outbox()
    box.add_segment(path)
    try:
        os.fchmod(fd, 0o600)  # exact, whatever the umask
        if hasattr(os, "posix_fallocate"):
            # Reserve the pages first: a full /dev/shm fails here with ENOSPC, cleanly,
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
    if not os.path.basename(path).startswith(segment_prefix()) or os.path.dirname(path) != SHM_DIR:
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
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


# --- AES-GCM streams ------------------------------------------------------------------------------


def _nonce(buffer_index: int, chunk_index: int) -> bytes:
    return struct.pack(">IQ", buffer_index, chunk_index)


def _chunks(sizes: Sequence[int], chunk: int):
    """(buffer index, chunk index, offset, length) of every chunk, in stream order."""
    for b, size in enumerate(sizes):
        for c, offset in enumerate(range(0, size, chunk)):
            yield b, c, offset, min(chunk, size - offset)


def send_stream(sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
    """Seal every buffer of ``transfer`` chunk by chunk and write it to ``sock``.

    A few chunk buffers and a writer thread: chunk k+1 is sealed while chunk k is in
    ``sendall``. Both release the GIL (``cryptography`` does while it seals), so sealing
    and the kernel's copy run on two cores.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algo = algorithms.AES(transfer.key)
    views = [_bytes_view(buf) for buf in transfer.buffers]
    chunk = min(transfer.chunk, max([v.nbytes for v in views] + [1]))
    free: "queue.SimpleQueue[Optional[bytearray]]" = queue.SimpleQueue()
    ready: "queue.SimpleQueue[Optional[Tuple[bytearray, int]]]" = queue.SimpleQueue()
    for _ in range(SEND_BUFFERS):
        free.put(bytearray(chunk + TAG_BYTES))  # the only intermediate copies: a few chunks
    failure: List[BaseException] = []

    def writer() -> None:
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                sock.sendall(memoryview(item[0])[:item[1]])
                free.put(item[0])
        except BaseException as exc:  # the receiver went away: tell the sealing loop
            failure.append(exc)
            free.put(None)

    thread = threading.Thread(target=writer, name="bridge-bulk-writer", daemon=True)
    thread.start()
    done = 0
    try:
        for b, c, offset, n in _chunks([v.nbytes for v in views], transfer.chunk):
            sealed = free.get()
            if sealed is None:
                raise failure[0]
            enc = Cipher(algo, modes.GCM(_nonce(b, c))).encryptor()
            enc.update_into(views[b][offset:offset + n], memoryview(sealed)[:n])
            enc.finalize()
            sealed[n:n + TAG_BYTES] = enc.tag
            ready.put((sealed, n + TAG_BYTES))
            done += n
            if progress is not None:
                progress(done)
    finally:
        ready.put(None)
    thread.join()  # only on success: on failure the socket's close ends the writer
    if failure:
        raise failure[0]


def send_transfer(sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
    """Send ``transfer`` to the receiver at the other end of ``sock``, by its mode; a ring
    is unmapped when this returns, sent or not."""
    if transfer.ring is None:
        send_stream(sock, transfer, progress)
        return
    try:
        ring.send_ring(sock, transfer.ring, [_bytes_view(buf) for buf in transfer.buffers], transfer.chunk,
                       progress)
    except ring.RingError as exc:
        raise BulkError(str(exc)) from None
    finally:
        transfer.close()


def recv_ring_transfer(sock: socket.socket, ring_path: str, ring_bytes: int, sizes: Sequence[int], chunk: int,
                       progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
    """Receive the ``shm`` transfer whose ring is at ``ring_path``; one mapping per buffer."""
    segment = map_segment(ring_path, ring_bytes)
    out = [_anonymous(size) for size in sizes]
    ok = False
    try:
        ring.recv_ring(sock, segment, out, chunk, progress)
        ok = True
    except ring.RingError as exc:
        raise BulkError(str(exc)) from None
    finally:
        segment.close()
        if not ok:
            for mem in out:
                mem.close()
    return out


def recv_stream(sock: socket.socket, key: bytes, sizes: Sequence[int], chunk: int,
                progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
    """Read and open the chunks of ``sizes`` buffers; each lands decrypted in its own mapping.

    Ciphertext is received straight into its place in the destination and opened there, in
    place (AES-GCM is a stream mode: the plaintext has the ciphertext's length and offset),
    so there is no intermediate buffer and no second pass over memory. A reader thread
    receives chunk k+1 (``recv_into`` releases the GIL) while this thread opens chunk k
    (``cryptography`` releases it too). A chunk is never readable by the caller before its
    tag checked: on a bad tag or any failure the mappings are dropped, never returned.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algo = algorithms.AES(key)
    plan = list(_chunks(sizes, chunk))
    out = [_anonymous(size) for size in sizes]
    dests = [memoryview(m) for m in out]
    # (tag of chunk k) as chunk k has fully arrived, or the reader's exception; None: stopped.
    ready: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    stop = threading.Event()

    def reader() -> None:
        try:
            for b, _, offset, n in plan:
                if stop.is_set():
                    return
                _recv_exactly(sock, dests[b][offset:offset + n])
                tag = bytearray(TAG_BYTES)
                _recv_exactly(sock, memoryview(tag))
                ready.put(bytes(tag))
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=reader, name="bridge-bulk-reader", daemon=True)
    faulter = _Prefaulter(out, stop)
    thread.start()
    done = 0
    ok = False
    try:
        for b, c, offset, n in plan:
            tag = ready.get()
            if isinstance(tag, BaseException):
                raise tag
            place = dests[b][offset:offset + n]
            dec = Cipher(algo, modes.GCM(_nonce(b, c), tag)).decryptor()
            dec.update_into(place, place)
            try:
                dec.finalize()
            except InvalidTag:
                raise BulkError(f"chunk {c} of buffer {b} failed authentication (tampered or wrong key)") from None
            done += n
            if progress is not None:
                progress(done)
        ok = True
    finally:
        if not ok:
            stop.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv_into
            except OSError:
                pass
        thread.join(None if ok else 5.0)
        faulter.join()
        for d in dests:
            d.release()
    return out


class _Prefaulter:
    """Faults the destination mappings in, ahead of the reader, on a thread of its own.

    A fresh page costs more here than the bytes it will hold (the kernel zeroes it, and on
    a VM that returned its free memory to the host, the host must supply it again), and
    that cost stalls whichever thread touches the page first. ``madvise(MADV_POPULATE_WRITE)``
    (Linux 5.14+) through ctypes releases the GIL, so this runs beside the reader's
    ``recv_into`` and the opening of the previous chunk instead of inside them.
    """

    STEP = 8 << 20

    def __init__(self, mappings: Sequence[mmap.mmap], stop: threading.Event) -> None:
        self._stop = stop
        self._thread: Optional[threading.Thread] = None
        madvise = _libc_madvise()
        if madvise is None:
            return
        import ctypes

        # c_char.from_buffer exports the mapping (it cannot be closed under us) and gives
        # its address; the anchors are dropped when the thread is done.
        live = [m for m in mappings if len(m)]
        self._anchors = [ctypes.c_char.from_buffer(m) for m in live]
        self._regions = [(ctypes.addressof(a), len(m)) for a, m in zip(self._anchors, live)]
        self._madvise = madvise
        self._thread = threading.Thread(target=self._run, name="bridge-bulk-prefault", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for address, size in self._regions:
                for offset in range(0, size, self.STEP):
                    if self._stop.is_set():
                        return
                    if self._madvise(address + offset, min(self.STEP, size - offset), _MADV_POPULATE_WRITE) != 0:
                        return  # an older kernel (EINVAL): the reader's own faults do the job
        finally:
            self._regions = []
            self._anchors = []

    def join(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()


@functools.lru_cache(maxsize=1)
def _libc_madvise() -> Optional[Callable[[int, int, int], int]]:
    """libc's madvise(2) through ctypes (which drops the GIL for the call); Linux only,
    where the advice number of MADV_POPULATE_WRITE means what we ask."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


#: Chunk buffers on the sending side: one being sealed, the others queued or in ``sendall``.
SEND_BUFFERS = 3
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: madvise(2) advice that faults a range in, writable, in one call (Linux 5.14+; the mmap
#: module only names it from Python 3.13 on).
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_HUGE_PAGE = 2 << 20


def _bytes_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _anonymous(size: int) -> mmap.mmap:
    """A private anonymous mapping for a received buffer, backed by huge pages where granted.

    madvise(MADV_HUGEPAGE) must come before the first touch (this host's THP mode is
    ``madvise``): faulting 1 GiB in 2 MiB pages is 512x fewer faults, about 3x faster here
    than ``MAP_POPULATE`` with 4 KiB pages (which is what we fall back to).
    """
    anonymous = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20)
    if size >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        mem = mmap.mmap(-1, size, flags=anonymous)
        try:
            mem.madvise(mmap.MADV_HUGEPAGE)
        except (OSError, AttributeError):
            mem.close()
        else:
            return mem
    return mmap.mmap(-1, size, flags=anonymous | _MAP_POPULATE)


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    got = 0
    total = view.nbytes
    while got < total:
        n = sock.recv_into(view[got:], total - got)
        if n == 0:
            raise BulkError(f"the bulk connection closed after {got} of {total} bytes")
        got += n


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:
            pass


# --- the target's data port -------------------------------------------------------------------------


class DataServer:
    """A TCP listener next to the CURVE endpoint that carries only AES-GCM sealed streams.

    A connection starts with ``GET <token>`` (pull a pending transfer) or ``PUT <token>``
    (an upload the paused thread will claim). Unknown tokens are dropped unanswered; what
    flows is ciphertext under one-transfer keys that only the CURVE channel carried.
    """

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._accept_loop, name="bridge-bulk-data", daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="bridge-bulk-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(TIMEOUT_S)
            _tune(conn)
            head = bytearray(len(_GET) + TOKEN_BYTES)
            _recv_exactly(conn, memoryview(head))
            verb, token = bytes(head[:4]), bytes(head[4:])
            if verb == _PUT:
                outbox().park_upload(token, conn)
                return  # the paused thread owns it now
            transfer = outbox().take_transfer(token) if verb == _GET else None
            if transfer is not None:
                send_transfer(conn, transfer)
        except (OSError, BulkError):
            pass  # the receiver went away (Ctrl-C, crash): nothing to clean but the socket
        conn.close()

    def close(self) -> None:
        try:
            self.listener.close()
        except OSError:
            pass


_data_server: Optional[DataServer] = None


def data_server(host: str) -> DataServer:
    """This process's data server, started on first use."""
    global _data_server
    with _outbox_lock:
        if _data_server is None or _data_server.pid != os.getpid():
            _data_server = DataServer(host)
        return _data_server


# --- frames <-> descriptors ------------------------------------------------------------------------


def _big_buffers(frames: Sequence[Any], threshold: int) -> List[int]:
    # Frame 0 is the pickle stream; out-of-band buffers follow.
    out = []
    for i in range(1, len(frames)):
        try:
            if memoryview(frames[i]).nbytes >= threshold:
                out.append(i)
        except TypeError:
            pass
    return out


def export_frames(frames: Sequence[Any], mode: str, *, threshold: int = THRESHOLD
                  ) -> Tuple[List[Any], Optional[Dict[str, Any]], Optional[Transfer]]:
    """Take big buffers out of value ``frames`` for ``mode``.

    Returns (frames with empty placeholders, descriptor or None, transfer or None). The
    caller makes the transfer reachable: the target registers it for its data port
    (:func:`offer`), the client uploads it (:func:`open_upload`, :func:`send_transfer`).
    """
    big = _big_buffers(frames, threshold) if mode in ("shm", "aes") else []
    if not big:
        return list(frames), None, None
    out = list(frames)
    buffers = [memoryview(frames[i]) for i in big]
    bufs = [{"i": i, "n": view.nbytes} for i, view in zip(big, buffers)]
    token = secrets.token_bytes(TOKEN_BYTES)
    if mode == "shm":
        chunk, slots = ring.ring_shape([b["n"] for b in bufs], RING_SLOT_BYTES, RING_SLOTS)
        path, segment = create_segment(chunk * slots)
        transfer = Transfer(token=token, key=b"", buffers=buffers, chunk=chunk, ring=segment)
        descriptor = {"mode": "shm", "bufs": bufs, "chunk": chunk, "token": token.hex(), "ring": path,
                      "ring_bytes": chunk * slots}
    else:
        transfer = Transfer(token=token, key=secrets.token_bytes(32), buffers=buffers)
        descriptor = {"mode": "aes", "bufs": bufs, "chunk": transfer.chunk, "token": token.hex(),
                      "key": base64.b64encode(transfer.key).decode("ascii")}
    for i in big:
        out[i] = b""
    return out, descriptor, transfer


def offer(transfer: Transfer) -> None:
    """Make ``transfer`` collectable through this process's data port (target side)."""
    outbox().add_transfer(transfer)


def open_upload(address: Tuple[str, int], token: bytes, timeout: float = TIMEOUT_S) -> socket.socket:
    """Connect to the target's data port for an upload; then :func:`send_transfer` the transfer.

    Send it beside waiting for the reply: the target reads the upload while it serves
    the request that names it.
    """
    sock = socket.create_connection(address, timeout=timeout)
    try:
        _tune(sock)
        sock.sendall(_PUT + token)
    except BaseException:
        sock.close()
        raise
    return sock


def total_bytes(descriptor: Optional[Dict[str, Any]]) -> int:
    """How many bytes a descriptor moves outside the CURVE message."""
    return sum(int(b["n"]) for b in (descriptor or {}).get("bufs", []))


def import_frames(descriptor: Dict[str, Any], frames: Sequence[Any], *,
                  connect: Optional[Callable[[bytes], socket.socket]] = None,
                  progress: Optional[ProgressFn] = None) -> List[Any]:
    """Put the buffers a descriptor names back into ``frames`` (the inverse of export).

    ``connect(token)`` returns a socket positioned at the transfer. On any failure, even
    KeyboardInterrupt, the ring segment named is unlinked before raising.
    """
    if not isinstance(descriptor, dict) or descriptor.get("mode") not in ("shm", "aes"):
        raise BulkError(f"malformed bulk descriptor: {descriptor!r}")
    ring_path = descriptor.get("ring") if descriptor["mode"] == "shm" else None
    try:
        received = _receive(descriptor, len(frames), connect, progress)
    finally:
        unlink_own_segment(ring_path)  # gone already once mapped; this covers any failure before
    out = list(frames)
    for b, mem in zip(descriptor["bufs"], received):
        out[b["i"]] = mem
    return out


def _receive(descriptor: Dict[str, Any], frame_count: int, connect: Optional[Callable[[bytes], socket.socket]],
             progress: Optional[ProgressFn]) -> List[mmap.mmap]:
    """Check a descriptor, then receive the buffers it names, in its order."""
    bufs = descriptor.get("bufs")
    if not isinstance(bufs, list) or not all(
        isinstance(b, dict) and isinstance(b.get("i"), int) and 0 < b["i"] < frame_count
        and isinstance(b.get("n"), int) and b["n"] > 0 for b in bufs
    ):
        raise BulkError("malformed bulk descriptor: bad buffer list")
    total = sum(b["n"] for b in bufs)
    if total > _physical_memory():
        # A corrupt or hostile descriptor must not make us reserve more than the machine has.
        raise BulkError(f"bulk descriptor announces {total} bytes, more than this machine's memory")
    sizes = [b["n"] for b in bufs]
    try:
        token = bytes.fromhex(descriptor["token"])
        chunk = int(descriptor["chunk"])
        if descriptor["mode"] == "shm":
            ring_path, ring_bytes = descriptor["ring"], int(descriptor["ring_bytes"])
            shape_ok = isinstance(ring_path, str) and 0 < ring_bytes and ring_bytes % chunk == 0
        else:
            key = base64.b64decode(descriptor["key"])
            shape_ok = len(key) == 32
    except (KeyError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise BulkError(f"malformed bulk descriptor: {exc}") from None
    if not shape_ok or len(token) != TOKEN_BYTES or not 0 < chunk <= (64 << 20):
        raise BulkError("malformed bulk descriptor: bad key, ring, token or chunk size")
    if connect is None:
        raise BulkError("a bulk transfer needs a connection to the data port")
    sock = connect(token)
    try:
        if descriptor["mode"] == "shm":
            return recv_ring_transfer(sock, ring_path, ring_bytes, sizes, chunk, progress)
        return recv_stream(sock, key, sizes, chunk, progress)
    finally:
        sock.close()


def unlink_own_segment(path: Any) -> None:
    """Unlink ``path`` if it names one of this user's segments (nothing else, whatever it says)."""
    if (isinstance(path, str) and os.path.dirname(path) == SHM_DIR
            and os.path.basename(path).startswith(segment_prefix())):
        _unlink_quietly(path)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def release(descriptor: Optional[Dict[str, Any]]) -> None:
    """Sender side: the receiver is done (or failed); drop what it did not collect."""
    if not descriptor:
        return
    if descriptor.get("mode") == "shm":
        outbox().drop_segment(descriptor["ring"])
    transfer = outbox().take_transfer(bytes.fromhex(descriptor["token"]))
    if transfer is not None:
        transfer.close()


# --- target side: the per-session negotiation and the request path ---------------------------------


def hello_reply(host: str) -> Dict[str, Any]:
    """What the target tells a client that asks for the bulk path (server op ``bulk_hello``).

    A probe segment with a random cookie lets the client prove it sees our /dev/shm
    (boot ids match across containers that do not share it).
    """
    info: Dict[str, Any] = {"host": host_identity(), "modes": ["curve"], "threshold": THRESHOLD}
    try:
        info["data_port"] = data_server(host).port
        info["modes"].insert(0, "aes")
    except OSError:
        pass
    if shm_available():
        sweep_dead_segments()
        cookie = secrets.token_bytes(16)
        try:
            path, segment = create_segment(len(cookie))
        except OSError:
            pass
        else:
            segment[:] = cookie
            segment.close()
            info["modes"].insert(0, "shm")
            info["probe"] = {"path": path, "cookie": cookie.hex()}
    return info


def probe_shm(probe: Optional[Dict[str, Any]]) -> bool:
    """Client side: can we read the target's probe segment (so: same /dev/shm, same user)?"""
    if not probe:
        return False
    try:
        mem = map_segment(probe["path"], 16)
    except (BulkError, OSError, KeyError, TypeError):
        return False
    try:
        return bytes(mem[:16]).hex() == probe.get("cookie")
    finally:
        mem.close()


def import_request(descriptor: Optional[Dict[str, Any]], values: Sequence[Any], timeout: float = TIMEOUT_S) -> List[Any]:
    """Target side: restore the big buffers of a request (its ``bulk_in`` descriptor) before its op runs."""
    if not descriptor:
        return list(values)
    frames = [b""] + list(values)  # descriptors index value frames from 1 (frame 0 is the header)
    frames = import_frames(descriptor, frames, connect=lambda token: outbox().claim_upload(token, timeout))
    return frames[1:]


def export_reply(frames: Sequence[Any], mode: Any) -> Tuple[List[Any], Optional[Dict[str, Any]]]:
    """Target side: take big buffers out of reply ``frames`` (header first) for ``mode``.

    Any failure (a full /dev/shm, no data port) leaves the frames as they were: the value
    still arrives, over CURVE.
    """
    if mode not in ("shm", "aes") or len(frames) < 2:
        return list(frames), None
    if _data_server is None or _data_server.pid != os.getpid():
        return list(frames), None  # both modes are collected through the data port
    try:
        out, descriptor, transfer = export_frames(frames, mode)
    except OSError:
        return list(frames), None
    if transfer is not None:
        offer(transfer)
    return out, descriptor


# --- client side: the per-session choice -------------------------------------------------------------


@dataclass
class BulkPeer:
    """One client session's bulk path: the mode chosen and where the data port is.

    ``stats`` counts what went which way (tests and benchmarks read it).
    """

    mode: str = "curve"
    data_address: Optional[Tuple[str, int]] = None
    threshold: int = THRESHOLD
    stats: Dict[str, int] = field(default_factory=lambda: {"shm": 0, "aes": 0, "bytes": 0, "uploads": 0})

    @classmethod
    def negotiate(cls, offer: Dict[str, Any], endpoint_host: str, *, loopback: bool,
                  forced: Optional[str] = None) -> "BulkPeer":
        """Pick the mode for a session from the target's ``bulk_hello`` offer.

        shm needs the same kernel (boot id), the same user and a readable probe segment;
        otherwise aes if the target has a data port; ``forced`` (``BRIDGE_BULK``) wins
        when the target offers it.
        """
        modes = list(offer.get("modes") or ["curve"])
        probe_ok = False
        if "shm" in modes:
            same = offer.get("host", {})
            mine = host_identity()
            probe_ok = (loopback and same.get("boot_id") == mine["boot_id"] and same.get("uid") == mine["uid"]
                        and probe_shm(offer.get("probe")))
            if not probe_ok:
                modes.remove("shm")
        if not probe_ok and offer.get("probe"):
            _unlink_quietly(str(offer["probe"].get("path", "")))  # ours to tidy if we can see it
        if forced:
            if forced not in MODES:
                raise ValueError(f"BRIDGE_BULK must be one of {', '.join(MODES)}, not {forced!r}")
            mode = forced if forced in modes or forced == "curve" else modes[0]
        else:
            mode = modes[0]
        port = offer.get("data_port")
        address = (endpoint_host, int(port)) if isinstance(port, int) else None
        if address is None:
            mode = "curve"  # both bulk modes are collected through the data port
        return cls(mode=mode, data_address=address, threshold=int(offer.get("threshold") or THRESHOLD))

    def connect(self, token: bytes, timeout: float = TIMEOUT_S) -> socket.socket:
        """Open the data port and ask for the transfer ``token`` (pull)."""
        if self.data_address is None:
            raise BulkError("the target offered no data port")
        sock = socket.create_connection(self.data_address, timeout=timeout)
        _tune(sock)
        sock.sendall(_GET + token)
        return sock

    def count(self, descriptor: Dict[str, Any]) -> None:
        self.stats[descriptor["mode"]] = self.stats.get(descriptor["mode"], 0) + len(descriptor["bufs"])
        self.stats["bytes"] += total_bytes(descriptor)


def _register_ops() -> None:
    from .ops import server_op

    @server_op("bulk_hello")
    def _op_bulk_hello(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
        """Offer the bulk modes this target can serve (the client picks, per session)."""
        return hello_reply(server.host)


_register_ops()
