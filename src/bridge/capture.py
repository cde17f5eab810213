"""Capture what one thread prints while the rest of the process prints as usual.

``exec`` in a paused frame must return its output, but the job's other threads keep
printing to the real stdout. A plain ``redirect_stdout`` would steal their output too, so
while any capture (or any pause, see :class:`routing`) is active ``sys.stdout`` and
``sys.stderr`` are routers that send the writes of capturing threads to their buffers and
everything else to the real stream.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import Dict, TextIO

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
        # Captured text goes to a notebook, never a terminal; other threads ask the real stream.
        if threading.get_ident() in _buffers:
            return False
        return self.real.isatty()

    def __getattr__(self, item: str):  # encoding, fileno, ... of the real stream
        return getattr(self.real, item)


def _install_routers() -> None:
    # Under _lock. Wrap whatever the streams are now unless they are our routers already
    # (user code may have replaced them since the last capture).
    for attr in ("stdout", "stderr"):
        stream = getattr(sys, attr)
        if type(stream) is not _ThreadRouter:
            setattr(sys, attr, _ThreadRouter(stream, attr))


def _release_routers() -> None:
    # Under _lock. Only unwrap our own routers: user code may have replaced them meanwhile.
    global _active
    _active -= 1
    if _active == 0:
        for attr in ("stdout", "stderr"):
            stream = getattr(sys, attr)
            if isinstance(stream, _ThreadRouter):
                setattr(sys, attr, stream.real)


class routing:
    """Keep the routers installed for a while (a whole pause), so that each capture in it
    only registers its buffer instead of swapping ``sys.stdout`` twice per eval."""

    def __enter__(self) -> "routing":
        global _active
        with _lock:
            _active += 1
            _install_routers()
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _release_routers()


class captured_output:
    """Capture stdout and stderr written by this thread into one StringIO (``with ... as buf``)."""

    __slots__ = ("buffer", "ident")

    def __enter__(self) -> io.StringIO:
        global _active
        self.buffer = io.StringIO()
        self.ident = threading.get_ident()
        with _lock:
            _active += 1
            _install_routers()
            _buffers[self.ident] = self.buffer
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _buffers.pop(self.ident, None)
            _release_routers()
