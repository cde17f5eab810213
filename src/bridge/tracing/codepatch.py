"""The code-patching backend (Python 3.9-3.11): breakpoints compiled into the code.

Setting a breakpoint at ``file:line`` swaps, with ``bridge.codeswap``, the code of every
function of that file whose code holds the line for a copy with a probe call there
(``probes.py``), and the code of the functions enclosing it for copies holding that
copy, so closures made later get it too. Nothing else changes: code without
breakpoints runs at native speed, in every thread, with no tracer. Clearing the last
breakpoint of a function puts its original code object back.

What code patching cannot reach, and how it is handled (docs/stepping.md):

* **Modules not imported yet**: an import hook instruments them as they load.
* **Frames already running** keep their code. One whose line holds a breakpoint (a
  long loop in progress) gets line events through ``f_trace``; so does one that has
  yet to run the ``def`` of a function with a breakpoint (a script paused before
  its ``def`` lines), until the function exists and has been swapped. ``f_trace``
  needs a tracer in the frame's thread, which slows that thread (the settrace
  floor, docs/benchmarks.md) until the frame returns or the breakpoint is cleared.
  Only the thread that sets the breakpoint and the main thread can be given one;
  a frame running in another thread keeps running without its breakpoint.
* **Stepping** traces only the stepping thread, with ``sys.settrace``, from the
  step command to the stop.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import CodeType, FrameType, FunctionType
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple

from ..codeswap import (CodeJournal, IdentityWeakMap, add_swap_listener, base_code, functions_behind, functions_running,
                        live_functions, mark_derived, with_nested_replaced)
from .breakpoints import code_lines, walk_codes
from .import_hook import ProbeFinder
from .pending_call import call_on_main_thread
from .probes import available as _probes_available
from .probes import insert_probes
from .scope import canonical
from .settrace import FrameTracer

__all__ = ["CodePatchBackend", "available"]

_log = logging.getLogger("bridge")
_CO_NEWLOCALS = 0x2  # set on function code; module and class bodies have their own namespace


def available() -> bool:
    """Whether this Python can use the backend (3.9-3.11 with the ``bytecode`` library)."""
    return _probes_available()


class CodePatchBackend:
    """Breakpoints as probes in swapped code; stepping with a per-thread tracer."""

    name = "code patching"
    pauses_any_thread = False

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.journal = CodeJournal("breakpoint probes")
        self.applied: Dict[str, FrozenSet[int]] = {}  # canonical file -> breakpoint lines probed for
        self.probed = IdentityWeakMap()  # probed code -> the lines of its probes
        # (id(code), lines) -> (code, result): by identity (distinct code objects can be
        # equal), holding `code` so that its id stays its own
        self._built: Dict[Tuple[int, FrozenSet[int]], Tuple[CodeType, CodeType]] = {}
        self._has_lines: Dict[Tuple[int, FrozenSet[int]], Tuple[CodeType, bool]] = {}
        self._canonical: Dict[str, str] = {}
        self.at_breakpoint: FrozenSet[CodeType] = frozenset()  # running original code at a breakpoint line
        self.creators: FrozenSet[CodeType] = frozenset()  # running code that will define a pending function
        self.pending: Dict[CodeType, str] = {}  # code with breakpoints no function runs yet -> its name
        self._lock = threading.RLock()
        self._main_traced = False
        self.probe = engine.dispatch_probe
        self.finder = ProbeFinder(lambda path: path in self.applied, self._instrument_module)
        self.tracer = FrameTracer(engine, self._wants_frame, self._has_probe, self._watch)
        add_swap_listener(self._on_swap)

    def is_idle(self) -> bool:
        """No probed function, no import hook, no tracer in this thread."""
        return not len(self.journal) and not self.finder.installed and not self.tracer.owns(sys.gettrace())

    # ------------------------------------------------------------------ engine notifications

    def breakpoints_changed(self) -> None:
        """Swap probed code in and out to match the breakpoints; watch running frames."""
        with self._lock:
            desired = self.engine.breakpoint_files()
            changed = {p for p in set(desired) | set(self.applied) if desired.get(p) != self.applied.get(p)}
            self.applied = desired
            if changed:
                current = set(desired.values())
                self._built = {k: v for k, v in self._built.items() if k[1] in current}
                self._has_lines = {k: v for k, v in self._has_lines.items() if k[1] in current}
                live = self._swap_functions(set(desired) | changed)
                self._watch_running_frames(live)
            if desired:
                self.finder.install()
            else:
                self.finder.uninstall()
                self.pending = {}
                self.at_breakpoint = self.creators = frozenset()
            self.tracer.watched = self.at_breakpoint | self.creators
            self.tracer.watch_lines = bool(self.pending)
        self._sync_threads()

    def stepping_changed(self, tid: Optional[int], frames: Optional[List[FrameType]]) -> None:
        """Trace the stepping thread from now until its next stop (called on that thread)."""
        if frames is not None:
            self.tracer.install_here(frames)
        else:
            self._sync_here()

    # ------------------------------------------------------------------ building probed code

    def _path(self, raw_filename: str) -> str:
        try:
            return self._canonical[raw_filename]
        except KeyError:
            path = self._canonical[raw_filename] = canonical(raw_filename)
            return path

    def _build(self, code: CodeType, lines: FrozenSet[int]) -> CodeType:
        """``code`` with probes at ``lines`` in it and in every code nested in it."""
        key = (id(code), lines)
        entry = self._built.get(key)
        if entry is None:
            new = with_nested_replaced(code, lambda nested: self._build(nested, lines))
            own = code_lines(code) & lines
            if own:
                try:
                    new = insert_probes(new, own, self.probe)
                    self.probed[new] = own
                except Exception as exc:  # a code shape the probe inserter does not handle
                    _log.warning("bridge: breakpoints at lines %s of %s (%s) cannot be set: %s",
                                 sorted(own), code.co_qualname if hasattr(code, "co_qualname") else code.co_name,
                                 code.co_filename, exc)
            if new is not code:
                mark_derived(new, code)
            entry = self._built[key] = (code, new)
        return entry[1]

    def _tree_has(self, code: CodeType, lines: FrozenSet[int]) -> bool:
        key = (id(code), lines)
        entry = self._has_lines.get(key)
        if entry is None:
            found = any(not code_lines(c).isdisjoint(lines) for c in walk_codes(code))
            entry = self._has_lines[key] = (code, found)
        return entry[1]

    def _target(self, base: CodeType) -> CodeType:
        lines = self.applied.get(self._path(base.co_filename))
        return self._build(base, lines) if lines and self._tree_has(base, lines) else base

    def _instrument_module(self, path: str, code: CodeType) -> CodeType:
        with self._lock:
            return self._target(code)

    def prepare_code(self, code: CodeType) -> CodeType:
        """``code`` with the probes of the breakpoints in its file."""
        with self._lock:
            return self._target(code)

    def _swap_functions(self, files: Set[str]) -> Set[CodeType]:
        """Give every live function of ``files`` the code it should run; the base codes
        that have a live function."""
        live: Set[CodeType] = set()
        path = self._path
        for function in live_functions(lambda f: path(f.__code__.co_filename) in files):
            base = base_code(function.__code__)
            live.add(base)
            self._give(function, base, self._target(base))
        return live

    def _give(self, function: FunctionType, base: CodeType, target: CodeType) -> None:
        if function.__code__ is target:
            return
        if target is not base:
            self.journal.swap(function, target)
        elif not self.journal.restore(function):
            # a closure made by probed code (never swapped itself), or swapped since
            self.journal.forget(function)
            if base_code(function.__code__) is base:
                function.__code__ = base

    # ------------------------------------------------------------------ running frames

    def _watch_running_frames(self, live: Set[CodeType]) -> None:
        """Find running frames at a breakpoint line, and running code that has yet to
        define a function holding a breakpoint."""
        at_breakpoint: Set[CodeType] = set()
        creators: Set[CodeType] = set()
        pending: Dict[CodeType, str] = {}
        for top in sys._current_frames().values():
            frame: Optional[FrameType] = top
            while frame is not None:
                code = frame.f_code
                lines = self.applied.get(self._path(code.co_filename))
                if lines:
                    if base_code(code) is code and not code_lines(code).isdisjoint(lines):
                        at_breakpoint.add(code)
                    if self._find_pending(code, lines, live, pending, creators):
                        creators.add(code)
                frame = frame.f_back
        del top
        self.at_breakpoint = frozenset(at_breakpoint)
        self.creators = frozenset(creators)
        self.pending = pending

    def _find_pending(self, code: CodeType, lines: FrozenSet[int], live: Set[CodeType],
                      pending: Dict[CodeType, str], creators: Set[CodeType]) -> bool:
        found = False
        for const in base_code(code).co_consts:
            if not isinstance(const, CodeType) or not self._tree_has(const, lines):
                continue
            if not const.co_flags & _CO_NEWLOCALS:  # a class body: its frame defines the methods
                if self._find_pending(const, lines, live, pending, creators):
                    creators.add(const)
                    found = True
            elif const not in live:
                pending[const] = const.co_name
                found = True
        return found

    def _wants_frame(self, frame: FrameType) -> bool:
        return frame.f_code in self.creators  # a class body about to define a pending method

    def _has_probe(self, code: CodeType, line: int) -> bool:
        lines = self.probed.get(code)
        return lines is not None and line in lines

    def _watch(self, frame: FrameType, event: str) -> None:
        """An event in a frame of watched code (see ``_watch_running_frames``)."""
        if self.pending and event in ("line", "return"):
            self._catch_definitions(frame)
        if event == "return":
            self._sync_here(leaving=frame)

    def _catch_definitions(self, frame: FrameType) -> None:
        """Swap probes into functions of pending code that ``frame`` has just defined."""
        namespace = frame.f_locals
        pending = self.pending
        if any(name.startswith("<") for name in pending.values()):
            candidates = list(namespace.values())  # a lambda: its name is not bound anywhere
        else:
            candidates = [namespace[n] for n in set(pending.values()) if n in namespace]
        found = False
        for obj in candidates:
            for function in functions_behind(obj, depth=2):
                base = base_code(function.__code__)
                if base in pending:
                    self._give(function, base, self._target(base))
                    found = True
        if found:
            with self._lock:
                for code in [c for c in pending if functions_running(c, self.journal.functions())]:
                    del pending[code]
                if not pending:
                    self.creators = frozenset()
                    self.tracer.watched = self.at_breakpoint
                    self.tracer.watch_lines = False
            if not self.pending:
                self._sync_here()

    # ------------------------------------------------------------------ thread tracers

    def _sync_here(self, leaving: Optional[FrameType] = None) -> None:
        """Trace this thread exactly when it steps or runs a watched frame."""
        watched = self.tracer.watched
        frames = []
        frame: Optional[FrameType] = sys._getframe(1)
        while frame is not None:
            if frame is not leaving and frame.f_code in watched:
                frames.append(frame)
            frame = frame.f_back
        on_main = threading.current_thread() is threading.main_thread()
        if frames or self.engine.is_stepping(threading.get_ident()):
            self.tracer.install_here(frames)
            if on_main:
                self._main_traced = True
        elif self.tracer.owns(sys.gettrace()):
            self.tracer.uninstall_here()
            if on_main:
                self._main_traced = False

    def _sync_threads(self) -> None:
        self._sync_here()
        main = threading.main_thread()
        # a main thread inside a stop is brought up to date when it resumes (arm())
        if threading.current_thread() is not main and (self.tracer.watched or self._main_traced) \
                and not self.engine.in_stop(main.ident):
            call_on_main_thread(self._sync_here)

    # ------------------------------------------------------------------ others' swaps

    def _on_swap(self, journal: CodeJournal, function: FunctionType, old: CodeType, new: CodeType) -> None:
        """Another tool swapped a function's code (a patch): probe the new code too."""
        if journal is self.journal:
            return
        with self._lock:
            self.journal.forget(function)
            target = self._target(new) if self.applied else new
            if target is not new:
                self.journal.swap(function, target)
