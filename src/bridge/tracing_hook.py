"""Glue between the pause loop and the tracing engine (breakpoints, stepping, pause).

The engine (tracing.py) knows nothing about sockets; this module hands it the pause loop
as its stop handler, and hands it stepping requests after a pause.
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType
from typing import Any, Dict


def after_pause(frame: FrameType, action: str) -> None:
    """Arm stepping for this thread if the client asked for step/next/step_out."""
    if action == "continue":
        return
    engine = _engine()
    if engine is not None:
        engine.arm(frame, action)


def enable_pause_on_demand() -> None:
    """Prepare this process so that a client can pause it (signal handler before 3.12)."""
    engine = _engine()
    if engine is not None and hasattr(engine, "install_signal_handler"):
        try:
            engine.install_signal_handler()
        except Exception:  # pausing on demand is a convenience; never break the job for it
            pass


def prepare_program(code: CodeType) -> CodeType:
    """The code to run for a program the runner compiled itself (``python -m bridge``):
    breakpoints set before it runs are compiled into it before 3.12."""
    engine = _engine()
    return engine.prepare_code(code) if engine is not None else code


def program_finished() -> None:
    """The runner's program returned or raised: this thread's stepping ends (pdb's does
    too), so that nothing after it (the runner, ``runpy``, exit handlers) is stepped into."""
    engine = _engine()
    if engine is not None:
        engine.arm(sys._getframe(1), "continue")


def engine() -> Any:
    """The tracing engine with the pause loop installed as its stop handler."""
    debugger = _engine()
    if debugger is None:
        raise RuntimeError("bridge.tracing is not available")
    return debugger


def _engine() -> Any:
    try:
        from .tracing import get_debugger
    except ImportError:
        return None
    debugger = get_debugger()
    _install_stop_handler(debugger)
    return debugger


_installed: Dict[int, bool] = {}


def _install_stop_handler(debugger: Any) -> None:
    if _installed.get(id(debugger)):
        return
    from . import pause, stack_room, startup
    from .own_code import user_frames

    def on_stop(frame: FrameType, reason: str, info: Dict[str, Any]) -> str:
        # A breakpoint or a step deep in a recursion: room for our frames first, and never
        # a RecursionError out of here (it would leave the trace function, into the job).
        try:
            room = stack_room.open_room()
        except RecursionError:
            _no_room()
            return "continue"
        try:
            return pause.serve(user_frames(frame), reason, info=info)
        except RecursionError:
            _no_room()
            return "continue"
        except startup.StartError as exc:  # a broken setup: say so, the job goes on (startup.py)
            startup.report(exc)
            return "continue"
        finally:
            room.close()

    debugger.set_stop_handler(on_stop)
    _installed[id(debugger)] = True


def _no_room() -> None:
    try:
        print("bridge: cannot stop at a breakpoint or step here: no room left below the recursion limit "
              "(sys.setrecursionlimit); the job goes on", file=sys.__stderr__)
    except Exception:  # not even room for that
        pass
