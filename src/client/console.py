"""A terminal console on a paused frame (``framebridge attach``).

Every input runs *inside the target's selected frame* (Session.exec, then Session.eval for
a last expression, whose repr is printed like the Python prompt does). A few words are
debugger commands, as in pdb; prefix a line with ``!`` to run it as code anyway
(``!next = 3`` assigns a variable called ``next``)::

    where | w | bt        the stack, selected frame marked
    up | u, down | d      select the caller / the callee
    locals                the selected frame's variables (summaries)
    cont | c | continue   resume; the console waits for the next pause (or the exit)
    step | s, next | n    step into / over
    step_out | return | r run until the frame returns
    help | ?              this text
    quit | exit | q       detach (the target stays paused for another client)

Two front ends share :class:`RemoteConsole`: IPython's terminal (syntax highlighting,
history) when it is installed and stdin is a terminal, else :mod:`code`'s console (which
also serves piped input).
"""

from __future__ import annotations

import code
import sys
import time
from typing import Any, Callable, Optional, TextIO

from bridge import keys
from bridge.playground_ops import split_last_expression

from .errors import BridgeError, RemoteError, SessionLost

HELP = __doc__.split("::", 1)[1].split("\n\n")[1] if "::" in __doc__ else ""  # the command table

_COMMANDS = {
    "where": "where", "w": "where", "bt": "where",
    "up": "up", "u": "up", "down": "down", "d": "down",
    "locals": "locals",
    "cont": "cont", "c": "cont", "continue": "cont",
    "step": "step", "s": "step", "next": "next", "n": "next",
    "step_out": "step_out", "return": "step_out", "r": "step_out",
    "help": "help", "?": "help",
    "quit": "quit", "exit": "quit", "q": "quit",
}


class RemoteConsole:
    """The console's logic, independent of the front end: run one input, print the result."""

    def __init__(self, session: Any, *, out: TextIO = sys.stdout, wait: float = 60.0) -> None:
        self.session = session
        self.out = out
        self.wait = wait
        self.finished = False  # set by quit, or when the target exited

    def banner(self) -> str:
        """The greeting: where the target is paused and how to get help."""
        pause = self.session.pauses()[0] if self.session.paused else None
        where = f"paused: {pause}" if pause else "not paused (yet)"
        return (f"framebridge console on pid {self.session.pid}; {where}\n"
                "Input runs inside the paused frame. Commands: where, up, down, locals, cont, step, "
                "next, step_out, quit; `help` for more.")

    def prompt(self) -> str:
        """The prompt shows the selected frame's function."""
        return "(remote) >>> "

    def handle(self, source: str) -> None:
        """Run one complete input: a command, or code for the selected frame."""
        stripped = source.strip()
        if not stripped:
            return
        if stripped.startswith("!"):
            self._run_code(stripped[1:])
            return
        command = _COMMANDS.get(stripped)
        if command is None:
            self._run_code(source)
            return
        try:
            getattr(self, f"_cmd_{command}")()
        except (BridgeError, IndexError, TimeoutError) as exc:
            self._print(f"*** {exc}")

    # --- commands -----------------------------------------------------------------------

    def _cmd_where(self) -> None:
        self._print(str(self.session.stack()))

    def _cmd_up(self) -> None:
        self._print(str(self.session.up()))

    def _cmd_down(self) -> None:
        self._print(str(self.session.down()))

    def _cmd_locals(self) -> None:
        self._print(repr(self.session.locals()))

    def _cmd_help(self) -> None:
        self._print(HELP)

    def _cmd_quit(self) -> None:
        self.finished = True
        self._print(f"detached from pid {self.session.pid}")

    def _cmd_cont(self) -> None:
        self._resume(self.session.cont)

    def _cmd_step(self) -> None:
        self._resume(self.session.step)

    def _cmd_next(self) -> None:
        self._resume(self.session.next)

    def _cmd_step_out(self) -> None:
        self._resume(self.session.step_out)

    def _resume(self, action: Callable[[], None]) -> None:
        action()
        self._print(f"resumed pid {self.session.pid}; waiting up to {self.wait:g}s for the next pause "
                    "(Ctrl-C stops waiting)")
        deadline = time.monotonic() + self.wait
        try:
            while time.monotonic() < deadline:
                if not keys.process_alive(self.session.pid):
                    self._print(f"process {self.session.pid} exited")
                    self.finished = True
                    return
                try:
                    pause = self.session.wait(0.25)
                except TimeoutError:
                    continue
                except SessionLost:
                    self._print(f"process {self.session.pid} exited")
                    self.finished = True
                    return
                self._print(str(pause))
                return
        except KeyboardInterrupt:
            self._print("stopped waiting; the process runs on")
            return
        self._print(f"no pause within {self.wait:g}s; the process runs on (`quit` to detach)")

    # --- code ---------------------------------------------------------------------------

    def _run_code(self, source: str) -> None:
        try:
            body, last = split_last_expression(source)
        except SyntaxError as exc:
            self._print(f"SyntaxError: {exc}")
            return
        try:
            if body is not None:
                self._write(self.session.exec(body))
            if last is not None:
                value = self.session.eval(last)
                if value is not None:
                    self._print(repr(value))
        except RemoteError as exc:
            self._print(exc.remote_traceback.rstrip() or str(exc))
        except BridgeError as exc:
            self._print(f"*** {exc}")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    def _print(self, text: str) -> None:
        self._write(text.rstrip("\n") + "\n")


class _PlainConsole(code.InteractiveConsole):
    """code.InteractiveConsole whose complete inputs go to a RemoteConsole."""

    def __init__(self, remote: RemoteConsole) -> None:
        super().__init__()
        self.remote = remote

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        stripped = source.strip()
        if stripped.startswith("!") or stripped in _COMMANDS:
            self.remote.handle(source)
        else:
            try:
                if code.compile_command(source, filename, symbol) is None:
                    return True  # incomplete: ask for more lines
            except (SyntaxError, OverflowError, ValueError):
                pass  # let the target report it
            self.remote.handle(source)
        if self.remote.finished:
            raise _Finished
        return False

    def raw_input(self, prompt: str = "") -> str:
        if not sys.stdin.isatty():
            line = sys.stdin.readline()  # piped input: no prompt noise
            if not line:
                raise EOFError
            return line.rstrip("\n")
        return input(prompt)


class _Finished(Exception):
    """Raised out of the console loop after quit or when the target exited."""


def run_console(session: Any, *, kind: str = "auto", wait: float = 60.0) -> int:
    """Run a console on ``session`` until quit, end of input, or the target's exit."""
    if not session.paused:
        print(f"pid {session.pid} is not paused; waiting up to {wait:g}s for it to pause")
        session.wait(wait)
    remote = RemoteConsole(session, wait=wait)
    use_ipython = kind == "ipython" or (kind == "auto" and sys.stdin.isatty() and _has_ipython())
    if use_ipython:
        return _run_ipython(remote)
    console = _PlainConsole(remote)
    sys.ps1, sys.ps2 = remote.prompt(), "(remote) ... "
    try:
        console.interact(banner=remote.banner(), exitmsg="")
    except _Finished:
        pass
    return 0


def _has_ipython() -> bool:
    try:
        import IPython  # noqa: F401
    except ImportError:
        return False
    return True


def _run_ipython(remote: RemoteConsole) -> int:
    """IPython's terminal as the front end: every cell goes to ``remote.handle``."""
    from IPython.terminal.embed import InteractiveShellEmbed

    class RemoteShell(InteractiveShellEmbed):
        """An embedded IPython whose cells run in the target instead of locally."""

        def run_cell(self, raw_cell: str, store_history: bool = False, silent: bool = False,
                     shell_futures: bool = True, cell_id: Optional[str] = None) -> Any:
            if store_history:
                self.history_manager.store_inputs(self.execution_count, raw_cell, raw_cell)
                self.execution_count += 1
            remote.handle(raw_cell)
            if remote.finished:
                self.ask_exit()
            return None

    shell = RemoteShell(banner1=remote.banner() + "\n", exit_msg="", confirm_exit=False)
    shell(header="", stack_depth=1)
    return 0
