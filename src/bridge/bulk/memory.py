"""Where received buffers land: fresh anonymous memory, faulted in cheaply.

A fresh page costs more here than the bytes it will hold (the kernel zeroes it, and on a
VM that returned its free memory to the host, the host must supply it again;
docs/benchmarks.md), so both modes receive into mappings advised for huge pages before
their first touch, and the AES mode faults them in ahead of the stream.
"""

from __future__ import annotations

import functools
import mmap
import os
import sys
import threading
from typing import Any, Callable, Optional, Sequence

MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: madvise(2) advice that faults a range in, writable, in one call (Linux 5.14+; the mmap
#: module only names it from Python 3.13 on).
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_HUGE_PAGE = 2 << 20


def bytes_view(buf: Any) -> memoryview:
    """A flat unsigned-byte view of any buffer (numpy arrays of other dtypes included)."""
    view = memoryview(buf)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def anonymous(size: int) -> mmap.mmap:
    """A private anonymous mapping for a received buffer, backed by huge pages where granted.

    madvise(MADV_HUGEPAGE) must come before the first touch (this host's THP mode is
    ``madvise``): faulting 1 GiB in 2 MiB pages is 512x fewer faults, about 3x faster here
    than ``MAP_POPULATE`` with 4 KiB pages (which is what we fall back to).
    """
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20)
    if size >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        mem = mmap.mmap(-1, size, flags=flags)
        try:
            mem.madvise(mmap.MADV_HUGEPAGE)
        except (OSError, AttributeError):
            mem.close()
        else:
            return mem
    return mmap.mmap(-1, size, flags=flags | MAP_POPULATE)


def physical_memory() -> int:
    """Bytes of RAM on this machine (a huge number where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class Prefaulter:
    """Faults the destination mappings in, ahead of the reader, on a thread of its own.

    ``madvise(MADV_POPULATE_WRITE)`` through ctypes releases the GIL, so this runs beside
    the reader's ``recv_into`` and the opening of the previous chunk instead of inside
    them. Where the kernel or platform lacks it, the reader's own faults do the job.
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
        thread = threading.Thread(target=self._run, name="bridge-bulk-prefault", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to spare: the reader faults the pages in itself
            self._regions = []
            self._anchors = []
            return
        self._thread = thread

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
        """Stop faulting and wait for the thread (the mappings are then free to close)."""
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
