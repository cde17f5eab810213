"""Session methods on the selected paused frame: stack, selection, variables, eval, exec (a mixin).

Each talks to the target through the session's public :meth:`frame_request` and reads its
pause state; :class:`~client.session.Session` mixes it in.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, Dict, List, Optional, Protocol, TextIO, Tuple

from . import proxy
from .errors import NoSuchFrame, NotPaused
from .pause_state import PauseState
from .values import FrameInfo, FrameRef, Output, PauseInfo, Stack, Variables, VarSummary


class FrameHost(Protocol):
    """What FrameMethods needs from the class it is mixed into (Session has it)."""

    pid: int
    timeout: float
    pause_state: PauseState
    refs: proxy.RefRegistry

    @property
    def selected(self) -> Optional[FrameRef]:
        ...

    def current_pause(self, thread: Optional[int] = None) -> Optional[PauseInfo]:
        ...

    def frame_request(self, op: str, args: Optional[Dict[str, Any]] = None, *, at: Optional[FrameRef] = None,
                      frames: Optional[List[Any]] = None, value: Any = ..., timeout: Optional[float] = None,
                      release: Optional[List[List[int]]] = None) -> Tuple[Any, List[Any]]:
        ...


class FrameMethods:
    """Mixed into Session: the selected frame's stack, variables and code."""

    def stack(self) -> Stack:
        """Frames of the selected paused thread, innermost first (the selected one marked)."""
        selected = self.selected
        result, _ = self.frame_request("stack")
        index = selected.frame if selected is not None else 0
        return Stack(FrameInfo.from_json(f, selected=f["index"] == index) for f in result["frames"])

    def select(self, i: int = 0, *, thread: Optional[int] = None) -> FrameInfo:
        """Select frame ``i`` (0 = innermost) of the selected thread, or of paused ``thread``."""
        pause = self.current_pause(thread)
        if pause is None:
            raise NotPaused(f"no thread of pid {self.pid} is paused")
        result, _ = self.frame_request("stack", at=FrameRef(pause.thread, 0))
        frames = result["frames"]
        if not 0 <= i < len(frames):
            raise NoSuchFrame(f"frame {i} does not exist: the stack has {len(frames)} frames (0 is innermost)")
        self.pause_state.select(pause.thread, i, result.get("pause_id", pause.pause_id))
        return FrameInfo.from_json(dict(frames[i], index=i), selected=True)

    def up(self) -> FrameInfo:
        """Select the caller of the selected frame."""
        return self.select(self._selected_index() + 1)

    def down(self) -> FrameInfo:
        """Select the frame the selected frame called."""
        current = self._selected_index()
        if current == 0:
            raise NoSuchFrame("already at the innermost frame")
        return self.select(current - 1)

    def _selected_index(self) -> int:
        selected = self.selected
        return 0 if selected is None else selected.frame

    def locals(self) -> Variables:
        """The selected frame's variables: name -> summary (type, short repr, size), no values sent."""
        result, _ = self.frame_request("locals")
        out = Variables()
        for name, s in result.items():
            out[name] = VarSummary(name=name, type=s["type"], repr=s["repr"], size=s.get("size"),
                                   shape=s.get("shape"), length=s.get("len"))
        return out

    def eval(self, expr: str, *, timeout: Optional[float] = None, stdout: Optional[TextIO] = None) -> Any:
        """Evaluate ``expr`` in the selected frame and return the value itself.

        ``timeout`` (seconds) defaults to the session's :attr:`timeout`. What the
        expression printed in the target is written to ``stdout`` (default: sys.stdout).
        """
        result, frames = self.frame_request("eval", {"expr": expr}, timeout=timeout or self.timeout)
        if result and "output" in result:
            (stdout or sys.stdout).write(result["output"])
        return self.eval_result(result, frames)

    def eval_result(self, result: Any, frames: List[Any]) -> Any:
        """The value an ``eval`` reply (its result and value frames) carries: what
        :meth:`eval` returns, without writing what the expression printed."""
        if result:
            if "value" in result:  # a scalar the target sent in the header (JSON)
                return result["value"]
            if result.get("plain") and len(frames) == 1:
                # A builtin scalar (the target says so): nothing for the checking unpickler to do.
                frame = frames[0]
                return pickle.loads(frame.buffer if hasattr(frame, "buffer") else frame)
        return self._load(frames)

    def exec(self, code: str, *, timeout: Optional[float] = None) -> Output:
        """Execute ``code`` in the selected frame; return what it printed. Assignments change the frame.

        ``timeout`` (seconds) defaults to the session's :attr:`timeout`.
        """
        result, _ = self.frame_request("exec", {"code": code}, timeout=timeout or self.timeout)
        return Output(result.get("output", ""))

    def get(self, name: str) -> Any:
        """The value of variable ``name`` of the selected frame."""
        _, frames = self.frame_request("get", {"names": [name]})
        return self._load(frames)[name]

    def set(self, **values: Any) -> None:
        """Bind variables of the selected frame, all or nothing."""
        if not values:
            return
        self.frame_request("set", value=values)

    def delete(self, *names: str) -> None:
        """Unbind variables of the selected frame (not possible for locals on 3.13+)."""
        self.frame_request("set", {"delete": list(names)})

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(**{name: value})

    def _load(self, frames: List[Any]) -> Any:
        """Decode a value from the target; what could not be copied arrives as a live reference."""
        return proxy.load(self.refs, frames)

    def _dump(self, value: Any) -> List[Any]:
        """Encode a value for the target: live references go back as themselves, notebook
        functions and classes by value (cloudpickle)."""
        return proxy.dump(value)
