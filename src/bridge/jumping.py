"""Move a paused frame to another line of its function: pdb's ``jump``.

CPython moves a frame only by ``frame.f_lineno = line``, and only from inside a trace or
monitoring callback of that frame, at an event that allows it (a 'line' event, or a
backward jump from 3.12). Its setter enforces pdb's rules: no jump into a ``for``
loop's body or an ``except`` block from outside, none out of a ``finally`` block, and so
on. How a pause gets there depends on how it started (docs/stepping.md, "jump"):

* **now**: a stop at a breakpoint or a step that the engine made in its line
  callback (``sys.monitoring`` LINE/JUMP from 3.12; the ``sys.settrace`` line event a
  step stops at before 3.12), or a pause that follows a jump made at the next line.
  The setter runs at once, in the pause, and the pause goes on at the new line.
* **at the next line**: a pause inside a call that the line makes (``bridge.set_trace()``,
  a breakpoint compiled into the code before 3.12, a pause by signal). The pause ends,
  a one-shot callback of our own catches the frame's next line event, jumps there and
  pauses again (reason ``"jump"``). This is only honest when nothing else of the
  current line is left to run: a ``set_trace()`` statement (its value is dropped) is
  such a line; a breakpoint compiled into the code stops *before* its line runs, so
  there the jump is refused (step once, then jump). An 'opcode' event would come
  sooner, but a jump made there leaves the call's value on the stack of 3.9 and 3.10
  (a crash at the next loop iteration) and 3.11+ refuses it.

A refused jump (CPython's rules, a line outside the function, a frame that is not the
innermost one, a post-mortem frame) changes nothing; a jump that CPython refuses at the
next event leaves the frame paused there, at the start of the next line, with the error.
"""

from __future__ import annotations

import dis
import sys
import threading
from types import CodeType, FrameType
from typing import Any, Callable, Dict, FrozenSet, List, Optional

__all__ = ["JumpRefused", "jump_now_or_later", "arm_jump"]

_MONITORING = sys.version_info >= (3, 12)
#: Instructions that do nothing the program can see, once a call's value is on the stack.
_DROPS = frozenset({"POP_TOP", "NOP", "CACHE", "EXTENDED_ARG", "NOT_TAKEN", "JUMP_FORWARD", "JUMP_BACKWARD",
                    "JUMP_BACKWARD_NO_INTERRUPT", "JUMP_ABSOLUTE", "JUMP", "JUMP_NO_INTERRUPT"})


class JumpRefused(Exception):
    """The jump cannot be made; the frame is where it was."""


# ------------------------------------------------------------------------ where the pause is


def _line_callbacks() -> FrozenSet[CodeType]:
    """The code of the callbacks the engine stops in at a line event."""
    codes: List[CodeType] = [_deferred_line_code()]
    if _MONITORING:
        from .tracing.monitoring import MonitoringBackend

        codes += [MonitoringBackend._line.__code__, MonitoringBackend._jump.__code__]
    else:
        from .tracing.settrace import FrameTracer

        codes += [c for c in FrameTracer.__init__.__code__.co_consts
                  if isinstance(c, CodeType) and c.co_name == "trace_frame"]
    return frozenset(codes)


def _callee(frame: FrameType) -> Optional[FrameType]:
    """The frame that ``frame`` called, on this thread's stack (None if it is not on it)."""
    inner: Optional[FrameType] = sys._getframe(1)
    while inner is not None and inner.f_back is not frame:
        inner = inner.f_back
    return inner


def _in_line_event(callee: FrameType) -> bool:
    if callee.f_code not in _line_callbacks():
        return False
    if _MONITORING or callee.f_code is _deferred_line_code():
        return True
    return callee.f_locals.get("event") == "line"  # the settrace callback, at which event


def _line_of(code: CodeType) -> Callable[[int], Optional[int]]:
    if hasattr(code, "co_lines"):  # 3.10+
        table = [(start, end, line) for start, end, line in code.co_lines()]
    else:
        starts = list(dis.findlinestarts(code))
        ends = [offset for offset, _ in starts[1:]] + [len(code.co_code)]
        table = [(offset, end, line) for (offset, line), end in zip(starts, ends)]

    def line_at(offset: int) -> Optional[int]:
        for start, end, line in table:
            if start <= offset < end:
                return line
        return None

    return line_at


def _rest_of_line(frame: FrameType) -> Optional[str]:
    """Why the rest of the current line is not a no-op, or None if it is one (a call's
    value dropped, a jump) and a new line follows."""
    code = frame.f_code
    line_at = _line_of(code)
    here = line_at(frame.f_lasti)
    for ins in dis.get_instructions(code):
        if ins.offset <= frame.f_lasti:
            continue
        line = line_at(ins.offset)
        if line is not None and line != here:
            return None
        if ins.opname not in _DROPS:
            return f"the rest of line {here} has not run yet ({ins.opname})"
    return f"line {here} ends the function"


def _function_lines(code: CodeType) -> List[int]:
    return sorted({ln for _, _, ln in code.co_lines() if ln}) if hasattr(code, "co_lines") else \
        sorted({ln for _, ln in dis.findlinestarts(code) if ln})


def _check(frame: FrameType, index: int, line: int) -> FrameType:
    name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
    if index != 0:
        raise JumpRefused(f"jump moves the innermost frame only (as pdb's does): frame {index} ({name}) is "
                          "waiting for a call to return; select frame 0")
    if _callee(frame) is None:
        raise JumpRefused(f"{name} is not running (a post-mortem frame, or a suspended generator): there is no "
                          "next line for it to run")
    lines = _function_lines(frame.f_code)
    first = min(lines[:1] + [frame.f_code.co_firstlineno])
    if lines and not first <= line <= lines[-1]:
        raise JumpRefused(f"line {line} is not in {name} (lines {first}-{lines[-1]})")
    return frame


def jump_now_or_later(frames: List[FrameType], index: int, line: int) -> Dict[str, Any]:
    """Jump frame ``index`` of a pause to ``line`` now if the pause allows it
    (``{"jumped": True, "from", "line"}``), or say that it takes the next event
    (``{"jumped": False, "deferred": True}``: :func:`arm_jump`, then resume). JumpRefused
    if neither can be done."""
    frame = _check(frames[index] if 0 <= index < len(frames) else frames[0], index, line)
    before = frame.f_lineno
    callee = _callee(frame)
    if callee is not None and _in_line_event(callee):
        try:
            frame.f_lineno = line
        except ValueError as exc:
            raise JumpRefused(f"cannot jump from line {before} to line {line}: {exc}") from None
        return {"jumped": True, "from": before, "line": frame.f_lineno}
    _later_possible(frame, callee)
    return {"jumped": False, "deferred": True, "from": before}


def _later_possible(frame: FrameType, callee: Optional[FrameType]) -> None:
    why = _rest_of_line(frame)
    if why is not None:
        probe = callee is not None and callee.f_code.co_name == "dispatch_probe"
        cause = ("it stopped at a breakpoint compiled into the code (a call at the start of the line)" if probe
                 else "the pause is inside a call that the line makes")
        raise JumpRefused(
            f"cannot jump from here: {cause}, and Python lets a frame jump only at the start of a line; {why}. "
            "Step to the next line (next()), then jump")
    if _MONITORING and _free_tool() is None:
        raise JumpRefused("cannot jump from here: every sys.monitoring tool id is in use")


# ------------------------------------------------------------------------ the one-shot callback


def _free_tool() -> Optional[int]:
    mon = sys.monitoring  # type: ignore[attr-defined]
    return next((tool for tool in range(6) if mon.get_tool(tool) is None), None)


class _DeferredJump:
    """Catch ``frame``'s next event, jump there, and pause again."""

    def __init__(self, frame: FrameType, line: int) -> None:
        self.frame = frame
        self.line = line
        self.armed = False
        self._undo: List[Callable[[], None]] = []
        self._after: Callable[[], None] = lambda: None

    def arm(self) -> None:
        if _MONITORING:
            self._arm_monitoring()
        else:
            self._arm_settrace()
        self.armed = True

    def _arm_settrace(self) -> None:
        frame = self.frame
        previous = sys.gettrace()
        saved = (frame.f_trace, frame.f_trace_lines, frame.f_trace_opcodes)
        callback = _make_trace_callback(self)

        def delegate(f: FrameType, event: str, arg: Any) -> Any:
            return previous(f, event, arg) if previous is not None else None

        def undo() -> None:
            # f_trace itself is put back after the pause that follows (fire): a jump made
            # in that pause needs a trace function on the frame
            frame.f_trace_lines, frame.f_trace_opcodes = saved[1], saved[2]
            if sys.gettrace() is delegate:
                sys.settrace(previous)

        def put_back_f_trace() -> None:
            if frame.f_trace is callback:
                frame.f_trace = saved[0]

        self._undo.append(undo)
        self._after = put_back_f_trace
        frame.f_trace = callback
        frame.f_trace_lines = True
        frame.f_trace_opcodes = False
        sys.settrace(delegate)

    def _arm_monitoring(self) -> None:
        mon = sys.monitoring  # type: ignore[attr-defined]
        tool = _free_tool()
        if tool is None:
            raise JumpRefused("cannot jump from here: every sys.monitoring tool id is in use")
        mon.use_tool_id(tool, "framebridge jump")
        ev = mon.events
        code = self.frame.f_code
        line_cb, end_cb = _make_monitoring_callbacks(self)
        mon.register_callback(tool, ev.LINE, line_cb)
        mon.register_callback(tool, ev.PY_RETURN, end_cb)
        mon.set_local_events(tool, code, ev.LINE | ev.PY_RETURN)

        def undo() -> None:
            mon.set_local_events(tool, code, 0)
            mon.register_callback(tool, ev.LINE, None)
            mon.register_callback(tool, ev.PY_RETURN, None)
            mon.free_tool_id(tool)

        self._undo.append(undo)

    def disarm(self) -> None:
        self.armed = False
        while self._undo:
            self._undo.pop()()

    def fire(self, frame: FrameType) -> None:
        """At the frame's next line: jump, then pause there."""
        self.disarm()
        before = frame.f_lineno
        try:
            frame.f_lineno = self.line
            info: Dict[str, Any] = {"jump": {"from": before, "to": frame.f_lineno}}
        except ValueError as exc:
            info = {"jump_error": f"cannot jump from line {before} to line {self.line}: {exc}"}
        _pause_again(frame, info)
        self._after()

    def ended(self, frame: FrameType) -> None:
        """The frame returns before any line event (not expected: see _later_possible)."""
        self.disarm()
        _pause_again(frame, {"jump_error": f"{frame.f_code.co_name} returned before it could jump"})
        self._after()


def _make_trace_callback(jump: _DeferredJump) -> Callable[..., Any]:
    def deferred_line(frame: FrameType, event: str, arg: Any) -> Any:
        if not jump.armed or frame is not jump.frame:
            return None
        if event == "line":
            jump.fire(frame)
            return frame.f_trace  # what the pause's resume action installed, if anything
        if event == "return":
            jump.ended(frame)
            return None
        return deferred_line

    return deferred_line


def _make_monitoring_callbacks(jump: _DeferredJump) -> Any:
    def deferred_line(code: CodeType, line: int) -> Any:
        frame = sys._getframe(1)
        if jump.armed and frame is jump.frame:
            jump.fire(frame)
        return None

    def deferred_end(code: CodeType, offset: int, value: Any) -> Any:
        frame = sys._getframe(1)
        if jump.armed and frame is jump.frame:
            jump.ended(frame)
        return None

    return deferred_line, deferred_end


_DEFERRED_CODES: Dict[str, CodeType] = {}


def _deferred_line_code() -> CodeType:
    """The code of the one-shot line callback (a pause inside it can jump at once)."""
    if not _DEFERRED_CODES:
        probe = _DeferredJump.__new__(_DeferredJump)
        callback = _make_monitoring_callbacks(probe)[0] if _MONITORING else _make_trace_callback(probe)
        _DEFERRED_CODES["line"] = callback.__code__
    return _DEFERRED_CODES["line"]


def _pause_again(frame: FrameType, info: Dict[str, Any]) -> None:
    """Pause at ``frame`` from inside a callback (as the engine's stops do); never raise."""
    from . import pause, stack_room, startup, tracing_hook
    from .own_code import user_frames

    previous = sys.gettrace()
    if previous is not None:  # the pause loop runs untraced (tracing_hook, engine._stop)
        sys.settrace(None)
    try:
        room = stack_room.open_room()
    except RecursionError:
        return
    try:
        frames = user_frames(frame)
        action = pause.serve(frames, "jump", info=info)
        if previous is not None and sys.gettrace() is None:
            sys.settrace(previous)
        tracing_hook.after_pause(frames[0], action)
    except startup.StartError as exc:
        startup.report(exc)
    except Exception as exc:  # a trace callback must never raise into the job
        print(f"framebridge: the pause after a jump failed ({type(exc).__name__}: {exc}); continuing",
              file=sys.__stderr__)
    finally:
        room.close()


_pending_lock = threading.Lock()


def arm_jump(frames: List[FrameType], index: int, line: int) -> Dict[str, Any]:
    """Before the pause ends: make the frame jump to ``line`` at its next event and
    pause there (after :func:`jump_now_or_later` said ``deferred``). JumpRefused if the
    pause is not one for a later jump (any more)."""
    frame = _check(frames[index] if 0 <= index < len(frames) else frames[0], index, line)
    callee = _callee(frame)
    if callee is not None and _in_line_event(callee):
        raise JumpRefused("this pause can jump at once: use the jump op")
    _later_possible(frame, callee)
    with _pending_lock:
        _DeferredJump(frame, line).arm()
    return {"armed": True, "from": frame.f_lineno}
