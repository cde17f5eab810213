"""Value frames <-> (frames with placeholders, descriptor, transfer), by mode, from one table.

A pickled value is frames (wire.dump_value): the pickle stream, then its out-of-band
buffers. :func:`export_frames` takes the buffers of at least ``threshold`` bytes out,
leaving empty frames in their place, and asks the mode named in :data:`TRANSFER_MODES` for
a descriptor and a transfer; :func:`import_frames` is the inverse on the receiver. The
descriptor format is in the package docstring.
"""

from __future__ import annotations

import secrets
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .aes import AesMode
from .memory import physical_memory
from .outgoing import outbox
from .shm import ShmMode
from .transfer import MAX_CHUNK, THRESHOLD, TOKEN_BYTES, BulkError, ProgressFn, Transfer, TransferMode

#: Every bulk mode, by the name a descriptor and ``BRIDGE_BULK`` use. A new mode is a
#: TransferMode subclass added here.
TRANSFER_MODES: Dict[str, TransferMode] = {m.name: m for m in (ShmMode(), AesMode())}
#: Mode names in order of preference; ``curve`` is no bulk path (all inside CURVE).
MODES: Tuple[str, ...] = (*TRANSFER_MODES, "curve")
#: Where a sender goes when its mode cannot export (a full /dev/shm): both modes are
#: collected through the same data port, so any receiver of the first takes the second.
FALLBACK: Dict[str, str] = {"shm": "aes"}

Export = Tuple[List[Any], Optional[Dict[str, Any]], Optional[Transfer]]


def _big_buffers(frames: Sequence[Any], threshold: int) -> List[int]:
    # Frame 0 is the pickle stream (or a header); out-of-band buffers follow.
    out = []
    for i in range(1, len(frames)):
        try:
            if memoryview(frames[i]).nbytes >= threshold:
                out.append(i)
        except TypeError:
            pass
    return out


def export_frames(frames: Sequence[Any], mode: str, *, threshold: int = THRESHOLD,
                  token: Optional[bytes] = None) -> Export:
    """Take big buffers out of value ``frames`` for ``mode``.

    Returns (frames with empty placeholders, descriptor or None, transfer or None). The
    caller makes the transfer reachable: the target offers it on its data port
    (dataport.export_reply), the client uploads it (:func:`open_upload`,
    :func:`send_transfer`). ``token`` (default: random) is the transfer's one-shot token.
    OSError if the mode has no room (a full /dev/shm); nothing is left behind then.
    """
    strategy = TRANSFER_MODES.get(mode)
    big = _big_buffers(frames, threshold) if strategy is not None else []
    if strategy is None or not big:
        return list(frames), None, None
    buffers = [memoryview(frames[i]) for i in big]
    token = token if token is not None else secrets.token_bytes(TOKEN_BYTES)
    fields, transfer = strategy.export(buffers, token)
    descriptor = {"mode": strategy.name, "bufs": [{"i": i, "n": v.nbytes} for i, v in zip(big, buffers)],
                  "chunk": transfer.chunk, "token": token.hex(), **fields}
    out = list(frames)
    for i in big:
        out[i] = b""
    return out, descriptor, transfer


def export_with_fallback(frames: Sequence[Any], mode: str, *, threshold: int = THRESHOLD,
                         token: Optional[bytes] = None) -> Export:
    """:func:`export_frames`, but when ``mode`` cannot export (OSError) its :data:`FALLBACK`
    mode does, and the descriptor's ``fallback`` field says why (the receiver reports it)."""
    try:
        return export_frames(frames, mode, threshold=threshold, token=token)
    except OSError as exc:
        other = FALLBACK.get(mode)
        if other is None:
            raise
        out, descriptor, transfer = export_frames(frames, other, threshold=threshold, token=token)
        if descriptor is not None:
            descriptor["fallback"] = str(exc)
        return out, descriptor, transfer


def send_transfer(sock: socket.socket, transfer: Transfer, progress: Optional[ProgressFn] = None) -> None:
    """Send ``transfer`` to the receiver at the other end of ``sock``, by its mode; whatever
    the mode holds for it (a ring) is released when this returns, sent or not."""
    TRANSFER_MODES[transfer.mode].send(sock, transfer, progress)


def total_bytes(descriptor: Optional[Dict[str, Any]]) -> int:
    """How many bytes a descriptor moves outside the CURVE message."""
    return sum(int(b["n"]) for b in (descriptor or {}).get("bufs", []))


def import_frames(descriptor: Dict[str, Any], frames: Sequence[Any], *,
                  connect: Optional[Callable[[bytes], socket.socket]] = None,
                  progress: Optional[ProgressFn] = None) -> List[Any]:
    """Put the buffers a descriptor names back into ``frames`` (the inverse of export).

    ``connect(token)`` returns a socket positioned at the transfer; every wait on it is
    bounded by its timeout. Any failure, a stall included, is a BulkError; on any failure,
    even KeyboardInterrupt, what the descriptor names for the receiver to remove (a ring)
    is removed before raising.
    """
    strategy = TRANSFER_MODES.get(descriptor.get("mode")) if isinstance(descriptor, dict) else None
    if strategy is None:
        raise BulkError(f"malformed bulk descriptor: {descriptor!r}")
    try:
        received = _receive(strategy, descriptor, len(frames), connect, progress)
    finally:
        strategy.discard(descriptor)
    out = list(frames)
    for b, mem in zip(descriptor["bufs"], received):
        out[b["i"]] = mem
    return out


def _receive(strategy: TransferMode, descriptor: Dict[str, Any], frame_count: int,
             connect: Optional[Callable[[bytes], socket.socket]], progress: Optional[ProgressFn]) -> List[Any]:
    """Check a descriptor, then receive the buffers it names, in its order."""
    bufs = descriptor.get("bufs")
    if not isinstance(bufs, list) or not all(
        isinstance(b, dict) and isinstance(b.get("i"), int) and 0 < b["i"] < frame_count
        and isinstance(b.get("n"), int) and b["n"] > 0 for b in bufs
    ):
        raise BulkError("malformed bulk descriptor: bad buffer list")
    sizes = [b["n"] for b in bufs]
    if sum(sizes) > physical_memory():
        # A corrupt or hostile descriptor must not make us reserve more than the machine has.
        raise BulkError(f"bulk descriptor announces {sum(sizes)} bytes, more than this machine's memory")
    try:
        token = bytes.fromhex(descriptor["token"])
        chunk = int(descriptor["chunk"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BulkError(f"malformed bulk descriptor: {exc}") from None
    if len(token) != TOKEN_BYTES or not 0 < chunk <= MAX_CHUNK:
        raise BulkError("malformed bulk descriptor: bad token or chunk size")
    checked = strategy.check(descriptor)
    if connect is None:
        raise BulkError("a bulk transfer needs a connection to the data port")
    sock = connect(token)
    try:
        return strategy.receive(sock, checked, sizes, chunk, progress)
    except socket.timeout:
        wait = sock.gettimeout()
        raise BulkError(f"the bulk transfer stalled: the other side sent nothing for "
                        f"{wait if wait is not None else 0:g}s") from None
    except OSError as exc:
        raise BulkError(f"the bulk transfer failed: {exc}") from None
    finally:
        sock.close()


def release(descriptor: Optional[Dict[str, Any]]) -> None:
    """Sender side: the receiver is done (or failed); drop what it did not collect."""
    if not isinstance(descriptor, dict):
        return
    strategy = TRANSFER_MODES.get(descriptor.get("mode"))
    if strategy is not None:
        strategy.release(descriptor)
    try:
        token = bytes.fromhex(descriptor["token"])
    except (KeyError, ValueError, TypeError):
        return
    transfer = outbox().take_transfer(token)
    if transfer is not None:
        transfer.close()
