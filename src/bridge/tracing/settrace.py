"""``sys.settrace`` for Python 3.9-3.11: the frame tracer both older backends step with,
and the settrace backend (breakpoints through a global tracer; the fallback where the
``bytecode`` library is missing).

Before 3.12 a frame gets line events only through ``frame.f_trace`` *and* a trace
function installed in its thread with ``sys.settrace``; both must be set on that
thread (or, for the main thread, through ``Py_AddPendingCall``). Any trace function
turns the thread's specialised instructions off: a call-heavy loop runs ~5x slower
on 3.11 while its thread is traced, whatever the tracer does (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import dis
import inspect
import sys
import threading
from types import CodeType, FrameType
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional

from .pending_call import call_on_main_thread
from .scope import canonical

__all__ = ["FrameTracer", "SettraceBackend"]

_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_YIELDS = frozenset(dis.opmap[name] for name in ("YIELD_VALUE", "YIELD_FROM") if name in dis.opmap)


class FrameTracer:
    """The trace functions of one backend, and their installation on the current thread.

    * ``trace_frame``: a frame's local tracer; reports lines (``dispatch_line``) and
      returns (``dispatch_leave``).
    * ``trace_calls`` / ``trace_steps``: the thread's ``sys.settrace`` function; it
      decides which new frames get ``trace_frame``: those ``wants_frame`` names, and,
      in a thread stepping into calls, every frame a step may stop in.

    ``has_probe(code, line)``: lines a code probe reports (the code patching backend);
    their line events are left to the probe. ``watcher(frame, event)``
    sees every event of a traced frame whose code is in ``watched``.
    """

    def __init__(self, engine: Any, wants_frame: Callable[[FrameType], bool],
                 has_probe: Optional[Callable[[CodeType, int], bool]] = None,
                 watcher: Optional[Callable[[FrameType, str], None]] = None) -> None:
        self.engine = engine
        self.watched: FrozenSet[CodeType] = frozenset()
        self.watch_lines = False  # whether the watcher wants line events too (else returns only)
        get_ident = threading.get_ident
        dispatch_line = engine.dispatch_line
        dispatch_leave = engine.dispatch_leave
        steps_into_calls = engine.steps_into_calls
        never_stops = engine.never_stops
        tracer = self

        def trace_frame(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line":
                line = frame.f_lineno
                # where a probe follows, the probe reports this line (breakpoints and steps)
                if has_probe is None or not has_probe(frame.f_code, line):
                    dispatch_line(frame, line)
            elif event == "return":
                code = frame.f_code
                # a generator's yield is not its end (3.9-3.11: the instruction at f_lasti)
                if not code.co_flags & _GENERATOR_FLAGS or code.co_code[frame.f_lasti] not in _YIELDS:
                    dispatch_leave(frame)
            if watcher is not None and (event != "line" or tracer.watch_lines) and frame.f_code in tracer.watched:
                watcher(frame, event)
            # What a local trace function returns becomes the frame's f_trace again: a
            # stop that ended this frame's tracing (uninstall_here) must not be undone, or
            # 3.9/3.10 report the last traced line as f_lineno from then on.
            return trace_frame if frame.f_trace is trace_frame else None

        def trace_calls(frame: FrameType, event: str, arg: Any) -> Any:
            # Runs on every Python call of a traced thread: keep it tiny.
            return trace_frame if wants_frame(frame) else None

        def trace_steps(frame: FrameType, event: str, arg: Any) -> Any:
            if wants_frame(frame):
                return trace_frame
            if steps_into_calls(get_ident()) and not never_stops(frame.f_code.co_filename):
                return trace_frame
            return None

        self.trace_frame = trace_frame
        self.trace_calls = trace_calls
        self.trace_steps = trace_steps

    def owns(self, fn: Any) -> bool:
        """Whether ``fn`` (a ``sys.gettrace()``) is one of ours."""
        return fn is self.trace_calls or fn is self.trace_steps

    def install_here(self, frames: Iterable[FrameType]) -> None:
        """Trace the current thread, and give ``frames`` (already running) line events."""
        never_stops = self.engine.never_stops
        for frame in frames:
            if not never_stops(frame.f_code.co_filename):
                frame.f_trace = self.trace_frame
                frame.f_trace_lines = True
        tracer = self.trace_steps if self.engine.steps_into_calls(threading.get_ident()) else self.trace_calls
        if sys.gettrace() is not tracer:
            sys.settrace(tracer)

    def uninstall_here(self) -> None:
        """Stop tracing the current thread."""
        if self.owns(sys.gettrace()):
            sys.settrace(None)
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_trace is self.trace_frame:
                frame.f_trace = None
            frame = frame.f_back


# ------------------------------------------------------------------------ settrace backend


class _FirstLines(dict):
    """co_firstlineno -> whether code starting there may hold a breakpoint."""

    def __init__(self, by_first: Optional[Dict[int, FrozenSet[int]]], lines: FrozenSet[int]) -> None:
        super().__init__()
        self.by_first = by_first
        self.lines = lines

    def __missing__(self, first: int) -> bool:
        known = self.by_first.get(first) if self.by_first else None
        # unknown start (the file changed since): trace it, the line check decides
        value = True if known is None else not known.isdisjoint(self.lines)
        self[first] = value
        return value


_NO_BREAKPOINTS: Dict[int, bool] = collections.defaultdict(bool)


class _FastFiles(dict):
    """raw co_filename -> {co_firstlineno: may hold a breakpoint}.

    Read by the global trace function on every call, so its misses do the work:
    files without breakpoints map to a ``defaultdict(bool)`` (misses answered in C).
    When the engine is idle it stays empty and every miss uninstalls the tracer of
    the thread asking: threads we could not reach directly untrace themselves.
    """

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine
        self.live = False

    def reset(self, live: bool) -> None:
        self.live = live
        self.clear()

    def __missing__(self, raw: str) -> Dict[int, bool]:
        if not self.live:
            sys.settrace(None)
            return _NO_BREAKPOINTS
        engine = self.engine
        bps = engine.breakpoints_in_file(raw)
        if bps:
            info = engine.file_lines(canonical(raw))
            value: Dict[int, bool] = _FirstLines(info.by_first if info else None, frozenset(bps))
        else:
            value = collections.defaultdict(bool)
        self[raw] = value
        return value


class SettraceBackend:
    """A global tracer that declines every frame it can (the pre-3.12 way, and the
    fallback without ``bytecode``).

    Measured floor on 3.11: *any* tracer, even the C builtin ``getattr``, makes a
    call-heavy loop ~5x slower; ours adds ~15% to that. It reaches the calling thread,
    the main thread (``Py_AddPendingCall``) and threads started later
    (``threading.settrace``); threads that were already running are not traced.
    """

    name = "sys.settrace"
    pauses_any_thread = False

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.fast = _FastFiles(engine)
        fast = self.fast  # mutated in place, never replaced: the closure keeps it

        def wants_frame(frame: FrameType) -> bool:
            code = frame.f_code
            return fast[code.co_filename][code.co_firstlineno]

        self.tracer = FrameTracer(engine, wants_frame)

    def prepare_code(self, code: CodeType) -> CodeType:
        """Nothing to do: the global tracer sees every new frame."""
        return code

    def is_idle(self) -> bool:
        """Whether this thread has no tracer of ours."""
        return sys.gettrace() is None

    def _live(self) -> bool:
        return self.engine.has_breakpoints() or self.engine.is_stepping()

    def _install_here(self, only_bp: bool) -> None:
        engine = self.engine
        frames: List[FrameType] = []
        frame: Optional[FrameType] = sys._getframe(1)
        while frame is not None:
            if not only_bp or engine.code_has_breakpoint(frame.f_code):
                frames.append(frame)
            frame = frame.f_back
        self.tracer.install_here(frames)

    def _apply(self) -> None:
        """Bring tracer installation in line with the engine state (this thread, new
        threads, the main thread)."""
        live = self._live()
        self.fast.reset(live)
        on_main = threading.current_thread() is threading.main_thread()
        if live:
            threading.settrace(self.tracer.trace_calls)
            self._install_here(only_bp=True)
            if not on_main:
                call_on_main_thread(lambda: self._install_here(only_bp=True))
        else:
            threading.settrace(None)  # type: ignore[arg-type]
            self.tracer.uninstall_here()
            if not on_main:
                call_on_main_thread(self.tracer.uninstall_here)

    def breakpoints_changed(self) -> None:
        """Re-read the breakpoint tables; trace running frames that hold breakpoints."""
        self._apply()

    def stepping_changed(self, tid: Optional[int], frames: Optional[List[FrameType]]) -> None:
        """Trace ``frames`` of this thread for stepping (None: this thread stopped stepping)."""
        # Called on the thread concerned (arm, the signal handler) or with tid None.
        if not self._live():
            self._apply()
            return
        self.fast.reset(True)
        if frames is not None:
            self.tracer.install_here(frames)
        elif tid is not None and sys.gettrace() is self.tracer.trace_steps:
            sys.settrace(self.tracer.trace_calls)  # this thread stopped stepping into calls
