"""Session methods that edit the running code: patch, unpatch, patches, jump (a mixin).

    r = s.patch("transform", "def transform(row):\\n    return row * 2\\n")
    r = s.patch("Model.step", step)        # a function defined in the notebook
    s.jump(12)                             # the selected (innermost) frame goes on from line 12
    s.unpatch()                            # every patched function runs its original code again

docs/howto-patch.md says what a patch changes and what it cannot (running frames keep
their code; a generator stays a generator; closures keep their variables).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Protocol, Tuple

from .errors import JumpError, NotPaused
from .patching import JumpResult, PatchList, PatchResult, UnpatchResult, source_for
from .pause_state import PauseState
from .values import FrameRef, PauseInfo

__all__ = ["CodeEditing", "trial_code"]

#: How long ``jump`` waits for the pause that follows a jump made at the frame's next event.
JUMP_REPAUSE_S = 30.0


class CodeHost(Protocol):
    """What CodeEditing needs from the class it is mixed into (Session has it)."""

    pid: int
    pause_state: PauseState

    @property
    def selected(self) -> Optional[FrameRef]:
        ...

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Tuple[Any, List[Any]]:
        ...

    def frame_request(self, op: str, args: Optional[Dict[str, Any]] = None, **kw: Any) -> Tuple[Any, List[Any]]:
        ...


def _name_and_source(name: Any, new: Any) -> Tuple[Optional[str], str]:
    if new is None and name is not None and not isinstance(name, str):
        name, new = None, name  # s.patch(fn): the function names itself
    if new is None:
        raise TypeError("patch(name, new): give the new source text, or a function or class defined here")
    source, _ = source_for(new)
    return name, source


class CodeEditing:
    """Mixed into Session: patch, unpatch, patches, jump. Each method's ``self`` is a
    :class:`CodeHost`: it uses the session's public request methods and pause state."""

    def patch(self: CodeHost, name: Optional[str], new: Any = None, *, timeout: Optional[float] = None) -> PatchResult:
        """Replace function ``name`` in the target with ``new``; return what was replaced.

        ``name``: a qualified name in the selected frame's module (``"transform"``,
        ``"Model.step"``, ``"outer.inner"``), or ``"module:qualname"``; a class's name
        (with a ``class`` statement as ``new``) patches its methods; None patches every
        ``def`` and ``class`` of ``new`` by its own name (``"module:"`` for another module).
        ``new``: source text, or a function or class defined in the notebook (its source
        is sent). Every reference to the old function runs the new code from its next
        call; frames running now finish with the old code (``result.running_old_code``).
        Needs a paused thread (the new ``def`` runs there once: its default values).

        Raises PatchError, having changed nothing, when the patch cannot be applied.
        """
        name, source = _name_and_source(name, new)
        args: Dict[str, Any] = {"source": source}
        if name:
            args["name"] = name
        result, _ = self.frame_request("patch", args, timeout=timeout)
        return PatchResult.from_json(result)

    def unpatch(self: CodeHost, name: Optional[str] = None) -> UnpatchResult:
        """Put back the code from before the first patch of ``name`` (a qualified name,
        a class's name for all its methods, ``"module:qualname"``), or of every patched
        function (None). Works while the target runs. PatchError if ``name`` is not patched."""
        result, _ = self.request("unpatch", {"name": name} if name else {})
        return UnpatchResult.from_json(result)

    def patches(self: CodeHost) -> PatchList:
        """The patches in force in the target, oldest first."""
        result, _ = self.request("patches")
        return PatchList(result)

    def jump(self: CodeHost, line: int, *, timeout: float = JUMP_REPAUSE_S) -> JumpResult:
        """Move the selected paused frame to ``line`` of its function: it goes on from there.

        pdb's rules hold (CPython enforces them): only the innermost frame moves, not
        into a ``for`` loop's body or an ``except`` block from outside, not out of a
        ``finally`` block. A pause made by a breakpoint or a step moves at once; a
        pause inside a call the line makes (``bridge.set_trace()``) ends, and the
        thread pauses again at the frame's next line, moved there (docs/stepping.md).
        Raises JumpError, with the frame where it was, when the jump is refused.
        """
        selected = self.selected
        if selected is None:
            raise NotPaused(f"no thread of pid {self.pid} is paused")
        result, _ = self.frame_request("jump", {"line": int(line)}, at=selected)
        thread, old_id = int(result["thread"]), int(result["pause_id"])
        if result.get("jumped"):
            if result.get("pause"):  # the same pause at its new line (the event says so too)
                self.pause_state.apply("paused", result["pause"])
            return JumpResult(from_line=int(result["from"]), line=int(result["line"]), deferred=False)
        # The pause ended; the thread pauses again once it has jumped (jumping.py).
        state = self.pause_state
        state.retire(thread, old_id, reset_frame=True)

        def repaused() -> Optional[PauseInfo]:
            pause = state.get(thread)
            return pause if pause is not None and pause.pause_id > old_id else None

        pause = state.wait_for(repaused, time.monotonic() + timeout)
        if pause is None:
            raise JumpError("JumpError", f"thread {thread} did not pause again within {timeout:g}s after the jump "
                                         "(it is running: the frame ended before its next line?)")
        if pause.extra.get("jump_error"):
            raise JumpError("JumpError", f"{pause.extra['jump_error']}; the frame is paused at line {pause.line}")
        return JumpResult(from_line=int(result["from"]), line=pause.line, deferred=True)


def trial_code(source: str, name: Optional[str], call: str) -> str:
    """Code for a playground run that patches a copy of the process, then runs ``call``
    (``%%patch --try``): nothing of it reaches the live process."""
    return (f"__import__('bridge.patching', fromlist=['patch']).patch(globals(), {source!r}, {name!r}, trial=True)\n"
            f"{call}\n")

