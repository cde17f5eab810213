"""Patch running code: replace a function's code in place, and undo it.

``patch(namespace, source, name)`` compiles the new ``def`` statements of ``source``
where the old functions live (patch_compile.py), finds every function object that
runs the old code (patch_targets.py), and only then, when all of it worked, swaps their
code through one :class:`~bridge.codeswap.CodeJournal`. A refusal (a syntax error, an
unknown name, another kind of function, other free variables) happens before anything
changed. Swapped functions run the new code from their next call, through every
reference to them; frames already running finish with the old code, and the result
says which (docs/howto-patch.md).

The journal keeps the code each function ran before its first patch: ``unpatch``
puts it back (with the defaults and docstring), for one name or for all.

Breakpoints (docs/howto-patch.md, "Patches and breakpoints"): the new code lives in a
file of its own (patch_files.py). A breakpoint in the old function stays where it is
(it fires in frames still running the old code, and again after ``unpatch``), and a
copy of it is set on the same statement of the new code, found by comparing the old
and new lines; ``unpatch`` clears the copies. Breakpoints compiled into the code
(3.9-3.11) follow the swap through codeswap's swap listeners.
"""

from __future__ import annotations

import builtins
import difflib
import dis
import gc
import itertools
import linecache
import sys
import textwrap
import threading
import weakref
from dataclasses import dataclass, field
from types import AsyncGeneratorType, CodeType, CoroutineType, FunctionType, GeneratorType
from typing import Any, Dict, List, Optional, Tuple

from .codeswap import CodeJournal, base_code, with_nested_replaced
from .frames import frame_label
from .patch_compile import (KIND_FLAGS, Definition, PatchRefused, compile_definition, parse_definitions,
                            with_filename)
from .patch_targets import ClassTarget, Target, find

__all__ = ["PatchRefused", "patch", "patches", "unpatch"]

_journal = CodeJournal("patches")
_lock = threading.RLock()
_numbers = itertools.count(1)
#: function -> (__defaults__, __kwdefaults__, __doc__) before its first patch
_saved: "weakref.WeakKeyDictionary[FunctionType, Tuple[Any, Any, Any]]" = weakref.WeakKeyDictionary()
_KIND_DECORATORS = {"staticmethod": "staticmethod", "classmethod": "classmethod", "property": "property"}


@dataclass
class _Record:
    """One function patched: what unpatch needs."""

    number: int
    name: str  # the function's __qualname__
    module: str
    file: str
    functions: "weakref.WeakSet[FunctionType]"
    breakpoints: List[int] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"patch": self.number, "name": self.name, "module": self.module, "file": self.file,
                "functions": len(self.functions), "breakpoints": list(self.breakpoints)}


_records: List[_Record] = []


# ------------------------------------------------------------------------------ patch


def _split_name(name: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """``"module:qualname"`` -> (module, qualname); a plain name -> (None, name)."""
    if name and ":" in name:
        module, _, qualname = name.partition(":")
        return module.strip(), qualname.strip()
    return None, name


def module_namespace(module: str) -> Dict[str, Any]:
    """The globals of imported module ``module``; refused if it is not imported."""
    mod = sys.modules.get(module)
    if mod is None:
        raise PatchRefused(f"no module named {module!r} is imported in the target")
    return vars(mod)


def _decorator_kind(definition: Definition) -> Optional[str]:
    for name in definition.decorators:
        last = name.rsplit(".", 1)[-1]
        if last in _KIND_DECORATORS:
            return _KIND_DECORATORS[last]
        if last in ("setter", "getter", "deleter"):
            return "property"
    return None


def _plan(namespace: Dict[str, Any], module: str, definitions: List[Definition],
          name: Optional[str]) -> List[Tuple[Definition, Target]]:
    """Each definition with the function it replaces (all looked up before any change)."""
    if name is not None:
        tops = {d.path[0] for d in definitions}
        if len(definitions) == 1 and len(definitions[0].path) == 1:
            d = definitions[0]
            targets = [(d, find(namespace, module, name, d.accessor(), d.node.name))]
            return _checked(targets)
        if len(tops) != 1 or len(definitions[0].path) == 1:
            raise PatchRefused(f"the new source defines {', '.join(sorted(tops))}: to patch {name}, give one def "
                               "(or one class statement), or leave the name out to patch each of them")
        prefix = name
    else:
        prefix = None
    planned: Dict[int, Tuple[Definition, Target]] = {}
    unknown: List[str] = []
    for d in definitions:
        dotted = ".".join([prefix] + d.path[1:]) if prefix else ".".join(d.path)
        try:
            target = find(namespace, module, dotted, d.accessor(), d.node.name)
        except PatchRefused as exc:
            unknown.append(str(exc))
            continue
        if isinstance(target, ClassTarget):
            raise PatchRefused(f"{module}.{dotted} is a class; the new source has a def {d.node.name}: "
                               "patch a class with a class statement, or name a method (Class.method)")
        planned[id(target.functions[0]) if target.functions else id(target.code)] = (d, target)  # the last def wins
    if unknown:
        raise PatchRefused("; ".join(unknown) + " -- nothing was patched (a patch replaces existing functions; "
                                                "define new ones in the target first)")
    return _checked(list(planned.values()))


def _checked(planned: List[Tuple[Definition, Any]]) -> List[Tuple[Definition, Target]]:
    for d, target in planned:
        if isinstance(target, ClassTarget):
            raise PatchRefused(f"{target.qualname} is a class; the new source has a def {d.node.name}: "
                               "patch a class with a class statement, or name a method (Class.method)")
        wanted = _decorator_kind(d)
        have = target.kind.split()[0] if target.kind.startswith("property") else target.kind
        if wanted is not None and wanted != have:
            raise PatchRefused(f"{target.qualname} is a {target.kind} and the new def is decorated as a "
                               f"{wanted}: a patch changes code, not what kind of attribute a method is")
    return planned


def patch(namespace: Dict[str, Any], source: str, name: Optional[str] = None, *, trial: bool = False) -> Dict[str, Any]:
    """Replace the functions that the ``def`` and ``class`` statements of ``source`` name
    (or the one function ``name``: a qualified name in ``namespace``, or
    ``"module:qualname"``); return what was replaced (JSON).

    ``trial``: compile to no file and touch no breakpoint (a throw-away copy of the
    process, the playground). Raises PatchRefused, having changed nothing.
    """
    module_name, name = _split_name(name)
    name = name or None  # "module:" names a module, not a function: each def by its own name
    if module_name:
        namespace = module_namespace(module_name)
    module = str(namespace.get("__name__", "?"))
    text = textwrap.dedent(source)
    if not text.endswith("\n"):
        text += "\n"
    with _lock:
        definitions, notes = parse_definitions(text, "<patch>")
        planned = _plan(namespace, module, definitions, name)
        compiled = [(d, t, compile_definition(d, old=t.code, qualname=t.qualname, namespace=namespace,
                                              closure_values=t.closure_values, filename="<patch>",
                                              enclosing_locals=t.enclosing_locals()))
                    for d, t in planned]
        # Everything compiled: from here on the patch happens.
        number = next(_numbers)
        filename = "<patch trial>"
        if not trial:  # the new code names its own file: tracebacks, breakpoints, the source view
            from .patch_files import patch_file

            label = name or ",".join(dict.fromkeys(d.path[0] for d in definitions))
            filename = patch_file(number, module, label, text)
        compiled = [(d, t, _retargeted(new, filename)) for d, t, new in compiled]
        replaced = []
        done: List[Tuple[Target, FunctionType]] = []
        try:
            for d, target, new in compiled:
                _swap(target, new)
                done.append((target, new))
        except BaseException:
            for target, _ in done:
                for f in target.functions + [f for _, fs in target.enclosing for f in fs]:
                    _restore(f)
            raise
        for d, target, new in compiled:
            record = _Record(number, target.qualname, module, filename, weakref.WeakSet(
                target.functions + [f for _, fs in target.enclosing for f in fs]))
            copies = [] if trial else _copy_breakpoints(target.code, d, filename)
            record.breakpoints = [c["id"] for c in copies]
            if not trial:
                _records.append(record)
            replaced.append({
                "name": target.qualname, "module": module, "kind": target.kind, "functions": len(target.functions),
                "enclosing": len(target.enclosing), "file": filename, "line": d.line,
                "running": _running(target.code), "breakpoints": copies, "note": target.note,
            })
    warnings = [w for _, t, new in compiled for w in _undefined_globals(new.__code__, namespace, t.qualname)]
    return {"patch": number, "replaced": replaced, "notes": notes, "warnings": warnings}


def _retargeted(new: FunctionType, filename: str) -> FunctionType:
    """The throw-away function ``new`` with its code naming ``filename``."""
    new.__code__ = with_filename(new.__code__, filename)
    return new


def _swap(target: Target, new: FunctionType) -> None:
    code = new.__code__
    for function in target.functions:
        if function not in _saved:
            _saved[function] = (function.__defaults__, function.__kwdefaults__, function.__doc__)
        _journal.swap(function, code)
        function.__defaults__ = new.__defaults__
        function.__kwdefaults__ = new.__kwdefaults__
        function.__doc__ = new.__doc__
    old = target.code
    for holder, functions in target.enclosing:
        rebuilt = with_nested_replaced(holder, lambda c: code if c is old else None)
        for function in functions:
            _journal.swap(function, rebuilt)


def _restore(function: FunctionType) -> bool:
    restored = _journal.restore(function)
    saved = _saved.pop(function, None)
    if restored and saved is not None:
        function.__defaults__, function.__kwdefaults__, function.__doc__ = saved
    return restored


# ------------------------------------------------------------------------------ reporting


def _running(code: CodeType) -> List[Dict[str, Any]]:
    """Frames running ``code`` (or an instrumented copy of it): on a thread's stack, or a
    suspended generator or coroutine (one gc scan, for those kinds only)."""
    out = []
    for tid, top in sys._current_frames().items():
        frame = top
        while frame is not None:
            if base_code(frame.f_code) is code:
                out.append(dict(frame_label(frame), thread=tid))
            frame = frame.f_back
    del top, frame
    if code.co_flags & KIND_FLAGS:
        for obj in gc.get_objects():
            if isinstance(obj, GeneratorType):
                frame, running = obj.gi_frame, obj.gi_running
            elif isinstance(obj, CoroutineType):
                frame, running = obj.cr_frame, obj.cr_running
            elif isinstance(obj, AsyncGeneratorType):
                frame, running = obj.ag_frame, obj.ag_running
            else:
                continue
            if frame is not None and not running and base_code(frame.f_code) is code:
                out.append(dict(frame_label(frame), thread=None, suspended=True))
    return out


def _undefined_globals(code: CodeType, namespace: Dict[str, Any], qualname: str) -> List[str]:
    """Global names the new code reads that the module does not have (a NameError to come)."""
    missing = set()
    todo = [code]
    while todo:
        c = todo.pop()
        todo.extend(k for k in c.co_consts if isinstance(k, CodeType))
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                name = str(ins.argval)
                if name not in namespace and not hasattr(builtins, name):
                    missing.add(name)
    return [f"{qualname} reads the global {n!r}, which module {namespace.get('__name__', '?')} does not define "
            "(NameError when it gets there)" for n in sorted(missing)]


def _lines(code: CodeType) -> Tuple[int, int]:
    lines = [ln for c in _walk(code) for ln in _code_lines(c)]
    return (min(lines), max(lines)) if lines else (code.co_firstlineno, code.co_firstlineno)


def _walk(code: CodeType) -> List[CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            out.extend(_walk(const))
    return out


def _code_lines(code: CodeType) -> List[int]:
    if hasattr(code, "co_lines"):
        return [ln for _, _, ln in code.co_lines() if ln]
    return [ln for _, ln in dis.findlinestarts(code) if ln]


def _copy_breakpoints(old: CodeType, definition: Definition, filename: str) -> List[Dict[str, Any]]:
    """Set a copy of each breakpoint of ``old`` on the same statement of the new code."""
    from .source_ops import breakpoint_path
    from .tracing_hook import engine

    try:
        debugger = engine()
    except RuntimeError:  # no tracing engine here
        return []
    path = breakpoint_path(old.co_filename)
    first, last = min(old.co_firstlineno, _lines(old)[0]), _lines(old)[1]
    inside = [bp for bp in debugger.breakpoints() if bp.file == path and first <= bp.line <= last]
    if not inside:
        return []
    old_lines = [ln.strip() for ln in linecache.getlines(old.co_filename)[first - 1:last]]
    new_first = min([definition.node.lineno] + [d.lineno for d in definition.node.decorator_list])
    new_last = getattr(definition.node, "end_lineno", None) or new_first
    new_lines = [ln.strip() for ln in linecache.getlines(filename)[new_first - 1:new_last]]
    blocks = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()
    copies = []
    for bp in inside:
        offset = bp.line - first
        mapped = next((j1 + (offset - i1 if tag == "equal" else 0) for tag, i1, i2, j1, j2 in blocks
                       if i1 <= offset < i2), len(new_lines) - 1)
        try:
            copy = debugger.set_break(filename, new_first + min(mapped, len(new_lines) - 1),
                                      condition=bp.condition, temporary=bp.temporary)
        except ValueError:  # no code there (the new function is shorter)
            continue
        copies.append({"from": bp.id, "id": copy.id, "file": copy.file, "line": copy.line})
    return copies


# ------------------------------------------------------------------------------ unpatch


def _matches(record: _Record, name: str) -> bool:
    module, qualname = _split_name(name)
    if module and module != record.module:
        return False
    if not qualname:
        return True
    if str(record.number) == qualname:
        return True
    short, wanted = record.name.replace("<locals>.", ""), qualname.replace("<locals>.", "")  # "outer.inner"
    return short == wanted or short.startswith(wanted + ".")


def unpatch(name: Optional[str] = None) -> Dict[str, Any]:
    """Put back the code from before the first patch of ``name`` (a qualified name, a
    class's name for all its methods, ``"module:qualname"``, or a patch number), or of
    every patched function. Refused if nothing of that name is patched."""
    with _lock:
        chosen = [r for r in _records if name is None or _matches(r, name)]
        if name is not None and not chosen:
            known = sorted({r.name for r in _records})
            raise PatchRefused(f"nothing named {name!r} is patched" +
                               (f" (patched: {', '.join(known)})" if known else " (nothing is patched)"))
        functions: Dict[int, FunctionType] = {}
        for record in chosen:
            for function in list(record.functions):
                functions[id(function)] = function
        kept = []
        for function in functions.values():
            if function in _journal and not _restore(function):
                kept.append(function.__qualname__)
        cleared = _clear_copies([bp for r in chosen for bp in r.breakpoints])
        for record in chosen:
            _records.remove(record)
    names = []
    for r in chosen:
        if r.name not in names:
            names.append(r.name)
    return {"restored": names, "functions": len(functions) - len(kept), "kept": kept, "breakpoints_cleared": cleared}


def _clear_copies(ids: List[int]) -> List[int]:
    if not ids:
        return []
    from .tracing_hook import engine

    debugger = engine()
    cleared = []
    for bp_id in ids:
        try:
            debugger.clear_break(bp_id)
            cleared.append(bp_id)
        except KeyError:  # cleared by the user, or a temporary one that fired
            pass
    return cleared


def patches() -> List[Dict[str, Any]]:
    """The patches in force, oldest first."""
    with _lock:
        return [r.to_json() for r in _records]
