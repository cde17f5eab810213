"""The errors of the checkpoints package (a module of their own: every other module raises them)."""

from __future__ import annotations

from typing import List


class CheckpointError(RuntimeError):
    """A checkpoint could not be taken, rewound to or dropped; nothing in the job changed."""


class Unsupported(CheckpointError):
    """This platform or interpreter cannot keep checkpoints (no fork, no /proc, no prctl)."""


class ThreadsRunning(CheckpointError):
    """Other Python threads run: a fork copies only the calling thread, so they would vanish."""

    def __init__(self, threads: List[str]) -> None:
        self.threads = list(threads)
        names = ", ".join(self.threads)
        super().__init__(
            f"cannot checkpoint: other Python threads are running ({names}); fork() copies only the "
            "calling thread, so they would not exist after the checkpoint or after a rewind. Stop them "
            "first, or pass force=True to checkpoint without them"
        )
