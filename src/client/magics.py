"""IPython magics: ``%load_ext client`` gives %attach, %where, %%remote, %%jump, %%playground, %%patch.

    %attach 4242            # or %attach: the one paused process; becomes the current session
    %where                  # the paused stack (selected frame marked)
    %%remote                # the cell runs inside the paused frame; its last expression is shown
    %%jump [--discard]      # the cell runs with the frame mounted; written back unless --discard
    %%playground [--timeout 30]   # the cell runs in a fork() of the target; nothing survives
    %%patch [--try CALL]    # the cell's def/class statements patch the target (client/patch_magic.py)
    %detach                 # close the current session (the target stays as it is)
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from bridge import keys
from bridge.playground_ops import split_last_expression

from .current import current_session, set_current_session
from .errors import NoSession, RemoteError


@magics_class
class BridgeMagics(Magics):
    """The framebridge magics. Each acts on the current session (see client.current)."""

    @magic_arguments()
    @argument("pid", nargs="?", default=None,
              help="process id, or a connection file path; default: the one paused process")
    @argument("--wait", type=float, default=None, metavar="SECONDS",
              help="wait up to SECONDS for the process to become attachable and to pause")
    @line_magic
    def attach(self, line: str) -> Any:
        """Attach to a target and make it the current session."""
        from .discovery import attach

        args = parse_argstring(self.attach, line)
        target: Any = None
        if args.pid is not None:
            target = int(args.pid) if args.pid.isdigit() else args.pid
        previous = set_current_session(None)
        if previous is not None:
            previous.close()
        session = _attach_waiting(attach, target, args.wait)
        set_current_session(session)
        if args.wait is not None:
            session.wait(args.wait)
        return session

    @line_magic
    def detach(self, line: str) -> None:
        """Close the current session; the target keeps running or stays paused."""
        previous = set_current_session(None)
        if previous is None:
            raise UsageError("no current session")
        previous.close()
        print(f"detached from pid {previous.pid}")

    @line_magic
    def where(self, line: str) -> Any:
        """The selected paused thread's stack, innermost first."""
        return current_session().stack()

    @cell_magic
    def remote(self, line: str, cell: str) -> Any:
        """Run the cell inside the paused frame; show its output and the last expression's value."""
        session = current_session()
        body, last = _split(cell)
        if body is not None:
            output = session.exec(body)
            if output:
                sys.stdout.write(output)
        if last is not None:
            return session.eval(last)  # prints the expression's own output itself
        return None

    @magic_arguments()
    @argument("--discard", action="store_true", help="throw the cell's changes away instead of writing them back")
    @cell_magic
    def jump(self, line: str, cell: str) -> None:
        """Run the cell with the paused frame mounted into the notebook namespace."""
        from .mount import jump_context

        args = parse_argstring(self.jump, line)
        session = current_session()
        with jump_context(session, write_back=not args.discard) as mount:
            result = self.shell.run_cell(cell, store_history=False)
            failed = not result.success
            if failed:
                mount.discard()  # an error in the cell: write nothing (IPython showed it)
            elif args.discard:
                print("changes discarded: nothing was written back")
        if failed:
            print("the cell raised: nothing was written back", file=sys.stderr)

    @magic_arguments()
    @argument("--timeout", type=float, default=None, metavar="SECONDS",
              help="wall-clock limit; the copy is killed after it (default 30)")
    @cell_magic
    def playground(self, line: str, cell: str) -> Any:
        """Run the cell in a fork() of the paused process: nothing it does survives."""
        from .playground import DEFAULT_TIMEOUT, run_playground

        args = parse_argstring(self.playground, line)
        _split(cell)  # a syntax error is reported here, before the target forks
        result = run_playground(current_session(), cell, timeout=args.timeout or DEFAULT_TIMEOUT)
        if result.output:
            sys.stdout.write(result.output)
        if result.note:
            print(f"({result.note})", file=sys.stderr)
        result.check()
        return result.value if result.has_value else None

    @cell_magic
    def patch(self, line: str, cell: str) -> Any:
        """%%patch [--module M] [--try CALL] [--dry-run]: the cell's def and class statements
        replace the target's functions (client/patch_magic.py)."""
        from .patch_magic import PatchUsageError, run_patch_cell

        try:
            return run_patch_cell(current_session(), line, cell)
        except PatchUsageError as exc:
            raise UsageError(str(exc)) from None


def _attach_waiting(attach: Any, target: Any, wait: Optional[float]) -> Any:
    """attach(target); with ``wait``, keep trying while the process is starting up."""
    deadline = time.monotonic() + (wait or 0.0)
    while True:
        try:
            return attach(target)
        except NoSession:
            starting = target is None or not isinstance(target, int) or keys.process_alive(target)
            if wait is None or time.monotonic() >= deadline or not starting:
                raise
        time.sleep(0.05)  # a connection file appearing has no notification to wait on


def _split(cell: str) -> Any:
    try:
        return split_last_expression(cell)
    except SyntaxError as exc:
        raise UsageError(f"the cell does not parse: {exc}") from None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext client``: register the magics."""
    ipython.register_magics(BridgeMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext client``: detach the current session (the magics stay registered)."""
    previous = set_current_session(None)
    if previous is not None:
        previous.close()


__all__ = ["BridgeMagics", "load_ipython_extension", "unload_ipython_extension", "RemoteError"]
