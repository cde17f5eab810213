"""The across-hosts mode: buffers stream over the data port, sealed with AES-256-GCM.

Every chunk (:data:`CHUNK` bytes) is sealed with AES-256-GCM (``cryptography``, AES-NI).
The key is fresh for each transfer and travels inside the CURVE-encrypted message, so the
key agreement is the CURVE channel's. The nonce is (buffer index, chunk index): unique
under a one-transfer key, and it pins every chunk to its place. The receiver reads each
chunk's ciphertext straight into its place in the destination (a fresh anonymous
mapping, huge pages where granted, faulted in by a helper thread ahead of the stream) and
opens it there in place (``update_into``), so the receiver has no intermediate buffer at
all and the sender a few chunk-sized ones. A chunk is never readable by the caller before
its tag checked.
"""

from __future__ import annotations

import base64
import mmap
import queue
import secrets
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple

from .memory import Prefaulter, anonymous, bytes_view
from .transfer import BulkError, ProgressFn, Transfer, TransferMode, recv_exactly, start_thread

#: Bytes sealed per AES-GCM chunk: big enough to amortise the per-chunk Python and
#: syscall cost, small enough that a chunk is likely still in the shared cache when the
#: next stage touches it (the sender's socket copy after sealing, the receiver's opening
#: after ``recv_into``). 1, 4 and 8 MiB measured within noise of each other on the
#: benchmark VM, 4 MiB most often ahead (docs/benchmarks.md).
CHUNK = 4 << 20
TAG_BYTES = 16
KEY_BYTES = 32
#: Chunk buffers on the sending side: one being sealed, the others queued or in ``sendall``.
SEND_BUFFERS = 3


def _nonce(buffer_index: int, chunk_index: int) -> bytes:
    return struct.pack(">IQ", buffer_index, chunk_index)


def _chunks(sizes: Sequence[int], chunk: int) -> Iterator[Tuple[int, int, int, int]]:
    """(buffer index, chunk index, offset, length) of every chunk, in stream order."""
    for b, size in enumerate(sizes):
        for c, offset in enumerate(range(0, size, chunk)):
            yield b, c, offset, min(chunk, size - offset)


def send_stream(sock: socket.socket, key: bytes, buffers: Sequence[Any], chunk: int,
                progress: Optional[ProgressFn] = None) -> None:
    """Seal every buffer chunk by chunk under ``key`` and write it to ``sock``.

    A few chunk buffers and a writer thread: chunk k+1 is sealed while chunk k is in
    ``sendall``. Both release the GIL (``cryptography`` does while it seals), so sealing
    and the kernel's copy run on two cores.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algo = algorithms.AES(key)
    views = [bytes_view(buf) for buf in buffers]
    size = min(chunk, max([v.nbytes for v in views] + [1]))
    free: "queue.SimpleQueue[Optional[bytearray]]" = queue.SimpleQueue()
    ready: "queue.SimpleQueue[Optional[Tuple[bytearray, int]]]" = queue.SimpleQueue()
    for _ in range(SEND_BUFFERS):
        free.put(bytearray(size + TAG_BYTES))  # the only intermediate copies: a few chunks
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
    start_thread(thread)
    done = 0
    try:
        for b, c, offset, n in _chunks([v.nbytes for v in views], chunk):
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


def recv_stream(sock: socket.socket, key: bytes, sizes: Sequence[int], chunk: int,
                progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
    """Read and open the chunks of ``sizes`` buffers; each lands decrypted in its own mapping.

    Ciphertext is received straight into its place in the destination and opened there, in
    place (AES-GCM is a stream mode: the plaintext has the ciphertext's length and offset),
    so there is no intermediate buffer and no second pass over memory. A reader thread
    receives chunk k+1 (``recv_into`` releases the GIL) while this thread opens chunk k
    (``cryptography`` releases it too). On a bad tag or any failure the mappings are
    dropped, never returned.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    algo = algorithms.AES(key)
    steps = list(_chunks(sizes, chunk))
    out = [anonymous(size) for size in sizes]
    dests = [memoryview(m) for m in out]
    # (tag of chunk k) as chunk k has fully arrived, or the reader's exception; None: stopped.
    ready: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    stop = threading.Event()

    def reader() -> None:
        try:
            for b, _, offset, n in steps:
                if stop.is_set():
                    return
                recv_exactly(sock, dests[b][offset:offset + n])
                tag = bytearray(TAG_BYTES)
                recv_exactly(sock, memoryview(tag))
                ready.put(bytes(tag))
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=reader, name="bridge-bulk-reader", daemon=True)
    faulter = Prefaulter(out, stop)
    done = 0
    ok = False
    try:
        start_thread(thread)
        for b, c, offset, n in steps:
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
        if thread.ident is not None:
            thread.join(None if ok else 5.0)
        faulter.join()
        for d in dests:
            d.release()
    return out


@dataclass
class AesTransfer(Transfer):
    """A transfer sealed under ``key`` (fresh for this transfer) as it streams."""

    mode: ClassVar[str] = "aes"
    key: bytes = b""


class AesMode(TransferMode):
    """Any two hosts: AES-256-GCM sealed chunks over the data port.

    Descriptor field of its own: ``key`` (base64 of the 32-byte transfer key).
    """

    name = "aes"

    def export(self, buffers: List[memoryview], token: bytes) -> Tuple[Dict[str, Any], Transfer]:
        transfer = AesTransfer(token=token, buffers=buffers, chunk=CHUNK, key=secrets.token_bytes(KEY_BYTES))
        return {"key": base64.b64encode(transfer.key).decode("ascii")}, transfer

    def send(self, sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
        assert isinstance(transfer, AesTransfer)
        send_stream(sock, transfer.key, transfer.buffers, transfer.chunk, progress)

    def check(self, descriptor: Dict[str, Any]) -> bytes:
        try:
            key = base64.b64decode(descriptor["key"], validate=True)
        except (KeyError, ValueError, TypeError) as exc:
            raise BulkError(f"malformed bulk descriptor: {exc}") from None
        if len(key) != KEY_BYTES:
            raise BulkError("malformed bulk descriptor: bad key")
        return key

    def receive(self, sock: socket.socket, checked: bytes, sizes: Sequence[int], chunk: int,
                progress: Optional[ProgressFn] = None) -> List[mmap.mmap]:
        return recv_stream(sock, checked, sizes, chunk, progress)
