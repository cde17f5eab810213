"""Errors the notebook side raises. All derive from :class:`BridgeError`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class BridgeError(Exception):
    """Base class of every framebridge client error."""


class NoSession(BridgeError):
    """No attachable process matches (none running, or several and none was named)."""


class NotPaused(BridgeError):
    """The operation needs a paused thread, and there is none (or it resumed meanwhile)."""


class SessionLost(BridgeError):
    """The target process died or stopped answering."""


class AuthenticationError(BridgeError):
    """The CURVE handshake failed: our key is not authorized, or the server's key is wrong."""


class RequestTimeout(BridgeError, TimeoutError):
    """A request got no reply within its timeout (the target is alive but busy)."""


class WriteBackConflict(BridgeError):
    """The frame's variables changed in the target since the mount; nothing was written."""

    def __init__(self, message: str, names: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.names = list(names or [])

    def _repr_html_(self) -> str:
        from .display import conflict_html

        return conflict_html(self)


class RemoteError(BridgeError):
    """Code run in the target raised. ``remote_type`` and ``remote_traceback`` say what and where."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}" if not message.startswith(remote_type) else message)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += "\n\nTraceback in the target process:\n" + self.remote_traceback.rstrip()
        return text


def error_from_reply(error: Dict[str, Any]) -> BridgeError:
    """Turn a reply's ``error`` object into the matching client exception."""
    kind = str(error.get("type", "Error"))
    message = str(error.get("message", ""))
    tb = str(error.get("traceback", ""))
    if kind == "NotPaused":
        return NotPaused(message)
    if kind == "WriteBackConflict":
        return WriteBackConflict(message, error.get("names"))
    return RemoteError(kind, message, tb)
