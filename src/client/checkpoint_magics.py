"""IPython magics for checkpoints (registered by ``%load_ext client`` with the others):

    %checkpoint [--force]   # keep a snapshot of the paused process here (the current session)
    %checkpoints            # the job's checkpoints: id, where, when, memory, what cannot be rewound
    %rewind [ID]            # take the job back to checkpoint ID (default: the newest), paused there
    %drop ID                # free checkpoint ID

Each acts on the current session (client.current), which follows the job to its new
process; docs/howto-rewind.md walks through them.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .current import current_session


@magics_class
class CheckpointMagics(Magics):
    """%checkpoint, %checkpoints, %rewind, %drop: on the current session."""

    @magic_arguments()
    @argument("--force", action="store_true",
              help="checkpoint although other Python threads run (they do not exist after it)")
    @line_magic
    def checkpoint(self, line: str) -> Any:
        """Keep a copy-on-write snapshot of the paused process; say what it cannot rewind."""
        args = parse_argstring(self.checkpoint, line)
        cp = current_session().checkpoint(force=args.force)
        print(f"checkpoint #{cp.id} at {cp.where}")
        if cp.cannot_rewind:
            print(f"a rewind to it will not undo:\n{cp.cannot_rewind}")
        return None

    @line_magic
    def checkpoints(self, line: str) -> Any:
        """The job's checkpoints on this timeline, outermost first."""
        return current_session().checkpoints()

    @magic_arguments()
    @argument("id", nargs="?", type=int, default=None, help="the checkpoint (default: the newest)")
    @line_magic
    def rewind(self, line: str) -> Any:
        """Take the job back to a checkpoint: paused there, every variable as it was."""
        args = parse_argstring(self.rewind, line)
        session = current_session()
        cp_id = args.id
        if cp_id is None:
            kept = [cp for cp in session.checkpoints() if cp.state == "kept"]
            if not kept:
                raise UsageError("no checkpoint to rewind to: take one with %checkpoint")
            cp_id = kept[-1].id
        cp = session.rewind(cp_id)
        print(f"rewound to checkpoint #{cp.id} at {cp.where} (rewind {cp.rewinds} to it); pid {session.pid}")
        if cp.cannot_rewind:
            print(f"not undone:\n{cp.cannot_rewind}")
        return None

    @magic_arguments()
    @argument("id", type=int, help="the checkpoint to free")
    @line_magic
    def drop(self, line: str) -> None:
        """Free a checkpoint's snapshot (it can no longer be rewound to)."""
        args = parse_argstring(self.drop, line)
        current_session().drop(args.id)
        print(f"dropped checkpoint #{args.id}")


__all__ = ["CheckpointMagics"]
