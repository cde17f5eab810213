"""The debugging engine: breakpoints, stepping and pausing (no sockets, no I/O).

Like CPython's ``bdb`` it decides *where* a thread stops and leaves *what happens while
it is stopped* to a front end (``Debugger.set_stop_handler``). It does not watch the
program itself: a backend (one per mechanism, see ``bridge.tracing``) reports events
through the ``dispatch_*`` methods below, and the engine tells the backend what to
watch through the :class:`Backend` interface (``breakpoints_changed()``,
``stepping_changed(tid, frames)``). The backend reads the engine's state only through
the public query methods (``breakpoint_lines``, ``is_stepping``, ...).
"""

from __future__ import annotations

import inspect
import sys
import threading
from types import CodeType, FrameType
from typing import Callable, Dict, FrozenSet, List, Optional, Protocol, Set, Tuple

from .breakpoints import Breakpoint, BreakpointTable, FileLines
from .scope import Scope
from .signal_pause import SignalPauser

__all__ = ["ACTIONS", "REASONS", "Backend", "Debugger", "StopHandler", "get_debugger"]

ACTIONS: Tuple[str, ...] = ("continue", "step", "next", "step_out")
REASONS: Tuple[str, ...] = ("breakpoint", "step", "pause")

#: ``on_stop(frame, reason, info) -> action``; runs on the stopping thread.
StopHandler = Callable[[FrameType, str, dict], str]

#: Code flags of frames that a yield suspends rather than ends.
GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


class Backend(Protocol):
    """What the engine asks of a backend (``monitoring``, ``codepatch``, ``settrace``)."""

    #: The mechanism, as :attr:`Debugger.mechanism` names it.
    name: str
    #: Whether :meth:`Debugger.request_pause` can stop any thread (else the main thread,
    #: by signal).
    pauses_any_thread: bool

    def breakpoints_changed(self) -> None:
        """The breakpoints changed: watch the code that holds them, and only that."""

    def stepping_changed(self, tid: Optional[int], frames: Optional[List[FrameType]]) -> None:
        """Thread ``tid`` (called on it) now steps from ``frames`` (its stack; ``[]``:
        from where it is), or stopped stepping (``frames`` None). ``tid`` None: every
        thread stopped stepping."""

    def prepare_code(self, code: CodeType) -> CodeType:
        """The code to run for ``code``, about to run without the import system."""

    def is_idle(self) -> bool:
        """Whether nothing of this backend is installed (tracer, tool, patched code)."""


def _stack(frame: Optional[FrameType]) -> List[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


class _Step:
    """What a stepping (or pause-requested) thread waits for.

    ``"step"``: any line (outside framebridge's machinery). ``"next"``: a line of
    ``origin``; ``"step_out"``: none of ``origin``'s. Once ``origin`` has returned, both
    become ``"step"`` (pdb: ``next``/``return`` at a return, then ``step``); a yield is
    not a return. ``callers`` are ``origin``'s callers when the command was given: a
    line there means ``origin`` is gone, by return or by an exception that unwound it
    (not for a generator, which a caller's line does not end).
    """

    __slots__ = ("mode", "origin", "callers", "reason", "info", "command_frame", "command_line")

    def __init__(self, mode: str, origin: Optional[FrameType], reason: str, info: dict,
                 command_frame: Optional[FrameType] = None) -> None:
        self.mode = mode
        self.origin = origin
        # pdb 3.13.6+/3.14 (gh-136057): no stop at the line the command was given on,
        # in that frame (a one-line loop's next iteration is not "the next line")
        self.command_frame = command_frame if _SKIP_COMMAND_LINE else None
        self.command_line = command_frame.f_lineno if self.command_frame is not None else None
        # A generator that yields is not gone: pdb waits for its next line (or its end),
        # and so do we.
        gone_when_callers_run = origin is not None and not origin.f_code.co_flags & GENERATOR_FLAGS
        self.callers: Tuple[FrameType, ...] = tuple(_stack(origin.f_back)) if gone_when_callers_run else ()
        self.reason = reason
        self.info = info

    def wants(self, frame: FrameType) -> bool:
        if self.mode == "step" or (self.mode == "next" and frame is self.origin):
            return True
        for caller in self.callers:  # identity: a recursive call of the same code is not it
            if caller is frame:
                return True
        return False


def _pdb_skips_command_line() -> bool:
    """Whether this Python's pdb skips the line a step/next was given on (gh-136057:
    3.13.6+, 3.14). Read from bdb itself, so that stepping matches the pdb at hand."""
    try:
        import bdb
    except ImportError:  # pragma: no cover - a stripped-down Python
        return False
    return "cmdframe" in bdb.Bdb._set_stopinfo.__code__.co_varnames


_SKIP_COMMAND_LINE = _pdb_skips_command_line()


def _default_backend(engine: "Debugger", name: Optional[str]) -> Backend:
    """The backend for this Python: sys.monitoring from 3.12, code patching before
    (sys.settrace where the ``bytecode`` library is missing, or when asked for)."""
    import os

    name = name or os.environ.get("BRIDGE_TRACING_BACKEND") or None
    if name is None:
        if sys.version_info >= (3, 12):
            name = "sys.monitoring"
        else:
            from .codepatch import available

            name = "code patching" if available() else "sys.settrace"
    if name == "sys.monitoring":
        from .monitoring import MonitoringBackend

        return MonitoringBackend(engine)
    if name == "code patching":
        from .codepatch import CodePatchBackend

        return CodePatchBackend(engine)
    if name == "sys.settrace":
        from .settrace import SettraceBackend

        return SettraceBackend(engine)
    raise ValueError(f"unknown tracing backend {name!r}")


class Debugger:
    """The process-wide debugging engine (use :func:`get_debugger`).

    Thread-safe: breakpoints can be set from any thread (e.g. a server thread) while
    other threads run. State read on the hot paths is replaced, never mutated, so the
    backends read it without a lock; no lock is held while the stop handler runs, so
    several threads can be stopped at once.

    ``backend`` names the mechanism (``"sys.monitoring"``, ``"code patching"``,
    ``"sys.settrace"``; default: the best for this Python, or the environment variable
    ``BRIDGE_TRACING_BACKEND``). Only one debugger may be active in a process at a time.
    """

    def __init__(self, backend: Optional[str] = None) -> None:
        self._lock = threading.RLock()
        self._handler: Optional[StopHandler] = None
        self._table = BreakpointTable()
        self._scope = Scope()
        self._steps: Dict[int, _Step] = {}  # thread id -> step (replaced on change)
        self._in_stop: Set[int] = set()  # threads inside the stop handler: never re-enter
        self._exiting = False
        self._backend = _default_backend(self, backend)
        self._signals = SignalPauser(self)
        _end_stepping_at_exit(self)

    # ================================================================== front end

    @property
    def mechanism(self) -> str:
        """The backend in use: ``"sys.monitoring"``, ``"code patching"`` or ``"sys.settrace"``."""
        return self._backend.name

    def set_stop_handler(self, fn: Optional[StopHandler]) -> None:
        """Install the front end's ``on_stop(frame, reason, info) -> action`` hook.

        It is called on the stopping thread, without any engine lock held, and blocks
        that thread until it returns. Code it runs (evaluating in the frame, say) is
        not traced: breakpoints do not fire inside it. If it raises, the error is
        printed to stderr and the thread continues. With no handler (``None``),
        stops are skipped, as if the handler returned ``"continue"``.
        """
        self._handler = fn

    def set_break(self, file: str, line: int, *, condition: Optional[str] = None,
                  temporary: bool = False) -> Breakpoint:
        """Set a breakpoint at ``file:line`` and return it.

        ``file`` is matched against the realpath of ``code.co_filename``. A line
        without code (blank, comment, ...) moves to the next line that has code.
        ``condition`` is a Python expression evaluated in the frame; the breakpoint
        stops (and counts a hit) only when it is true. A condition that raises
        counts as true (as in pdb) and the error is reported in ``info``. A
        ``temporary`` breakpoint is removed when it first stops.

        Raises ValueError for a missing file, a file that does not compile, a line
        past the last line of code, framebridge's own files, or a condition that
        does not compile.
        """
        bp = self._table.add(file, line, condition, temporary)
        self._backend.breakpoints_changed()
        return bp

    def clear_break(self, bp_id: int) -> None:
        """Remove breakpoint ``bp_id``; KeyError if there is none."""
        self._table.remove(bp_id)
        self._backend.breakpoints_changed()

    def clear_all_breaks(self) -> None:
        """Remove every breakpoint."""
        self._table.clear()
        self._backend.breakpoints_changed()

    def breakpoints(self) -> List[Breakpoint]:
        """The breakpoints, by id (the objects themselves: ``hits`` stays current)."""
        return self._table.all()

    def arm(self, frame: FrameType, action: str, *, reason: str = "step") -> None:
        """Make ``action`` take effect from ``frame`` when the thread resumes.

        Call it on the thread that owns ``frame``, just before that thread goes back
        to user code after a pause that did not come from the engine (e.g.
        ``bridge.set_trace()``). ``"continue"`` cancels any stepping of this thread.
        ``reason`` is what the resulting stop reports (``python -m bridge --wait``
        arms a ``"step"`` with reason ``"start"``).
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
        tid = threading.get_ident()
        stack = _stack(frame)
        for f in stack:
            # warm the cache now: its first look-up runs os.path.realpath, which would
            # otherwise run while this thread steps
            self._scope.never_stops(f.f_code.co_filename)
        if action == "continue":
            self._set_step(tid, None)
            self._backend.stepping_changed(tid, None)
            return
        info = {"action": action}
        origin = None if action == "step" else frame
        step = _Step(action, origin, reason, info, frame if action in ("step", "next") else None)
        self._set_step(tid, step)
        self._backend.stepping_changed(tid, stack)

    def request_pause(self, thread_id: Optional[int] = None) -> str:
        """Stop thread ``thread_id`` (default: the main thread) at its next line.

        Returns a short description of the mechanism used.

        * 3.12+: any thread; LINE events on the code objects of its current stack
          (and of functions it calls next). A thread busy in a long C call (a
          ``time.sleep``, a numpy operation) stops when the call returns.
        * before 3.12: the main thread only (RuntimeError otherwise), through
          SIGUSR1 (see :meth:`install_signal_handler`). A sleeping main thread
          stops at once; it stops in the middle of its current line, whose rest runs
          after it resumes. A thread inside a long C call stops when it returns.
        """
        main = threading.main_thread().ident
        tid = main if thread_id is None else thread_id
        if self._backend.pauses_any_thread:
            top = sys._current_frames().get(tid)
            if top is None:
                raise ValueError(f"no running thread with id {tid}")
            stack = _stack(top)
            del top
            desc = f"sys.monitoring LINE events on the {len(stack)} frame(s) of thread {tid}"
            self._set_step(tid, _Step("step", None, "pause", {"mechanism": desc}))
            self._backend.stepping_changed(tid, stack)
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

    def prepare_code(self, code: CodeType) -> CodeType:
        """The code to run instead of ``code``, which is about to run for the first time
        without the import system (a program ``python -m bridge`` compiled): before
        3.12, with the probes of the breakpoints already set in it."""
        return self._backend.prepare_code(code)

    def reset(self) -> None:
        """Remove every breakpoint and cancel all stepping and pause requests."""
        self._table.clear()
        with self._lock:
            self._steps = {}
        self._backend.breakpoints_changed()
        self._backend.stepping_changed(None, None)

    def is_idle(self) -> bool:
        """True when the backend watches nothing (no tracer, tool or patched code of ours)."""
        return self._backend.is_idle()

    # ================================================================== for backends

    def breakpoint_lines(self, code: CodeType) -> FrozenSet[int]:
        """Lines of ``code`` itself (not nested code) holding an enabled breakpoint."""
        return self._table.lines_in(code)

    def code_has_breakpoint(self, code: CodeType) -> bool:
        """Whether a line of ``code`` itself holds an enabled breakpoint."""
        return bool(self._table.lines_in(code))

    def breakpoints_in_file(self, raw_filename: str) -> Optional[Dict[int, List[Breakpoint]]]:
        """line -> breakpoints of a ``co_filename``; None when the file has none."""
        return self._table.in_file(raw_filename)

    def breakpoint_files(self) -> Dict[str, FrozenSet[int]]:
        """canonical file -> lines that hold an enabled breakpoint."""
        return self._table.by_file()

    def file_lines(self, path: str) -> Optional[FileLines]:
        """Line tables of a canonical file that holds breakpoints (None if not loaded)."""
        return self._table.known_file_lines(path)

    def has_breakpoints(self) -> bool:
        """Whether any breakpoint is enabled."""
        return not self._table.empty()

    def is_stepping(self, tid: Optional[int] = None) -> bool:
        """Whether thread ``tid`` (None: any thread) steps or waits for a pause."""
        return bool(self._steps) if tid is None else tid in self._steps

    def steps_into_calls(self, tid: int) -> bool:
        """Whether thread ``tid`` would stop in a frame it has not entered yet."""
        step = self._steps.get(tid)
        return step is not None and step.mode == "step"

    def stepping_origin(self, tid: int) -> Optional[FrameType]:
        """The frame a ``next``/``step_out`` of thread ``tid`` waits to leave, if any."""
        step = self._steps.get(tid)
        return step.origin if step is not None else None

    def never_stops(self, raw_filename: str) -> bool:
        """Whether code of ``raw_filename`` is framebridge's own (or a runner's): no stop there."""
        return self._scope.never_stops(raw_filename)

    def may_step_into(self, frame: FrameType) -> bool:
        """Whether a step may stop in ``frame`` (see ``scope.py``)."""
        return self._scope.may_step_into(frame)

    def in_stop(self, tid: int) -> bool:
        """Whether thread ``tid`` is inside the stop handler (never stop it again)."""
        return tid in self._in_stop

    def dispatch_line(self, frame: FrameType, line: int, breakpoints: bool = True) -> bool:
        """A line is about to run in ``frame``; stop if a breakpoint or a step wants it.

        ``breakpoints=False`` checks stepping only (the code-patching backend's probes
        check breakpoints themselves). Returns whether this location holds a
        breakpoint (the monitoring backend must keep its event enabled then).
        """
        code = frame.f_code
        bps = self._table.in_file(code.co_filename) if breakpoints else None
        here = bps.get(line) if bps else None
        tid = threading.get_ident()
        step = self._steps.get(tid)
        if here is None and step is None:
            return False
        if tid in self._in_stop or self._scope.never_stops(code.co_filename):
            return here is not None
        if step is not None and step.command_frame is frame and step.command_line == line:
            return here is not None  # pdb neither stops nor breaks there (see _Step)
        if here:
            in_stop = self._in_stop
            in_stop.add(tid)  # a condition that calls code with breakpoints must not stop there
            try:
                info, removed = self._table.hit(here, frame)
            finally:
                in_stop.discard(tid)
            if removed:
                self._backend.breakpoints_changed()
            if info is not None:
                self._stop(frame, "breakpoint", info)
                return True
        if step is not None and step.wants(frame) and (step.mode != "step" or self._scope.may_step_into(frame)):
            self._stop(frame, step.reason, step.info)
        return here is not None

    def dispatch_probe(self, line: int) -> None:
        """A breakpoint probe at ``line`` of the caller's frame (code patching): check
        the breakpoints there, then stepping."""
        frame = sys._getframe(1)
        self.dispatch_line(frame, line)

    def dispatch_leave(self, frame: FrameType) -> None:
        """``frame`` returns (backends do not report a generator's yields). If a
        ``next``/``step_out`` of this thread waited
        for it to leave, the thread now stops at the next line anywhere (pdb's
        ``next``/``return`` at a frame's return, followed by ``step``)."""
        tid = threading.get_ident()
        step = self._steps.get(tid)
        if step is None or step.origin is not frame or tid in self._in_stop:
            return
        self._set_step(tid, _Step("step", None, step.reason, step.info))
        self._backend.stepping_changed(tid, [])

    def dispatch_signal_pause(self, frame: Optional[FrameType]) -> bool:
        """A pause signal arrived on this thread at ``frame``: stop at the innermost user
        frame, or at the next user line if there is none. False (nothing done) when the
        thread is inside a stop that is ending: the caller keeps the request."""
        tid = threading.get_ident()
        if tid in self._in_stop:
            return False
        user = frame
        while user is not None and self._scope.never_stops(user.f_code.co_filename):
            user = user.f_back
        info = {"mechanism": "SIGUSR1"}
        if user is None:  # only framebridge/threading frames: stop at the next user line
            self._set_step(tid, _Step("step", None, "pause", info))
            self._backend.stepping_changed(tid, _stack(frame))
        else:
            self._stop(user, "pause", info)
        return True

    def end_all_stepping(self) -> None:
        """Cancel every thread's stepping (interpreter exit: stepping ends like pdb's)."""
        self._exiting = True
        with self._lock:
            self._steps = {}
        self._backend.stepping_changed(None, None)

    # ================================================================== internals

    def _set_step(self, tid: int, step: Optional[_Step]) -> None:
        with self._lock:
            steps = dict(self._steps)
            if step is None:
                steps.pop(tid, None)
            elif not self._exiting:
                steps[tid] = step
            # forget threads that ended while stepping (the ids only: keeping the
            # frames in a local would tie this frame into a cycle with them)
            alive = set(sys._current_frames())
            for dead in [t for t in steps if t not in alive]:
                del steps[dead]
            self._steps = steps

    def _stop(self, frame: FrameType, reason: str, info: dict) -> None:
        """Hand ``frame`` to the front end, then apply the action it returns."""
        tid = threading.get_ident()
        self._set_step(tid, None)  # the backend is updated by arm() below
        handler = self._handler
        action = "continue"
        if handler is not None:
            self._in_stop.add(tid)
            # The stop handler (the pause loop) runs untraced: a thread tracer left on (a
            # stop at a probe while stepping) would slow all of it down, 5x on 3.11.
            tracer = sys.gettrace()
            if tracer is not None:
                sys.settrace(None)
            try:
                action = handler(frame, reason, dict(info))
            except Exception:
                import traceback

                print("framebridge: the stop handler failed; continuing", file=sys.stderr)
                traceback.print_exc()
                action = "continue"
            finally:
                if tracer is not None and sys.gettrace() is None:
                    sys.settrace(tracer)
                self._in_stop.discard(tid)
        if action not in ACTIONS:
            print(f"framebridge: unknown resume action {action!r}; continuing", file=sys.stderr)
            action = "continue"
        pending = self._steps.get(tid)
        if pending is not None and pending.reason == "pause" and action == "continue":
            # a pause was requested (3.12+) while this stop was ending: keep it
            self._backend.stepping_changed(tid, _stack(frame))
            return
        self.arm(frame, action)
        self._signals.resend_deferred(tid)


def _end_stepping_at_exit(engine: Debugger) -> None:
    """End stepping when the main thread's program is over, before ``atexit`` handlers
    run (theirs, and the server's): pdb's stepping ends with the program too."""
    register = getattr(threading, "_register_atexit", None)  # 3.9+: runs first in threading._shutdown
    if register is None:
        return
    try:
        register(engine.end_all_stepping)
    except RuntimeError:  # the interpreter is already shutting down
        pass


# ---------------------------------------------------------------------------- singleton

_debugger: Optional[Debugger] = None
_debugger_lock = threading.Lock()


def get_debugger() -> Debugger:
    """The process's one :class:`Debugger`."""
    global _debugger
    with _debugger_lock:
        if _debugger is None:
            _debugger = Debugger()
        return _debugger
