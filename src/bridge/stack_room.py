"""Room below the recursion limit for framebridge's own frames when the job pauses deep.

A pause runs framebridge's code *under* the user's frame: the pause loop, each op, a
pickle, and on first use the imports of ZeroMQ and the op modules (about 80 frames deep
in all, more on 3.11 and older, where C calls count too). A ``set_trace()`` close to the
recursion limit would raise RecursionError into the job, or in the middle of an import,
leaving a half-imported module behind for good. So each pause first opens a
:class:`Room` (:func:`open_room`): the limit is raised by :data:`HEADROOM` frames for as
long as a pause is open, and set back when the last one closes (unless the job changed
it in the meantime). The limit is process-wide: while a deep pause is open, other
threads get that much more room too, a bounded and temporary difference.

On 3.12 and later only Python frames count, so the limit is raised only when the pause
is within :data:`HEADROOM` frames of it. Up to 3.11 C calls count as well and cannot be
seen from Python, so every pause raises it.
"""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Any, Optional

#: Frames kept free below a pause for framebridge's own code and the user's evals.
HEADROOM = 400
_EXACT_DEPTH = sys.version_info >= (3, 12)  # the limit counts Python frames only

_lock = threading.Lock()
_open = 0
_job_limit = 0  # the job's own limit, to set back
_ours: Optional[int] = None  # the limit we set last (raised, or not fully set back yet)


def open_room() -> "Room":
    """Make room below the pause about to start (RecursionError when not even this fits)."""
    global _open, _job_limit, _ours
    # A function, not a class call, and no helpers: up to 3.11 each call counts, right
    # where the room is shortest. The calls below are made at this frame's depth, which
    # the first one has just proven possible.
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    with _lock:
        limit = sys.getrecursionlimit()
        if limit != _ours:  # the job's own limit (first room, or the job set one since)
            _job_limit, _ours = limit, None
        want = (depth if _EXACT_DEPTH else max(depth, limit)) + HEADROOM
        if want > limit:
            sys.setrecursionlimit(want)
            _ours = want
        _open += 1
    return Room()


class Room:
    """Open while a pause runs: the recursion limit leaves :data:`HEADROOM` frames free."""

    def __init__(self) -> None:
        self._closed = False

    def close(self) -> None:
        """Give the room back; the last one sets the job's own limit again."""
        global _open, _ours
        if self._closed:
            return
        self._closed = True
        with _lock:
            _open -= 1
            if _open or _ours is None or sys.getrecursionlimit() != _ours:
                return  # still in use, never raised, or the job set a limit of its own meanwhile
            try:
                sys.setrecursionlimit(_job_limit)
                _ours = None
            except RecursionError:
                # This thread is deeper than the job's limit allows now (a pause taken at
                # the very limit): a thread with a short stack sets it, once this one has
                # let go of the lock. A bare C-level thread: no Python call here, where
                # the limit is about to drop.
                done = _thread.allocate_lock()
                done.acquire()
                _thread.start_new_thread(_set_back, (_job_limit, _ours, done))
            else:
                return
        try:  # the job goes on only once its limit is back (if this call still fits)
            done.acquire(True, 5.0)
        except RecursionError:
            pass


def _set_back(limit: int, ours: int, done: Any) -> None:
    """The job's ``limit`` again, unless a room opened or the job set its own since."""
    global _ours
    try:
        with _lock:
            if _open == 0 and _ours == ours and sys.getrecursionlimit() == ours:
                sys.setrecursionlimit(limit)
                _ours = None
    finally:
        done.release()


def forget_inherited() -> None:
    """In a forked child: no pause is open there (forks.py); the raised limit stays as it is."""
    global _lock, _open, _ours
    _lock = threading.Lock()
    _open = 0
    _ours = None


def carried() -> Any:
    """What a checkpoint's live process takes over (:func:`carry_on`): the rooms open now."""
    return _open, _job_limit, _ours


def carry_on(state: Any) -> None:
    """In a checkpoint's live process, after the fork forgot them: the rooms of the pauses
    it carries on are open again (they close as those pauses end, as in the parent)."""
    global _open, _job_limit, _ours
    with _lock:
        _open, _job_limit, _ours = state
