"""The notebook's half of a mount's identity map, and what a write-back sends.

At mount the target pickles the frame's variables with one shared memo (bridge/
mount_state.py) and :class:`SnapshotDecoder` unpickles them with one unpickler, so memo
index *n* names the same object on both sides: the target's original and the notebook's
copy. :class:`Graph` keeps, for each copy that can be tracked (mutable objects and
instances of Python classes: bridge/inplace.py ``trackable``) and is reachable from the
mounted names, a *node*: its index, its kind, and a digest of its *shallow state*, its own
contents with every other node named by index (``("m", n)``) instead of pickled.

At write-back :meth:`Graph.scan` computes the shallow states again from the names as
they are now. Then:

* a node whose state did not change is sent as ``("m", n)``: the target uses its own
  object, so every alias keeps seeing it;
* a node that changed and whose kind can be changed in place (same shape and dtype for
  arrays...) is *synced*: its new state is applied to the target's object;
* a node that changed and cannot be changed in place is sent by value wherever it is
  used: its parents are synced with the copy in it (or, if a parent cannot be synced, the
  parent is copied too, up to the name, which is then rebound). Aliases of it in the target
  keep the old object, and the diff says so.

A numeric array's shallow state is its block digests (bridge/blocks.py); only the runs
of changed blocks are sent. pandas objects are leaves: their state is their whole pickle,
and they are applied column by column.

A mount tracks at most :data:`MAX_NODES` objects; past that, objects are copied by value
inside their parent (their identity in the target is not kept if the parent changes).
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from bridge import blocks, inplace
from bridge.refs import new_hash

from . import proxy as proxies
from .errors import BridgeError, ValueLoadError

#: Objects a mount tracks at most (each costs a small pickle at mount and at write-back).
MAX_NODES = 20_000
#: Arrays from this size on are read by the target (its conflict check) while the notebook
#: reads them for its changes (Graph.big_array_names): below it a round trip costs more.
CHECK_AHEAD_BYTES = 16 * 2**20

try:
    import cloudpickle

    _CLOUD_BASE: Optional[type] = cloudpickle.Pickler
except ImportError:  # pragma: no cover - cloudpickle is in the notebook extra
    _CLOUD_BASE = None


# --- decoding a snapshot with one memo ------------------------------------------------------


class _Input:
    """A file whose source changes per value: the unpickler reads through these methods."""

    def __init__(self) -> None:
        self.stream = io.BytesIO()

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)

    def readinto(self, b: Any) -> int:
        return self.stream.readinto(b)

    def readline(self) -> bytes:
        return self.stream.readline()


class _Buffers:
    """The out-of-band buffers of the value being read (an iterator the unpickler pulls from)."""

    def __init__(self) -> None:
        self.queue: "collections.deque[Any]" = collections.deque()

    def __iter__(self) -> "_Buffers":
        return self

    def __next__(self) -> Any:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


def _buf(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


class SnapshotDecoder:
    """Unpickles a mount's values: those in the shared stream with one unpickler.

    If one shared value cannot be rebuilt here, the later ones may name objects it would
    have made: they are refused too (``broken``) and the mount asks for them live.
    """

    def __init__(self, registry: proxies.RefRegistry) -> None:
        self._registry = registry
        self._input = _Input()
        self._buffers = _Buffers()
        self._unpickler = proxies.Unpickler(self._input, self._buffers, registry)  # type: ignore[arg-type]
        self.broken = False
        self.shared = 0

    def load(self, frames: Sequence[Any], shared: bool) -> Any:
        """One value's frames; ValueLoadError (NeedsLive...) when it cannot be rebuilt here."""
        if not shared:
            return proxies.load(self._registry, frames)
        if self.broken:
            raise proxies.NeedsLive("a value mounted before it could not be rebuilt in the notebook")
        stream, *buffers = frames
        self._input.stream = io.BytesIO(_buf(stream))
        self._buffers.queue.extend(_buf(b) for b in buffers)
        try:
            value = self._unpickler.load()
        except BaseException as exc:
            self.broken = True
            if isinstance(exc, BridgeError):
                raise
            raise ValueLoadError(f"a value from the target cannot be rebuilt here ({type(exc).__name__}: {exc}); "
                                 "ask for it live, or install what it needs") from exc
        finally:
            self._buffers.queue.clear()
        self.shared += 1
        return value

    def memo(self) -> Dict[int, Any]:
        """Memo index -> the object the shared stream made there."""
        return self._unpickler.memo.copy() if self.shared else {}


# --- the graph ------------------------------------------------------------------------------------


@dataclass
class Node:
    """A notebook copy that stands for a target object (module docstring)."""

    index: int
    obj: Any
    kind: Optional[str]
    owner: str  # the first mounted name it was reached from
    digest: Optional[bytes] = None  # of its shallow state at the last write-back (None: unknown)
    keys: Tuple[str, ...] = ()  # attrs: the attribute names then (a deletion is sent as such)
    layout: Any = None  # ndarray: (shape, dtype, order); deque: maxlen; pandas: (shape, an empty copy, index)


@dataclass
class Scan:
    """What changed since the mount (or the last write-back), and what to send for it."""

    names: Dict[str, str] = field(default_factory=dict)  # name -> "rebound" | "in place" | "copied" | "unchanged"
    notes: Dict[str, str] = field(default_factory=dict)  # name -> what the diff adds (inner objects copied)
    binds: Dict[str, Any] = field(default_factory=dict)  # names sent by value (or as a mounted object)
    synced: List[Node] = field(default_factory=list)  # nodes changed in place
    copied: Set[int] = field(default_factory=set)  # ids of nodes sent by value
    digests: Dict[int, Optional[bytes]] = field(default_factory=dict)  # node index -> state digest now
    name_digests: Dict[str, Optional[bytes]] = field(default_factory=dict)
    owners: Set[str] = field(default_factory=set)  # mounted names whose target values are read


class _StateIds:
    """How a mount's pickles name objects: other nodes (and, while the graph is built,
    objects that become nodes) as ``("m", n)``, live references and modules as the proxy
    codec does; ``root`` (the object whose state this is) and ``copy`` (nodes sent by value)
    are pickled. Mixed into a pickler class below."""

    graph: "Graph"
    root: Any = None

    def _start(self, graph: "Graph") -> None:
        self.graph = graph
        self.seen: List[Node] = []
        self.copy: Set[int] = set()

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.root:
            return None
        pid = proxies.persistent_id(obj)
        if pid is not None:
            return pid
        node = self.graph.node_of(obj)
        if node is None or id(obj) in self.copy:
            return None
        self.seen.append(node)
        return ("m", node.index)


class _StatePickler(_StateIds, pickle.Pickler):
    def __init__(self, graph: "Graph", file: Any, buffers: List[Any]) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._start(graph)


def _cloud_state_pickler() -> Optional[type]:
    """The same with cloudpickle, which sends functions and classes of the notebook by value."""
    if _CLOUD_BASE is None:
        return None

    class _CloudStatePickler(_StateIds, _CLOUD_BASE):  # type: ignore[misc, valid-type]
        def __init__(self, graph: "Graph", file: Any, buffers: List[Any]) -> None:
            super().__init__(file, protocol=5, buffer_callback=buffers.append)
            self._start(graph)

    return _CloudStatePickler


_CLOUD_STATE_PICKLER = _cloud_state_pickler()


def _digest(stream: bytes, buffers: Iterable[Any]) -> bytes:
    h = new_hash()  # the target's hash (xxh3_128, else blake2b); never compared across processes
    h.update(stream)
    for b in buffers:
        h.update(b.raw() if isinstance(b, pickle.PickleBuffer) else b)
    return h.digest()


def _numeric_array(node: Node) -> bool:
    return node.kind == "ndarray" and not node.obj.dtype.hasobject and bool(blocks.memory_order(node.obj))


class Graph:
    """The mount's nodes, by the id of the notebook copy (module docstring)."""

    def __init__(self, memo: Dict[int, Any]) -> None:
        # Candidates: memo entries that can be nodes (found as the mounted values are walked).
        self._memo: Dict[int, Tuple[int, Any]] = {id(obj): (index, obj) for index, obj in memo.items()
                                                   if inplace.trackable(obj)}
        self.nodes: Dict[int, Node] = {}
        self._discovering: Optional[str] = None  # while building: the name being walked
        self._queue: List[Node] = []
        #: Per mounted name: the object it was bound to and the digest of its pickle.
        self.names: Dict[str, Tuple[Any, Optional[bytes]]] = {}

    # --- building ----------------------------------------------------------------------

    @classmethod
    def build(cls, values: Dict[str, Any], memo: Dict[int, Any]) -> "Graph":
        """The graph of the mounted ``values`` (name -> notebook copy) as they are now."""
        graph = cls(memo)
        for name, value in values.items():
            graph._discovering = name
            graph.names[name] = (value, graph._value_digest(value, None))
            while graph._queue:
                node = graph._queue.pop()
                node.digest, _ = graph._state_digest(node)
                graph._remember_shape(node)
        graph._discovering = None
        graph._memo = {}
        return graph

    def node_of(self, obj: Any) -> Optional[Node]:
        """The node for ``obj`` (creating it while the graph is being built), or None."""
        node = self.nodes.get(id(obj))
        if node is not None:
            return node if node.obj is obj else None
        if self._discovering is None or len(self.nodes) >= MAX_NODES:
            return None
        found = self._memo.get(id(obj))
        if found is None or found[1] is not obj:
            return None
        node = Node(found[0], obj, inplace.kind_of(obj), self._discovering)
        self.nodes[id(obj)] = node
        self._queue.append(node)
        return node

    def _remember_shape(self, node: Node) -> None:
        if node.kind == "attrs":
            node.keys = tuple(vars(node.obj))
        elif node.kind == "ndarray":
            node.layout = (node.obj.shape, node.obj.dtype, blocks.memory_order(node.obj))
        elif node.kind == "deque":
            node.layout = node.obj.maxlen
        elif node.kind == "pandas":  # its shape, an empty copy (columns, dtypes, type), its index
            node.layout = (node.obj.shape, node.obj.iloc[:0].copy(), node.obj.index)

    # --- shallow states -------------------------------------------------------------------

    def state_of(self, node: Node) -> Any:
        """What is pickled for ``node``'s shallow state (hashed, and sent when it is synced)."""
        obj, kind = node.obj, node.kind
        if kind in ("list", "set", "deque"):
            return list(obj)
        if kind == "dict":
            return list(obj.items())
        if kind == "bytearray":
            return bytes(obj)
        if kind == "attrs":
            current = dict(vars(obj))
            return current, [k for k in node.keys if k not in current]
        if kind == "ndarray":
            return obj.copy()
        if kind == "pandas":  # plain arrays: the target's pandas may be another version
            columns = [obj.iloc[:, i] for i in range(obj.shape[1])] if obj.ndim == 2 else [obj]
            index = None if obj.index.equals(node.layout[2]) else obj.index
            return {"values": [c.to_numpy() for c in columns], "index": index}
        return obj  # a node of no kind: its own pickle (with root set, so not a reference to itself)

    def _pickle(self, value: Any, root: Any = None, copy: Optional[Set[int]] = None
                ) -> Tuple[Optional[bytes], List[Node]]:
        """Digest of ``value``'s pickle (nodes by reference) and the nodes it named;
        (None, []) if it cannot be pickled."""
        for make in (_StatePickler, _CLOUD_STATE_PICKLER):
            if make is None:
                continue
            out, buffers = io.BytesIO(), []  # type: ignore[var-annotated]
            pickler = make(self, out, buffers)
            pickler.root = root
            pickler.copy = copy or set()
            try:
                pickler.dump(value)
            except Exception:
                continue
            return _digest(out.getvalue(), buffers), pickler.seen
        return None, []

    def _value_digest(self, value: Any, copy: Optional[Set[int]]) -> Optional[bytes]:
        digest, _ = self._pickle(value, copy=copy)
        return digest

    def _state_digest(self, node: Node) -> Tuple[Optional[bytes], List[Node]]:
        if _numeric_array(node):
            order = blocks.memory_order(node.obj)
            return blocks.digest_blocks(node.obj.reshape(-1, order=order).view("u1")), []
        if node.kind == "pandas":  # a leaf: its insides are not tracked
            out, buffers = io.BytesIO(), []  # type: ignore[var-annotated]
            try:
                pickle.Pickler(out, protocol=5, buffer_callback=buffers.append).dump(node.obj)
            except Exception:
                return None, []
            return _digest(out.getvalue(), buffers), []
        state = self.state_of(node)
        return self._pickle(state, root=node.obj if state is node.obj else None)

    # --- scanning -----------------------------------------------------------------------

    def scan(self, view: Dict[str, Any], mounted: Iterable[str], added: Iterable[str]) -> Scan:
        """What changed in ``view`` (the notebook namespace, or what was left of it) for the
        ``mounted`` names still there and the ``added`` ones."""
        result = Scan()
        children: Dict[int, List[Node]] = {}
        reached_from: Dict[str, List[Node]] = {}
        direct: Dict[str, List[Node]] = {}
        names = [n for n in mounted if n in view] + [n for n in added if n in view]
        for name in names:
            digest, seen = self._pickle(view[name])
            result.name_digests[name] = digest
            direct[name] = seen
            stack, reach = list(seen), []
            while stack:
                node = stack.pop()
                reach.append(node)
                if node.index in result.digests:
                    stack.extend(n for n in children[node.index] if n not in reach)
                    continue
                result.digests[node.index], kids = self._state_digest(node)
                children[node.index] = kids
                stack.extend(kids)
            reached_from[name] = reach
        # Unpicklable both then and now: compared by identity only (nothing better is possible).
        changed = {n.index for n in self.nodes.values()
                   if n.index in result.digests and (result.digests[n.index] != n.digest
                                                     or n.kind is not None and not self._fits(n))}
        by_index = {n.index: n for n in self.nodes.values()}
        copied = {i for i in changed if not self._fits(by_index[i])}
        # A copied node is copied wherever it is used: a parent that holds it changes too,
        # and a parent of no kind is copied in turn.
        parents: Dict[int, Set[int]] = collections.defaultdict(set)
        for parent, kids in children.items():
            for kid in kids:
                parents[kid.index].add(parent)
        todo = list(copied)
        while todo:
            for parent in parents[todo.pop()]:
                changed.add(parent)
                if parent not in copied and by_index[parent].kind is None:
                    copied.add(parent)
                    todo.append(parent)
        result.copied = {id(by_index[i].obj) for i in copied}
        result.synced = [by_index[i] for i in sorted(changed - copied)]
        result.owners = {node.owner for node in result.synced}
        for name in names:
            result.names[name] = self._status(name, view[name], result, direct[name], reached_from[name],
                                              changed, copied)
            value_node = self.node_of(view[name])
            if result.names[name] == "copied" and value_node is not None:
                result.notes[name] = self.why_copied(value_node)
            inner = sorted({f"{type(n.obj).__name__} ({self.why_copied(n)})" for n in reached_from[name]
                            if n.index in copied and n is not value_node})
            if inner and result.names[name] != "unchanged":
                result.notes[name] = "; ".join(filter(None, [result.notes.get(name), "inner " + ", ".join(inner) +
                                                             " copied: aliases in the target keep the old one"]))
            if result.names[name] in ("rebound", "copied"):
                result.binds[name] = view[name]
        return result

    def _status(self, name: str, value: Any, scan: Scan, direct: List[Node], reached: List[Node],
                changed: Set[int], copied: Set[int]) -> str:
        """``rebound`` (another object), ``copied`` (the same object, changed, not in place:
        sent by value), ``in place`` or ``unchanged``."""
        before = self.names.get(name)
        if before is None or before[0] is not value:
            return "rebound"
        node = self.node_of(value)
        if node is not None:
            if node.index in copied:
                return "copied"
        elif scan.name_digests[name] != before[1] or any(n.index in copied for n in direct):
            return "copied"  # not tracked itself (a tuple, or past MAX_NODES): its pickle changed
        return "in place" if any(n.index in changed for n in reached) else "unchanged"

    def _fits(self, node: Node) -> bool:
        """Whether ``node``'s change can be applied to the target's object in place."""
        if node.kind is None:
            return False
        if node.kind == "ndarray":
            shape, dtype, order = node.layout
            return node.obj.shape == shape and node.obj.dtype == dtype and blocks.memory_order(node.obj) == order
        if node.kind == "deque":
            return node.obj.maxlen == node.layout
        if node.kind == "pandas":
            shape, empty, _ = node.layout
            return node.obj.shape == shape and inplace.same_layout(empty, node.obj.iloc[:0])[0]
        return True

    def why_copied(self, node: Node) -> str:
        """Why a changed node cannot be changed in place (for the diff)."""
        if node.kind is None:
            return f"a {type(node.obj).__name__} cannot be changed in place"
        if node.kind == "ndarray":
            shape, dtype, _ = node.layout
            if node.obj.shape != shape:
                return f"its shape changed ({shape} -> {node.obj.shape})"
            if node.obj.dtype != dtype:
                return f"its dtype changed ({dtype} -> {node.obj.dtype})"
            return "its memory layout changed"
        if node.kind == "pandas":
            shape, empty, _ = node.layout
            if node.obj.shape != shape:
                return f"its shape changed ({shape} -> {node.obj.shape})"
            return inplace.same_layout(empty, node.obj.iloc[:0])[1]
        return "its maxlen changed"

    def big_array_names(self) -> List[str]:
        """The mounted names that reach numeric arrays of CHECK_AHEAD_BYTES or more."""
        return sorted({node.owner for node in self.nodes.values()
                       if _numeric_array(node) and node.obj.nbytes >= CHECK_AHEAD_BYTES})

    # --- the payload ---------------------------------------------------------------------

    def payload(self, scan: Scan, binds: Dict[str, Any]) -> List[Any]:
        """The frames of a write-back: ``{"bind": ..., "sync": [(n, kind, state)]}`` pickled
        with mounted objects as ``("m", n)`` (copied ones by value), in one stream so that
        an object used twice arrives once. Raises what pickling raises."""
        sync = [self._sync_entry(node, scan) for node in scan.synced]
        return self._dump({"bind": binds, "sync": sync}, scan.copied)

    def _sync_entry(self, node: Node, scan: Scan) -> Tuple[int, Optional[str], Any]:
        if _numeric_array(node):
            return node.index, "ndarray", self._block_state(node, scan.digests[node.index])
        return node.index, node.kind, self.state_of(node)

    def _dump(self, payload: Any, copied: Set[int]) -> List[Any]:
        make = _CLOUD_STATE_PICKLER or _StatePickler
        out, buffers = io.BytesIO(), []  # type: ignore[var-annotated]
        pickler = make(self, out, buffers)
        pickler.copy = copied
        pickler.dump(payload)
        return [out.getvalue(), *(b.raw() for b in buffers)]

    def culprits(self, scan: Scan, binds: Dict[str, Any]) -> Dict[str, str]:
        """Which names make the payload unpicklable (a changed object counts for the name it
        was mounted through), and why."""
        bad: Dict[str, str] = {}
        items: List[Tuple[str, Dict[str, Any]]] = [(name, {"bind": {name: value}, "sync": []})
                                                    for name, value in binds.items()]
        items += [(node.owner, {"bind": {}, "sync": [self._sync_entry(node, scan)]}) for node in scan.synced]
        for name, part in items:
            try:
                self._dump(part, scan.copied)
            except Exception as exc:
                cause = exc.__cause__ or exc
                bad.setdefault(name, f"{type(cause).__name__}: {cause}")
        return bad or {"the changes": "they cannot be pickled together"}

    def _block_state(self, node: Node, now: Optional[bytes]) -> Tuple[Any, ...]:
        """The runs of ``node``'s elements whose blocks changed, as out-of-band buffers."""
        arr = node.obj
        order = blocks.memory_order(arr)
        flat = arr.reshape(-1, order=order)
        per_block = max(1, blocks.BLOCK_BYTES // max(1, arr.dtype.itemsize))
        if now is None or node.digest is None or len(now) != len(node.digest):
            spans = [(0, arr.size)] if arr.size else []
        else:
            spans = [(first * per_block, min(end * per_block, arr.size))
                     for first, end in blocks.runs(blocks.changed_blocks(node.digest, now))]
        if blocks.BLOCK_BYTES % max(1, arr.dtype.itemsize):  # blocks do not fall on elements: send it all
            spans = [(0, arr.size)] if arr.size else []
        return ("blocks", order, arr.dtype.str, list(arr.shape), spans,
                [pickle.PickleBuffer(flat[start:stop]) for start, stop in spans])

    def name_of(self, index: int) -> Tuple[Optional[str], str]:
        """The mounted name bound to object ``index`` (or None), and how to call it."""
        node = next((n for n in self.nodes.values() if n.index == index), None)
        if node is None:
            return None, f"object #{index}"
        for name, (value, _) in self.names.items():
            if value is node.obj:
                return name, name
        return None, f"a {type(node.obj).__name__} inside {node.owner}"

    # --- after a write-back ----------------------------------------------------------------

    def accept(self, scan: Scan, view: Dict[str, Any], written: Iterable[str], deleted: Iterable[str]) -> None:
        """The target took ``scan``: its states are the new baseline."""
        for node in list(self.nodes.values()):
            if id(node.obj) in scan.copied:
                del self.nodes[id(node.obj)]  # the target has a copy now, not the object it stood for
            elif node.index in scan.digests:
                node.digest = scan.digests[node.index]
                self._remember_shape(node)
        for name in written:
            if name in view:
                self.names[name] = (view[name], scan.name_digests.get(name))
        for name in deleted:
            self.names.pop(name, None)

