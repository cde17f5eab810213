"""The notebook's *current* session: the one ``%attach`` made, used by default elsewhere.

``%where``, ``%%remote``, ``%%jump``, ``%%playground``, ``jump_context()`` and the
DebugPanel all act on it when no session is given.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .errors import NoSession

_lock = threading.Lock()
_current: Optional[Any] = None


def current_session() -> Any:
    """The current Session; NoSession (with a hint) if there is none or it was closed."""
    with _lock:
        session = _current
    if session is None or getattr(session, "closed", False):
        raise NoSession("no current session: run `%attach [pid]` (or client.set_current_session(client.attach()))")
    return session


def set_current_session(session: Optional[Any]) -> Optional[Any]:
    """Make ``session`` the current one (None clears it); returns the previous one."""
    global _current
    with _lock:
        previous, _current = _current, session
    return previous


def has_current_session() -> bool:
    """Whether a usable current session exists."""
    with _lock:
        return _current is not None and not getattr(_current, "closed", False)
