"""Capture what one thread prints while the rest of the process prints as usual.

``exec`` in a paused frame must return its output, but the job's other threads keep
printing to the real stdout. A plain ``redirect_stdout`` would steal their output too, so
while any capture is active ``sys.stdout``/``sys.stderr`` are routers that send the
writes of capturing threads to their buffers and everything else to the real stream.
"""

from __future__ import annotations

import io
import sys
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, List, TextIO

_lock = threading.Lock()
_buffers: Dict[int, io.StringIO] = {}
_active = 0


class _ThreadRouter(io.TextIOBase):
    """A text stream that writes to the current thread's capture buffer or ``real``."""

    def __init__(self, real: TextIO, name: str) -> None:
        self.real = real
        self.name = name

    def write(self, text: str) -> int:
        buf = _buffers.get(threading.get_ident())
        if buf is not None:
            return buf.write(text)
        return self.real.write(text)

    def flush(self) -> None:
        if threading.get_ident() not in _buffers:
            self.real.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, item: str):  # encoding, fileno, ... of the real stream
        return getattr(self.real, item)


@contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Capture stdout and stderr written by this thread into one StringIO."""
    global _active
    buf = io.StringIO()
    ident = threading.get_ident()
    with _lock:
        if _active == 0:
            sys.stdout = _ThreadRouter(sys.stdout, "stdout")  # type: ignore[assignment]
            sys.stderr = _ThreadRouter(sys.stderr, "stderr")  # type: ignore[assignment]
        _active += 1
        _buffers[ident] = buf
    try:
        yield buf
    finally:
        with _lock:
            _buffers.pop(ident, None)
            _active -= 1
            if _active == 0:
                # Only unwrap our own routers: user code may have replaced them meanwhile.
                for attr in ("stdout", "stderr"):
                    stream = getattr(sys, attr)
                    if isinstance(stream, _ThreadRouter):
                        setattr(sys, attr, stream.real)


def active_captures() -> List[int]:
    """Thread ids that are capturing now (for tests and diagnostics)."""
    return list(_buffers)
