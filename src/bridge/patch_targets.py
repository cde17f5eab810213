"""Find the function a patch replaces, and every function object that runs its code.

A name is looked up the way Python would reach the function from the module: a
module attribute (``"transform"``), a class attribute through the class's MRO
(``"Model.step"``: a method, a static or class method, a property's accessor), and a
function defined inside a function (``"outer.inner"`` or ``"outer.<locals>.inner"``,
found among the enclosing code's constants). What a name holds is unwrapped with
``codeswap.functions_behind``: a bound method, a ``functools.wraps`` decorator's
closure or ``__wrapped__``, a ``functools.partial``.

The function objects to swap (docs/howto-patch.md):

* a module-level function or a method: the one function object its ``def`` made (a
  copy made with ``types.FunctionType(f.__code__, ...)`` is not found);
* a nested function (a closure, a function made by a factory): every live function
  object of its code (one scan of the garbage collector's objects), and the enclosing
  functions, whose code is rebuilt to hold the new code, so that closures made later
  run it too.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from types import CodeType, FunctionType, MethodType
from typing import Any, Dict, List, Optional, Tuple, Union

from .codeswap import base_code, contains_code, functions_behind, functions_running
from .patch_compile import PatchRefused

__all__ = ["ClassTarget", "Target", "find"]

_CO_NEWLOCALS = 0x2  # set on function code; a class body has none


@dataclass
class Target:
    """A function to patch: its old code and where that code runs."""

    qualname: str
    module: str
    kind: str  # "function", "method", "staticmethod", "classmethod", "property getter", "nested function", ...
    code: CodeType  # the program's code (base_code) the function runs now
    functions: List[FunctionType]
    #: Enclosing functions' code holding ``code`` and their live function objects,
    #: rebuilt so that functions their ``def`` makes later run the new code.
    enclosing: List[Tuple[CodeType, List[FunctionType]]] = field(default_factory=list)
    closure_values: Dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def enclosing_locals(self) -> List[str]:
        """The local variables of the enclosing functions (where they are known)."""
        names: List[str] = []
        for code, _ in self.enclosing:
            names.extend(code.co_varnames + code.co_cellvars + code.co_freevars)
        return names


@dataclass
class ClassTarget:
    """A class named by a patch: its methods are patched one by one."""

    qualname: str
    cls: type


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _suggest(name: str, options: List[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _class_attribute(cls: type, name: str, trail: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    options = [n for k in cls.__mro__ if k is not object for n in k.__dict__ if not n.startswith("__")]
    raise PatchRefused(f"class {trail} has no attribute {name!r}{_suggest(name, options)}")


def _nested_code(code: CodeType, name: str, trail: str) -> CodeType:
    found = [c for c in code.co_consts if isinstance(c, CodeType) and c.co_name == name]
    if not found:
        options = [c.co_name for c in code.co_consts if isinstance(c, CodeType) and not c.co_name.startswith("<")]
        raise PatchRefused(f"{trail} defines no function or class named {name!r}{_suggest(name, options)}")
    if len(found) > 1:
        lines = ", ".join(str(c.co_firstlineno) for c in found)
        raise PatchRefused(f"{trail} defines {name!r} {len(found)} times (lines {lines}): name one by patching "
                           f"{trail} itself")
    return found[0]


def _leaf_function(obj: Any, name: str, accessor: Optional[str], trail: str) -> Optional[FunctionType]:
    """The function behind ``obj`` that a ``def name`` made: decorators' wrappers and
    bound methods are looked through; a property gives the accessor asked for."""
    if isinstance(obj, property):
        which = accessor or "fget"
        obj = getattr(obj, which)
        if obj is None:
            raise PatchRefused(f"property {trail} has no {which}")
    candidates = list(functions_behind(obj))
    if not candidates:
        return None
    named = [f for f in candidates if base_code(f.__code__).co_name == name] or candidates
    ids = {id(f) for f in named}
    leaves = [f for f in named if not any(id(g) in ids and g is not f for g in functions_behind(f))]
    codes = {id(base_code(f.__code__)) for f in leaves}
    if len(codes) > 1:
        names = ", ".join(f.__qualname__ for f in leaves)
        raise PatchRefused(f"{trail} holds several functions ({names}): cannot tell which one to patch")
    return leaves[0] if leaves else None


def _kind(raw: Any, in_class: bool) -> str:
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, property):
        return "property"
    return "method" if in_class else "function"


def _qualname(function: FunctionType) -> str:
    return getattr(function.__code__, "co_qualname", None) or function.__qualname__


def _closure_values(function: Optional[FunctionType]) -> Dict[str, Any]:
    if function is None or not function.__closure__:
        return {}
    values = {}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # an empty cell (assigned later in the enclosing function)
            values[name] = None
    return values


def _code_path(top: CodeType, target: CodeType) -> List[CodeType]:
    """The codes from ``top`` down to the one holding ``target`` among its constants."""
    if any(c is target for c in top.co_consts):
        return [top]
    for const in top.co_consts:
        if isinstance(const, CodeType) and contains_code(const, target):
            return [top] + _code_path(const, target)
    return []


def _enclosing(namespace: Dict[str, Any], top: Optional[FunctionType], target: CodeType,
               top_is_nested: bool) -> List[Tuple[CodeType, List[FunctionType]]]:
    """The enclosing functions' codes holding ``target`` and their live function objects."""
    if top is None:
        return []
    top_code = base_code(top.__code__)
    path = _code_path(top_code, target)
    out: List[Tuple[CodeType, List[FunctionType]]] = []
    for code in path:
        if not code.co_flags & _CO_NEWLOCALS:  # a class body: rebuilt with the function holding it
            continue
        if code is top_code:
            functions = [top]
            if top_is_nested:
                functions += [f for f in functions_running(code) if f is not top]
        else:
            functions = functions_running(code)
        out.append((code, functions))
    return out


def find(namespace: Dict[str, Any], module: str, dotted: str, accessor: Optional[str] = None,
         def_name: Optional[str] = None) -> Union[Target, ClassTarget]:
    """The function (or class) ``dotted`` names in ``namespace`` (a module's globals).

    ``accessor``: for a property, ``"fset"`` / ``"fdel"`` (default the getter).
    ``def_name``: the name of the new ``def`` (which function behind a decorator is meant).
    """
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise PatchRefused("no function named: give a name such as 'transform', 'Model.step' or 'module:qualname'")
    head = parts[0]
    if head not in namespace:
        options = [n for n in namespace if not n.startswith("__")]
        raise PatchRefused(f"module {module} has no name {head!r}{_suggest(head, options)}")
    obj: Any = namespace[head]
    trail = head
    in_class = False
    top: Optional[FunctionType] = None  # the function whose code holds the nested code being walked
    code: Optional[CodeType] = None  # set once the walk goes into a function's code
    qualname = ""
    for part in parts[1:]:
        if code is not None:
            if part != "<locals>":
                sep = ".<locals>." if code.co_flags & _CO_NEWLOCALS else "."
                code = _nested_code(code, part, trail)
                qualname += sep + part
                trail += "." + part
            continue
        if isinstance(obj, type):
            obj = _class_attribute(obj, part, trail)
            in_class = True
            trail += "." + part
            continue
        function = _leaf_function(obj, trail.rsplit(".", 1)[-1], None, trail)
        if function is None:
            raise PatchRefused(f"{module}.{trail} is {_a(type(obj).__name__)}, not a function or class: "
                               f"it defines no {part!r}")
        top, code, qualname = function, base_code(function.__code__), _qualname(function)
        if part != "<locals>":
            code = _nested_code(code, part, trail)
            qualname += ".<locals>." + part
            trail += "." + part
    if code is not None:
        if not code.co_flags & _CO_NEWLOCALS:
            raise PatchRefused(f"{module}.{trail} is a class defined inside a function: patch its methods one by "
                               "one (a class made by a running function is a new class at each call)")
        live = functions_running(code)
        top_nested = top is not None and "<locals>" in _qualname(top)
        return Target(qualname=qualname, module=module, kind="nested function", code=code, functions=live,
                      enclosing=_enclosing(namespace, top, code, top_nested),
                      closure_values=_closure_values(live[0] if live else None))
    if isinstance(obj, type):
        return ClassTarget(trail, obj)
    name = def_name or parts[-1]
    function = _leaf_function(obj, name, accessor, trail)
    if function is None:
        raise PatchRefused(f"{module}.{trail} is {_a(type(obj).__name__)}, not a function: a patch replaces the code "
                           "of functions and methods")
    old = base_code(function.__code__)
    qualname = _qualname(function)
    kind = _kind(obj, in_class)
    if kind == "property":
        kind = {"fset": "property setter", "fdel": "property deleter"}.get(accessor or "", "property getter")
    if "<locals>" not in qualname:
        return Target(qualname=qualname, module=module, kind=kind, code=old, functions=[function],
                      closure_values=_closure_values(function))
    # A function made inside another one (a factory's product): every function object of
    # its code, and the factory, if the module has it, so that later products are new too.
    live = functions_running(old)
    if function not in live:
        live.append(function)
    factory_name = qualname.split(".", 1)[0]
    factory = _leaf_function(namespace[factory_name], factory_name, None, factory_name) \
        if factory_name in namespace and _is_function_like(namespace[factory_name]) else None
    note = ""
    if factory is None or not contains_code(base_code(factory.__code__), old):
        factory, note = None, (f"functions that the enclosing {qualname.split('.<locals>')[0]} makes from now on "
                               "still get the old code (it is not a module-level function here)")
    return Target(qualname=qualname, module=module, kind="nested function", code=old, functions=live,
                  enclosing=_enclosing(namespace, factory, old, False), closure_values=_closure_values(function),
                  note=note)


def _is_function_like(obj: Any) -> bool:
    return isinstance(obj, (FunctionType, MethodType, staticmethod, classmethod, functools.partial)) or \
        hasattr(obj, "__wrapped__")
