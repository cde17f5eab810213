"""What the target keeps for each open mount: the objects the notebook's copies stand for.

A mount pickles the frame's variables with *one* pickler (:class:`SnapshotEncoder`), one
stream per variable but a memo shared across them. The notebook unpickles them with one
unpickler, so the n-th object memoized on either side is the same object: the target's
original and the notebook's copy of it (shared objects stay shared in the notebook, too).
The target keeps its side of that numbering for the mount (:class:`MountState`); a
write-back then names a target object as the persistent id ``("m", n)``, which
:func:`load_payload` resolves to the original. That is how unchanged objects keep their
identity and changed ones are changed in place (docs/howto-mount.md, "What keeps
identity").

A mount's state lives as long as its pause, or until the notebook ends the mount.

Versions. A write-back is refused when a variable changed in the target since the mount.
Each variable's version is its identity plus a digest of its pickle in which every
out-of-band buffer (an array's memory) counts by its block digests (bridge/blocks.py), so
that after writing a few blocks of a big array the new version costs only those blocks
(:class:`DigestCache`).
"""

from __future__ import annotations

import io
import itertools
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

from . import blocks, inplace, refs
from .ops import OpError

#: Open mounts kept per pause; the oldest goes when a client opens more (it never ended them).
MAX_MOUNTS_PER_PAUSE = 16


class _Output:
    """A file whose destination changes per variable: the pickler writes through ``write``."""

    def __init__(self) -> None:
        self.stream = io.BytesIO()

    def write(self, data: Any) -> int:
        return self.stream.write(data)

    def take(self) -> bytes:
        data = self.stream.getvalue()
        self.stream = io.BytesIO()
        return data


class SnapshotEncoder:
    """Encodes a frame's variables for one mount (see the module docstring).

    Values that are not copied (live references, forced live, too big) and builtin
    scalars are encoded on their own (``refs.encode``), outside the shared stream: the
    notebook decodes them on their own too.
    """

    def __init__(self, table: refs.RefTable = refs.TABLE) -> None:
        self._table = table
        self._shared: List[Any] = []  # values in the shared stream so far, in order
        self._new_pickler()

    def _new_pickler(self) -> None:
        self._out = _Output()
        self._buffers: List[Any] = []
        self._pickler = refs.Pickler(self._out, self._buffers, self._table)

    def encode(self, value: Any, *, size_limit: Optional[int], force_live: bool = False,
               force_copy: bool = False) -> Tuple[refs.Encoded, bool]:
        """``(encoded, shared)``: ``shared`` says whether it went into the shared stream."""
        if force_live or type(value) in refs.SCALAR_TYPES or (refs.must_be_live(value) and not force_copy):
            return refs.encode(value, table=self._table, size_limit=size_limit, force_live=force_live,
                               force_copy=force_copy), False
        size = refs.cheap_size(value)
        if not force_copy and size_limit is not None and size is not None and size > size_limit:
            return refs.encode(value, table=self._table, size_limit=size_limit, force_live=True), False
        pickler = self._pickler
        pickler.added = []
        try:
            pickler.dump(value)
        except Exception:
            self._table.release((ref, 1) for ref in pickler.added)
            self._rewind()
            if force_copy:
                raise
            return refs.encode(value, table=self._table, size_limit=size_limit, force_live=True), False
        frames = [self._out.take(), *(b.raw() for b in self._buffers)]
        self._buffers.clear()
        nbytes = refs.frames_size(frames)
        # An iterator over a live object would call back into the target from the notebook.
        over_iter = bool(pickler.added) and hasattr(type(value), "__next__")
        if over_iter or (not force_copy and size_limit is not None and nbytes > size_limit):
            self._table.release((ref, 1) for ref in pickler.added)
            self._rewind()
            return refs.encode(value, table=self._table, size_limit=size_limit, force_live=True), False
        self._shared.append(value)
        return refs.Encoded(frames, False, id(value), size if size is not None else nbytes), True

    def _rewind(self) -> None:
        """Forget a dump that was not sent: its memo entries must not number the next ones.

        The pickler's memo cannot be cut back, so a new pickler replays the values sent so
        far (their streams are thrown away; no reference is registered twice). Rare: a
        value that fails to pickle only half-way, or turns out too big once pickled.
        """
        self._new_pickler()
        self._pickler._table = None
        try:
            for value in self._shared:
                self._pickler.dump(value)
                self._out.take()
                self._buffers.clear()
        finally:
            self._pickler._table = self._table

    def objects(self) -> Dict[int, Any]:
        """Memo index -> object, for the objects a write-back may name (not plain values)."""
        if not self._shared:
            return {}
        return {index: obj for index, obj in self._pickler.memo.copy().values() if not inplace.by_value(obj)}


class MountState:
    """One open mount on the target: the objects its notebook copies stand for."""

    def __init__(self, token: int, objects: Dict[int, Any]) -> None:
        self.token = token
        self.objects = objects

    def resolve(self, index: int) -> Any:
        """The target's object behind ``("m", index)``."""
        try:
            return self.objects[index]
        except KeyError:
            raise OpError("BadRequest", f"write-back names object #{index}, which mount {self.token} "
                                        "does not hold") from None


_tokens = itertools.count(1)
_lock = threading.Lock()
_states: "weakref.WeakKeyDictionary[Any, Dict[int, MountState]]" = weakref.WeakKeyDictionary()


def open_mount(pause: Any, objects: Dict[int, Any]) -> int:
    """Keep ``objects`` for a new mount of ``pause``; returns its token."""
    token = next(_tokens)
    with _lock:
        mounts = _states.setdefault(pause, {})
        while len(mounts) >= MAX_MOUNTS_PER_PAUSE:
            del mounts[min(mounts)]
        mounts[token] = MountState(token, objects)
    return token


def mount_of(pause: Any, token: int) -> MountState:
    """The open mount ``token`` of ``pause``; BadRequest when it is not (or no longer) open."""
    with _lock:
        state = _states.get(pause, {}).get(token)
    if state is None:
        raise OpError("BadRequest", f"mount {token} is not open in this pause (ended, or from another pause)")
    return state


def end_mount(pause: Any, token: int) -> bool:
    """Forget mount ``token``; whether it was open."""
    with _lock:
        return _states.get(pause, {}).pop(token, None) is not None


class _PayloadUnpickler(refs.Unpickler):
    def __init__(self, file: Any, buffers: Any, table: refs.RefTable, mount: Optional[MountState]) -> None:
        super().__init__(file, buffers, table)
        self._mount = mount

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "m":
            if self._mount is None:
                raise OpError("BadRequest", "write-back names mounted objects but no mount")
            return self._mount.resolve(int(pid[1]))
        return super().persistent_load(pid)


def load_payload(frames: List[Any], mount: Optional[MountState], table: refs.RefTable = refs.TABLE) -> Any:
    """Unpickle a write-back's payload: ``("m", n)`` ids become the mount's objects, live
    references the objects they name (refs.load's rules otherwise)."""
    return refs.load(frames, table, unpickler=lambda file, buffers: _PayloadUnpickler(file, buffers, table, mount))


# --- versions -----------------------------------------------------------------------------------


class DigestCache:
    """Block digests of buffers seen during one request, by (exporting object, size).

    Valid only while the paused thread runs that request: the objects are alive (the
    frame holds them) and nothing else of the job runs between the check, the write and
    the new versions, except other threads, which the check has the same window for.
    """

    def __init__(self) -> None:
        self._digests: Dict[Tuple[int, int], bytes] = {}

    def of(self, raw: memoryview) -> bytes:
        key = (id(raw.obj), raw.nbytes)
        found = self._digests.get(key)
        if found is None:
            found = self._digests[key] = blocks.digest_blocks(raw)
        return found

    def rewritten(self, obj: Any, byte_ranges: List[Tuple[int, int]]) -> None:
        """``obj``'s buffer was rewritten in ``byte_ranges``: update its digests (if known)."""
        raw = _raw_of(obj)
        if raw is None:
            return
        key = (id(raw.obj), raw.nbytes)
        if key in self._digests:
            self._digests[key] = blocks.update_digests(self._digests[key], raw, byte_ranges)


class _CheckedDigests(DigestCache):
    """Digests computed by a ``mount_check`` for the write-back that follows it. Each
    remembers its buffer's exporter by weak reference (a kept digest must not keep a
    GiB alive), so an id reused by a new object never matches; a buffer whose exporter
    takes no weak reference is simply hashed again by the write-back."""

    def __init__(self) -> None:
        super().__init__()
        self._exporters: Dict[Tuple[int, int], Any] = {}

    def of(self, raw: memoryview) -> bytes:
        key = (id(raw.obj), raw.nbytes)
        exporter = self._exporters.pop(key, None)
        if exporter is not None and exporter() is not raw.obj:
            del self._digests[key]  # checked then, valid in this request from now on
        return super().of(raw)

    def checked(self, raws: List[memoryview]) -> None:
        """Keep the digests of ``raws`` (the buffers just hashed) for a later request."""
        for raw in raws:
            key = (id(raw.obj), raw.nbytes)
            try:
                self._exporters[key] = weakref.ref(raw.obj)
            except TypeError:
                self._digests.pop(key, None)
        self._digests = {key: d for key, d in self._digests.items() if key in self._exporters}


_checked: "weakref.WeakKeyDictionary[Any, Tuple[int, int, DigestCache]]" = weakref.WeakKeyDictionary()


def check_ahead(pause: Any, token: int, values: List[Any]) -> int:
    """Digest the buffers of ``values`` (the frame's values now) for mount ``token``'s next
    write-back; how many values. Runs while the notebook finds what it changed, so that
    both reads of a big array happen at once (docs/benchmarks.md, "delta write-back")."""
    cache = _CheckedDigests()
    raws: List[memoryview] = []
    for value in values:
        try:
            frames, _ = refs.dump_frames(value)
        except Exception:
            continue  # the write-back's check says what it is
        for raw in frames[1:]:
            cache.of(raw)
            raws.append(raw)
    cache.checked(raws)
    with _lock:
        _checked[pause] = (token, getattr(pause, "served", -1), cache)
    return len(values)


def digests_for_write(pause: Any, token: Optional[int]) -> DigestCache:
    """The digests a ``mount_check`` of mount ``token`` left, if it was the request just
    before this one on the paused thread (nothing of the frame's thread ran since, so its
    digests still hold, with the same window for other threads as a check made now);
    else an empty cache."""
    with _lock:
        found = _checked.pop(pause, None)
    served = getattr(pause, "served", None)
    if found is None or token is None or found[0] != token or served is None or found[1] != served - 1:
        return DigestCache()
    return found[2]


def _raw_of(obj: Any) -> Optional[memoryview]:
    try:
        import pickle

        return pickle.PickleBuffer(obj).raw()
    except (TypeError, ValueError, BufferError):
        return None


def version(value: Any, cache: Optional[DigestCache] = None, live: bool = False) -> str:
    """``<id>:live`` for a live reference, else ``<id>:<digest>`` (module docstring)."""
    if live:
        return f"{id(value):x}:live"
    try:
        frames, _ = refs.dump_frames(value)
    except Exception:
        return f"{id(value):x}:unpicklable"  # compared by identity only: nothing better is possible
    cache = cache or DigestCache()
    h = refs.new_hash()
    h.update(frames[0])
    for raw in frames[1:]:
        h.update(cache.of(raw))
    return f"{id(value):x}:{h.hexdigest()}"


def version_like(value: Any, base: str, cache: Optional[DigestCache] = None) -> str:
    """The version of ``value`` now, computed the way ``base`` was (live: identity only)."""
    return version(value, cache, live=base.endswith(":live"))
