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

Children of a process that made them attachable (``listen(children=True)``,
bridge/children.py) are the one extension: after the forgetting, such a child starts a
server of its own, unless framebridge itself forked (the playground forks from a paused
thread; those children must stay invisible). Starting a server waits for threads that
log, and the logging module's lock is still held in the child until logging's own
after-fork hook has run; hooks run in the order they were registered, and this module's
is registered when ``bridge`` is imported, usually before logging is. So the restart is
the mechanism's second step, :func:`_restart_in_child`, which :func:`keep_children_attachable`
registers once, when a process first makes its children attachable: after everything a
server start uses (ZeroMQ, logging, asyncio) is imported, so that their hooks run first.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, List

#: Objects the parent held for its clients, kept alive (never finalized) in the child:
#: letting them go would run the user's finalizers in the middle of a fork.
_inherited: List[Any] = []
#: Whether the last fork was made by a thread of framebridge's (the server thread or a
#: paused thread): read by the restart step in the child.
_forked_by_framebridge = False
_restart_registered = False
_restart_lock = threading.Lock()


def forget_parent_state() -> None:
    """Forget the parent's server and everything tied to its clients (in a forked child)."""
    global _forked_by_framebridge
    server = sys.modules.get("bridge.server")
    # Asked of the inherited server before it is forgotten: the forking thread keeps its
    # ident in the child (only that thread is copied).
    _forked_by_framebridge = server is not None and server.serves_thread(threading.get_ident())
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
    outcomes = sys.modules.get("bridge.outcomes")
    if outcomes is not None:  # the replies kept for the parent's clients
        _inherited.append(outcomes.forget_inherited())
    # The bulk package's outbox and data server check the pid themselves (the child makes
    # its own); only the locks that guard them may have been held by a parent's thread.
    for name in ("bridge.bulk.outgoing", "bridge.bulk.dataport"):
        module = sys.modules.get(name)
        if module is not None:
            module.forget_inherited()


def keep_children_attachable() -> None:
    """Start a server in every child forked from now on, once the parent's state is
    forgotten (bridge/children.py decides, per child). Call it after importing what a
    server start uses; idempotent."""
    global _restart_registered
    with _restart_lock:
        if _restart_registered or not hasattr(os, "register_at_fork"):
            return
        _restart_registered = True
    os.register_at_fork(after_in_child=_restart_in_child)


def _restart_in_child() -> None:
    children = sys.modules.get("bridge.children")
    if children is not None:
        children.restart_in_child(_forked_by_framebridge)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=forget_parent_state)
