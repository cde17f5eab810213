"""Breakpoint probes in bytecode (Python 3.9-3.11): a copy of a code object with a call
``probe(line)`` wherever ``sys.settrace`` would report a line event for ``line``.

Where a line event fires, before 3.12: when control reaches a line from another line
(falling through, or by a jump), and when a jump goes *backwards* (a loop's next
iteration, even within one line). A forward jump within a line, or falling through
from the same line, is not a new line. On 3.9 a jump forward into the middle of a
line (not at the start of its line-table entry) does not fire either. The probe is
placed so that exactly the paths that fire go through it; other paths are re-aimed
past it. ``tests/test_codeswap.py`` checks the probes against ``sys.settrace``.

The probe call carries the line of the breakpoint, so tracebacks and ``f_lineno``
are unchanged; it adds no local, cell or free variable.
"""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

__all__ = ["available", "insert_probes"]

try:  # a target-side dependency below 3.12 only (pyproject.toml)
    from bytecode import Bytecode, Instr, Label

    try:
        from bytecode import TryBegin
    except ImportError:  # bytecode < 0.14: no exception-table pseudo instructions (3.10-)
        TryBegin = None  # type: ignore[assignment,misc]
except ImportError:  # pragma: no cover - exercised where bytecode is missing
    Bytecode = None  # type: ignore[assignment,misc]

_PY311 = sys.version_info >= (3, 11)
_LINE_STARTS_ONLY = sys.version_info < (3, 10)
_PROLOGUE_END = "RESUME" if _PY311 else "GEN_START"
_HANDLER_SETUPS = frozenset({"SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH"})

Probe = Callable[[int], None]
# one way control reaches an instruction: (line it comes from or None if unknown, backward)
_Path = Tuple[Optional[int], bool]


def available() -> bool:
    """Whether probes can be inserted here (the ``bytecode`` library, Python < 3.12)."""
    return Bytecode is not None and sys.version_info < (3, 12)


def _probe_call(probe: Probe, line: int, like: "Instr") -> List["Instr"]:
    loc = {"location": like.location} if _PY311 else {"lineno": like.lineno}
    if _PY311:
        return [Instr("PUSH_NULL", **loc), Instr("LOAD_CONST", probe, **loc), Instr("LOAD_CONST", line, **loc),
                Instr("PRECALL", 1, **loc), Instr("CALL", 1, **loc), Instr("POP_TOP", **loc)]
    return [Instr("LOAD_CONST", probe, **loc), Instr("LOAD_CONST", line, **loc),
            Instr("CALL_FUNCTION", 1, **loc), Instr("POP_TOP", **loc)]


def _prologue_length(items: List[Any]) -> int:
    """Items before the first line a frame reports: 3.11's RESUME and what precedes it
    (MAKE_CELL, COPY_FREE_VARS, RETURN_GENERATOR), 3.10's GEN_START."""
    for i, item in enumerate(items):
        if isinstance(item, Instr) and item.name == _PROLOGUE_END:
            return i + 1
        if isinstance(item, Instr) and item.name not in ("MAKE_CELL", "COPY_FREE_VARS", "RETURN_GENERATOR",
                                                         "POP_TOP", "NOP"):
            return 0
    return 0


def insert_probes(code: CodeType, lines: FrozenSet[int], probe: Probe) -> CodeType:
    """A copy of ``code`` calling ``probe(line)`` where a line of ``lines`` begins.

    Only ``code``'s own instructions are changed (nested code objects are constants
    and stay the same objects). Returns ``code`` itself if no line of ``lines`` is in it.
    """
    if Bytecode is None:
        raise RuntimeError("code probes need the 'bytecode' library (pip install bytecode)")
    bc = Bytecode.from_code(code)
    items = list(bc)
    position = {id(item): i for i, item in enumerate(items)}
    # who jumps to each label: [(instruction, backward, is an exception handler entry)]
    sources: Dict[int, List[Tuple[Any, bool, bool]]] = {}
    for i, item in enumerate(items):
        if isinstance(item, Instr) and item.has_jump():
            target = item.arg
            handler = item.name in _HANDLER_SETUPS
            sources.setdefault(id(target), []).append((item, position[id(target)] < i and not handler, handler))
        elif TryBegin is not None and isinstance(item, TryBegin):
            sources.setdefault(id(item.target), []).append((item, False, True))

    _keep_first_line(items, bc.first_lineno)
    out: List[Any] = []
    start = _prologue_length(items)
    out.extend(items[:start])
    inherited: List[_Path] = [(None, False)]  # reaching the first instruction: the call itself
    pending: List[Any] = []  # labels and pseudo instructions since the last instruction
    previous: Optional[Instr] = None
    changed = False
    for item in items[start:]:
        if not isinstance(item, Instr):
            pending.append(item)
            continue
        line = item.lineno
        labels = [p for p in pending if isinstance(p, Label)]
        # the ways in: falling through from `previous`, and the jumps to `labels`
        falls = previous is None or not previous.is_final()
        fall_paths: List[_Path] = []
        if falls:
            fall_paths = inherited if previous is None or previous.lineno is None else [(previous.lineno, False)]
        starts_line = previous is None or previous.lineno != line
        if line in lines:
            fire_fall = any(_fires(p, line, starts_line) for p in fall_paths)
            jumps = [(label, src, back, handler) for label in labels for src, back, handler in sources.get(id(label), ())]
            fire_jumps = [j for j in jumps if handler_or_fires(j, line, starts_line)]
            if fire_fall or fire_jumps:
                changed = True
                call = _probe_call(probe, line, item)
                if len(fire_jumps) == len(jumps) and (fire_fall or not falls):
                    out.extend(pending)  # every way in fires: the probe right before the instruction
                    out.extend(call)
                elif not fire_jumps:  # only falling through fires: jumps land after the probe
                    out.extend(p for p in pending if not isinstance(p, Label))
                    out.extend(call)
                    out.extend(labels)
                else:
                    out.extend(_split(pending, labels, jumps, fire_jumps, falls and not fire_fall, call, item))
                pending = []
        out.extend(pending)
        pending = []
        out.append(item)
        # what reaches the next instruction by falling through from this one
        if line is None:
            inherited = fall_paths + [(None, False)] if labels else (fall_paths or [(None, False)])
        previous = item
    out.extend(pending)
    if not changed:
        return code
    bc.clear()
    bc.extend(out)
    new = bc.to_code()
    if _line_set(new) != _line_set(code):  # never hand out code whose tracebacks would lie
        raise ValueError(f"inserting probes into {code.co_name} ({code.co_filename}) changed its line table")
    return new


def _line_set(code: CodeType) -> FrozenSet[int]:
    if hasattr(code, "co_lines"):
        return frozenset(line for _, _, line in code.co_lines() if line is not None)
    import dis

    return frozenset(line for _, line in dis.findlinestarts(code))


def _keep_first_line(items: List[Any], first_lineno: int) -> None:
    """3.10: a generator starts with GEN_START, which has no line; ``bytecode`` (0.17)
    then encodes a following run of ``first_lineno`` lines as no line at all. Giving
    GEN_START that line keeps the table right (no line event fires on it: the frame
    is entered by the call event, and the next instruction has the same line)."""
    first = items[0] if items else None
    if isinstance(first, Instr) and first.name == "GEN_START" and first.lineno is None:
        following = next((i for i in items[1:] if isinstance(i, Instr) and i.lineno is not None), None)
        if following is not None and following.lineno == first_lineno:
            first.lineno = first_lineno


def _fires(path: _Path, line: int, starts_line: bool) -> bool:
    source, backward = path
    if backward:
        return True
    if source is None:
        return True
    return source != line and (starts_line or not _LINE_STARTS_ONLY)


def handler_or_fires(jump: Tuple[Any, Any, bool, bool], line: int, starts_line: bool) -> bool:
    """Whether a jump into ``line`` is a new line event (handler entries always are)."""
    _, source, backward, handler = jump
    if handler:
        return True
    return _fires((getattr(source, "lineno", None), backward), line, starts_line)


def _split(pending: List[Any], labels: List[Any], jumps: List[Tuple[Any, Any, bool, bool]],
           fire_jumps: List[Tuple[Any, Any, bool, bool]], skip_fall: bool, call: List[Any],
           item: "Instr") -> List[Any]:
    """Some ways in fire, some do not: [jump over the probe if falling through does not
    fire] fire-label, probe, after-label; every jump re-aimed at one of the two."""
    fire_label, after_label = Label(), Label()
    firing = {id(src) for _, src, _, _ in fire_jumps}
    for _, src, _, _ in jumps:
        target = fire_label if id(src) in firing else after_label
        if isinstance(src, Instr):
            src.arg = target
        else:  # an exception-table entry
            src.target = target
    out: List[Any] = [p for p in pending if not isinstance(p, Label)]
    if skip_fall:
        jump = Instr("JUMP_FORWARD", after_label, **({"location": item.location} if _PY311 else {"lineno": item.lineno}))
        out.append(jump)
    out.append(fire_label)
    out.extend(call)
    out.append(after_label)
    return out
