"""The breakpoint table: breakpoints by id and by file and line, and the line tables of files.

Read on the engine's hot paths (a line event, a probe), so lookups take no lock: every
change builds new tables and replaces the old ones, which a reader sees whole or not
at all.
"""

from __future__ import annotations

import dis
import os
import threading
import tokenize
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

from ..protocol import Breakpoint  # the one breakpoint schema, shared with the client
from .scope import canonical, is_own_file

__all__ = ["Breakpoint", "BreakpointTable", "FileLines", "code_lines", "walk_codes"]


def code_lines(code: CodeType) -> FrozenSet[int]:
    """Lines where ``code`` has instructions (not those of nested code objects)."""
    if hasattr(code, "co_lines"):  # 3.10+
        return frozenset(ln for _, _, ln in code.co_lines() if ln)
    return frozenset(ln for _, ln in dis.findlinestarts(code) if ln)


def walk_codes(code: CodeType) -> Iterator[CodeType]:
    """``code`` and every code object nested in it (functions, classes, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from walk_codes(const)


@dataclass
class FileLines:
    """Line tables of a source file, from compiling it once when a breakpoint is set.

    Compiling the source (rather than hunting live code objects) also works for
    functions that do not exist yet; it costs about a millisecond per thousand lines,
    paid once per file and modification time.
    """

    mtime: float
    lines: FrozenSet[int]  # every line that has code, in any code object
    by_first: Dict[int, FrozenSet[int]]  # co_firstlineno -> union of those codes' lines

    @classmethod
    def load(cls, path: str) -> "FileLines":
        """Compile ``path`` and collect its line tables; ValueError if it does not compile."""
        with tokenize.open(path) as f:  # honours the coding cookie
            source = f.read()
        try:
            top = compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise ValueError(f"cannot set a breakpoint in {path}: it does not compile ({exc})") from None
        lines: Set[int] = set()
        by_first: Dict[int, Set[int]] = {}
        for code in walk_codes(top):
            own = code_lines(code)
            lines |= own
            by_first.setdefault(code.co_firstlineno, set()).update(own)
        return cls(os.stat(path).st_mtime, frozenset(lines), {k: frozenset(v) for k, v in by_first.items()})


#: canonical file -> line -> the breakpoints there (ids ascending)
Index = Dict[str, Dict[int, List[Breakpoint]]]


class BreakpointTable:
    """Every breakpoint of the process, thread-safe; lookups are lock-free."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._next_id = 1
        self._bps: Dict[int, Breakpoint] = {}
        self._index: Index = {}
        self._by_raw: Dict[str, Optional[Dict[int, List[Breakpoint]]]] = {}  # co_filename -> index entry
        self._lines_of: Dict[CodeType, FrozenSet[int]] = {}  # code -> its lines holding breakpoints
        self._files: Dict[str, FileLines] = {}
        self._conditions: Dict[int, CodeType] = {}  # breakpoint id -> its compiled condition

    # ---------------------------------------------------------------- changes

    def add(self, file: str, line: int, condition: Optional[str], temporary: bool) -> Breakpoint:
        """Validate and add a breakpoint (see ``Debugger.set_break``); ValueError if refused."""
        path = canonical(os.path.abspath(file))
        if not os.path.isfile(path):
            raise ValueError(f"cannot set a breakpoint in {file!r}: no such file")
        if is_own_file(path):
            raise ValueError(f"cannot set a breakpoint in {path}: framebridge's own code never stops")
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            raise ValueError(f"line must be a positive integer, got {line!r}")
        compiled = None
        if condition is not None:
            try:
                compiled = compile(condition, "<breakpoint condition>", "eval")
            except SyntaxError as exc:
                raise ValueError(f"breakpoint condition {condition!r} does not compile: {exc.msg}") from None
        info = self.file_lines(path)
        later = [ln for ln in info.lines if ln >= line]
        if not later:
            last = max(info.lines, default=0)
            raise ValueError(
                f"cannot set a breakpoint at {path}:{line}: no code at or after line {line}"
                f" (the last line with code is {last})"
            )
        with self._lock:
            bp = Breakpoint(self._next_id, path, min(later), line, condition, temporary)
            self._next_id += 1
            self._bps[bp.id] = bp
            if compiled is not None:
                self._conditions[bp.id] = compiled
            self._rebuild()
        return bp

    def remove(self, bp_id: int) -> None:
        """Remove breakpoint ``bp_id``; KeyError if there is none."""
        with self._lock:
            if bp_id not in self._bps:
                raise KeyError(f"no breakpoint with id {bp_id}")
            del self._bps[bp_id]
            self._rebuild()

    def clear(self) -> None:
        """Remove every breakpoint."""
        with self._lock:
            self._bps.clear()
            self._rebuild()

    def _rebuild(self) -> None:
        index: Index = {}
        for bp in sorted(self._bps.values(), key=lambda b: b.id):
            if bp.enabled:
                index.setdefault(bp.file, {}).setdefault(bp.line, []).append(bp)
        self._index = index
        self._conditions = {k: v for k, v in self._conditions.items() if k in self._bps}
        self._by_raw = {}
        self._lines_of = {}

    # ---------------------------------------------------------------- lookups

    def all(self) -> List[Breakpoint]:
        """The breakpoints, by id (the objects themselves: ``hits`` stays current)."""
        with self._lock:
            return [self._bps[k] for k in sorted(self._bps)]

    def empty(self) -> bool:
        """True when no breakpoint is enabled."""
        return not self._index

    def in_file(self, raw_filename: str) -> Optional[Dict[int, List[Breakpoint]]]:
        """line -> breakpoints for a ``co_filename`` as the code has it; None if none."""
        by_raw = self._by_raw
        try:
            return by_raw[raw_filename]
        except KeyError:
            index = self._index
            entry = index.get(canonical(raw_filename)) if index else None
            by_raw[raw_filename] = entry
            return entry

    def lines_in(self, code: CodeType) -> FrozenSet[int]:
        """The lines of ``code`` itself (not nested code) that hold a breakpoint."""
        bps = self.in_file(code.co_filename)
        if not bps:
            return frozenset()
        cache = self._lines_of
        lines = cache.get(code)
        if lines is None:
            lines = cache[code] = code_lines(code).intersection(bps)
        return lines

    def by_file(self) -> Dict[str, FrozenSet[int]]:
        """canonical file -> lines holding an enabled breakpoint."""
        return {path: frozenset(lines) for path, lines in self._index.items()}

    def file_lines(self, path: str) -> FileLines:
        """Line tables of a canonical ``path`` (compiled again when the file changed)."""
        mtime = os.stat(path).st_mtime
        info = self._files.get(path)
        if info is None or info.mtime != mtime:
            info = FileLines.load(path)
            self._files[path] = info
        return info

    def known_file_lines(self, path: str) -> Optional[FileLines]:
        """Line tables already loaded for ``path``, without touching the disk."""
        return self._files.get(path)

    # ---------------------------------------------------------------- hits

    def hit(self, bps: List[Breakpoint], frame: FrameType) -> Tuple[Optional[dict], bool]:
        """(stop info, whether a temporary breakpoint went away) for the first of ``bps``
        whose condition holds in ``frame``; (None, False) when none does.

        A condition that raises counts as true, as in pdb, and its error is reported in
        the info, so that a broken condition is seen rather than silently ignored.
        """
        for bp in bps:
            if not bp.enabled:
                continue
            info: dict = {}
            if bp.condition is not None:
                try:
                    condition = self._conditions.get(bp.id) or bp.condition
                    if not eval(condition, frame.f_globals, frame.f_locals):
                        continue
                except Exception as exc:
                    info["condition_error"] = repr(exc)
            removed = False
            with self._lock:
                bp.hits += 1
                if bp.temporary and bp.id in self._bps:
                    del self._bps[bp.id]
                    self._rebuild()
                    removed = True
            info.update(breakpoint=bp.id, hits=bp.hits, temporary=bp.temporary)
            return info, removed
        return None, False
