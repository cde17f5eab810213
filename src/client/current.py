"""The notebook's *current* session and group: the ones ``%attach`` (``--all``) made, used by default elsewhere.

``%where``, ``%%remote``, ``%%jump``, ``%%playground``, ``jump_context()`` and the
DebugPanel all act on the current session when no session is given; ``%%remote --all``
acts on the current group.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .errors import NoSession


class _Current:
    """One "current" thing (a session, a group): set, read, or missing with a hint."""

    def __init__(self, missing: str) -> None:
        self.missing = missing
        self._lock = threading.Lock()
        self._value: Optional[Any] = None

    def get(self) -> Any:
        with self._lock:
            value = self._value
        if value is None or getattr(value, "closed", False):
            raise NoSession(self.missing)
        return value

    def set(self, value: Optional[Any]) -> Optional[Any]:
        with self._lock:
            previous, self._value = self._value, value
        return previous

    def usable(self) -> bool:
        with self._lock:
            return self._value is not None and not getattr(self._value, "closed", False)


_session = _Current("no current session: run `%attach [pid]` (or client.set_current_session(client.attach()))")
_group = _Current("no current group: run `%attach --all` (or client.set_current_group(client.attach_all()))")


def current_session() -> Any:
    """The current Session; NoSession (with a hint) if there is none or it was closed."""
    return _session.get()


def set_current_session(session: Optional[Any]) -> Optional[Any]:
    """Make ``session`` the current one (None clears it); returns the previous one."""
    return _session.set(session)


def has_current_session() -> bool:
    """Whether a usable current session exists."""
    return _session.usable()


def current_group() -> Any:
    """The group ``%attach --all`` made; NoSession (with a hint) if there is none or it was closed."""
    return _group.get()


def set_current_group(group: Optional[Any]) -> Optional[Any]:
    """Make ``group`` the current one (None clears it); returns the previous one."""
    return _group.set(group)
