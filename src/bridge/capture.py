"""Intercept what the target prints: per-request capture and the job's output tail.

``exec`` in a paused frame must return what it printed, while the job's other threads
keep printing to the real streams; and the DebugPanel shows the job's last lines. Both
come from one interception: ``sys.stdout`` and ``sys.stderr`` become :class:`Router`
objects that send a write of a *capturing* thread (one running a request) to that
request's buffer, and every other write to the real stream and, after it, to the
bounded :data:`tail` (docs/panel.md, "The job's output").

Why it is built this way (docs/panel.md, "How output is intercepted"):

* **Routers are installed once and never removed.** CPython's ``print`` (before 3.12)
  holds a *borrowed* reference to ``sys.stdout`` across its writes, and a write to the
  real stream releases the GIL. Swapping the router out while another thread was in the
  middle of a ``print`` freed the router under that thread: a RecursionError in
  ``__getattr__`` (its ``__dict__`` already gone) or a segfault. So every router ever
  installed stays referenced by :data:`_routers` for the life of the process, and a
  request's capture only registers a buffer for its own thread: no swap per request.
* **User code may replace the streams** (``redirect_stdout``, a logging setup, a test
  harness). A capture then wraps whatever ``sys.stdout`` is at that moment in a new
  router; a router that user code took out keeps working for writers that still hold it,
  but no longer keeps the user's stream alive (a weak reference, see :meth:`Router._retire`).
* **Only Python-level writes are intercepted.** C code that calls ``PySys_WriteStdout``
  goes through ``sys.stdout`` and is routed; C code that writes to file descriptor 1 or 2
  (``printf``, a subprocess) goes straight to the real output: never captured, never in
  the tail, never lost. Writes to ``sys.stdout.buffer`` (bytes) go to the real stream too.
* **Nothing is written to disk.** The tail is memory only: the last TAIL_CHUNKS writes,
  each cut at TAIL_CHUNK_CHARS characters.
"""

from __future__ import annotations

import io
import itertools
import sys
import threading
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

#: Writes the tail keeps (a print is usually two: its text and its newline).
TAIL_CHUNKS = 4096
#: A longer write is kept cut to this many characters: the tail holds at most
#: TAIL_CHUNKS * TAIL_CHUNK_CHARS characters, whatever the job prints.
TAIL_CHUNK_CHARS = 1024
_CUT_MARK = " [...]"

_lock = threading.Lock()
#: Thread id -> the buffer its running request captures into.
_buffers: Dict[int, io.StringIO] = {}
#: Every router ever installed, alive for good (see the module docstring).
_routers: List["Router"] = []
_get_ident = threading.get_ident


class OutputTail:
    """The job's last output: chunks ``(seq, stream, text)``, the newest :data:`TAIL_CHUNKS`.

    ``seq`` numbers every chunk from 1, so a reader asks for what came after the last
    one it saw; ``stream`` is 1 (stdout) or 2 (stderr). Writers only append to a bounded
    deque (atomic, no lock: this is on the job's every print).
    """

    def __init__(self, chunks: int = TAIL_CHUNKS) -> None:
        self._chunks: Deque[Tuple[int, int, str]] = deque(maxlen=chunks)
        #: A new sequence number per call (atomic: ``next`` of an itertools.count).
        self.next_seq: Callable[[], int] = itertools.count(1).__next__

    @property
    def enabled(self) -> bool:
        """Whether writes are being recorded."""
        return _append is not None

    @enabled.setter
    def enabled(self, on: bool) -> None:
        global _append
        _append = self._chunks.append if on else None

    def record(self, stream: int, text: str) -> None:
        """Keep one write (what routers do inline)."""
        if len(text) > TAIL_CHUNK_CHARS:
            text = text[:TAIL_CHUNK_CHARS] + _CUT_MARK
        self._chunks.append((self.next_seq(), stream, text))

    def since(self, seq: int, max_chars: int) -> Tuple[List[Tuple[int, int, str]], int, bool]:
        """Chunks after chunk ``seq`` (0: from the oldest kept), oldest first, about
        ``max_chars`` of them at most (the newest win): (chunks, the seq to ask from next
        time, whether chunks after ``seq`` were dropped).

        "After" is by position: a writer takes its number and then appends, so two
        threads may append out of number order; finding chunk ``seq`` itself never skips
        the one that came late.
        """
        chunks = list(self._chunks.copy())  # one C call: no writer gets in between
        start, dropped = 0, False
        if seq:
            for i in range(len(chunks) - 1, -1, -1):
                if chunks[i][0] == seq:
                    start = i + 1
                    break
            else:
                dropped = bool(chunks)  # chunk `seq` is gone: everything kept is new
        elif chunks and chunks[0][0] > 1:
            dropped = True  # from the start, but the oldest chunks are gone
        new = chunks[start:]
        out: List[Tuple[int, int, str]] = []
        total = 0
        for item in reversed(new):
            if total >= max_chars:
                dropped = True
                break
            out.append(item)
            total += len(item[2])
        out.reverse()
        last = new[-1][0] if new else (chunks[start - 1][0] if start else seq)
        return out, last, dropped

    def clear(self) -> None:
        """Forget everything (tests)."""
        self._chunks.clear()


#: The writers' hook: the tail's ``append((seq, stream, text))`` while it records, else None.
_append: Optional[Callable[[Tuple[int, int, str]], None]] = None
#: The job's output tail, recording while :func:`install` has enabled it.
tail = OutputTail()
_next_seq = tail.next_seq


class Router:
    """Stands in for ``sys.stdout`` / ``sys.stderr``: a capturing thread's writes go to its
    buffer, every other write to the real stream (and the tail).

    Not an ``io.TextIOBase``: that class closes itself (and so would close the real
    stream) when it is collected, and answers ``encoding`` with None.
    """

    __slots__ = ("real", "stream", "_weak", "__weakref__")

    def __init__(self, real: Any, stream: int) -> None:
        self.real: Any = real
        self.stream = stream
        self._weak: Any = None

    def _target(self) -> Any:
        real = self.real
        if real is not None:
            return real
        # Retired (user code took this router out) and the user's stream is gone: a
        # writer still holding the router gets whatever the stream is now.
        real = self._weak() if self._weak is not None else None
        if real is None:
            real = sys.__stdout__ if self.stream == 1 else sys.__stderr__
        return real

    def write(self, text: str) -> int:
        # The job's every print comes through here: the common case (no capture running,
        # the tail recording) is a dict test, the real write and one deque append.
        if _buffers:
            buf = _buffers.get(_get_ident())
            if buf is not None:
                return buf.write(text)
        real = self.real
        if real is None:
            real = self._target()
            if real is None:  # no stream to write to at all: print drops it, so do we
                return len(text)
        n = real.write(text)
        append = _append
        if append is not None and text:
            if len(text) > TAIL_CHUNK_CHARS:
                text = text[:TAIL_CHUNK_CHARS] + _CUT_MARK
            append((_next_seq(), self.stream, text))
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not _buffers or _get_ident() not in _buffers:
            real = self._target()
            if real is not None:
                real.flush()

    def isatty(self) -> bool:
        # Captured text goes to a notebook, never a terminal; other threads ask the real stream.
        if _get_ident() in _buffers:
            return False
        real = self._target()
        return bool(real is not None and real.isatty())

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"

    @property
    def errors(self) -> Optional[str]:
        return getattr(self._target(), "errors", None)

    @property
    def closed(self) -> bool:
        return bool(getattr(self._target(), "closed", False))

    def __getattr__(self, item: str) -> Any:  # fileno, buffer, mode, ... of the real stream
        if item in Router.__slots__ or item.startswith("__"):
            # Never recurse: an attribute of our own that is missing is missing.
            raise AttributeError(item)
        return getattr(self._target(), item)

    def __repr__(self) -> str:
        return f"<framebridge output router for {self._target()!r}>"

    def _retire(self) -> None:
        """User code took this router out of ``sys``: hold its stream weakly from now on."""
        real = self.real
        if real is None:
            return
        try:
            self._weak = weakref.ref(real)
        except TypeError:  # not weakly referenceable: keep it (it is small or the user's own)
            return
        self.real = None

    def _revive(self) -> None:
        """User code put this router back: hold its stream strongly again."""
        if self.real is None and self._weak is not None:
            self.real = self._weak()


# Code that asks isinstance(sys.stdout, io.TextIOBase) still gets yes (no behaviour inherited).
io.TextIOBase.register(Router)


def install(*, record: Optional[bool] = None) -> None:
    """Make sure ``sys.stdout`` and ``sys.stderr`` are routers (cheap when they are).

    ``record``: turn the output tail on or off. The server calls ``install(record=True)``
    when it starts; each capture calls it too, since user code may have replaced a stream.
    """
    with _lock:
        if record is not None:
            tail.enabled = record
        current = []
        for attr, stream in (("stdout", 1), ("stderr", 2)):
            value = getattr(sys, attr, None)
            if value is None:  # no stream at all (pythonw, a daemon): print drops its output
                continue
            if type(value) is not Router:
                value = Router(value, stream)
                _routers.append(value)
                setattr(sys, attr, value)
            current.append(value)
        for router in _routers:
            if any(router is c for c in current):
                router._revive()
            else:
                router._retire()


class routing:
    """Make sure the routers are installed for a while (a whole pause).

    The routers stay installed after it (see the module docstring); kept so that a pause
    still says that it needs them.
    """

    def __enter__(self) -> "routing":
        install()
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class captured_output:
    """Capture stdout and stderr written by this thread into one StringIO (``with ... as buf``)."""

    __slots__ = ("buffer", "ident", "outer")

    def __enter__(self) -> io.StringIO:
        install()
        self.buffer = io.StringIO()
        self.ident = _get_ident()
        with _lock:
            self.outer = _buffers.get(self.ident)  # a capture inside a capture: restored after
            _buffers[self.ident] = self.buffer
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        with _lock:
            if self.outer is None:
                _buffers.pop(self.ident, None)
            else:
                _buffers[self.ident] = self.outer


def forget_inherited() -> None:
    """In a forked child (bridge/forks.py): forget the parent's captures."""
    # A forked child runs only the forking thread: a capture that thread was in belongs
    # to the parent's request, so the child's prints go to its real output. A lock
    # another thread held at the fork would never be released in the child: new ones.
    global _lock
    _buffers.clear()
    _lock = threading.Lock()

