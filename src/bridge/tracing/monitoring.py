"""The ``sys.monitoring`` backend (Python 3.12+): events only where they are needed.

* LINE, JUMP and BRANCH are enabled only on code objects that hold a breakpoint or
  belong to a stack being stepped or paused. A backward jump that stays on one line
  (a one-line loop, an inlined comprehension, a resumed generator expression) counts
  as a new line, as ``sys.settrace`` and pdb count it: LINE alone fires once per line
  entry (docs/stepping.md).
* A global PY_START / PY_RESUME finds code objects created after a breakpoint was set
  and the calls a ``step`` enters; each code object answers DISABLE after one look,
  except code with a breakpoint on its first line: 3.13+ reports the line of a one-line
  function (``lambda v: v + 1``) only while its start is watched.
* PY_RETURN on the code of a frame that a ``next``/``step_out`` waits to leave.

All threads are covered: events are per code object, filtered by thread id.
"""

from __future__ import annotations

import bisect
import sys
import threading
from types import CodeType, FrameType
from typing import Any, Dict, List, Optional, Set, Tuple

__all__ = ["MonitoringBackend"]


class MonitoringBackend:
    """Watches what the engine asks for with ``sys.monitoring``; reports through its
    ``dispatch_*`` methods."""

    name = "sys.monitoring"
    pauses_any_thread = True

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tool: Optional[int] = None
        self.bp_codes: Set[CodeType] = set()  # line events for breakpoints
        self.step_codes: Set[CodeType] = set()  # line events for stepping/pausing
        self.origin_codes: Set[CodeType] = set()  # return events: a next/step_out waits
        self.busy: Set[int] = set()  # threads inside one of our callbacks
        self._disabled = True  # a callback answered DISABLE since the last restart_events()
        self._line_tables: Dict[CodeType, Tuple[List[int], List[Tuple[int, int]]]] = {}
        ev = sys.monitoring.events
        branch = (ev.BRANCH_LEFT | ev.BRANCH_RIGHT) if hasattr(ev, "BRANCH_LEFT") else ev.BRANCH
        self.LINE_EVENTS = ev.LINE | ev.JUMP | branch
        self.LEAVE_EVENTS = ev.PY_RETURN
        self._jump_events = [e for e in (ev.JUMP, getattr(ev, "BRANCH_LEFT", 0),
                                         getattr(ev, "BRANCH_RIGHT", 0)) if e] if hasattr(ev, "BRANCH_LEFT") \
            else [ev.JUMP, ev.BRANCH]

    def prepare_code(self, code: CodeType) -> CodeType:
        """Nothing to do: PY_START finds new code objects."""
        return code

    def is_idle(self) -> bool:
        """Whether no monitoring tool of ours is registered."""
        return self.tool is None

    # ------------------------------------------------------------------ tool lifetime

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
        for event in self._jump_events:
            mon.register_callback(tool, event, self._jump)
        mon.register_callback(tool, ev.PY_START, self._start)
        mon.register_callback(tool, ev.PY_RESUME, self._start)
        mon.register_callback(tool, ev.PY_RETURN, self._leave)
        mon.set_events(tool, ev.PY_START | ev.PY_RESUME)
        self.tool = tool

    def _release(self) -> None:
        tool = self.tool
        if tool is None:
            return
        mon = sys.monitoring
        mon.set_events(tool, 0)
        for code in self.bp_codes | self.step_codes | self.origin_codes:
            mon.set_local_events(tool, code, 0)
        self.bp_codes.clear()
        self.step_codes.clear()
        self.origin_codes.clear()
        self._line_tables.clear()
        ev = mon.events
        for event in (ev.LINE, ev.PY_START, ev.PY_RESUME, ev.PY_RETURN, *self._jump_events):
            mon.register_callback(tool, event, None)
        mon.free_tool_id(tool)
        self.tool = None

    def _refresh(self, code: CodeType) -> None:
        events = 0
        if code in self.bp_codes or code in self.step_codes:
            events |= self.LINE_EVENTS
        if code in self.origin_codes:
            events |= self.LEAVE_EVENTS
        sys.monitoring.set_local_events(self.tool, code, events)

    def _enable(self, code: CodeType, for_step: bool) -> None:
        codes = self.step_codes if for_step else self.bp_codes
        if code not in codes:
            codes.add(code)
            self._refresh(code)

    def _prune(self) -> None:
        """Turn events off where nothing needs them any more."""
        engine = self.engine
        changed = set()
        if not engine.is_stepping():
            changed |= self.step_codes | self.origin_codes
            self.step_codes.clear()
            self.origin_codes.clear()
        for code in list(self.bp_codes):
            if not engine.code_has_breakpoint(code):
                self.bp_codes.discard(code)
                changed.add(code)
        for code in changed:
            self._refresh(code)

    # ------------------------------------------------------------------ engine notifications

    def breakpoints_changed(self) -> None:
        """Watch the code objects holding breakpoints (running ones included)."""
        engine = self.engine
        if not engine.has_breakpoints() and not engine.is_stepping():
            self._release()
            return
        self._acquire()
        self._prune()
        # code already running (a long loop in progress) never sends PY_START again
        for top in sys._current_frames().values():
            frame = top
            while frame is not None:
                if engine.code_has_breakpoint(frame.f_code):
                    self._enable(frame.f_code, for_step=False)
                frame = frame.f_back
        del top, frame
        # re-ask every code object (PY_START) and line that answered DISABLE
        self._disabled = False
        sys.monitoring.restart_events()

    def stepping_changed(self, tid: Optional[int], frames: Optional[List[FrameType]]) -> None:
        """Watch the lines of ``frames`` (a thread's stack) for stepping; ``frames`` None:
        the thread stopped stepping."""
        engine = self.engine
        if not engine.has_breakpoints() and not engine.is_stepping():
            self._release()
            return
        self._acquire()
        if frames is None:
            self._prune()
            return
        for frame in frames:
            if not engine.never_stops(frame.f_code.co_filename):
                self._enable(frame.f_code, for_step=True)
        origin = engine.stepping_origin(tid) if tid is not None else None
        if origin is not None and origin.f_code not in self.origin_codes:
            # PY_RETURN only: a generator's yield is not its end (PY_YIELD stays off)
            self.origin_codes.add(origin.f_code)
            self._refresh(origin.f_code)
        # Events a callback answered DISABLE to are off until restart_events(), which makes
        # every code object (ours and the pause loop's too) report its next start again:
        # only when something that a step may need was disabled since the last one.
        if self._disabled:
            self._disabled = False
            sys.monitoring.restart_events()

    # ------------------------------------------------------------------ callbacks
    #
    # Hot: keep them short. sys.monitoring fires events for code that a callback itself
    # runs (os.path.realpath when a file is seen for the first time, the stop handler's
    # whole pause loop): a thread already inside one of our callbacks is ignored.

    def _guarded(self, handler: Any, *args: Any) -> Any:
        """``handler(tid, *args)``, unless this thread is inside one of our callbacks already."""
        tid = threading.get_ident()
        busy = self.busy
        if tid in busy:
            return None
        busy.add(tid)
        try:
            return handler(tid, *args)
        finally:
            busy.discard(tid)

    def _line(self, code: CodeType, line: int) -> Any:
        return self._guarded(self._on_line, sys._getframe(1), line)

    def _on_line(self, tid: int, frame: FrameType, line: int) -> Any:
        engine = self.engine
        if engine.dispatch_line(frame, line) or engine.is_stepping():
            return None
        # DISABLE is per location for all threads: only safe when nobody steps
        self._disabled = True
        return sys.monitoring.DISABLE

    def _jump(self, code: CodeType, source: int, destination: int) -> Any:
        if destination >= source:
            return sys.monitoring.DISABLE  # forward: LINE reports any new line
        line = self._line_at(code, destination)
        if line is None or line != self._line_at(code, source):
            return sys.monitoring.DISABLE  # to another line: LINE reports it
        return self._guarded(self._on_line, sys._getframe(1), line)  # back within one line: a new entry

    def _line_at(self, code: CodeType, offset: int) -> Optional[int]:
        table = self._line_tables.get(code)
        if table is None:
            ranges = [(start, end, line) for start, end, line in code.co_lines()]
            table = self._line_tables[code] = ([r[0] for r in ranges], [(r[1], r[2]) for r in ranges])
        starts, rest = table
        i = bisect.bisect_right(starts, offset) - 1
        if i < 0:
            return None
        end, line = rest[i]
        return line if offset < end else None

    def _start(self, code: CodeType, offset: int) -> Any:
        if self.engine.never_stops(code.co_filename):
            # ours (the pause loop runs inside a callback: without this, each of its
            # functions would report every start while the thread is stopped) or a runner's
            return sys.monitoring.DISABLE
        return self._guarded(self._on_start, code)

    def _on_start(self, tid: int, code: CodeType) -> Any:
        engine = self.engine
        stepping = engine.is_stepping()
        if stepping and engine.steps_into_calls(tid):
            self._enable(code, for_step=True)
        lines = engine.breakpoint_lines(code)
        if lines:
            self._enable(code, for_step=False)
            if code.co_firstlineno in lines:
                return None  # a breakpoint on its first line: keep watching its start
        if stepping:
            return None
        self._disabled = True  # a step may want its start again: restart_events()
        return sys.monitoring.DISABLE

    def _leave(self, code: CodeType, offset: int, value: Any) -> Any:
        self._guarded(self._on_leave, sys._getframe(1))
        return None

    def _on_leave(self, tid: int, frame: FrameType) -> None:
        self.engine.dispatch_leave(frame)
