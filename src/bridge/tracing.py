"""The debugging engine: breakpoints, stepping and pausing (no sockets, no I/O).

Like CPython's ``bdb`` it decides *where* a thread stops and leaves *what happens
while it is stopped* to a front end.  When a thread must stop, the engine calls the
front end's hook on that thread::

    on_stop(frame, reason, info) -> action

``reason`` is one of :data:`REASONS`:

* ``"breakpoint"``: ``info = {"breakpoint": id, "hits": n, "temporary": bool}``,
  plus ``"condition_error": "<repr>"`` when the condition raised (it then counts as
  true, as in pdb, so that a broken condition is seen rather than silently ignored).
* ``"step"``: a ``step``/``next``/``step_out`` finished; ``info = {"action": action}``.
* ``"pause"``: :meth:`Debugger.request_pause` took effect; ``info = {"mechanism": ...}``.

The engine never stops for exceptions ("post-mortem" belongs to the front end).

``action`` is one of :data:`ACTIONS` and has pdb's meaning:

* ``"continue"``: run until a breakpoint or a pause request.
* ``"step"``: stop at the next line executed by this thread, anywhere (into calls).
* ``"next"``: stop at the next line of this frame, or, once the frame has returned
  (or been unwound by an exception), at the next line of a caller.
* ``"step_out"``: run until this frame returns or unwinds, then stop at the next line
  of a caller (pdb's ``return`` followed by ``step``).

Mechanisms (chosen for overhead, see tests/bench/bench_tracing.py):

* Python 3.12+: ``sys.monitoring``.  LINE events are enabled only on code objects that
  hold a breakpoint or belong to a stack being stepped or paused; a global PY_START /
  PY_RESUME event (each code object answers ``DISABLE`` after one look) finds code
  objects created after a breakpoint was set.  All threads are covered.
* Python 3.9-3.11: ``sys.settrace``.  The global trace function returns ``None`` (no
  line tracing) for every frame whose code holds no breakpoint and is not being
  stepped.  It is installed in the calling thread, the main thread (through
  ``Py_AddPendingCall``) and threads started later (``threading.settrace``); threads
  that were already running are *not* traced (CPython offers no way to do that before
  3.12).  With no breakpoint and no stepping, no tracer is installed.

Frames of framebridge itself (``bridge``, ``client``) and of ``threading.py`` never
stop.
"""

from __future__ import annotations

import collections
import ctypes
import dis
import os
import signal
import sys
import threading
import tokenize
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Callable, Dict, FrozenSet, List, Optional, Set, Tuple

from .protocol import Breakpoint  # the one breakpoint schema, shared with the client

__all__ = [
    "ACTIONS",
    "REASONS",
    "Breakpoint",
    "Debugger",
    "StopHandler",
    "get_debugger",
]

ACTIONS: Tuple[str, ...] = ("continue", "step", "next", "step_out")
REASONS: Tuple[str, ...] = ("breakpoint", "step", "pause")

#: ``on_stop(frame, reason, info) -> action``; runs on the stopping thread.
StopHandler = Callable[[FrameType, str, dict], str]

_MONITORING = sys.version_info >= (3, 12)

_BRIDGE_DIR = os.path.dirname(os.path.realpath(__file__))
_SKIP_PREFIXES = (
    _BRIDGE_DIR + os.sep,
    os.path.join(os.path.dirname(_BRIDGE_DIR), "client") + os.sep,
)
_SKIP_FILES = frozenset({os.path.realpath(threading.__file__)})


# --------------------------------------------------------------------------- helpers


def _canonical(filename: str) -> str:
    """The name a breakpoint file is matched by: realpath, or the name itself for
    pseudo files such as ``<string>`` (which then never match a real file)."""
    if filename.startswith("<"):
        return filename
    return os.path.realpath(filename)


def _is_skipped(canonical: str) -> bool:
    return canonical.startswith(_SKIP_PREFIXES) or canonical in _SKIP_FILES


def _code_lines(code: CodeType) -> FrozenSet[int]:
    """Lines where ``code`` has instructions (not those of nested code objects)."""
    if hasattr(code, "co_lines"):  # 3.10+
        return frozenset(ln for _, _, ln in code.co_lines() if ln)
    return frozenset(ln for _, ln in dis.findlinestarts(code) if ln)


def _walk_codes(code: CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _walk_codes(const)


@dataclass
class _FileInfo:
    """Line tables of a source file, from compiling it once at set_break time.

    Compiling the source (rather than hunting live code objects with ``gc``) also
    works for functions that do not exist yet; it costs about a millisecond per
    thousand lines, paid once per file and modification time.
    """

    mtime: float
    lines: FrozenSet[int]  # every line that has code, in any code object
    by_first: Dict[int, FrozenSet[int]]  # co_firstlineno -> union of those codes' lines

    @classmethod
    def load(cls, path: str) -> "_FileInfo":
        with tokenize.open(path) as f:  # honours the coding cookie
            source = f.read()
        try:
            top = compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise ValueError(f"cannot set a breakpoint in {path}: it does not compile ({exc})") from None
        lines: Set[int] = set()
        by_first: Dict[int, Set[int]] = {}
        for code in _walk_codes(top):
            cl = _code_lines(code)
            lines |= cl
            by_first.setdefault(code.co_firstlineno, set()).update(cl)
        return cls(
            os.stat(path).st_mtime,
            frozenset(lines),
            {k: frozenset(v) for k, v in by_first.items()},
        )


class _Step:
    """What a stepping (or pause-requested) thread is waiting for."""

    __slots__ = ("mode", "targets", "reason", "info")

    def __init__(self, mode: str, targets: Tuple[FrameType, ...], reason: str, info: dict) -> None:
        self.mode = mode  # "step": any line; otherwise a line in one of `targets`
        self.targets = targets
        self.reason = reason
        self.info = info

    def wants(self, frame: FrameType) -> bool:
        if self.mode == "step":
            return True
        for target in self.targets:  # identity: a recursive call of the same code is not it
            if target is frame:
                return True
        return False


def _stack(frame: Optional[FrameType]) -> List[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


# --------------------------------------------------------------------------- engine


class Debugger:
    """The process-wide debugging engine (use :func:`get_debugger`).

    Thread-safe: breakpoints can be set from any thread (e.g. a server thread) while
    other threads run.  State read on the hot paths is replaced, never mutated, so the
    callbacks read it without a lock; no lock is held while ``on_stop`` runs, so
    several threads can be stopped at once.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._handler: Optional[StopHandler] = None
        self._next_id = 1
        self._bps: Dict[int, Breakpoint] = {}
        # canonical file -> line -> breakpoints (replaced on every change)
        self._index: Dict[str, Dict[int, List[Breakpoint]]] = {}
        # raw co_filename -> index entry or None (cache, replaced on every change)
        self._by_raw: Dict[str, Optional[Dict[int, List[Breakpoint]]]] = {}
        self._skip_cache: Dict[str, bool] = {}
        self._files: Dict[str, _FileInfo] = {}
        self._code_lines_cache: Dict[CodeType, FrozenSet[int]] = {}
        self._steps: Dict[int, _Step] = {}  # thread id -> step (replaced on change)
        self._in_stop: Set[int] = set()  # threads inside on_stop: never re-enter
        self._backend = _MonitoringBackend(self) if _MONITORING else _SettraceBackend(self)
        self._signals = _SignalPauser(self)

    # ----------------------------------------------------------------- front end

    @property
    def mechanism(self) -> str:
        """``"sys.monitoring"`` or ``"sys.settrace"``."""
        return "sys.monitoring" if _MONITORING else "sys.settrace"

    def set_stop_handler(self, fn: Optional[StopHandler]) -> None:
        """Install the front end's ``on_stop(frame, reason, info) -> action`` hook.

        It is called on the stopping thread, without any engine lock held, and blocks
        that thread until it returns.  Code it runs (evaluating in the frame, say) is
        not traced: breakpoints do not fire inside it.  If it raises, the error is
        printed to stderr and the thread continues.  With no handler (``None``),
        stops are skipped, as if the handler returned ``"continue"``.
        """
        self._handler = fn

    def set_break(
        self,
        file: str,
        line: int,
        *,
        condition: Optional[str] = None,
        temporary: bool = False,
    ) -> Breakpoint:
        """Set a breakpoint at ``file:line`` and return it.

        ``file`` is matched against the realpath of ``code.co_filename``.  A line
        without code (blank, comment, ...) moves to the next line that has code.
        ``condition`` is a Python expression evaluated in the frame; the breakpoint
        stops (and counts a hit) only when it is true.  A condition that raises
        counts as true (as in pdb) and the error is reported in ``info``.  A
        ``temporary`` breakpoint is removed when it first stops.

        Raises ValueError for a missing file, a file that does not compile, a line
        past the last line of code, framebridge's own files, or a condition that
        does not compile.
        """
        path = _canonical(os.path.abspath(file))
        if not os.path.isfile(path):
            raise ValueError(f"cannot set a breakpoint in {file!r}: no such file")
        if _is_skipped(path):
            raise ValueError(f"cannot set a breakpoint in {path}: framebridge's own code never stops")
        if not isinstance(line, int) or line < 1:
            raise ValueError(f"line must be a positive integer, got {line!r}")
        if condition is not None:
            try:
                compile(condition, "<breakpoint condition>", "eval")
            except SyntaxError as exc:
                raise ValueError(f"breakpoint condition {condition!r} does not compile: {exc.msg}") from None
        info = self._file_info(path)
        later = [ln for ln in info.lines if ln >= line]
        if not later:
            last = max(info.lines, default=0)
            raise ValueError(
                f"cannot set a breakpoint at {path}:{line}: no code at or after line {line}"
                f" (the last line with code is {last})"
            )
        with self._lock:
            bp = Breakpoint(self._next_id, path, min(later), line, condition, temporary)
            self._next_id += 1
            self._bps[bp.id] = bp
            self._rebuild_index()
        return bp

    def clear_break(self, bp_id: int) -> None:
        """Remove breakpoint ``bp_id``; KeyError if there is none."""
        with self._lock:
            if bp_id not in self._bps:
                raise KeyError(f"no breakpoint with id {bp_id}")
            del self._bps[bp_id]
            self._rebuild_index()

    def clear_all_breaks(self) -> None:
        """Remove every breakpoint."""
        with self._lock:
            self._bps.clear()
            self._rebuild_index()

    def breakpoints(self) -> List[Breakpoint]:
        """The breakpoints, by id (the objects themselves: ``hits`` stays current)."""
        with self._lock:
            return [self._bps[k] for k in sorted(self._bps)]

    def arm(self, frame: FrameType, action: str, *, reason: str = "step") -> None:
        """Make ``action`` take effect from ``frame`` when the thread resumes.

        Call it on the thread that owns ``frame``, just before that thread goes back
        to user code after a pause that did not come from the engine (e.g.
        ``bridge.set_trace()``).  ``"continue"`` cancels any stepping of this thread.
        ``reason`` is what the resulting stop reports (``python -m bridge --wait``
        arms a ``"step"`` with reason ``"start"``).
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
        tid = threading.get_ident()
        stack = _stack(frame)
        for f in stack:
            # warm the cache now: its first look-up runs os.path.realpath, which a
            # "step" armed below would otherwise stop in (3.12+ reports it)
            self._skipped(f.f_code.co_filename)
        if action == "continue":
            self._set_step(tid, None)
            self._backend.update_threads(tid, None, into=False)
            return
        if action == "step":
            step = _Step("step", (), reason, {"action": action})
        elif action == "next":
            step = _Step("next", tuple(_stack(frame)), reason, {"action": action})
        else:
            step = _Step("step_out", tuple(_stack(frame.f_back)), reason, {"action": action})
        self._set_step(tid, step)
        self._backend.update_threads(tid, stack, into=action == "step")

    def request_pause(self, thread_id: Optional[int] = None) -> str:
        """Stop thread ``thread_id`` (default: the main thread) at its next line.

        Returns a short description of the mechanism used.

        * 3.12+: any thread; LINE events on the code objects of its current stack
          (and of functions it calls next).  A thread busy in a long C call (a
          ``time.sleep``, a numpy operation) stops when the call returns.
        * before 3.12: the main thread only (RuntimeError otherwise), through
          SIGUSR1 (see :meth:`install_signal_handler`).  A sleeping main thread
          stops at once; it stops in the middle of its current line, whose rest runs
          after it resumes.  A thread inside a long C call stops when it returns.
        """
        main = threading.main_thread().ident
        tid = main if thread_id is None else thread_id
        if _MONITORING:
            frames = sys._current_frames().get(tid)
            if frames is None:
                raise ValueError(f"no running thread with id {tid}")
            stack = _stack(frames)
            desc = f"sys.monitoring LINE events on the {len(stack)} frame(s) of thread {tid}"
            self._set_step(tid, _Step("step", (), "pause", {"mechanism": desc}))
            self._backend.update_threads(tid, stack, into=True)
            return desc
        if tid != main:
            raise RuntimeError(
                f"cannot pause thread {tid} on Python {sys.version_info[0]}.{sys.version_info[1]}: "
                "before 3.12 only the main thread can be paused (by a signal); "
                "set a breakpoint in that thread's code instead"
            )
        return self._signals.request()

    def install_signal_handler(self, timeout: Optional[float] = 0.0) -> bool:
        """Install the SIGUSR1 handler used by :meth:`request_pause` before 3.12.

        ``signal.signal`` only works on the main thread: from another thread the
        installation is handed to the main thread with ``Py_AddPendingCall`` and
        runs when it next executes Python code; this waits up to ``timeout``
        seconds for that (``None``: forever) and returns whether it is installed.
        A SIGUSR1 handler the program already has is chained to (SIGUSR1 that we
        did not send still reach it); a handler installed from C cannot be chained
        and makes this raise RuntimeError.
        """
        return self._signals.install(timeout)

    def uninstall_signal_handler(self) -> None:
        """Put back the SIGUSR1 handler that :meth:`install_signal_handler` replaced
        (main thread only)."""
        self._signals.uninstall()

    def reset(self) -> None:
        """Remove every breakpoint and cancel all stepping and pause requests."""
        with self._lock:
            self._bps.clear()
            self._steps = {}
            self._rebuild_index()
        self._backend.update_threads(None, None, into=False)

    def is_idle(self) -> bool:
        """True when no tracer/monitoring tool of ours is installed in this thread."""
        return self._backend.idle()

    # ----------------------------------------------------------------- internals

    def _file_info(self, path: str) -> _FileInfo:
        mtime = os.stat(path).st_mtime
        info = self._files.get(path)
        if info is None or info.mtime != mtime:
            info = _FileInfo.load(path)
            self._files[path] = info
        return info

    def _rebuild_index(self) -> None:
        """Recompute the lookup tables after a breakpoint change (lock held)."""
        index: Dict[str, Dict[int, List[Breakpoint]]] = {}
        for bp in sorted(self._bps.values(), key=lambda b: b.id):
            if bp.enabled:
                index.setdefault(bp.file, {}).setdefault(bp.line, []).append(bp)
        self._index = index
        self._by_raw = {}
        self._code_lines_cache = {}
        self._backend.breakpoints_changed()

    def _bps_for(self, raw_filename: str) -> Optional[Dict[int, List[Breakpoint]]]:
        by_raw = self._by_raw
        try:
            return by_raw[raw_filename]
        except KeyError:
            entry = self._index.get(_canonical(raw_filename)) if self._index else None
            by_raw[raw_filename] = entry
            return entry

    def _skipped(self, raw_filename: str) -> bool:
        try:
            return self._skip_cache[raw_filename]
        except KeyError:
            skip = _is_skipped(_canonical(raw_filename))
            self._skip_cache[raw_filename] = skip
            return skip

    def _code_has_bp(self, code: CodeType) -> bool:
        bps = self._bps_for(code.co_filename)
        if not bps:
            return False
        lines = self._code_lines_cache.get(code)
        if lines is None:
            lines = self._code_lines_cache[code] = _code_lines(code)
        return any(ln in lines for ln in bps)

    def _set_step(self, tid: int, step: Optional[_Step]) -> None:
        with self._lock:
            steps = dict(self._steps)
            if step is None:
                steps.pop(tid, None)
            else:
                steps[tid] = step
            # forget threads that ended while stepping
            alive = sys._current_frames()
            for dead in [t for t in steps if t not in alive]:
                del steps[dead]
            self._steps = steps

    def _on_line(self, frame: FrameType, code: CodeType, line: int) -> bool:
        """A line event; stops if needed.  Returns whether this location holds a
        breakpoint (so that the monitoring backend must keep it enabled)."""
        bps = self._bps_for(code.co_filename)
        here = bps.get(line) if bps else None
        tid = threading.get_ident()
        step = self._steps.get(tid)
        if here is None and step is None:
            return False
        if tid in self._in_stop or self._skipped(code.co_filename):
            return here is not None
        if here:
            hit = self._effective(here, frame)
            if hit is not None:
                self._stop(frame, "breakpoint", hit)
                return True
        if step is not None and step.wants(frame):
            self._stop(frame, step.reason, step.info)
        return here is not None

    def _effective(self, bps: List[Breakpoint], frame: FrameType) -> Optional[dict]:
        """The first breakpoint of ``bps`` whose condition holds, as stop info."""
        for bp in bps:
            if not bp.enabled:
                continue
            info: dict = {}
            if bp.condition is not None:
                try:
                    if not eval(bp.condition, frame.f_globals, frame.f_locals):
                        continue
                except Exception as exc:  # counts as true, like pdb: make it visible
                    info["condition_error"] = repr(exc)
            with self._lock:
                bp.hits += 1
                if bp.temporary and bp.id in self._bps:
                    del self._bps[bp.id]
                    self._rebuild_index()
            info.update(breakpoint=bp.id, hits=bp.hits, temporary=bp.temporary)
            return info
        return None

    def _stop(self, frame: FrameType, reason: str, info: dict) -> None:
        """Hand ``frame`` to the front end, then apply the action it returns."""
        tid = threading.get_ident()
        self._set_step(tid, None)  # the backend is updated by arm() below
        handler = self._handler
        action = "continue"
        if handler is not None:
            self._in_stop.add(tid)
            try:
                action = handler(frame, reason, dict(info))
            except Exception:
                import traceback

                print("framebridge: the stop handler failed; continuing", file=sys.stderr)
                traceback.print_exc()
                action = "continue"
            finally:
                self._in_stop.discard(tid)
        if action not in ACTIONS:
            print(f"framebridge: unknown resume action {action!r}; continuing", file=sys.stderr)
            action = "continue"
        pending = self._steps.get(tid)
        if pending is not None and pending.reason == "pause" and action == "continue":
            # a pause was requested (3.12+) while this stop was ending: keep it
            self._backend.update_threads(tid, _stack(frame), into=True)
            return
        self.arm(frame, action)
        signals = self._signals
        if signals.requested > 0 and tid == threading.main_thread().ident and signals.installed.is_set():
            signal.pthread_kill(tid, signals.SIGNAL)  # a pause request the handler deferred


# --------------------------------------------------------------------------- 3.12+


class _MonitoringBackend:
    """sys.monitoring: LINE only where a breakpoint or a stepped stack is."""

    def __init__(self, dbg: Debugger) -> None:
        self.dbg = dbg
        self.tool: Optional[int] = None
        self.bp_codes: Set[CodeType] = set()  # LINE enabled for breakpoints
        self.step_codes: Set[CodeType] = set()  # LINE enabled for stepping/pausing
        self.busy: Set[int] = set()  # threads inside one of our callbacks

    def idle(self) -> bool:
        return self.tool is None

    # -- tool lifetime
    def _acquire(self) -> None:
        if self.tool is not None:
            return
        mon = sys.monitoring
        for tool in range(6):  # DEBUGGER_ID (0) first, then the next free one
            if mon.get_tool(tool) is None:
                break
        else:
            raise RuntimeError("every sys.monitoring tool id is taken; cannot set breakpoints")
        mon.use_tool_id(tool, "framebridge")
        ev = mon.events
        mon.register_callback(tool, ev.LINE, self._line)
        mon.register_callback(tool, ev.PY_START, self._start)
        mon.register_callback(tool, ev.PY_RESUME, self._start)
        # Global, but each code object answers DISABLE after one look: it finds code
        # holding a breakpoint even if it was created after the breakpoint.
        mon.set_events(tool, ev.PY_START | ev.PY_RESUME)
        self.tool = tool

    def _release(self) -> None:
        tool = self.tool
        if tool is None:
            return
        mon = sys.monitoring
        mon.set_events(tool, 0)
        for code in self.bp_codes | self.step_codes:
            mon.set_local_events(tool, code, 0)
        self.bp_codes.clear()
        self.step_codes.clear()
        ev = mon.events
        for event in (ev.LINE, ev.PY_START, ev.PY_RESUME):
            mon.register_callback(tool, event, None)
        mon.free_tool_id(tool)
        self.tool = None

    def _enable(self, code: CodeType, for_step: bool) -> None:
        (self.step_codes if for_step else self.bp_codes).add(code)
        sys.monitoring.set_local_events(self.tool, code, sys.monitoring.events.LINE)

    def _prune(self) -> None:
        """Turn LINE off where nothing needs it any more."""
        dbg = self.dbg
        if not dbg._steps:
            for code in self.step_codes - self.bp_codes:
                if not dbg._code_has_bp(code):
                    sys.monitoring.set_local_events(self.tool, code, 0)
            self.step_codes.clear()
        for code in list(self.bp_codes):
            if not dbg._code_has_bp(code):
                self.bp_codes.discard(code)
                if code not in self.step_codes:
                    sys.monitoring.set_local_events(self.tool, code, 0)

    # -- engine hooks
    def breakpoints_changed(self) -> None:
        dbg = self.dbg
        if not dbg._index and not dbg._steps:
            self._release()
            return
        self._acquire()
        self._prune()
        # code already running (a long loop in progress) never sends PY_START again
        for top in sys._current_frames().values():
            for frame in _stack(top):
                if dbg._code_has_bp(frame.f_code):
                    self._enable(frame.f_code, for_step=False)
        # re-ask every code object (PY_START) and line that answered DISABLE
        sys.monitoring.restart_events()

    def update_threads(self, tid: Optional[int], frames: Optional[List[FrameType]], into: bool) -> None:
        dbg = self.dbg
        if not dbg._index and not dbg._steps:
            self._release()
            return
        self._acquire()
        if frames:
            for frame in frames:
                if not dbg._skipped(frame.f_code.co_filename):
                    self._enable(frame.f_code, for_step=True)
            sys.monitoring.restart_events()
        else:
            self._prune()

    # -- callbacks (hot: keep them short)
    #
    # sys.monitoring fires events for code that a callback itself runs (os.path.realpath
    # when a file is seen for the first time, the stop handler's whole pause loop): a
    # thread already inside one of our callbacks is ignored, or a step would stop
    # inside the engine's own helpers.
    def _line(self, code: CodeType, line: int):
        tid = threading.get_ident()
        busy = self.busy
        if tid in busy:
            return None
        busy.add(tid)
        try:
            dbg = self.dbg
            if dbg._on_line(sys._getframe(1), code, line) or dbg._steps:
                return None
            # DISABLE is per location for all threads: only safe when nobody steps
            return sys.monitoring.DISABLE
        finally:
            busy.discard(tid)

    def _start(self, code: CodeType, offset: int):
        tid = threading.get_ident()
        busy = self.busy
        if tid in busy:
            return None
        busy.add(tid)
        try:
            dbg = self.dbg
            steps = dbg._steps
            if steps:
                step = steps.get(tid)
                if step is not None and step.mode == "step" and not dbg._skipped(code.co_filename):
                    self._enable(code, for_step=True)
            if dbg._code_has_bp(code):
                self._enable(code, for_step=False)
            if steps:
                return None
            return sys.monitoring.DISABLE
        finally:
            busy.discard(tid)


# --------------------------------------------------------------------------- <= 3.11


class _FirstLines(dict):
    """co_firstlineno -> whether code starting there may hold a breakpoint."""

    def __init__(self, info: Optional[_FileInfo], lines: FrozenSet[int]) -> None:
        super().__init__()
        self.info = info
        self.lines = lines

    def __missing__(self, first: int) -> bool:
        known = self.info.by_first.get(first) if self.info else None
        # unknown start (the file changed since): trace it, the line check decides
        value = True if known is None else not known.isdisjoint(self.lines)
        self[first] = value
        return value


class _FastFiles(dict):
    """raw co_filename -> {co_firstlineno: may hold a breakpoint}.

    Read by the global trace function on every call, so its misses do the work:
    files without breakpoints map to a ``defaultdict(bool)`` (misses answered in C).
    When the engine is idle it stays empty and every miss uninstalls the tracer of
    the thread asking: threads we could not reach directly untrace themselves.
    """

    def __init__(self, dbg: Debugger) -> None:
        super().__init__()
        self.dbg = dbg
        self.live = False

    def reset(self, live: bool) -> None:
        self.live = live
        self.clear()

    def __missing__(self, raw: str):
        if not self.live:
            sys.settrace(None)
            return _NO_BREAKPOINTS
        dbg = self.dbg
        bps = dbg._bps_for(raw)
        if bps:
            value = _FirstLines(dbg._files.get(_canonical(raw)), frozenset(bps))
        else:
            value = collections.defaultdict(bool)
        self[raw] = value
        return value


_NO_BREAKPOINTS: Dict[int, bool] = collections.defaultdict(bool)



class _SettraceBackend:
    """sys.settrace: a global tracer that declines every frame it can.

    Measured floor on 3.11: *any* tracer, even the C builtin ``getattr``, makes a
    call-heavy loop ~5x slower, because 3.11 turns its specialised instructions off
    while a thread is traced; ours adds ~15% to that (see the benchmark).
    """

    def __init__(self, dbg: Debugger) -> None:
        self.dbg = dbg
        self.fast = _FastFiles(dbg)
        self.pending = _PendingCalls()
        self.global_trace, self.step_trace, self.local_trace = self._make_tracers()

    def idle(self) -> bool:
        return sys.gettrace() is None

    def _make_tracers(self):
        dbg = self.dbg
        fast = self.fast  # mutated in place, never replaced: the closure keeps it

        def local_trace(frame, event, arg):
            if event == "line":
                dbg._on_line(frame, frame.f_code, frame.f_lineno)
            return local_trace

        def global_trace(frame, event, arg):
            # Runs on every Python call of every traced thread: keep it tiny.
            code = frame.f_code
            if fast[code.co_filename][code.co_firstlineno]:
                return local_trace
            return None

        def step_trace(frame, event, arg):
            # Only in a thread that steps into calls ("step", pause requests).
            code = frame.f_code
            if fast[code.co_filename][code.co_firstlineno]:
                return local_trace
            step = dbg._steps.get(threading.get_ident())
            if step is not None and step.mode == "step" and not dbg._skipped(code.co_filename):
                return local_trace
            return None

        return global_trace, step_trace, local_trace

    def _live(self) -> bool:
        return bool(self.dbg._index or self.dbg._steps)

    def _tracer_for_this_thread(self):
        step = self.dbg._steps.get(threading.get_ident())
        return self.step_trace if step is not None and step.mode == "step" else self.global_trace

    def _install_here(self, frames: List[FrameType], only_bp: bool) -> None:
        """Trace the current thread; give ``frames`` (already running) line events."""
        dbg = self.dbg
        for frame in frames:
            if only_bp and not dbg._code_has_bp(frame.f_code):
                continue
            if dbg._skipped(frame.f_code.co_filename):
                continue
            frame.f_trace = self.local_trace
            frame.f_trace_lines = True
        tracer = self._tracer_for_this_thread()
        if sys.gettrace() is not tracer:
            sys.settrace(tracer)

    def _uninstall_here(self) -> None:
        if sys.gettrace() in (self.global_trace, self.step_trace):
            sys.settrace(None)
        for frame in _stack(sys._getframe(1)):
            if frame.f_trace is self.local_trace:
                frame.f_trace = None

    def _apply(self) -> None:
        """Bring tracer installation in line with the engine state (this thread,
        new threads, the main thread)."""
        live = self._live()
        self.fast.reset(live)
        on_main = threading.current_thread() is threading.main_thread()
        if live:
            threading.settrace(self.global_trace)
            self._install_here(_stack(sys._getframe(1)), only_bp=True)
            if not on_main:
                self.pending.call(lambda: self._install_here(_stack(sys._getframe(1)), only_bp=True))
        else:
            threading.settrace(None)  # type: ignore[arg-type]
            self._uninstall_here()
            if not on_main:
                self.pending.call(self._uninstall_here)

    def breakpoints_changed(self) -> None:
        self._apply()

    def update_threads(self, tid: Optional[int], frames: Optional[List[FrameType]], into: bool) -> None:
        # Called on the thread concerned (arm, the signal handler) or with tid None.
        if not self._live():
            self._apply()
            return
        self.fast.reset(True)
        if frames:
            self._install_here(frames, only_bp=False)
        elif tid is not None and sys.gettrace() is self.step_trace:
            sys.settrace(self.global_trace)  # this thread stopped stepping


# --------------------------------------------------------------------------- main thread


_PENDING_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _PendingCalls:
    """Run a callable on the main thread with ``Py_AddPendingCall``."""

    def __init__(self) -> None:
        self._keep: list = []  # C thunks must outlive their call: keep them all (rare)

    def call(self, fn: Callable[[], None]) -> None:
        def thunk(_arg):
            try:
                fn()
            except Exception:
                import traceback

                traceback.print_exc()
            return 0

        cfunc = _PENDING_FUNC(thunk)
        self._keep.append(cfunc)
        add = ctypes.pythonapi.Py_AddPendingCall
        add.argtypes = [_PENDING_FUNC, ctypes.c_void_p]
        add.restype = ctypes.c_int
        if add(cfunc, None) != 0:
            raise RuntimeError("Py_AddPendingCall failed (queue full)")


class _SignalPauser:
    """Pausing the main thread with SIGUSR1 (before 3.12)."""

    SIGNAL = getattr(signal, "SIGUSR1", None)

    def __init__(self, dbg: Debugger) -> None:
        self.dbg = dbg
        self.previous = None
        self.requested = 0  # pause requests not yet served by the handler
        self.installed = threading.Event()
        self.pending = _PendingCalls()

    def _install_now(self) -> None:
        current = signal.getsignal(self.SIGNAL)
        if current == self.handler:
            self.installed.set()
            return
        if current is None:
            raise RuntimeError(
                "SIGUSR1 has a handler installed from C; framebridge cannot chain to it, "
                "so it cannot pause the main thread"
            )
        self.previous = current
        signal.signal(self.SIGNAL, self.handler)
        self.installed.set()

    def install(self, timeout: Optional[float]) -> bool:
        if self.SIGNAL is None:
            raise RuntimeError("this platform has no SIGUSR1; pausing needs Python 3.12+")
        if threading.current_thread() is threading.main_thread():
            self._install_now()
            return True
        if not self.installed.is_set():
            self.pending.call(self._install_now)
        return self.installed.wait(timeout)

    def uninstall(self) -> None:
        if self.installed.is_set() and signal.getsignal(self.SIGNAL) == self.handler:
            signal.signal(self.SIGNAL, self.previous if self.previous is not None else signal.SIG_DFL)
        self.installed.clear()
        self.previous = None
        self.requested = 0

    def request(self) -> str:
        if self.SIGNAL is None:
            raise RuntimeError("this platform has no SIGUSR1; pausing needs Python 3.12+")
        main = threading.main_thread().ident
        if self.installed.is_set() and signal.getsignal(self.SIGNAL) != self.handler:
            raise RuntimeError("framebridge's SIGUSR1 handler was replaced by the program; cannot pause")
        self.requested += 1
        if self.installed.is_set():
            signal.pthread_kill(main, self.SIGNAL)
            return "SIGUSR1 to the main thread"

        def install_and_signal() -> None:
            self._install_now()
            signal.pthread_kill(main, self.SIGNAL)

        if threading.current_thread() is threading.main_thread():
            install_and_signal()
        else:
            self.pending.call(install_and_signal)
        return "SIGUSR1 to the main thread (handler installed by a pending call)"

    def handler(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested <= 0:
            self._chain(signum, frame)
            return
        dbg = self.dbg
        tid = threading.get_ident()
        if tid in dbg._in_stop:
            # still inside a stop that is ending (the client resumed it just before
            # asking again): keep the request; Debugger._stop signals again at its end
            return
        self.requested = 0
        user = frame
        while user is not None and dbg._skipped(user.f_code.co_filename):
            user = user.f_back
        info = {"mechanism": "SIGUSR1"}
        if user is None:
            # only framebridge/threading frames: stop at the next user line instead
            dbg._set_step(tid, _Step("step", (), "pause", info))
            dbg._backend.update_threads(tid, _stack(frame), into=True)
            return
        dbg._stop(user, "pause", info)

    def _chain(self, signum: int, frame: Optional[FrameType]) -> None:
        prev = self.previous
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_DFL:
            # a SIGUSR1 we did not send: do what the default would (terminate)
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        # SIG_IGN: ignore


# --------------------------------------------------------------------------- singleton

_debugger: Optional[Debugger] = None
_debugger_lock = threading.Lock()


def get_debugger() -> Debugger:
    """The process's one :class:`Debugger`."""
    global _debugger
    with _debugger_lock:
        if _debugger is None:
            _debugger = Debugger()
        return _debugger
