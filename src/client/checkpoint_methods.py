"""Session methods for checkpoints and rewind (a mixin): checkpoint, checkpoints, rewind, drop.

    cp = s.checkpoint()        # at a pause: a copy-on-write snapshot of the whole process
    s.checkpoints()            # id, where, when, memory held, what cannot be rewound
    s.rewind(cp)               # the job goes back to cp, paused there; s follows it
    s.drop(cp)                 # free the snapshot

A checkpoint and a rewind each move the job to a new process (bridge/checkpoint_ops.py):
the session follows it -- same object, name, subscribers and selected thread -- by the
job's connection files (client/follow.py), reconnecting with the new process's key. Its
live references, lanes and mounts belonged to the old process and are gone.
docs/howto-rewind.md is the user's guide.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Union

from .checkpoint_values import Checkpoint, CheckpointList
from .errors import CheckpointError, NotPaused, ReplyLost, RequestTimeout, SessionLost
from .follow import Successor, generation_of, newest_of_job
from .values import FrameRef, PauseInfo

__all__ = ["CheckpointMethods"]


class CheckpointHost(Protocol):
    """What CheckpointMethods needs from the class it is mixed into (Session has it)."""

    pid: int
    job: int
    info: Dict[str, Any]
    timeout: float
    pause_state: Any

    @property
    def selected(self) -> Optional[FrameRef]:
        ...

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Tuple[Any, List[Any]]:
        ...

    def frame_request(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Tuple[Any, List[Any]]:
        ...

    def submit(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Any:
        ...

    def wait(self, timeout: Optional[float] = None) -> PauseInfo:
        ...

    def _quiet_link(self) -> Callable[[], None]:
        ...

    def _move_to(self, info: Dict[str, Any]) -> None:
        ...


class CheckpointMethods:
    """Mixed into Session: checkpoint, checkpoints, rewind, drop, follow."""

    def checkpoint(self: CheckpointHost, *, force: bool = False, timeout: Optional[float] = None) -> Checkpoint:
        """Keep a copy-on-write snapshot of the paused process here; return it.

        The job goes on in a new process (the same pid for its supervisor), paused where
        it was; this session follows it. Raises ThreadsRunning, naming them, if other
        Python threads run in the target (a fork copies only the paused one) unless
        ``force`` (they then do not exist after the checkpoint); Unsupported where the
        target cannot fork; CheckpointError for the rest. ``timeout``: for the whole
        move (default: the session's).
        """
        selected = _paused(self)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        successor = Successor(self.job, generation_of(self.info))
        undo = self._quiet_link()
        try:
            result, _ = self.frame_request("checkpoint", {"force": bool(force)}, timeout=_left(deadline))
        except BaseException:
            undo()
            raise
        cp = Checkpoint.from_json(result)
        _follow(self, successor, deadline, selected, f"checkpoint {cp.id}")
        return cp

    def checkpoints(self: CheckpointHost) -> CheckpointList:
        """The job's checkpoints on this timeline, outermost first: id, where, when, the
        memory each holds now and what it cannot rewind. Works while the job runs too."""
        result, _ = self.request("checkpoints")
        return CheckpointList(Checkpoint.from_json(item) for item in result.get("checkpoints") or [])

    def rewind(self: CheckpointHost, cp: Union[Checkpoint, int], *, timeout: Optional[float] = None) -> Checkpoint:
        """Take the job back to checkpoint ``cp`` (a Checkpoint or its id): it is paused
        there again, every variable as it was, and this session follows it.

        Everything the job did in memory since is undone -- patches and ``set`` included:
        patch after rewinding. What lies outside memory (files written, connections,
        other processes: ``cp.cannot_rewind``) is not. A checkpoint can be rewound to any
        number of times; checkpoints taken after it are gone. Returns the checkpoint as
        it is now (``rewinds`` counts this one). CheckpointError, with nothing changed,
        for an unknown or dropped checkpoint.
        """
        cp_id = _checkpoint_id(cp)
        selected = _paused(self)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        successor = Successor(self.job, generation_of(self.info))
        undo = self._quiet_link()
        try:
            pending = self.submit("rewind", {"id": cp_id}, frame=True, timeout=_left(deadline))
        except BaseException:
            undo()
            raise
        answer: Dict[str, Any] = {}

        def refused() -> None:
            # The target answers before it is killed; the answer may die with it (then the
            # new process's connection file is the answer).
            if not pending.done or answer:
                return
            try:
                result, _ = pending.result()
            except (SessionLost, ReplyLost, RequestTimeout):
                answer["lost"] = True
                return
            except BaseException:
                undo()
                raise
            answer.update(result)
            if result.get("failed"):
                undo()
                raise CheckpointError("CheckpointError", f"the rewind to checkpoint {cp_id} did not happen: "
                                                         f"{result['failed']}")

        pause = _follow(self, successor, deadline, selected, f"the rewind to checkpoint {cp_id}", refused)
        if answer.get("checkpoint"):
            rewound = Checkpoint.from_json(answer["checkpoint"])
        else:  # its answer died with the old process: the new one says the same
            rewound = self.checkpoints().get(cp_id) or Checkpoint(cp_id, "", 0, "", 0.0)
        rewound.rewinds = int(pause.extra.get("rewinds", rewound.rewinds + 1))
        return rewound

    def follow(self: CheckpointHost) -> bool:
        """Serve the job's live process if it is not the one served now (the job checkpointed
        itself with ``bridge.checkpoint()``, or another client rewound it: this session's
        process then keeps a snapshot, or is gone); whether the session moved."""
        info = newest_of_job(self.job)
        if info is None or int(info["pid"]) == self.pid:
            return False
        self._move_to(info)
        return True

    def drop(self: CheckpointHost, cp: Union[Checkpoint, int]) -> None:
        """Free checkpoint ``cp``'s snapshot (its memory goes back to the system); it can no
        longer be rewound to. Dropping a dropped checkpoint does nothing. Works while the
        job runs too."""
        self.request("drop", {"id": _checkpoint_id(cp)})


def _paused(session: CheckpointHost) -> FrameRef:
    selected = session.selected
    if selected is None:
        raise NotPaused(f"no thread of pid {session.pid} is paused: checkpoint and rewind work at a pause")
    return selected


def _checkpoint_id(cp: Union[Checkpoint, int]) -> int:
    if isinstance(cp, Checkpoint):
        return cp.id
    if isinstance(cp, int) and not isinstance(cp, bool):
        return cp
    raise TypeError(f"a Checkpoint or a checkpoint id is needed, not {type(cp).__name__}")


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _follow(session: CheckpointHost, successor: Successor, deadline: float, selected: FrameRef, what: str,
            refused: Callable[[], None] = lambda: None) -> PauseInfo:
    """Move ``session`` to the job's next process once its connection file is there, and
    wait for its pause; the selected thread and frame stay selected."""
    info = successor.wait(deadline, refused)
    if info is None:
        raise CheckpointError("CheckpointError", f"job {session.job} did not come back after {what}: no new "
                                                 f"process of it became attachable in time (see the job's stderr)")
    session._move_to(info)
    pause = session.wait(_left(deadline))
    if pause.thread == selected.thread and selected.frame:
        session.pause_state.select(selected.thread, selected.frame, pause.pause_id)
    return pause
