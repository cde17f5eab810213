"""Block digests of big buffers, so that a write-back sends only the blocks that changed.

A mounted array is cut into blocks of :data:`BLOCK_BYTES` in its memory order; each block
gets a 64-bit digest (xxh3_64 when the ``xxhash`` package is importable, else blake2b: the
target never needs a new dependency). The notebook compares an array's digests at mount
with those at write-back and sends only the runs of changed blocks, which the target writes
into its existing buffer (docs/howto-mount.md, "Big arrays"). Digests are only ever compared
with digests computed in the same process (docs/howto-mount.md explains why).

Used by both sides; numpy is imported only by callers that already hold an array.
"""

from __future__ import annotations

import hashlib
from typing import Any, List, Tuple

#: Bytes per block. Small enough that one changed element sends little, big enough that
#: a 1 GiB array has only 4,096 digests (one Python call each).
BLOCK_BYTES = 256 * 1024
DIGEST_BYTES = 8

try:  # ~20 GB/s; the target may lack it, and then uses the standard library
    import xxhash

    HASH_NAME = "xxh3_64"

    def _digest(data: Any) -> bytes:
        return xxhash.xxh3_64_digest(data)

except ImportError:  # pragma: no cover - depends on the environment
    HASH_NAME = "blake2b-64"

    def _digest(data: Any) -> bytes:
        return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def digest_blocks(buffer: Any, block_bytes: int = BLOCK_BYTES) -> bytes:
    """The concatenated digests of ``buffer``'s blocks (a contiguous buffer of any format)."""
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return b"".join([_digest(view[start:start + block_bytes]) for start in range(0, view.nbytes, block_bytes)])


def update_digests(digests: bytes, buffer: Any, byte_ranges: List[Tuple[int, int]],
                   block_bytes: int = BLOCK_BYTES) -> bytes:
    """``digests`` of ``buffer`` after the bytes in ``byte_ranges`` were rewritten: only the
    blocks those ranges touch are hashed again."""
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    out = bytearray(digests)
    for start, stop in byte_ranges:
        for block in range(start // block_bytes, (max(stop, start + 1) - 1) // block_bytes + 1):
            lo = block * block_bytes
            out[block * DIGEST_BYTES:(block + 1) * DIGEST_BYTES] = _digest(view[lo:lo + block_bytes])
    return bytes(out)


def changed_blocks(before: bytes, after: bytes) -> List[int]:
    """Indices of the blocks whose digests differ (same block count on both sides)."""
    if before == after:
        return []
    step = DIGEST_BYTES
    return [i for i in range(len(after) // step) if before[i * step:(i + 1) * step] != after[i * step:(i + 1) * step]]


def runs(blocks: List[int]) -> List[Tuple[int, int]]:
    """Consecutive block indices as half-open ``(first, end)`` runs."""
    out: List[Tuple[int, int]] = []
    for b in blocks:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + 1)
        else:
            out.append((b, b + 1))
    return out


def memory_order(array: Any) -> str:
    """``"C"`` or ``"F"``: the order in which ``array``'s elements lie in memory, or ``""``
    when it is neither C- nor Fortran-contiguous (then it has no block layout)."""
    flags = array.flags
    if flags.c_contiguous:
        return "C"
    if flags.f_contiguous:
        return "F"
    return ""


def flat_view(array: Any, order: str) -> Any:
    """A 1-d view of ``array``'s elements in ``order`` (its memory order), or None when
    ``array`` is not contiguous in that order (a write then goes through ``array.flat``)."""
    if memory_order(array) != order and not (array.ndim <= 1 and memory_order(array)):
        return None
    return array.reshape(-1, order=order)
