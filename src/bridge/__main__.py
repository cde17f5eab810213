"""``python -m bridge [--wait] [--children] script.py [args...]`` / ``python -m bridge [...] -m pkg.mod [args...]``

Runs a program the way ``python`` would (``sys.argv``, a fresh ``__main__`` module,
``sys.path[0]``, the exit code) but attachable from the start (``bridge.listen()``),
with post-mortem on an unhandled exception: the traceback is printed as Python prints
it, then the raising frame is paused so a client can inspect it; once the client
continues, the process exits with status 1. ``SystemExit`` and ``KeyboardInterrupt``
are not paused. ``--wait`` pauses before the program's first line (reason ``"start"``).
``--children`` makes the processes the program starts attachable too (bridge/children.py).
Threads get post-mortem through ``threading.excepthook`` (``bridge.install_excepthook``).
"""

from __future__ import annotations

import os
import sys
import types
from typing import List, NoReturn, Optional, Tuple

USAGE = """usage: python -m bridge [--wait] [--children] script.py [args...]
       python -m bridge [--wait] [--children] -m module [args...]

Run a Python program attachable by framebridge clients, pausing post-mortem on an
unhandled exception.

  --wait      pause before the first line until a client continues
  --children  make the processes it starts attachable too (multiprocessing,
              concurrent.futures, subprocess running Python)
  -m MODULE   run a library module as a script (like python -m)
"""

_BRIDGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(USAGE + f"\nerror: {message}\n")
    sys.exit(2)


def parse_args(argv: List[str]) -> Tuple[bool, bool, Optional[str], Optional[str], List[str]]:
    """(wait, children, script, module, program args) from the runner's own arguments."""
    wait = children = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            sys.exit(0)
        if a == "--wait":
            wait = True
        elif a == "--children":
            children = True
        elif a == "-m":
            if i + 1 >= len(argv):
                _usage_error("-m needs a module name")
            return wait, children, None, argv[i + 1], argv[i + 2:]
        elif a.startswith("-m") and len(a) > 2:
            return wait, children, None, a[2:], argv[i + 1:]
        elif a.startswith("-") and a != "-":
            _usage_error(f"unknown option {a!r}")
        else:
            return wait, children, a, None, argv[i + 1:]
        i += 1
    _usage_error("no script or module to run")


def _script_main(path: str) -> Tuple[types.CodeType, dict]:
    """Code and globals of ``python path`` (as runpy / the interpreter build them)."""
    import io

    try:
        with io.open_code(path) as f:
            source = f.read()
    except OSError as exc:
        sys.stderr.write(f"{sys.executable}: can't open file {os.path.abspath(path)!r}: [Errno {exc.errno}] {exc.strerror}\n")
        sys.exit(2)
    code = compile(source, path, "exec", dont_inherit=True)
    return code, {"__name__": "__main__", "__file__": path, "__cached__": None, "__doc__": None,
                  "__loader__": None, "__package__": None, "__spec__": None}


def _module_main(name: str) -> Tuple[types.CodeType, dict]:
    """Code and globals of ``python -m name`` (runpy's own lookup, packages' __main__ included)."""
    import runpy

    try:
        mod_name, spec, code = runpy._get_module_details(name)  # type: ignore[attr-defined]
    except Exception as exc:  # runpy's _Error or an ImportError: python -m prints it the same way
        sys.stderr.write(f"{sys.executable}: {exc}\n")
        sys.exit(1)
    return code, {"__name__": "__main__", "__file__": spec.origin, "__cached__": spec.cached,
                  "__doc__": None, "__loader__": spec.loader, "__package__": spec.parent,
                  "__spec__": spec}


def _user_traceback(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """Drop the runner's own frames from the top of a traceback (python shows none)."""
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _BRIDGE_DIR:
        tb = tb.tb_next
    return tb


def main(argv: Optional[List[str]] = None) -> None:
    """Run the program named on the command line; see the module docstring."""
    import bridge

    wait, children, script, module, args = parse_args(sys.argv[1:] if argv is None else argv)
    if script is not None:
        code, globs = _script_main(script)
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:
        assert module is not None
        sys.path[0] = os.getcwd()  # as python -m does (the module is found from here)
        code, globs = _module_main(module)
        sys.argv = [globs["__file__"] or module, *args]

    main_module = types.ModuleType("__main__")
    main_module.__dict__.update(globs)
    main_module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main_module  # pickling and `import __main__` see the program

    bridge.install_excepthook()  # threads; the main thread is handled below
    from . import tracing_hook
    from .startup import StartError, report

    try:
        bridge.listen(children=children)  # after sys.argv is set: the connection file shows the program's argv
    except StartError as exc:  # a broken setup must not stop the program: it runs, unattachable
        report(exc, "running the program unattachable")
        wait = False

    code = tracing_hook.prepare_program(code)  # breakpoints already set in it (3.9-3.11)
    if wait:
        print(f"bridge: pid {os.getpid()} waits for a client before the first line of "
              f"{sys.argv[0]}", file=sys.__stderr__, flush=True)
        # the next line this thread runs outside framebridge is the program's first
        tracing_hook.engine().arm(sys._getframe(), "step", reason="start")
    try:
        try:
            exec(code, main_module.__dict__)
        finally:
            tracing_hook.program_finished()  # stepping ends with the program, as pdb's does
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = _user_traceback(exc.__traceback__)
        exc.__traceback__ = tb
        # print exactly what python prints (through the program's own hook, if it set one),
        # then pause at the raising frame; the exit status is python's: 1
        hook = sys.excepthook
        hook(type(exc), exc, tb)
        if tb is not None and not getattr(hook, "bridge_post_mortem", False):
            bridge._post_mortem_exc(exc, tb)  # the program replaced bridge's hook
        sys.exit(1)


if __name__ == "__main__":
    main()
