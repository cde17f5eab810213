"""What a Session hands back: pauses, frames, stacks, variable summaries, printed output.

Plain values: nothing here talks to the target. Each prints as text and shows as HTML
in Jupyter (client/display.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional

#: Fields of a ``paused`` event that PauseInfo has an attribute for (the rest go to ``extra``).
_PAUSE_FIELDS = ("thread", "name", "file", "line", "function", "reason", "pause_id", "module")


@dataclass
class PauseInfo:
    """Where and why a thread is paused."""

    thread: int
    name: str
    file: str
    line: int
    function: str
    reason: str
    pause_id: int
    module: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, body: Dict[str, Any]) -> "PauseInfo":
        """The pause a ``paused`` event (or a subscription's ``paused`` list) describes."""
        return cls(
            thread=int(body["thread"]), name=str(body.get("name", "")), file=str(body.get("file", "")),
            line=int(body.get("line", 0)), function=str(body.get("function", "")),
            reason=str(body.get("reason", "")), pause_id=int(body.get("pause_id", 0)),
            module=str(body.get("module", "")),
            extra={k: v for k, v in body.items() if k not in _PAUSE_FIELDS and k not in ("event", "time")},
        )

    def as_event(self) -> Dict[str, Any]:
        """The ``paused`` event body that describes this pause (from_event's inverse)."""
        return dict(self.extra, thread=self.thread, name=self.name, file=self.file, line=self.line,
                    function=self.function, reason=self.reason, pause_id=self.pause_id, module=self.module)

    def __str__(self) -> str:
        text = f"thread {self.name} ({self.thread}) paused ({self.reason}) at {self.file}:{self.line} in {self.function}"
        if "exception" in self.extra:
            text += f"\n  exception: {self.extra['exception']}"
        for expr, value in (self.extra.get("watches") or {}).items():
            text += f"\n  watch {expr} = {value}"
        return text

    def _repr_html_(self) -> str:
        from .display import pause_html

        return pause_html(self)


class FrameRef(NamedTuple):
    """One frame of a paused thread: what a frame request runs against.

    ``thread``: the paused thread's id; ``frame``: 0 = innermost; ``pause_id``: the pause
    it must still be in (a thread that resumed and paused again has a new one), or None
    for whatever pause the thread is in when the request arrives.
    """

    thread: int
    frame: int
    pause_id: Optional[int] = None


@dataclass
class FrameInfo:
    """One frame of a paused thread's stack."""

    index: int
    file: str
    line: int
    function: str
    module: str = ""
    selected: bool = False

    @classmethod
    def from_json(cls, data: Dict[str, Any], selected: bool = False) -> "FrameInfo":
        """A frame as the ``stack`` op describes it."""
        return cls(index=data["index"], file=data["file"], line=data["line"], function=data["function"],
                   module=data.get("module", ""), selected=selected)

    def __str__(self) -> str:
        mark = ">" if self.selected else " "
        return f"{mark} [{self.index}] {self.function} at {self.file}:{self.line}"


class Stack(list):
    """A list of FrameInfo, innermost first, that prints like pdb's `where`."""

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        from .display import stack_html

        return stack_html(self)


@dataclass
class VarSummary:
    """A variable described without transferring it: type, short repr, size."""

    name: str
    type: str
    repr: str
    size: Optional[int] = None
    shape: Optional[List[int]] = None
    length: Optional[int] = None

    def __str__(self) -> str:
        return f"{self.name}: {self.type} = {self.repr}"


class Variables(dict):
    """name -> VarSummary, shown as a table."""

    def __repr__(self) -> str:
        return "\n".join(str(v) for v in self.values()) or "(no variables)"

    def _repr_html_(self) -> str:
        from .display import variables_html

        return variables_html(self)


class Output(str):
    """Text a remote ``exec`` printed; shows as itself, not as a quoted string."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))
