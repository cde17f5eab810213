"""``%%patch``: the cell's ``def`` and ``class`` statements patch the current session's target.

    %%patch                       # each def replaces the function of that name in the
    def transform(row):           # selected frame's module; a class statement patches
        return row * 2            # the methods it defines

    %%patch --module app.model    # in another module of the target
    %%patch --try transform(3)    # first in a fork() of the target (%%playground): show
                                  # what the call returns there, then patch the live one
    %%patch --dry-run --try transform(3)   # only the trial: nothing changes

``--try`` runs the patched call in a throw-away copy of the paused process; if the
patch is refused or the call raises there, the live process is not patched. Everything
after ``--try`` on the line is the call. ``--timeout S`` limits the trial (default 30).
"""

from __future__ import annotations

import ast
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Optional

from .code_methods import trial_code
from .errors import PatchError

__all__ = ["PatchOptions", "PatchUsageError", "parse_options", "run_patch_cell"]


class PatchUsageError(ValueError):
    """A ``%%patch`` line or cell that cannot be used (the magic shows it as a UsageError)."""


@dataclass
class PatchOptions:
    """The options of one ``%%patch`` line."""

    module: Optional[str] = None
    call: Optional[str] = None
    dry_run: bool = False
    timeout: float = 30.0


def parse_options(line: str) -> PatchOptions:
    """Parse ``--module M``, ``--dry-run``, ``--timeout S`` and ``--try CALL...`` (last: the
    rest of the line is the call). PatchUsageError for anything else."""
    head, sep, call = line.partition("--try")
    options = PatchOptions(call=call.strip() or None if sep else None)
    if sep and not options.call:
        raise PatchUsageError("--try needs a call to run, e.g. --try transform(3)")
    words = shlex.split(head)
    while words:
        word = words.pop(0)
        if word == "--dry-run":
            options.dry_run = True
        elif word in ("--module", "--timeout") and words:
            value = words.pop(0)
            if word == "--module":
                options.module = value
            else:
                try:
                    options.timeout = float(value)
                except ValueError:
                    raise PatchUsageError(f"--timeout takes seconds, not {value!r}") from None
        else:
            raise PatchUsageError(f"unknown %%patch option {word!r} "
                                  "(use --module M, --try CALL, --dry-run, --timeout S)")
    if options.dry_run and not options.call:
        raise PatchUsageError("--dry-run only makes sense with --try CALL")
    return options


def run_patch_cell(session: Any, line: str, cell: str) -> Any:
    """Run ``%%patch`` for ``session``: the trial first if asked, then the patch.

    Returns the PatchResult (or, with ``--dry-run``, the value the trial call returned).
    Raises PatchUsageError for a bad option line or a cell that does not parse, PatchError
    when the patch is refused (in the copy or in the target), the trial's RemoteError
    when the call raised there.
    """
    options = parse_options(line)
    try:
        ast.parse(cell)
    except SyntaxError as exc:
        raise PatchUsageError(f"the cell does not parse: {exc}") from None
    name = f"{options.module}:" if options.module else None
    if options.call:
        from .playground import run_playground

        trial = run_playground(session, trial_code(cell, name, options.call), timeout=options.timeout)
        if trial.output:
            sys.stdout.write(trial.output)
        if trial.error and trial.error.get("type") == "PatchRefused":
            raise PatchError("PatchError", trial.error.get("message", "").split(": ", 1)[-1] +
                             " (refused in the trial copy; nothing was patched)")
        if trial.error:
            print(f"{options.call} raised in the trial copy (pid {trial.pid}): nothing was patched", file=sys.stderr)
            trial.check()
        shown = trial.value_repr if trial.has_value else "None"
        print(f"trial in a copy of the process (pid {trial.pid}, discarded): {options.call} -> {shown}")
        if options.dry_run:
            return trial.value if trial.has_value else None
    return session.patch(name, cell)
