"""Entry point of a relay: what a keeper becomes when its checkpoint is dropped.

``drop()`` cannot simply end a keeper: it is the parent of the chain below (only a parent
can wait for a child, and the live process's parent-death signal is tied to it), and the
root keeper is the pid the supervisor waits on. So the keeper ``exec``s a fresh
interpreter instead: same pid, same parent and child, the few descriptors that matter
(passed by number), and none of the snapshot's memory. The relay runs the same loop as a
keeper (keeper.Keeper) with rewinding turned off: it still passes signals on (root),
reaps, and ends the way the chain below ends.

Run as ``python -I -S -c <boot> <src dir> <state JSON>`` by keeper.Keeper._become_relay.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Dict

from .keeper import Keeper, keep
from .registry import Registry
from .signals import TOUCHED, Witness


def main(state_json: str) -> None:
    """Become the relay described by ``state_json`` (see Keeper._become_relay)."""
    state: Dict[str, Any] = json.loads(state_json)
    witness = Witness.from_state(state.get("witness"))
    ours = {state["control"], state["registry"]} | set(witness.fds() if witness is not None else [])
    _close_all_but(ours | {0, 1, 2})
    for fd in ours:
        os.set_inheritable(fd, False)
    keeper = Keeper(
        checkpoint_id=state["checkpoint_id"], depth=state["depth"], child=state["child"],
        control=state["control"], registry=Registry(state["registry"]), witness=witness,
        # A fresh interpreter's handlers are the defaults: every signal may be caught or ignored.
        saved={sig: signal.SIG_DFL for sig in TOUCHED}, can_rewind=False, pending=state.get("pending"),
    )
    keep(keeper)


def _close_all_but(keep: "set[int]") -> None:
    """Close descriptors the keeper had open without close-on-exec (the job's inheritable ones)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already closed
