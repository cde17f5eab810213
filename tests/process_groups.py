"""The processes of a process group, from /proc: what the checkpoint tests check is left.

A target runs in a process group of its own (tests/target_process.py starts a new
session), so every process its job makes -- keepers, live processes, the witness, relays
-- is in the group of the pid the test started.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from waiting import wait_until


def group_members(pgid: int) -> List[Tuple[int, str]]:
    """(pid, state) of every process in process group ``pgid`` (zombies included)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append((int(name), fields[0].decode()))
    return out


def assert_nothing_left(pgid: int, timeout: float = 5) -> None:
    """Once the started process has exited, no process of its group may remain (none
    orphaned, none stopped, no zombie)."""
    wait_until(lambda: not group_members(pgid), timeout=timeout, what=f"process group {pgid} to be empty")


def state_of(pid: int) -> str:
    """The one-letter state of ``pid`` (R, S, T, Z...), "gone" if it is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "gone"
