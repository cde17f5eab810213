"""What a forked child forgets of its parent's debugger.

A child made by ``os.fork()`` (multiprocessing's fork start method, a pre-fork server, a
daemon that double-forks) inherits the parent's memory: the server object with its ZeroMQ
context and sockets, the ZAP authenticator, the live-reference table, the bulk path's
outbox and data port... but none of the threads that serve them, and the sockets' file
descriptors are the parent's. Touching any of it from the child would hang it (stopping
the inherited ZAP authenticator waits for a thread that does not exist) or take the
parent's traffic. So right after the fork the child forgets all of it, in one hook
(:func:`forget_parent_state`, registered once with ``os.register_at_fork``): the child then
has no server until it needs one (a ``set_trace()`` in the child starts its own).

A module that keeps per-process state adds its forgetting to :func:`forget_parent_state`.
The hook never imports anything (an import in a child forked while another thread held
the import lock would hang): it only resets modules that are already loaded.
"""

from __future__ import annotations

import os
import sys
from typing import Any, List

#: Objects the parent held for its clients, kept alive (never finalized) in the child:
#: letting them go would run the user's finalizers in the middle of a fork.
_inherited: List[Any] = []


def forget_parent_state() -> None:
    """Forget the parent's server and everything tied to its clients (in a forked child)."""
    server = sys.modules.get("bridge.server")
    if server is not None:
        server.forget_inherited()
    refs = sys.modules.get("bridge.refs")
    if refs is not None:  # the handles belong to the parent's clients
        _inherited.append(refs.TABLE.forget_inherited())
    guarded = sys.modules.get("bridge.guarded")
    if guarded is not None:  # its helper threads are the parent's
        guarded.forget_inherited()
    pause = sys.modules.get("bridge.pause")
    if pause is not None:  # lanes that stepping threads kept are the parent's sockets
        _inherited.append(pause.forget_inherited())
    capture = sys.modules.get("bridge.capture")
    if capture is not None:  # captures of the parent's requests, and their lock
        capture.forget_inherited()
    stack_room = sys.modules.get("bridge.stack_room")
    if stack_room is not None:  # the pauses that opened rooms are the parent's
        stack_room.forget_inherited()
    # bulk.py's outbox and data server check the pid themselves: the child makes its own.


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=forget_parent_state)
