"""Descriptions of the process's threads for the ``threads`` op: paused or running, and where."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List

from . import frames as frame_access
from .own_code import user_frames

_THREADING_FILE = os.path.abspath(threading.__file__)


def describe_threads(server: Any) -> List[Dict[str, Any]]:
    """Every thread of the process but framebridge's own: id, name, paused or running, where.

    ``server`` is the process's :class:`~bridge.server.Server` (its pauses and its threads).
    """
    paused = {p.thread_id: p for p in server.paused_threads()}
    current = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        ident = thread.ident
        # framebridge's own threads are all named "bridge-*"; the ZAP authenticator's is not.
        if ident is None or thread.name.startswith("bridge-") or thread is getattr(server.auth, "thread", None):
            continue
        entry: Dict[str, Any] = {"thread": ident, "name": thread.name, "daemon": thread.daemon,
                                 "main": thread is threading.main_thread()}
        if ident in paused:
            entry.update(state="paused", **{k: v for k, v in paused[ident].describe().items() if k != "thread"})
        else:
            frames = user_frames(current.get(ident))
            entry["state"] = "running"
            # Say where the user's code is: a waiting thread's innermost frames are
            # threading.py's (Condition.wait), which tells the user nothing.
            outside = [f for f in frames if os.path.abspath(f.f_code.co_filename) != _THREADING_FILE]
            if outside or frames:
                entry.update(frame_access.frame_label((outside or frames)[0]))
        out.append(entry)
    return out
