"""Run stepping-corpus scripts under pdb or under framebridge with the same commands.

    python tests/stepping/driver.py pdb|framebridge SCRIPT [SCRIPT ...]

Prints one JSON line per script: ``{"script": name, "stops": [...], "end": ...}``.
A stop is ``"function:line"`` in the script itself, ``"file.py:function:line"``
elsewhere. Each script says what to do in its first line (``# commands: step next
... ``; ``continue`` once they run out) and marks lines: ``# @start`` (a temporary
breakpoint: the first stop), ``# @bp`` or ``# @bp if COND`` (breakpoints).

The same commands mean the same on both sides (docs/stepping.md):

* framebridge ``step`` / ``next`` / ``continue``: pdb's.
* framebridge ``step_out``: pdb's ``return``, then ``step`` at the ``--Return--`` stop.
* pdb's ``--Call--``, ``--Return--`` and exception stops have no counterpart in
  framebridge (it stops at lines only): there the pdb side repeats the command in
  force, as a user would, and records nothing; except that a ``--Call--`` stop whose
  line pdb then does not report again (3.13.6+: a step given on a line skips that
  line) counts as the stop at that line.

Both sides run in one process each, every script in turn, as ``python -m pdb`` and
``python -m bridge`` would run it (``__main__``, ``sys.argv``, ``sys.path[0]``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pdb
import re
import sys
import types
from typing import Any, Dict, List, Optional, Tuple

_PDB_RUNNER = {os.path.realpath(m.__file__) for m in (pdb, __import__("bdb"))}
LIMIT = 40  # stops recorded per script; then "continue" (a step that runs away)


def parse(path: str) -> Tuple[int, List[Tuple[int, Optional[str]]], List[str]]:
    """(start line, [(breakpoint line, condition)], commands) of a corpus script."""
    with open(path) as f:
        lines = f.read().splitlines()
    match = re.match(r"#\s*commands:(.*)", lines[0])
    commands = match.group(1).split() if match else []
    start = 0
    bps: List[Tuple[int, Optional[str]]] = []
    for n, text in enumerate(lines, 1):
        if "# @start" in text:
            start = n
        bp = re.search(r"# @bp(?: if (.*))?$", text)
        if bp:
            bps.append((n, bp.group(1)))
    if not start:
        raise ValueError(f"{path} has no '# @start' line")
    return start, bps, commands


def label(frame: types.FrameType, script: str) -> str:
    code = frame.f_code
    where = f"{code.co_name}:{frame.f_lineno}"
    if os.path.realpath(code.co_filename) == script:
        return where
    return f"{os.path.basename(code.co_filename)}:{where}"


class _Program:
    """``__main__``, ``sys.argv`` and ``sys.path[0]`` for one script, put back after."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> Dict[str, Any]:
        import threading

        self.saved = (sys.argv[:], sys.path[0], sys.modules["__main__"], sys.excepthook, threading.excepthook)
        sys.argv = [self.path]
        sys.path[0] = os.path.dirname(self.path)
        module = types.ModuleType("__main__")
        module.__dict__.update(__file__=self.path, __builtins__=__builtins__)
        sys.modules["__main__"] = module
        return module.__dict__

    def __exit__(self, *exc: Any) -> None:
        import threading

        sys.argv, sys.path[0], sys.modules["__main__"], sys.excepthook, threading.excepthook = self.saved


# ------------------------------------------------------------------------------ pdb


class ScriptedPdb(pdb.Pdb):
    """pdb with a command list instead of a prompt; records the line stops."""

    def __init__(self, script: str, start: int, commands: List[str]) -> None:
        super().__init__(stdout=io.StringIO(), nosigint=True)
        self.script = script
        self.start = start
        self.commands = list(commands)
        self.stops: List[str] = []
        self.started = False
        self.mode = "continue"
        self.out_frame: Optional[types.FrameType] = None
        self.kind = "line"
        self.call_stop: Optional[Tuple[types.FrameType, int]] = None  # the last --Call-- stop

    def message(self, msg: str) -> None:  # silence
        pass

    def error(self, msg: str) -> None:
        pass

    def dispatch_line(self, frame: types.FrameType) -> Any:
        call = self.call_stop
        self.call_stop = None
        if call is not None and call == (frame, frame.f_lineno) and self.started \
                and getattr(self, "cmdframe", None) is frame and getattr(self, "cmdlineno", None) == frame.f_lineno:
            # pdb 3.13.6+ (gh-136057) does not report the line a step was given on; given
            # at this frame's --Call-- stop, on the same line (a one-line function, a
            # generator expression, a class body), that stop was the user's stop here
            self.kind = "line"
            self.interaction(frame, None)
            return self.trace_dispatch
        return super().dispatch_line(frame)

    def user_line(self, frame: types.FrameType) -> None:
        self.kind = "line"
        super().user_line(frame)

    def user_call(self, frame: types.FrameType, argument_list: Any) -> None:
        self.kind = "call"
        super().user_call(frame, argument_list)

    def user_return(self, frame: types.FrameType, return_value: Any) -> None:
        self.kind = "return"
        super().user_return(frame, return_value)

    def user_exception(self, frame: types.FrameType, exc_info: Any) -> None:
        self.kind = "exception"
        super().user_exception(frame, exc_info)

    def interaction(self, frame: Optional[types.FrameType], tb: Any) -> None:  # type: ignore[override]
        assert frame is not None
        if not self.started:
            if self.kind == "line" and os.path.realpath(frame.f_code.co_filename) == self.script \
                    and frame.f_lineno == self.start:
                self.started = True
                self.clear_all_breaks_but_bps()
            else:
                self.set_continue()
                return
        if self.kind == "call":
            self.call_stop = (frame, frame.f_lineno)
        if self.kind != "line" or os.path.realpath(frame.f_code.co_filename) in _PDB_RUNNER:
            # pdb's own runner (bdb.run's last lines) is no more the program than
            # framebridge's runner is: neither stops there for the user
            self.repeat(frame)
            return
        self.stops.append(label(frame, self.script))
        command = self.commands.pop(0) if self.commands and len(self.stops) < LIMIT else "continue"
        self.apply(command, frame)

    def clear_all_breaks_but_bps(self) -> None:
        for bp in list(self.get_breaks(self.script, self.start)):
            if bp.temporary:
                self.clear_bpbynumber(bp.number)

    def apply(self, command: str, frame: types.FrameType) -> None:
        self.mode = command
        if command == "step":
            self.set_step()
        elif command == "next":
            self.set_next(frame)
        elif command == "step_out":
            self.out_frame = frame
            self.set_return(frame)
        else:
            self.set_continue()

    def repeat(self, frame: types.FrameType) -> None:
        """A --Call--/--Return--/exception stop: the command in force, again."""
        if self.mode == "step_out":
            # the frame returned, or is gone (an exception in a caller; a generator's end
            # shows as StopIteration in its caller)
            if (self.kind == "return" and frame is self.out_frame) or (self.kind == "exception" and frame is not self.out_frame):
                self.mode = "step"  # pdb's return, then step
                self.set_step()
            else:
                self.set_return(self.out_frame if self.out_frame is not None else frame)
            return
        self.apply(self.mode, frame)


def run_pdb(path: str) -> Dict[str, Any]:
    start, bps, commands = parse(path)
    debugger = ScriptedPdb(path, start, commands)
    debugger.set_break(path, start, temporary=True)
    for line, cond in bps:
        debugger.set_break(path, line, cond=cond)
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    end = "finished"
    with _Program(path) as namespace:
        try:
            debugger.run(code, namespace)
        except SystemExit as exc:
            end = f"exit {exc.code}"
        except BaseException:  # the program's own exception escaped
            end = "raised"
        finally:
            sys.settrace(None)
    return {"stops": debugger.stops, "end": end}


# ------------------------------------------------------------------------------ framebridge


def run_framebridge(path: str) -> Dict[str, Any]:
    from bridge import __main__ as runner
    from bridge import tracing_hook

    start, bps, commands = parse(path)
    engine = tracing_hook.engine()  # the pause loop is its stop handler; replaced below
    todo = list(commands)
    stops: List[str] = []

    started = []

    def on_stop(frame: types.FrameType, reason: str, info: dict) -> str:
        if not started:  # as on the pdb side: nothing counts before the start line
            if os.path.realpath(frame.f_code.co_filename) != path or frame.f_lineno != start:
                return "continue"
            started.append(True)
        stops.append(label(frame, path))
        return todo.pop(0) if todo and len(stops) < LIMIT else "continue"

    engine.set_stop_handler(on_stop)
    engine.set_break(path, start, temporary=True)
    for line, cond in bps:
        engine.set_break(path, line, condition=cond)
    end = "finished"
    with _Program(path):
        try:
            runner.main([path])
        except SystemExit as exc:
            # python exits 1 after an uncaught exception; the runner says so with sys.exit(1)
            end = "raised" if exc.code == 1 else f"exit {exc.code}"
        finally:
            engine.reset()
    return {"stops": stops, "end": end}


def main(argv: List[str]) -> None:
    side, scripts = argv[0], argv[1:]
    run = run_pdb if side == "pdb" else run_framebridge
    for script in scripts:
        path = os.path.realpath(script)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the programs' own output
                result = run(path)
        except BaseException as exc:  # report, go on with the next script
            result = {"stops": [], "end": f"driver error {type(exc).__name__}: {exc}"}
        result["script"] = os.path.basename(path)
        sys.__stdout__.write(json.dumps(result) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
