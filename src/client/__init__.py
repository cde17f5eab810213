"""framebridge's notebook side: attach to a paused process and work on its frame.

    from client import attach, sessions, jump_context
    s = attach()
    s.stack(); s.eval("rows.shape")
    with jump_context(s):
        rows = rows[rows.amount > 0]
    s.cont()
"""

from __future__ import annotations

from typing import Any

from .control import Breakpoint
from .current import current_session, set_current_session
from .discovery import SessionInfo, attach, sessions
from .errors import (
    AuthenticationError,
    BadRequest,
    BreakpointError,
    BridgeError,
    FrameWriteError,
    MountError,
    MountStateError,
    NoSession,
    NoSuchFrame,
    JumpError,
    NotPaused,
    PatchError,
    PausePending,
    PauseTimeout,
    PlaygroundError,
    PlaygroundTimeout,
    ProtocolError,
    RemoteAttachError,
    RemoteError,
    RequestTimeout,
    SessionLost,
    StaleReference,
    TransferError,
    UnknownOp,
    Unmountable,
    Unpicklable,
    Unsupported,
    ValueDumpError,
    ValueLoadError,
    WriteBackConflict,
    WriteBackTooLarge,
    WriteBackUnpicklable,
)
from .inject import inject
from .mount import Mount, jump_context
from .proxy import LiveRef, is_live
from .session import Session
from .values import FrameInfo, FrameRef, PauseInfo

def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext client``: %attach, %where, %%remote, %%jump, %%playground (imports IPython lazily)."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext client``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "attach",
    "inject",
    "sessions",
    "jump_context",
    "Mount",
    "LiveRef",
    "is_live",
    "Session",
    "SessionInfo",
    "PauseInfo",
    "FrameInfo",
    "FrameRef",
    "Breakpoint",
    "current_session",
    "set_current_session",
    # errors (client/errors.py; docs/errors.md maps the target's error kinds to them)
    "BridgeError",
    "NoSession",
    "NotPaused",
    "NoSuchFrame",
    "SessionLost",
    "AuthenticationError",
    "RequestTimeout",
    "PauseTimeout",
    "RemoteAttachError",
    "WriteBackConflict",
    "RemoteError",
    "BadRequest",
    "ProtocolError",
    "Unsupported",
    "UnknownOp",
    "FrameWriteError",
    "StaleReference",
    "Unpicklable",
    "TransferError",
    "BreakpointError",
    "PlaygroundError",
    "PlaygroundTimeout",
    "PatchError",
    "JumpError",
    "ValueLoadError",
    "ValueDumpError",
    "MountError",
    "MountStateError",
    "WriteBackTooLarge",
    "WriteBackUnpicklable",
    "Unmountable",
    "PausePending",
]


def __getattr__(name: str) -> Any:
    # DebugPanel needs ipywidgets; import it on first use so `import client` does not.
    # (Not in __all__ for the same reason: `from client import *` must not need ipywidgets.)
    if name == "DebugPanel":
        from .panel import DebugPanel

        return DebugPanel
    raise AttributeError(f"module 'client' has no attribute {name!r}")
