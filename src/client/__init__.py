"""framebridge's notebook side: attach to a paused process and work on its frame.

    from client import attach, sessions, jump_context
    s = attach()
    s.stack(); s.eval("rows.shape")
    with jump_context(s):
        rows = rows[rows.amount > 0]
    s.cont()
"""

from __future__ import annotations

from .discovery import SessionInfo, attach, sessions
from .errors import (
    AuthenticationError,
    BridgeError,
    NoSession,
    NotPaused,
    RemoteError,
    RequestTimeout,
    SessionLost,
    WriteBackConflict,
)
from .session import PauseInfo, Session

__all__ = [
    "attach",
    "sessions",
    "Session",
    "SessionInfo",
    "PauseInfo",
    "BridgeError",
    "NoSession",
    "NotPaused",
    "SessionLost",
    "AuthenticationError",
    "WriteBackConflict",
    "RemoteError",
    "RequestTimeout",
]
