"""A session's events: what the target reports, applied to its pause state and handed on.

The session's :class:`~client.link.Link` reads the target's events on the I/O loop
thread (client/io_loop.py) and gives each to the session's :class:`EventFeed`, which
keeps :class:`PauseState` current and calls the session's subscribers (the DebugPanel,
a group). Subscribers run on the loop thread, which serves every session of the
process: a callback must be quick (hand slow work to another thread).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Dict, Iterable, List

from .pause_state import PauseState

#: ``callback(event, body)``: ``paused``, ``resumed``, ``lane``, ``lost`` (``{"error": text}``), or
#: ``moved`` (``{"job", "pid", "generation"}``: the session follows its job to another process).
EventCallback = Callable[[str, Dict[str, Any]], None]


class EventFeed:
    """One target's events, applied to a PauseState and passed to callbacks."""

    def __init__(self, state: PauseState, pid: int) -> None:
        self.pid = pid
        self.state = state
        self._callbacks: List[EventCallback] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` for every event from now on; returns an unsubscribe function."""
        with self._lock:
            self._callbacks = self._callbacks + [callback]

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = [c for c in self._callbacks if c is not callback]

        return unsubscribe

    def deliver(self, event: str, body: Dict[str, Any]) -> None:
        """One event from the target."""
        self.state.apply(event, body)
        self._notify(event, body)

    def reset(self, paused: Iterable[Dict[str, Any]]) -> None:
        """A subscription's reply: the pauses now."""
        self.state.reset(paused)

    def lost(self, failure: BaseException) -> None:
        """The connection is gone for good: waits raise ``failure``, subscribers hear ``lost``."""
        self.state.lost(failure)
        self._notify("lost", {"error": str(failure)})

    def announce(self, event: str, body: Dict[str, Any]) -> None:
        """Tell the subscribers what the pause state already knows (after the session
        moved to another process: ``moved``, then the pauses it found there)."""
        self._notify(event, body)

    def _notify(self, event: str, body: Dict[str, Any]) -> None:
        for callback in self._callbacks:  # a copy-on-write list: no lock to hold while calling
            try:
                callback(event, body)
            except Exception as exc:  # a broken callback must not stop the feed
                print(f"framebridge: event callback failed: {exc!r}", file=sys.stderr)
