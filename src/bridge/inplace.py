"""Changing the target's own objects in place, and undoing it.

A write-back (mount_ops.py) applies what the notebook changed *into* the target's objects
when it can, so that every alias in the job sees the change (docs/howto-mount.md, "What
keeps identity"). Both sides classify an object with :func:`kind_of`: the notebook to
predict what the diff says, the target to check it before anything is written.

=============  ===========================================  ===================================
kind           objects                                      the state the notebook sends
=============  ===========================================  ===================================
``list``       ``list``                                     the new items (a list)
``dict``       ``dict``, ``OrderedDict``, ``defaultdict``,  the new items (a list of pairs)
               ``Counter``
``set``        ``set``                                      the new members (a list)
``deque``      ``collections.deque``                        the new items (a list); same maxlen
``bytearray``  ``bytearray``                                the new bytes
``ndarray``    numpy arrays                                 the changed blocks, or the new
                                                            array; same shape and dtype
``pandas``     pandas ``DataFrame`` / ``Series``            one array per column (and the
                                                            index if it changed); same
                                                            shape, columns and dtypes
``attrs``      instances of plain Python classes (their     the attributes to set and delete
               whole state is their ``__dict__``), and
               ``types.SimpleNamespace``
=============  ===========================================  ===================================

:func:`prepare` checks that a state can be applied to a target object (raising
:class:`InPlaceError` with the reason when it cannot) and returns a :class:`Step`. Steps
are applied one after another and, should one fail, the ones already applied are undone
in reverse order, so a write-back is all or nothing (mount_ops.py).
"""

from __future__ import annotations

import collections
import sys
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import blocks

_DICT_TYPES = (dict, collections.OrderedDict, collections.defaultdict, collections.Counter)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python

#: Objects that never need a mapping between the notebook's copy and the target's object:
#: immutable values (a copy is as good as the original) and things pickled by name.
_BY_VALUE = (str, bytes, int, float, complex, bool, type(None), tuple, frozenset, range, slice, type,
             types.FunctionType, types.BuiltinFunctionType, types.ModuleType, types.MethodType)


class InPlaceError(Exception):
    """A state cannot be applied to the target's object in place (the message says why)."""


class StepFailed(Exception):
    """A step raised when applied (``cause``); the steps applied before it were undone."""

    def __init__(self, step: "Step", cause: BaseException) -> None:
        super().__init__(f"{step.label}: {type(cause).__name__}: {cause}")
        self.step = step
        self.cause = cause


def _numpy() -> Any:
    return sys.modules.get("numpy")


def _pandas() -> Any:
    return sys.modules.get("pandas")


def _plain_class(cls: type) -> bool:
    """Whether an instance's whole state is its ``__dict__``: a class defined in Python, on
    Python classes only, with no slots and no pickling hooks of its own."""
    for klass in cls.__mro__[:-1]:
        if not klass.__flags__ & _HEAPTYPE:
            return False
        own = vars(klass)
        if "__slots__" in own or "__reduce__" in own or "__reduce_ex__" in own or "__getstate__" in own \
                or "__setstate__" in own or "__getnewargs__" in own or "__getnewargs_ex__" in own:
            return False
    return cls.__mro__[-1] is object


def kind_of(obj: Any) -> Optional[str]:
    """How ``obj`` can be changed in place (a kind of the module docstring), or None."""
    cls = type(obj)
    if cls is list:
        return "list"
    if cls in _DICT_TYPES:
        return "dict"
    if cls is set:
        return "set"
    if cls is collections.deque:
        return "deque"
    if cls is bytearray:
        return "bytearray"
    np = _numpy()
    if np is not None and isinstance(obj, np.ndarray):
        return "ndarray"
    pd = _pandas()
    if pd is not None and isinstance(obj, (pd.DataFrame, pd.Series)):
        return "pandas"
    if cls is types.SimpleNamespace or (cls.__flags__ & _HEAPTYPE and _plain_class(cls)):
        return "attrs"
    return None


def by_value(obj: Any) -> bool:
    """Whether ``obj`` is an immutable value or pickled by name: no mapping needed."""
    return isinstance(obj, _BY_VALUE)


def trackable(obj: Any) -> bool:
    """Whether a mount maps the notebook's copy of ``obj`` to the target's object (keeping
    its identity when it is written back): mutable objects and instances of Python classes."""
    if isinstance(obj, _BY_VALUE):
        return False
    return kind_of(obj) is not None or bool(type(obj).__flags__ & _HEAPTYPE)


def same_layout(a: Any, b: Any) -> Tuple[bool, str]:
    """Whether ``b`` fits where ``a`` is, for the kinds with a layout (arrays, pandas, deques);
    the second item says what differs."""
    kind = kind_of(a)
    if kind == "ndarray":
        if a.shape != b.shape:
            return False, f"its shape changed ({a.shape} -> {b.shape})"
        if a.dtype != b.dtype:
            return False, f"its dtype changed ({a.dtype} -> {b.dtype})"
    elif kind == "pandas":
        if type(a) is not type(b) or a.shape != b.shape:
            return False, f"its shape changed ({a.shape} -> {getattr(b, 'shape', '?')})"
        if getattr(a, "ndim", 1) == 2:
            if not a.columns.equals(b.columns):
                return False, "its columns changed"
            if not a.dtypes.equals(b.dtypes):
                return False, "its dtypes changed"
        elif a.dtype != b.dtype:
            return False, f"its dtype changed ({a.dtype} -> {b.dtype})"
    elif kind == "deque" and a.maxlen != b.maxlen:
        return False, "its maxlen changed"
    return True, ""


#: Undo copies of array contents are kept up to this many bytes per step. A bigger array
#: step is applied last (after every step and write that can fail) and keeps none: writing
#: a checked block of the same dtype into a writeable array cannot fail.
UNDO_COPY_LIMIT = 64 * 1024 * 1024


class Step:
    """One in-place change, ready: :meth:`apply` makes it, :meth:`undo` takes it back.

    ``fallible`` steps can still raise when applied; the others (array writes, checked
    beforehand) are applied after everything that can fail.
    """

    def __init__(self, apply: Callable[[], None], undo: Callable[[], None], fallible: bool = True) -> None:
        self.apply = apply
        self.undo = undo
        self.fallible = fallible
        #: How errors name the object (mount_ops.py sets it: ``object #n (list)``).
        self.label = "an object"
        #: Byte ranges of the object's buffer that ``apply`` rewrote (arrays only), so that
        #: the target's digests of it can be brought up to date without hashing it all.
        self.byte_ranges: List[Tuple[int, int]] = []


def prepare(kind: str, obj: Any, state: Any) -> Step:
    """A step that puts ``state`` (as the notebook sent it for ``kind``) into ``obj``.

    Everything that can be checked is checked here, before anything is written; a step
    can still fail when applied (a bytearray with live exports cannot change size), and
    is then undone with the others.
    """
    actual = kind_of(obj)
    if actual != kind:
        raise InPlaceError(f"the target's object is a {type(obj).__name__}, not a {kind}")
    return _PREPARE[kind](obj, state)


def _prepare_list(obj: list, items: Any) -> Step:
    saved = obj[:]

    def apply() -> None:
        obj[:] = items

    def undo() -> None:
        obj[:] = saved

    return Step(apply, undo)


def _prepare_dict(obj: dict, items: Any) -> Step:
    saved = list(obj.items())

    def fill(pairs: Any) -> None:
        obj.clear()
        for key, value in pairs:
            obj[key] = value

    return Step(lambda: fill(items), lambda: fill(saved))


def _prepare_set(obj: set, members: Any) -> Step:
    saved = list(obj)

    def fill(values: Any) -> None:
        obj.clear()
        obj.update(values)

    return Step(lambda: fill(members), lambda: fill(saved))


def _prepare_deque(obj: collections.deque, items: Any) -> Step:
    saved = list(obj)

    def fill(values: Any) -> None:
        obj.clear()
        obj.extend(values)

    return Step(lambda: fill(items), lambda: fill(saved))


def _prepare_bytearray(obj: bytearray, data: Any) -> Step:
    saved = bytes(obj)

    def apply() -> None:
        obj[:] = data  # raises BufferError if it must resize while a memoryview is held

    def undo() -> None:
        obj[:] = saved

    return Step(apply, undo)


def _prepare_attrs(obj: Any, state: Any) -> Step:
    target = getattr(obj, "__dict__", None)
    if type(target) is not dict:
        raise InPlaceError(f"the target's {type(obj).__name__} has no plain __dict__")
    assign, delete = state
    saved = dict(target)

    def apply() -> None:  # straight into __dict__, as unpickling does: no __setattr__ runs
        for key in delete:
            target.pop(key, None)
        target.update(assign)

    def undo() -> None:
        target.clear()
        target.update(saved)

    return Step(apply, undo)


def _prepare_pandas(obj: Any, state: Any) -> Step:
    """``state``: ``{"values": [one array per column], "index": a new index or None}`` --
    plain arrays, so that notebook and target need not share a pandas version."""
    pd = _pandas()
    values, index = state["values"], state.get("index")
    frame = isinstance(obj, pd.DataFrame)
    columns = obj.shape[1] if frame else 1
    if len(values) != columns or any(len(v) != len(obj) for v in values):
        raise InPlaceError(f"its shape changed ({obj.shape} -> {len(values[0]) if values else 0} rows, "
                           f"{len(values)} columns)")
    if index is not None and len(index) != len(obj):
        raise InPlaceError("its index changed length")
    saved = [obj.iloc[:, i].to_numpy(copy=True) for i in range(columns)] if frame else [obj.to_numpy(copy=True)]
    saved_index = obj.index

    def put(arrays: List[Any], new_index: Any) -> None:
        for i, column in enumerate(arrays):
            if frame:
                obj.iloc[:, i] = column
            else:
                obj.iloc[:] = column
        if new_index is not None and not obj.index.equals(new_index):
            obj.index = new_index

    return Step(lambda: put(values, index), lambda: put(saved, saved_index))


def _prepare_ndarray(obj: Any, state: Any) -> Step:
    if not obj.flags.writeable:
        raise InPlaceError("the target's array is read-only")
    if isinstance(state, tuple) and state and state[0] == "blocks":
        return _prepare_blocks(obj, state)
    fits, why = same_layout(obj, state)
    if not fits:
        raise InPlaceError(why)
    saved = obj.copy() if obj.dtype.hasobject or obj.nbytes <= UNDO_COPY_LIMIT else None

    def apply() -> None:
        obj[...] = state

    def undo() -> None:
        if saved is not None:
            obj[...] = saved

    step = Step(apply, undo, fallible=obj.dtype.hasobject)
    if blocks.memory_order(obj):
        step.byte_ranges = [(0, obj.nbytes)]
    return step


def _prepare_blocks(obj: Any, state: Any) -> Step:
    """Changed runs of elements (in the array's memory order) written into ``obj``."""
    np = _numpy()
    _, order, dtype, shape, spans, buffers = state
    if tuple(obj.shape) != tuple(shape) or obj.dtype.str != dtype:
        raise InPlaceError(f"its shape or dtype changed ({obj.shape} {obj.dtype} -> {tuple(shape)} {dtype})")
    if len(spans) != len(buffers):
        raise InPlaceError("malformed block update")
    values = []
    for (start, stop), buf in zip(spans, buffers):
        chunk = np.frombuffer(buf, dtype=obj.dtype)
        if not 0 <= start <= stop <= obj.size or len(chunk) != stop - start:
            raise InPlaceError("malformed block update")
        values.append(chunk)
    flat = blocks.flat_view(obj, order)
    # Not contiguous in that order (a view with strides): element-wise through .flat,
    # which walks C order; the transpose walks Fortran order.
    walker = obj if order == "C" else obj.T
    small = sum(stop - start for start, stop in spans) * obj.dtype.itemsize <= UNDO_COPY_LIMIT
    saved = [(flat[start:stop] if flat is not None else walker.flat[start:stop]).copy()
             for start, stop in spans] if small else []

    def put(chunks: List[Any]) -> None:
        for (start, stop), chunk in zip(spans, chunks):
            if flat is not None:
                flat[start:stop] = chunk
            else:
                walker.flat[start:stop] = chunk

    step = Step(lambda: put(values), lambda: put(saved), fallible=False)
    if flat is not None:
        size = obj.dtype.itemsize
        step.byte_ranges = [(start * size, stop * size) for start, stop in spans]
    return step


_PREPARE: Dict[str, Callable[[Any, Any], Step]] = {
    "list": _prepare_list,
    "dict": _prepare_dict,
    "set": _prepare_set,
    "deque": _prepare_deque,
    "bytearray": _prepare_bytearray,
    "attrs": _prepare_attrs,
    "pandas": _prepare_pandas,
    "ndarray": _prepare_ndarray,
}


def apply_all(steps: List[Step]) -> None:
    """Apply ``steps`` in order; if one raises, undo those applied (newest first) and
    raise :class:`StepFailed`."""
    done: List[Step] = []
    for step in steps:
        try:
            step.apply()
        except Exception as exc:
            undo_all(done + [step])  # the failed one too: it may have changed part of its object
            raise StepFailed(step, exc) from exc
        done.append(step)


def undo_all(steps: List[Step]) -> None:
    """Undo applied ``steps``, newest first (each undo is attempted even if one fails)."""
    for step in reversed(steps):
        try:
            step.undo()
        except Exception:  # pragma: no cover - an undo only puts back what was there
            pass
