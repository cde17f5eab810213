"""This process's open descriptors, so that those the debugger opened can be told apart
from the job's (a checkpoint lists only the job's: docs/howto-rewind.md)."""

from __future__ import annotations

import os
from typing import Set


def open_fds() -> Set[int]:
    """This process's open descriptors now (from /proc; empty where there is none)."""
    try:
        listed = {int(name) for name in os.listdir("/proc/self/fd")}
    except OSError:
        return set()
    open_now = set()
    for fd in listed:  # the listing's own descriptor is closed again: not one of ours
        try:
            os.fstat(fd)
            open_now.add(fd)
        except OSError:
            pass
    return open_now
