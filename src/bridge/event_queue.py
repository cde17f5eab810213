"""The events the server thread publishes to its subscribers, queued in order.

Any thread queues an event (a pause, a resume, a lane); the server thread publishes the
queue (server.py). An event is due at once, or, for a thread that steps over its lane,
within STEP_EVENT_DELAY_S: its stepping client has had its stop on the lane already
(pause.py), and the server thread, which would otherwise wake twice per step and take
the interpreter lock from the stepping thread, publishes the events of several steps in
one ``events`` message instead (docs/protocol.md, "Events").

The queue also knows until when the server thread sleeps, so that queueing an event
wakes it only when it would look too late.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .protocol import Frames, event_message_of, events_message

#: A stepping thread's events reach the server socket's subscribers at most this late.
STEP_EVENT_DELAY_S = 0.005
#: At most this many events in one ``events`` message.
EVENTS_BATCH_MAX = 64


class EventQueue:
    """Events waiting for the server thread, and when it must look at them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: List[Tuple[Dict[str, Any], Optional[Frames]]] = []
        self._due: Optional[float] = None
        self._sleeps_until = 0.0

    def put(self, header: Dict[str, Any], frames: Optional[Frames] = None, *, defer: bool = False) -> bool:
        """Queue an event (its header, and its frames if it was encoded already), due at
        once or (``defer``) within STEP_EVENT_DELAY_S; whether the server thread must be
        woken for it (it would otherwise look too late)."""
        now = time.monotonic()
        with self._lock:
            self._events.append((header, frames))
            due = now + STEP_EVENT_DELAY_S if defer else now
            if self._due is None or due < self._due:
                self._due = due
            wake = self._sleeps_until > self._due
            if wake:
                self._sleeps_until = self._due  # one wake-up is enough
            return wake

    def sleep_until(self, other: Optional[float]) -> Optional[float]:
        """On the server thread, before it sleeps: when it must look again (the queue's due
        time or ``other``, whichever comes first; None: not before something wakes it)."""
        with self._lock:
            due = self._due if other is None else other if self._due is None else min(other, self._due)
            self._sleeps_until = float("inf") if due is None else due
            return due

    def take(self, force: bool = False) -> List[Frames]:
        """The messages to publish now, in order: none before the first event is due
        (``force``: all the same), one event as it is, several as ``events`` messages."""
        with self._lock:
            if self._due is None or (not force and time.monotonic() < self._due):
                return []
            events, self._events, self._due = self._events, [], None
        if len(events) == 1:
            header, frames = events[0]
            return [frames or event_message_of(header)]
        return [events_message([header for header, _ in events[start:start + EVENTS_BATCH_MAX]])
                for start in range(0, len(events), EVENTS_BATCH_MAX)]
