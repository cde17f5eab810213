"""Compile the new definition of a function so that its code can replace the old one's.

A function object's code can be swapped (``bridge.codeswap``) only for code that needs
the same free variables: the closure of the function stays. So the new ``def`` is
compiled where the old one lived (docs/howto-patch.md):

* **inside the same scopes**: a ``def`` nested in a function is compiled inside a
  function of the same name whose parameters are the old code's free variables (they
  become the new code's free variables, in the same order: CPython sorts them by
  name); a method is compiled inside a ``class`` of its class's name, which gives it
  the ``__class__`` cell ``super()`` needs and the same private-name mangling;
* **in the module's globals**, with the module's ``from __future__`` flags;
* **under the old names**: the ``def`` takes the old function's name, so ``co_name``
  and ``__qualname__`` stay what tracebacks and pickles know.

Running the wrapper evaluates the new ``def`` statement once: its default values (and
its annotations, where they are not lazy) are computed in the module's globals, with the
old closure's values for the free variables. Its decorators are *not* applied: the
existing function object keeps the decorators it was made with, and only its code,
defaults and docstring change.

A free variable the old code had and the new one does not use is kept (an unreachable
reference is added); a free variable the new code needs and the old closure does not
have cannot be provided: :class:`PatchRefused`.
"""

from __future__ import annotations

import __future__
import ast
import copy
import inspect
import sys
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["Definition", "PatchRefused", "Scope", "compile_definition", "parse_definitions", "scope_of",
           "KIND_FLAGS", "kind_of", "with_filename"]

FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]
#: ``[("def" | "class", name), ...]``: the scopes around a function, outermost first.
Scope = List[Tuple[str, str]]

#: Code flags that make a function something other than a plain function when called.
KIND_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag
_HAS_TYPE_PARAMS = sys.version_info >= (3, 12)


class PatchRefused(Exception):
    """The patch cannot be applied; nothing was changed. The message says why."""


@dataclass
class Definition:
    """One ``def`` of the new source: where it sits in the source (``path``: the classes
    around it, then its name) and the dotted names of its decorators."""

    node: FunctionNode
    path: List[str]
    decorators: List[str] = field(default_factory=list)

    @property
    def line(self) -> int:
        """The line of its ``def`` keyword."""
        return self.node.lineno

    def accessor(self) -> Optional[str]:
        """``"fset"`` / ``"fdel"`` for a property's ``@x.setter`` / ``@x.deleter``, else None."""
        for name in self.decorators:
            if name.endswith(".setter"):
                return "fset"
            if name.endswith(".deleter"):
                return "fdel"
        return None


def kind_of(code: CodeType) -> str:
    """What calling a function of ``code`` makes: a plain call, a generator, ..."""
    flags = code.co_flags
    if flags & inspect.CO_ASYNC_GENERATOR:
        return "async generator"
    if flags & inspect.CO_COROUTINE:
        return "coroutine (async def)"
    if flags & inspect.CO_ITERABLE_COROUTINE:
        return "generator-based coroutine"
    if flags & inspect.CO_GENERATOR:
        return "generator"
    return "plain function"


def _dotted(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    parts = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


def _is_docstring_or_pass(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Pass) or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str))


def parse_definitions(source: str, filename: str) -> Tuple[List[Definition], List[str]]:
    """The ``def`` statements of ``source`` (top level, and in its ``class`` statements at
    any depth), and notes on what else the classes hold (it is not patched).

    Refused: a syntax error, and top-level statements other than ``def`` and ``class``
    (an ``import`` or an assignment would change the module, which a patch does not).
    """
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = (exc.text or "").strip()
        raise PatchRefused(f"the new source does not compile: {exc.msg} ({where})" +
                           (f": {text}" if text else "")) from None
    definitions: List[Definition] = []
    notes: List[str] = []

    def collect(body: Sequence[ast.stmt], classes: List[str]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                definitions.append(Definition(stmt, classes + [stmt.name], [_dotted(d) for d in stmt.decorator_list]))
            elif isinstance(stmt, ast.ClassDef):
                collect(stmt.body, classes + [stmt.name])
            elif _is_docstring_or_pass(stmt):
                continue
            elif classes:
                notes.append(f"line {stmt.lineno} of class {'.'.join(classes)} is not a def: class attributes "
                             "are not patched")
            else:
                first = ast.get_source_segment(source, stmt) or type(stmt).__name__
                first = first.splitlines()[0] if first else type(stmt).__name__
                raise _not_a_definition(stmt.lineno, first)

    collect(tree.body, [])
    if not definitions:
        raise PatchRefused("the new source has no def statement (nor a class holding one): nothing to patch")
    return definitions, notes


def _not_a_definition(line: int, text: str) -> PatchRefused:
    """The refusal of a top-level statement that is neither ``def`` nor ``class``."""
    return PatchRefused(
        f"line {line} of the new source is not a def or class statement ({text!r}): a patch replaces the code "
        "of existing functions and changes nothing else in the module; run other statements in the target "
        "first (s.exec, with 'global NAME' for a module-level name), then patch")


def scope_of(qualname: str) -> Tuple[Scope, str]:
    """The scopes around a function, from its ``__qualname__``, and its own name:
    ``"outer.<locals>.Model.step"`` -> ``([("def", "outer"), ("class", "Model")], "step")``."""
    parts = qualname.split(".")
    scope: Scope = []
    for i, part in enumerate(parts[:-1]):
        if part == "<locals>":
            continue
        kind = "def" if i + 1 < len(parts) and parts[i + 1] == "<locals>" else "class"
        scope.append((kind, part))
    return scope, parts[-1]


def _fill(node: ast.AST, like: ast.AST) -> ast.AST:
    for sub in ast.walk(node):
        if "lineno" in sub._attributes and not hasattr(sub, "lineno"):
            ast.copy_location(sub, like)
    return node


def _function_def(name: str, params: Sequence[str], body: List[ast.stmt]) -> ast.FunctionDef:
    args = ast.arguments(posonlyargs=[], args=[ast.arg(arg=p, annotation=None, type_comment=None) for p in params],
                         vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    extra: Dict[str, Any] = {"type_params": []} if _HAS_TYPE_PARAMS else {}
    return ast.FunctionDef(name=name, args=args, body=body, decorator_list=[], returns=None, type_comment=None,
                           **extra)


def _class_def(name: str, body: List[ast.stmt]) -> ast.ClassDef:
    extra: Dict[str, Any] = {"type_params": []} if _HAS_TYPE_PARAMS else {}
    return ast.ClassDef(name=name, bases=[], keywords=[], body=body, decorator_list=[], **extra)


def _wrapped(node: FunctionNode, scope: Scope, params: Sequence[str]) -> ast.Module:
    """``node`` inside the scopes ``scope``; the innermost ``def`` scope takes ``params``
    and every ``def`` scope returns what it holds."""
    statement: ast.stmt = node
    held = node.name
    innermost_def = max((i for i, (kind, _) in enumerate(scope) if kind == "def"), default=-1)
    for i in range(len(scope) - 1, -1, -1):
        kind, name = scope[i]
        if kind == "class":
            statement = _class_def(name, [statement])
        else:
            body = [statement, ast.Return(value=ast.Name(id=held, ctx=ast.Load()))]
            statement = _function_def(name, params if i == innermost_def else (), body)
        held = name
    module = ast.Module(body=[statement], type_ignores=[])
    _fill(module, node)
    return module


def _with_references(node: FunctionNode, names: Sequence[str]) -> FunctionNode:
    """``node`` with an unreachable ``if False: (names...)``: the names stay free variables."""
    padded = copy.copy(node)
    refs = ast.Tuple(elts=[ast.Name(id=n, ctx=ast.Load()) for n in names], ctx=ast.Load())
    padded.body = list(node.body) + [ast.If(test=ast.Constant(value=False), body=[ast.Expr(value=refs)], orelse=[])]
    last = node.body[-1]
    for sub in ast.walk(padded.body[-1]):
        if "lineno" in sub._attributes:
            ast.copy_location(sub, last)
    return padded


def _build(node: FunctionNode, scope: Scope, freevars: Sequence[str], filename: str, flags: int) -> CodeType:
    params = [v for v in freevars if v != "__class__"]
    return compile(_wrapped(node, scope, params), filename, "exec", flags=flags, dont_inherit=True)


def _innermost_code(module_code: CodeType, scope: Scope, name: str) -> CodeType:
    code = module_code
    for _, scope_name in scope:
        code = next(c for c in code.co_consts if isinstance(c, CodeType) and c.co_name == scope_name)
    return next(c for c in code.co_consts if isinstance(c, CodeType) and c.co_name == name)


def compile_definition(definition: Definition, *, old: CodeType, qualname: str, namespace: Dict[str, Any],
                       closure_values: Dict[str, Any], filename: str,
                       enclosing_locals: Sequence[str] = ()) -> FunctionType:
    """The new function for ``definition``, made where ``old`` (a function's code, whose
    ``__qualname__`` is ``qualname``) was made; refused with :class:`PatchRefused` if its
    code cannot replace ``old`` (another kind of function, other free variables).

    The function returned is a throw-away: the patch takes its ``__code__``,
    ``__defaults__``, ``__kwdefaults__`` and ``__doc__``. ``closure_values``: the values of
    the old closure's cells (for the default values that use them). ``enclosing_locals``:
    the local variables of the enclosing functions, where known: a new reference to one
    of them is a free variable the old closure lacks (refused), not a global.
    """
    scope, name = scope_of(qualname)
    node = copy.copy(definition.node)
    node.name = name  # the old name: co_name and __qualname__ stay as they were
    node.decorator_list = []  # the existing function object keeps its decorators
    flags = old.co_flags & _FUTURE_FLAGS
    wanted = tuple(old.co_freevars)
    visible = sorted(set(wanted) | {n for n in enclosing_locals if n != "__class__"})
    try:
        module_code = _build(node, scope, visible, filename, flags)
        new = _innermost_code(module_code, scope, name)
        missing = [v for v in wanted if v not in new.co_freevars]
        if missing and not set(new.co_freevars) - set(wanted):
            node = _with_references(node, missing)
            module_code = _build(node, scope, visible, filename, flags)
            new = _innermost_code(module_code, scope, name)
    except SyntaxError as exc:  # e.g. 'nonlocal x' for an x the scopes do not have
        raise PatchRefused(f"the new {qualname} does not compile where the old one lives: {exc.msg} "
                           f"(line {exc.lineno})") from None
    _check_compatible(qualname, old, new)
    return _evaluate(module_code, scope, name, namespace, closure_values, qualname)


def with_filename(code: CodeType, filename: str) -> CodeType:
    """``code`` and the code nested in it, compiled as if from ``filename``."""
    consts = tuple(with_filename(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _check_compatible(qualname: str, old: CodeType, new: CodeType) -> None:
    if old.co_flags & KIND_FLAGS != new.co_flags & KIND_FLAGS:
        raise PatchRefused(
            f"{qualname} is a {kind_of(old)} and the new definition a {kind_of(new)}: calling one makes something "
            "else than calling the other (a generator object, a coroutine, a value), so code that calls it would "
            "break; keep the kind, or change the callers too")
    if new.co_freevars == old.co_freevars:
        return
    extra = [v for v in new.co_freevars if v not in old.co_freevars]
    if "__class__" in extra:
        raise PatchRefused(
            f"the new {qualname} uses super() or __class__, the old one does not: its function object has no "
            "__class__ cell to give it; write super(ClassName, self) instead of super()")
    if extra:
        raise PatchRefused(
            f"the new {qualname} reads {', '.join(extra)} from the enclosing function, which the old one does not: "
            "a running function object cannot be given new closure variables. Pass them as arguments or "
            "read them from a global instead")
    lost = [v for v in old.co_freevars if v not in new.co_freevars]
    raise PatchRefused(
        f"the new {qualname} makes {', '.join(lost)} its own local variable(s), while the old one reads them from "
        "the enclosing function: rename the local variable(s)")


def _evaluate(module_code: CodeType, scope: Scope, name: str, namespace: Dict[str, Any],
              closure_values: Dict[str, Any], qualname: str) -> FunctionType:
    """Run the wrapper: the ``def`` statement itself runs once (its defaults)."""
    scratch: Dict[str, Any] = {}
    try:
        exec(module_code, namespace, scratch)
        held: Any = scratch[scope[0][1] if scope else name]
        innermost_def = max((i for i, (kind, _) in enumerate(scope) if kind == "def"), default=-1)
        for i, (kind, _) in enumerate(scope):
            inner_name = scope[i + 1][1] if i + 1 < len(scope) else name
            if kind == "def":
                params = held.__code__.co_varnames[:held.__code__.co_argcount] if i == innermost_def else ()
                held = held(*[closure_values.get(p) for p in params])
            else:
                held = held.__dict__[inner_name]
    except Exception as exc:
        raise PatchRefused(f"evaluating the new def of {qualname} (its default values or annotations) raised "
                           f"{type(exc).__name__}: {exc}") from None
    if type(held) is not FunctionType:  # pragma: no cover - the wrapper holds exactly the def
        raise PatchRefused(f"the new definition of {qualname} did not make a function")
    return held
