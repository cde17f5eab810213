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
from .current import current_group, current_session, set_current_group, set_current_session
from .discovery import ProcessScan, SessionInfo, attach, attach_all, sessions
from .errors import (
    AuthenticationError,
    BadRequest,
    BreakpointError,
    BridgeError,
    CheckpointError,
    FrameWriteError,
    MountError,
    MountStateError,
    NoSession,
    NoSuchFrame,
    NotDeleted,
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
    ReplyLost,
    RequestTimeout,
    ResourceLimit,
    SessionLost,
    StaleReference,
    ThreadsRunning,
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
from .group import Group, GroupResult, MemberState
from .cluster_attach import attach_dask, attach_ray, ray_runtime_env
from .hub import Hub, HubGroup, TargetEnv
from .inject import inject
from .mount import Mount, jump_context, last_mount
from .proxy import LiveRef, is_live
from .session import Session
from .checkpoint_values import CannotRewind, Checkpoint, CheckpointList
from .stacks import StackClass, StackReport
from .values import FrameInfo, FrameRef, PauseInfo

def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext client``: %attach (``--all`` for a group), %where, %%remote (``--all``),
    %%jump, %%playground (imports IPython lazily)."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext client``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "attach",
    "attach_all",
    "Group",
    "GroupResult",
    "MemberState",
    "Hub",
    "HubGroup",
    "attach_dask",
    "attach_ray",
    "ray_runtime_env",
    "TargetEnv",
    "StackReport",
    "StackClass",
    "ProcessScan",
    "current_group",
    "set_current_group",
    "inject",
    "sessions",
    "jump_context",
    "Mount",
    "last_mount",
    "LiveRef",
    "is_live",
    "Session",
    "SessionInfo",
    "PauseInfo",
    "FrameInfo",
    "FrameRef",
    "Breakpoint",
    "Checkpoint",
    "CheckpointList",
    "CannotRewind",
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
    "ReplyLost",
    "ResourceLimit",
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
    "CheckpointError",
    "ThreadsRunning",
    "ValueLoadError",
    "ValueDumpError",
    "MountError",
    "MountStateError",
    "WriteBackTooLarge",
    "WriteBackUnpicklable",
    "Unmountable",
    "PausePending",
    "NotDeleted",
]


def __getattr__(name: str) -> Any:
    # DebugPanel needs ipywidgets; import it on first use so `import client` does not.
    # (Not in __all__ for the same reason: `from client import *` must not need ipywidgets.)
    if name == "DebugPanel":
        from .panel import DebugPanel

        return DebugPanel
    raise AttributeError(f"module 'client' has no attribute {name!r}")
