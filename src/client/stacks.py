"""Paused processes grouped by identical stack, as LLNL's STAT does: 512 workers read as a few lines.

:func:`group_stacks` takes each member's stack (the ``stack`` op's frames) and puts the
members whose stacks are the same, frame for frame (file, line, function), into one
:class:`StackClass`; :class:`StackReport` lists the classes, the largest first, and
prints as "3 stacks across 64 processes" (an HTML table in Jupyter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

from .values import FrameInfo


@dataclass
class StackClass:
    """Members paused at the same stack: the frames (innermost first) and the members' names."""

    frames: List[FrameInfo]
    members: List[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The innermost frame, as ``function (file:line)``."""
        if not self.frames:
            return "(no frames)"
        top = self.frames[0]
        return f"{top.function} ({top.file}:{top.line})"


class StackReport:
    """The classes of identical stacks among paused members, the largest first.

    ``errors``: members whose stack could not be read; ``running``: members not paused.
    Indexing and iteration go over the classes.
    """

    def __init__(self, classes: List[StackClass], errors: Mapping[str, BaseException],
                 running: Sequence[str]) -> None:
        self.classes = classes
        self.errors = dict(errors)
        self.running = list(running)

    @property
    def processes(self) -> int:
        """How many members' stacks were grouped."""
        return sum(len(c.members) for c in self.classes)

    def summary(self) -> str:
        """``"3 stacks across 64 processes"``."""
        n, p = len(self.classes), self.processes
        return f"{n} stack{'' if n == 1 else 's'} across {p} process{'' if p == 1 else 'es'}"

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[StackClass]:
        return iter(self.classes)

    def __getitem__(self, i: int) -> StackClass:
        return self.classes[i]

    def __repr__(self) -> str:
        from .group_display import stacks_text

        return stacks_text(self)

    def _repr_html_(self) -> str:
        from .group_display import stacks_html

        return stacks_html(self)


def _key(frames: Sequence[Dict[str, Any]]) -> Tuple[Tuple[str, int, str], ...]:
    return tuple((str(f.get("file", "")), int(f.get("line", 0)), str(f.get("function", ""))) for f in frames)


def group_stacks(stacks: Mapping[str, Sequence[Dict[str, Any]]], errors: Mapping[str, BaseException],
                 running: Iterable[str]) -> StackReport:
    """Members (name -> the ``stack`` op's frames) grouped by identical stack."""
    by_key: Dict[Tuple[Tuple[str, int, str], ...], StackClass] = {}
    for name, frames in stacks.items():
        key = _key(frames)
        cls = by_key.get(key)
        if cls is None:
            infos = [FrameInfo.from_json(dict(f, index=f.get("index", i))) for i, f in enumerate(frames)]
            cls = by_key[key] = StackClass(infos)
        cls.members.append(name)
    classes = sorted(by_key.values(), key=lambda c: (-len(c.members), c.members[0]))
    return StackReport(classes, errors, list(running))
