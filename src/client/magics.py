"""IPython magics: ``%load_ext client`` gives %attach, %where, %%remote, %%jump, %%playground, %%patch.

    %attach 4242            # or %attach: the one paused process; becomes the current session
    %attach --all [--tree PID] [--wait SECONDS [-n N]]   # a group (client.attach_all): the current group
    %%remote --all          # the cell runs in every paused member of the current group
    %where                  # the paused stack (selected frame marked)
    %%remote                # the cell runs inside the paused frame; its last expression is shown
    %%jump [--discard]      # the cell runs with the frame mounted; written back unless --discard
    %%playground [--timeout 30]   # the cell runs in a fork() of the target; nothing survives
    %detach [--all]         # close the current session (or group); the targets stay as they are
    %%patch [--try CALL]    # the cell's def/class statements patch the target (client/patch_magic.py)
    %checkpoint, %checkpoints, %rewind [ID], %drop ID   # snapshots of the job (client/checkpoint_magics.py)
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

from .current import current_group, current_session, set_current_group, set_current_session
from .errors import NoSession, NotPaused, RemoteError


@magics_class
class BridgeMagics(Magics):
    """The framebridge magics. Each acts on the current session (see client.current)."""

    @magic_arguments()
    @argument("pid", nargs="?", default=None,
              help="process id, or a connection file path; default: the one paused process")
    @argument("--wait", type=float, default=None, metavar="SECONDS",
              help="wait up to SECONDS for the process to become attachable and to pause")
    @argument("--all", action="store_true", dest="all",
              help="attach to every attachable process (or --tree PID) as a group: the current group")
    @argument("--tree", type=int, default=None, metavar="PID", help="with --all: PID and its descendants")
    @argument("-n", type=int, default=None, metavar="N",
              help="with --all --wait: wait until N members are paused (default: all)")
    @line_magic
    def attach(self, line: str) -> Any:
        """Attach to a target and make it the current session (``--all``: a group)."""
        from .discovery import attach

        args = parse_argstring(self.attach, line)
        if args.all:
            return _attach_group(args)
        if args.tree is not None or args.n is not None:
            raise UsageError("--tree and -n go with --all")
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
        """Close the current session (``--all``: the current group); the targets keep
        running or stay paused."""
        if line.strip() == "--all":
            group = set_current_group(None)
            if group is None:
                raise UsageError("no current group")
            count = len(group)
            group.close()
            print(f"detached from the group's {count} member{'' if count == 1 else 's'}")
            return
        previous = set_current_session(None)
        if previous is None:
            raise UsageError("no current session")
        previous.close()
        print(f"detached from pid {previous.pid}")

    @line_magic
    def where(self, line: str) -> Any:
        """The selected paused thread's stack, innermost first."""
        return current_session().stack()

    @magic_arguments()
    @argument("--all", action="store_true", dest="all",
              help="run the cell in every paused member of the current group (%%attach --all)")
    @argument("--timeout", type=float, default=None, metavar="SECONDS",
              help="with --all: how long each member may take (default: the group's)")
    @cell_magic
    def remote(self, line: str, cell: str) -> Any:
        """Run the cell inside the paused frame; show its output and the last expression's value."""
        args = parse_argstring(self.remote, line)
        if args.all:
            return _remote_all(cell, args.timeout)
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


def _attach_group(args: Any) -> Any:
    """%attach --all: a group of every attachable process (or a tree), the current group."""
    from .discovery import attach_all

    if args.pid is not None:
        raise UsageError("%attach --all takes no pid (use --tree PID for a process and its children)")
    previous = set_current_group(None)
    if previous is not None:
        previous.close()
    group = attach_all(tree=args.tree)
    set_current_group(group)
    if args.wait is not None:
        group.wait(args.n, timeout=args.wait)
    return group


def _remote_all(cell: str, timeout: Optional[float]) -> Any:
    """%%remote --all: the cell in every paused member; each member's output under its
    name, then the last expression's values as one table."""
    group = current_group()
    body, last = _split(cell)
    if not group.paused():
        raise NotPaused(f"no member of the current group is paused ({len(group)} members)")
    shown = group.exec(body, timeout=timeout) if body is not None else None
    values = group.eval(last, timeout=timeout) if last is not None else None
    names: list = []
    for part in (shown, values):
        names += [name for name in (part or ()) if name not in names]
    for name in names:
        printed = (shown.values().get(name, "") if shown is not None else "") + \
            (values.output.get(name, "") if values is not None else "")
        errors = [part.errors[name] for part in (shown, values) if part is not None and name in part.errors]
        if printed or errors:
            sys.stdout.write(f"--- {name} ---\n{printed}")
            for error in errors[:1]:  # the exec's error: the expression after it did not run
                sys.stdout.write(f"! {type(error).__name__}: {error}\n")
    skipped = (values or shown).skipped  # type: ignore[union-attr]
    if skipped:
        print(f"({len(skipped)} members not paused: the cell did not run there)")
    return values


def _split(cell: str) -> Any:
    try:
        return split_last_expression(cell)
    except SyntaxError as exc:
        raise UsageError(f"the cell does not parse: {exc}") from None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext client``: register the magics."""
    from .checkpoint_magics import CheckpointMagics

    ipython.register_magics(BridgeMagics)
    ipython.register_magics(CheckpointMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext client``: detach the current session and group (the magics stay registered)."""
    previous = set_current_session(None)
    if previous is not None:
        previous.close()
    group = set_current_group(None)
    if group is not None:
        group.close()


__all__ = ["BridgeMagics", "load_ipython_extension", "unload_ipython_extension", "RemoteError"]
