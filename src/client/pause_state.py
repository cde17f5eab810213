"""What a session knows of its target's pauses, and which frame the user selected.

The session's event feed (client/events.py) keeps it current from the target's events; the
session's own resumes retire pauses at once, without waiting for their ``resumed``
event. Every change notifies :attr:`PauseState.changed`, so a waiting thread wakes.

A *retired* pause id never comes back: a late ``paused`` event of a pause that this
session already resumed is ignored.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, TypeVar

from .errors import NotPaused
from .values import FrameRef, PauseInfo

T = TypeVar("T")


class PauseState:
    """The paused threads of one target (by thread id), the retired pause ids, and the
    selection: the thread and frame that frame requests use by default."""

    def __init__(self) -> None:
        #: Notified on every change; hold it to read several things consistently.
        self.changed = threading.Condition()
        #: Why the session's events stopped for good (the target is gone, our key was
        #: revoked): waits raise it.
        self.failure: Optional[BaseException] = None
        self._by_thread: Dict[int, PauseInfo] = {}
        self._retired: Set[int] = set()
        self._thread: Optional[int] = None  # the selected thread
        self._frame = 0  # the selected frame index, valid for pause _frame_pause_id
        self._frame_pause_id = 0

    # --- reading ---------------------------------------------------------------------------

    def all(self) -> List[PauseInfo]:
        """Every paused thread, oldest pause first."""
        with self.changed:
            return sorted(self._by_thread.values(), key=lambda p: p.pause_id)

    def any(self) -> bool:
        """Whether any thread is paused."""
        return bool(self._by_thread)

    def get(self, thread: int) -> Optional[PauseInfo]:
        """The pause of ``thread``, or None if it is not paused (one dict read: no lock)."""
        return self._by_thread.get(thread)

    def is_retired(self, pause_id: int) -> bool:
        """Whether pause ``pause_id`` has ended (as far as this session knows)."""
        return pause_id in self._retired

    @property
    def retired_count(self) -> int:
        """How many pauses have ended: a cheap way to notice that one did."""
        return len(self._retired)

    def current(self, thread: Optional[int] = None) -> Optional[PauseInfo]:
        """The pause of ``thread`` (NotPaused if it is not paused), else the selected
        thread's, else the oldest (which then becomes the selected thread); None if no
        thread is paused."""
        if thread is None and self._thread is not None:
            # The common case, without the lock: single dict reads are atomic.
            selected = self._by_thread.get(self._thread)
            if selected is not None:
                return selected
        with self.changed:
            if thread is not None:
                if thread not in self._by_thread:
                    raise NotPaused(f"thread {thread} is not paused")
                return self._by_thread[thread]
            selected = self.selected_pause()
            if selected is not None:
                return selected
            pauses = self.all()
            if not pauses:
                return None
            self._thread = pauses[0].thread
            return pauses[0]

    def selected_pause(self) -> Optional[PauseInfo]:
        """The selected thread's pause; None if it is not paused (or none was selected)."""
        thread = self._thread
        return None if thread is None else self._by_thread.get(thread)

    def selected_frame(self, pause: Optional[PauseInfo]) -> int:
        """The selected frame index in ``pause``: the one selected, if it was selected in
        this very pause; else 0 (a new pause starts at its innermost frame)."""
        if pause is None or pause.pause_id == self._frame_pause_id:
            return self._frame
        return 0

    def selection(self) -> Optional[FrameRef]:
        """The selected frame of the selected thread's pause; None if nothing is paused."""
        pause = self.current()
        return None if pause is None else FrameRef(pause.thread, self.selected_frame(pause), pause.pause_id)

    def wait_for(self, found: Callable[[], Optional[T]], deadline: float, poll: float = 0.25) -> Optional[T]:
        """``found()`` (called under the lock) once it returns something; None once
        ``deadline`` (time.monotonic) has passed. Raises the listener's failure."""
        with self.changed:
            while True:
                value = found()
                if value is not None:
                    return value
                if self.failure is not None:
                    raise self.failure
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(min(left, poll))

    # --- changing --------------------------------------------------------------------------

    def select(self, thread: int, frame: int, pause_id: int) -> None:
        """Make ``frame`` of ``thread`` (in pause ``pause_id``) the selected frame."""
        with self.changed:
            self._thread = thread
            self._frame = frame
            self._frame_pause_id = pause_id

    def retire(self, thread: int, pause_id: int, *, reset_frame: bool = False) -> None:
        """Pause ``pause_id`` of ``thread`` has ended (and every older one of it)."""
        with self.changed:
            self._retire(thread, pause_id)
            if reset_frame:
                self._frame = 0
            self.changed.notify_all()

    def apply(self, event: str, body: Dict[str, Any]) -> None:
        """Take in one event from the target (``paused``, ``resumed``, ``lane``)."""
        with self.changed:
            if event == "paused":
                info = PauseInfo.from_event(body)
                if info.pause_id not in self._retired:
                    self._by_thread[info.thread] = info
            elif event == "resumed":
                self._retire(int(body.get("thread", 0)), int(body.get("pause_id", 0)))
            elif event == "lane":  # the pause's own socket is open (client/lanes.py)
                current = self._by_thread.get(int(body.get("thread", 0)))
                if current is not None and current.pause_id == body.get("pause_id"):
                    current.extra.update(lane=body.get("lane"), lane_key=body.get("lane_key"))
            self.changed.notify_all()

    def reset(self, paused: Iterable[Dict[str, Any]]) -> None:
        """Replace every pause with those a subscription's reply lists."""
        with self.changed:
            self._by_thread = {}
            for body in paused:
                info = PauseInfo.from_event(body)
                if info.pause_id not in self._retired:
                    self._by_thread[info.thread] = info
            self.changed.notify_all()

    def restart(self) -> None:
        """The session serves another process of the same job (a checkpoint's, a
        rewind's): its pause ids start over and none of its pauses is known yet. The
        selected thread stays (a forked process keeps the forking thread's id)."""
        with self.changed:
            self._by_thread = {}
            self._retired = set()
            self._frame_pause_id = -1
            self.failure = None
            self.changed.notify_all()

    def lost(self, failure: BaseException) -> None:
        """The events stopped for good: wake every wait with ``failure``."""
        with self.changed:
            self.failure = failure
            self.changed.notify_all()

    def _retire(self, thread: int, pause_id: int) -> None:
        self._retired.add(pause_id)
        current = self._by_thread.get(thread)
        if current is not None and current.pause_id <= pause_id:
            del self._by_thread[thread]
