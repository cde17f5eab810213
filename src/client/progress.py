"""Progress of long transfers: a bar in a notebook, a line on stderr elsewhere.

A transfer shows nothing for its first :data:`SHOW_AFTER_S` second (most are faster);
after that a progress bar appears: an ipywidgets ``FloatProgress`` when running inside a
Jupyter kernel with ipywidgets installed, else a carriage-return bar on stderr. No new
dependency: ipywidgets is optional and only imported when a bar is actually shown.

Usage (what the transport does around a bulk transfer)::

    with transfer_progress(total_bytes, "pull") as report:
        receive(..., progress=report)      # report(bytes_done) from any thread
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

#: Transfers quicker than this never show a bar.
SHOW_AFTER_S = 1.0
#: Redraw at most this often (a redraw per 8 MiB chunk would cost more than it shows).
REDRAW_S = 0.1


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _TerminalBar:
    """``label [#####.....]  45%  450/1000 MiB  1.20 GB/s`` rewritten in place on stderr.

    When stderr is not a terminal (a log file), carriage returns would pile up: then only
    the final line is written.
    """

    WIDTH = 30

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        try:
            self.tty = sys.stderr.isatty()
        except Exception:
            self.tty = False
        self.rate = 0.0

    def draw(self, done: int, rate: float) -> None:
        self.rate = rate
        if not self.tty:
            return
        frac = done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac * 100:5.1f}%  "
            f"{done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB  {rate / 1e9:.2f} GB/s"
        )
        sys.stderr.flush()

    def close(self, done: int, ok: bool) -> None:
        if not self.tty:
            sys.stderr.write(f"{self.label}: {done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB, "
                             f"{self.rate / 1e9:.2f} GB/s, {'done' if ok else 'interrupted'}\n")
        else:
            sys.stderr.write("  done\n" if ok else "  interrupted\n")
        sys.stderr.flush()


class _WidgetBar:
    """An ipywidgets progress bar with a text label, displayed in the running cell."""

    def __init__(self, total: int, label: str) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.total = total
        self.label = label
        self.bar = widgets.FloatProgress(min=0.0, max=float(max(total, 1)), description=label)
        self.text = widgets.HTML()
        self.box = widgets.HBox([self.bar, self.text])
        display(self.box)

    def draw(self, done: int, rate: float) -> None:
        self.bar.value = float(done)
        self.text.value = f"{done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB &nbsp; {rate / 1e9:.2f} GB/s"

    def close(self, done: int, ok: bool) -> None:
        self.bar.bar_style = "success" if ok else "danger"
        self.text.value += " &nbsp; done" if ok else " &nbsp; interrupted"


class Progress:
    """Callable ``report(bytes_done)``: draws a bar once the transfer has run a second."""

    def __init__(self, total: int, label: str = "transfer", *, show_after: float = SHOW_AFTER_S,
                 bar_factory: Optional[Callable[[int, str], Any]] = None) -> None:
        self.total = total
        self.label = label
        self.show_after = show_after
        self.started = time.monotonic()
        self.done = 0
        self._bar: Any = None
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._factory = bar_factory

    @property
    def shown(self) -> bool:
        """Whether a bar was displayed."""
        return self._bar is not None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.done = done
            if now - self.started < self.show_after or now - self._last_draw < REDRAW_S:
                return
            self._last_draw = now
            if self._bar is None:
                self._bar = self._make_bar()
            rate = done / max(now - self.started, 1e-9)
            try:
                self._bar.draw(done, rate)
            except Exception:  # a display problem must never break the transfer
                pass

    def _make_bar(self) -> Any:
        if self._factory is not None:
            return self._factory(self.total, self.label)
        if _in_kernel():
            try:
                return _WidgetBar(self.total, self.label)
            except Exception:  # no ipywidgets (or no frontend): fall back to text
                pass
        return _TerminalBar(self.total, self.label)

    def close(self, ok: bool) -> None:
        """Finish the bar (if one was shown): full on success, marked on interruption."""
        with self._lock:
            if self._bar is None:
                return
            try:
                if ok:
                    self._bar.draw(self.total, self.total / max(time.monotonic() - self.started, 1e-9))
                self._bar.close(self.done, ok)
            except Exception:
                pass


@contextmanager
def transfer_progress(total: int, label: str = "transfer") -> Iterator[Progress]:
    """A :class:`Progress` for ``total`` bytes, closed (done / interrupted) on exit."""
    progress = Progress(total, label)
    ok = False
    try:
        yield progress
        ok = True
    finally:
        progress.close(ok)
