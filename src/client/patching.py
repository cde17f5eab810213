"""The notebook side of editing running code: source to send, and what comes back.

* :func:`source_for` turns what ``Session.patch`` was given into source text: the text
  itself, or the source of a function or class defined in the notebook
  (``inspect.getsource``, dedented). A lambda is refused (its source is its whole line,
  and it has no name to patch), and so is a function whose source Python does not have
  (made by ``exec``, typed into a plain interactive interpreter): pass the text instead.
* :class:`PatchResult`, :class:`UnpatchResult`, :class:`PatchList`, :class:`JumpResult`:
  plain values with a text and an HTML rendering.
* :func:`function_at`: the ``def`` around a line of a file's text (the DebugPanel's
  patch view edits it).
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, Dict, List, Optional, Tuple

from .display import esc, table
from .errors import PatchError

__all__ = ["FunctionSource", "JumpResult", "PatchList", "PatchResult", "UnpatchResult", "function_at",
           "source_for"]


def _refused(message: str) -> PatchError:
    return PatchError("PatchError", message)


def source_for(new: Any) -> Tuple[str, Optional[str]]:
    """(source text, the name it defines) for ``new``: source text, or a function or
    class defined in the notebook. PatchError (nothing sent) when its source cannot be had."""
    if isinstance(new, str):
        return new, None
    obj = new
    if isinstance(obj, MethodType):
        obj = obj.__func__
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property) and obj.fget is not None:
        obj = obj.fget
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"patch takes source text, a function or a class, not {type(new).__name__}")
    if obj.__name__ == "<lambda>":
        raise _refused("a lambda cannot be sent as a patch: its source is the whole line it is on, and it has no "
                       "name of its own; write it as a def, or pass the new source as text")
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError) as exc:
        raise _refused(f"the source of {obj.__qualname__} is not available here ({exc}): a function made by exec() "
                       "or typed into a plain interactive interpreter has none; pass the new source as text") from None
    return textwrap.dedent(source), obj.__name__


def _where(frame: Dict[str, Any]) -> str:
    thread = frame.get("thread")
    who = "a suspended generator" if frame.get("suspended") else f"thread {thread}"
    return f"{frame.get('function')} at {os.path.basename(str(frame.get('file')))}:{frame.get('line')} ({who})"


@dataclass
class Replaced:
    """One function a patch replaced."""

    name: str
    module: str
    kind: str
    functions: int
    file: str
    line: int
    running: List[Dict[str, Any]] = field(default_factory=list)
    breakpoints: List[Dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Replaced":
        """From one entry of a ``patch`` reply's ``replaced`` list."""
        return cls(name=data["name"], module=data.get("module", ""), kind=data.get("kind", ""),
                   functions=int(data.get("functions", 0)), file=data.get("file", ""), line=int(data.get("line", 0)),
                   running=list(data.get("running") or []), breakpoints=list(data.get("breakpoints") or []),
                   note=data.get("note") or "")


@dataclass
class PatchResult:
    """What ``Session.patch`` replaced, and the frames that still run the old code
    (they finish with it; the next call runs the new code)."""

    number: int
    replaced: List[Replaced]
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "PatchResult":
        """From a ``patch`` reply."""
        return cls(number=int(data.get("patch", 0)), replaced=[Replaced.from_json(r) for r in data["replaced"]],
                   notes=list(data.get("notes") or []), warnings=list(data.get("warnings") or []))

    @property
    def names(self) -> List[str]:
        """The qualified names replaced."""
        return [r.name for r in self.replaced]

    @property
    def running_old_code(self) -> List[Dict[str, Any]]:
        """Every frame still running old code: function, file, line, thread."""
        return [f for r in self.replaced for f in r.running]

    def _lines(self) -> List[str]:
        lines = []
        for r in self.replaced:
            count = f" ({r.functions} function objects)" if r.functions != 1 else ""
            lines.append(f"patched {r.kind} {r.module}.{r.name}{count}: new code in {r.file}:{r.line}")
            for frame in r.running:
                lines.append(f"  still running the old code (finishes with it): {_where(frame)}")
            for bp in r.breakpoints:
                lines.append(f"  breakpoint {bp['from']} copied into the new code as breakpoint {bp['id']} "
                             f"(line {bp['line']})")
            if r.note:
                lines.append(f"  note: {r.note}")
        lines += [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def __repr__(self) -> str:
        return f"<PatchResult {self.number}: {', '.join(self.names)}>\n" + str(self)

    def _repr_html_(self) -> str:
        rows = [(r.name, r.kind, r.functions, f"{os.path.basename(r.file)}:{r.line}",
                 "; ".join(_where(f) for f in r.running) or "none") for r in self.replaced]
        extra = "".join(f"<div>{esc(line)}</div>" for line in self._lines() if line.startswith(("note", "warning")))
        return table(["patched", "kind", "function objects", "new code", "still running the old code"], rows,
                     caption=f"patch {self.number}") + extra


@dataclass
class UnpatchResult:
    """What ``Session.unpatch`` restored."""

    restored: List[str]
    functions: int
    kept: List[str] = field(default_factory=list)
    breakpoints_cleared: List[int] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "UnpatchResult":
        """From an ``unpatch`` reply."""
        return cls(restored=list(data.get("restored") or []), functions=int(data.get("functions", 0)),
                   kept=list(data.get("kept") or []), breakpoints_cleared=list(data.get("breakpoints_cleared") or []))

    def __str__(self) -> str:
        if not self.restored:
            return "nothing was patched"
        text = f"restored the original code of {', '.join(self.restored)} ({self.functions} function objects)"
        if self.kept:
            text += f"; left alone (swapped by something else since): {', '.join(self.kept)}"
        if self.breakpoints_cleared:
            text += f"; cleared the breakpoints copied into the patch: {self.breakpoints_cleared}"
        return text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<div>{esc(str(self))}</div>"


class PatchList(list):
    """The patches in force (``Session.patches()``): one dict per patched function."""

    def __str__(self) -> str:
        if not self:
            return "(no patches)"
        return "\n".join(f"patch {p['patch']}: {p['module']}.{p['name']} ({p['functions']} function objects) "
                         f"from {p['file']}" for p in self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return table(["patch", "function", "function objects", "file"],
                     [(p["patch"], f"{p['module']}.{p['name']}", p["functions"], p["file"]) for p in self])


@dataclass
class JumpResult:
    """Where ``Session.jump`` moved the frame. ``deferred``: the pause was inside a call
    (``set_trace()``), so the thread ran to the frame's next line event, jumped there,
    and paused again (a new pause)."""

    from_line: int
    line: int
    deferred: bool

    def __str__(self) -> str:
        how = " (at the frame's next event: a new pause)" if self.deferred else ""
        return f"jumped from line {self.from_line} to line {self.line}{how}"

    __repr__ = __str__


@dataclass
class FunctionSource:
    """A function's ``def`` in a file's text: its qualified name, where it starts, its
    source (dedented, without decorators: a patch keeps the function's decorators)."""

    qualname: str
    line: int
    source: str


def function_at(text: str, line: int, function: str, first: int = 1) -> Optional[FunctionSource]:
    """The innermost ``def`` named like ``function`` (a name or qualified name) around
    ``line`` of ``text`` (whose first line is line ``first`` of its file); None if there
    is none (module-level code, a lambda, text that does not parse)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    want = function.rsplit(".", 1)[-1]
    local = line - first + 1
    best: Optional[Tuple[ast.AST, str]] = None

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = prefix + child.name
                inside = child.lineno <= local <= (getattr(child, "end_lineno", None) or child.lineno)
                if inside and not isinstance(child, ast.ClassDef) and child.name == want:
                    best = (child, qual)
                if inside:
                    visit(child, qual + (".<locals>." if not isinstance(child, ast.ClassDef) else "."))

    visit(tree, "")
    if best is None:
        return None
    node, qualname = best
    lines = text.splitlines(keepends=True)
    end = getattr(node, "end_lineno", None) or node.lineno
    source = textwrap.dedent("".join(lines[node.lineno - 1:end]))
    return FunctionSource(qualname=qualname, line=node.lineno + first - 1, source=source)
