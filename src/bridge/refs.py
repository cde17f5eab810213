"""Live references: the target's table of objects that clients hold handles to, and the
value codec that uses it.

A value that cannot be copied to the notebook (an open file, a socket, a lock, a
generator, an object of a class defined in the target's ``__main__``) or that is bigger
than a caller's size limit is not pickled: it is put in :data:`TABLE` and travels as a
pickle *persistent id* ``("ref", ref_id, type_name)``. The client turns that into a proxy
(client/proxy.py) whose operations come back here as ``ref`` frame ops. Modules travel as
``("module", name)`` and are imported on the other side.

Reference ids are ``id(obj)``: the table keeps the object alive, so the id is unique while
the entry exists, and the same object always gets the same id (one proxy per object on
the client). Each time a ref is sent its count goes up; the client releases counts in
batches, and the entry goes when the count reaches zero (rpyc's netref scheme).

Fingerprints ("versions") of values let the write-back refuse a stale write. They are
taken here, on the target, both at snapshot and at write-back, because a pickle's bytes
depend on the process (set order follows PYTHONHASHSEED): a target hash is never compared
with a client hash. The hash is xxh3_128 when the ``xxhash`` package is importable and
``blake2b`` (128-bit, standard library) otherwise, so ``bridge`` needs no new dependency.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import socket
import sys
import threading
import types
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from . import wire

try:  # optional: ~10x faster than blake2b on big arrays; never required on the target
    import xxhash

    HASH_NAME = "xxh3_128"

    def _new_hash() -> Any:
        return xxhash.xxh3_128()

except ImportError:  # pragma: no cover - depends on the target's environment
    HASH_NAME = "blake2b-128"

    def _new_hash() -> Any:
        return hashlib.blake2b(digest_size=16)


#: Types that cannot be copied to another process (or must not be): always live.
LIVE_TYPES: Tuple[type, ...] = (
    io.IOBase,
    socket.socket,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.FrameType,
    types.TracebackType,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
    threading.Event,
    threading.Thread,
)
_BOUND_METHOD_TYPES = (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)
#: In-memory streams pickle fine: copy them.
_COPYABLE_IO = (io.BytesIO, io.StringIO)


class StaleReference(LookupError):
    """A client used a reference the target no longer holds (released, or another process)."""


class RefTable:
    """Objects that clients hold live references to, keyed by ``id(obj)``, with counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Dict[int, List[Any]] = {}  # ref id -> [object, count]
        self._released: List[Any] = []  # objects whose last handle went, not yet let go

    def add(self, obj: Any) -> int:
        """Register one more handle on ``obj``; returns its ref id."""
        ref = id(obj)
        with self._lock:
            entry = self._entries.get(ref)
            if entry is None:
                self._entries[ref] = [obj, 1]
            else:
                entry[1] += 1
        return ref

    def get(self, ref: int) -> Any:
        """The object behind ``ref``; StaleReference when there is none."""
        with self._lock:
            entry = self._entries.get(ref)
        if entry is None:
            raise StaleReference(
                f"live reference {ref:#x} is not held by this process (released, or from another session)"
            )
        return entry[0]

    def release(self, counts: Iterable[Sequence[int]]) -> None:
        """Drop ``count`` handles of each ``(ref, count)``; entries at zero are forgotten.

        Forgotten objects are not let go here: this may run on the server thread, and letting
        go of an object can run the user's code (``__del__``, a generator's ``finally``),
        which must only ever run on a user's thread. :meth:`drop_released` lets them go.
        """
        with self._lock:
            for ref, count in counts:
                entry = self._entries.get(ref)
                if entry is not None:
                    entry[1] -= count
                    if entry[1] <= 0:
                        self._released.append(self._entries.pop(ref)[0])

    def drop_released(self) -> None:
        """Let go of the objects released since the last call (on a paused, user thread)."""
        if self._released:  # unlocked peek: the common case is nothing to do
            with self._lock:
                released, self._released = self._released, []
            released.clear()  # outside the lock: finalizers may come back to this table

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, ref: int) -> bool:
        with self._lock:
            return ref in self._entries

    def forget_inherited(self) -> List[Any]:
        """In a forked child: start empty with a fresh lock (the handles were the parent's
        clients', and another thread may have held the lock at the fork). Returns what the
        table held, for the caller to keep alive: letting it go would run finalizers in
        the middle of a fork."""
        held = [self._entries, self._released]
        self._lock = threading.Lock()
        self._entries = {}
        self._released = []
        return held


#: The process-wide table.
TABLE = RefTable()


def type_name(value: Any) -> str:
    """``module.Qualname`` of a value's type (just the name for builtins)."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def must_be_live(obj: Any) -> bool:
    """Whether ``obj`` can only travel as a live reference."""
    if isinstance(obj, LIVE_TYPES) and not isinstance(obj, _COPYABLE_IO):
        return True
    # Functions, classes and instances from the target's __main__ pickle by name and would
    # resolve to the wrong object (or none) in the notebook's own __main__.
    if isinstance(obj, _BOUND_METHOD_TYPES):
        # A bound method pickles as getattr(self, name): for a live self the client would
        # rebuild it by asking the target again, forever. A method stays where its object is.
        owner = getattr(obj, "__self__", None)
        return owner is not None and not isinstance(owner, types.ModuleType)
    if isinstance(obj, (types.FunctionType, type)):
        return getattr(obj, "__module__", None) == "__main__"
    return type(obj).__module__ == "__main__"


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that turns live objects into persistent ids.

    With a ``table`` it registers each ref it emits (the value is being sent); without one
    it only computes the same bytes (for fingerprints). ``live`` forces one object live.
    """

    def __init__(self, file: Any, buffers: Optional[List[Any]], table: Optional[RefTable],
                 live: Any = None) -> None:
        super().__init__(file, protocol=5, buffer_callback=None if buffers is None else buffers.append)
        self._table = table
        self._live = live
        self.added: List[int] = []

    def persistent_id(self, obj: Any) -> Any:
        if obj is self._live and obj is not None:
            return self._ref(obj)
        if isinstance(obj, types.ModuleType):
            return ("module", obj.__name__)
        if must_be_live(obj):
            return self._ref(obj)
        return None

    def _ref(self, obj: Any) -> Tuple[str, int, str]:
        if self._table is None:
            ref = id(obj)
        else:
            ref = self._table.add(obj)
            self.added.append(ref)
        return ("ref", ref, type_name(obj))


def _dump(value: Any, table: Optional[RefTable], live: bool) -> Tuple[wire.Frames, List[int]]:
    """Pickle ``value``: (frames, ref ids registered in ``table`` on the way)."""
    buffers: List[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    pickler = _Pickler(stream, buffers, table, value if live else None)
    try:
        pickler.dump(value)
    except BaseException:
        if table is not None:  # refs registered before the failure were never sent
            table.release((ref, 1) for ref in pickler.added)
        raise
    return [stream.getvalue(), *(b.raw() for b in buffers)], pickler.added  # getvalue: see wire.dump_value


def frames_size(frames: Sequence[Any]) -> int:
    """Total bytes of value frames."""
    return sum(memoryview(f).nbytes for f in frames)


def cheap_size(value: Any) -> Optional[int]:
    """Bytes behind a value when that is known without pickling (arrays, DataFrames), else None."""
    try:
        nbytes = getattr(type(value), "nbytes", None) and getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        if type(value).__name__ in ("DataFrame", "Series"):
            total = value.memory_usage(deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
    except Exception:
        return None
    return None


def _digest(frames: Sequence[Any]) -> str:
    h = _new_hash()
    for frame in frames:
        h.update(frame)
    return h.hexdigest()


_SCALAR_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None)})


class Encoded:
    """A value ready to send: its frames, whether it went live, and its target-side version.

    The version (identity plus a digest of the frames, for change detection by mounts) is
    computed on first use: an eval never asks for it, and hashing a big array costs.
    """

    __slots__ = ("frames", "live", "size", "plain", "_ident", "_version")

    def __init__(self, frames: wire.Frames, live: bool, ident: int, size: Optional[int], plain: bool = False) -> None:
        self.frames = frames
        self.live = live
        self.size = size
        #: A pickle of a builtin scalar: no classes, no refs (the client may skip its checks).
        self.plain = plain
        self._ident = ident
        self._version: Optional[str] = None

    @property
    def version(self) -> str:
        """``<id>:live`` for a live reference, else ``<id>:<digest of the frames>``."""
        if self._version is None:
            self._version = f"{self._ident:x}:{'live' if self.live else _digest(self.frames)}"
        return self._version


#: Longest string a reply carries in its JSON header instead of as a pickle.
HEADER_STR_MAX = 256


def fits_header(value: Any, size_limit: Optional[int] = None) -> bool:
    """Whether ``value`` can travel as JSON in a reply header and come back identical.

    Exact builtin scalars only (a subclass, an ``IntEnum`` member, would come back as its
    base type), ints within 64 bits (JSON has no limit, but Python caps int-to-text
    conversion), and short strings (JSON escapes cost more than pickle on long ones).
    NaN and infinities round-trip: Python's json writes and reads them.
    """
    kind = type(value)
    if kind is int:
        fits = -(1 << 63) <= value < (1 << 63)
    elif kind is str:
        fits = len(value) <= HEADER_STR_MAX
    else:
        fits = kind is float or kind is bool or value is None
    return fits and (size_limit is None or sys.getsizeof(value) <= size_limit)


def encode(value: Any, *, table: RefTable = TABLE, size_limit: Optional[int] = None,
           force_live: bool = False, force_copy: bool = False) -> Encoded:
    """Pickle ``value`` for a client: by value when it can be and fits ``size_limit``
    (bytes; None = no limit), else as a live reference registered in ``table``.

    ``force_copy`` ignores the size limit and raises (TypeError/PicklingError) when the
    value cannot be copied, instead of sending it live.
    """
    if type(value) in _SCALAR_TYPES and not force_live and (size_limit is None or sys.getsizeof(value) <= size_limit):
        # Fast path for the commonest eval results: exact builtin scalars are never live
        # and hold no references, so the reference-checking pickler has nothing to do.
        scalar = [pickle.dumps(value, protocol=5)]
        return Encoded(scalar, False, id(value), len(scalar[0]), plain=True)
    size = cheap_size(value)
    live = (force_live or must_be_live(value)) and not force_copy
    if not live and not force_copy and size_limit is not None and size is not None and size > size_limit:
        live = True  # decided before pickling: never pickle a big array just to measure it
    frames: Optional[wire.Frames] = None
    if not live:
        try:
            frames, added = _dump(value, table, live=False)
        except Exception:
            if force_copy:
                raise
            live = True
        else:
            nbytes = frames_size(frames)
            size = nbytes if size is None else size
            # An iterator over a live object pickles as iter(<ref>): rebuilding it in the
            # notebook would call back into the target. It stays here, like its object.
            over_iter = bool(added) and hasattr(type(value), "__next__")
            if over_iter or (not force_copy and size_limit is not None and nbytes > size_limit):
                # Release what this copy registered: the value goes live as a whole instead.
                table.release((ref, 1) for ref in added)
                live = True
    if live:
        frames, _ = _dump(value, table, live=True)
    return Encoded(frames, live, id(value), size)  # type: ignore[arg-type]


def version_of(value: Any, base: str) -> str:
    """The current version of ``value`` computed the way ``base`` was (live: identity only)."""
    if base.endswith(":live"):
        return f"{id(value):x}:live"
    try:
        frames, _ = _dump(value, None, live=False)
    except Exception:
        return f"{id(value):x}:unpicklable"
    return f"{id(value):x}:{_digest(frames)}"


class _Unpickler(pickle.Unpickler):
    """Resolves the persistent ids a client sends: refs from the table, modules by import."""

    def __init__(self, file: Any, buffers: Sequence[Any], table: RefTable) -> None:
        super().__init__(file, buffers=buffers)
        self._table = table

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "ref":
            return self._table.get(int(pid[1]))
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "module" and isinstance(pid[1], str):
            if pid[1] == "__main__":
                raise pickle.UnpicklingError("the notebook's __main__ module cannot be sent to the target")
            return importlib.import_module(pid[1])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def load(frames: Sequence[Any], table: RefTable = TABLE, *, unpickler: Any = None) -> Any:
    """Inverse of the client's pickler: refs become the objects they name.

    A value pickled by value with cloudpickle (a function or class defined in the
    notebook) needs ``cloudpickle`` importable here: a clear error says so. ``unpickler``
    (``(file, buffers) -> Unpickler``) replaces the default one (mount_state.py's resolves
    mounted objects too).
    """
    if not frames:
        raise wire.ProtocolError("a value needs at least one frame")
    stream, *buffers = frames
    make = unpickler or (lambda file, bufs: _Unpickler(file, bufs, table))
    try:
        return make(io.BytesIO(_as_bytes(stream)), [_as_buffer(b) for b in buffers]).load()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "cloudpickle":
            raise ModuleNotFoundError(
                "the notebook sent a function or class defined in the notebook (pickled by value with "
                "cloudpickle); install cloudpickle in the target's environment to receive it",
                name="cloudpickle",
            ) from None
        raise


# Public names for bridge/mount_state.py, which pickles a mount's variables with one memo.
Pickler = _Pickler
Unpickler = _Unpickler
SCALAR_TYPES = _SCALAR_TYPES
new_hash = _new_hash


def dump_frames(value: Any) -> Tuple[wire.Frames, List[int]]:
    """Pickle ``value`` as it would be sent, registering no reference (for versions)."""
    return _dump(value, None, live=False)


def _as_buffer(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


def _as_bytes(frame: Any) -> Any:
    return _as_buffer(frame)
