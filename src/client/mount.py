"""jump_context / Mount: a paused frame's variables as notebook variables for one block.

    with jump_context(s) as m:      # snapshot the selected frame into the notebook
        rows = rows[rows.amount > 0]
        m.diff()                    # what would be written back
    # normal exit: what changed goes back in one all-or-nothing step

How it works:

* **Mount.** One ``mount_snapshot`` request returns every variable (or ``names``), each
  pickled on its own: by value when it can be copied and is within ``size_limit``, else as
  a live reference (client/proxy.py). A value the notebook cannot unpickle (an object of a
  class from the target's ``__main__``) is asked for again, live.
* **Change detection.** At mount, and again at exit, each value gets a fingerprint here:
  the object itself (identity) and the xxh3_128 of its pickle-5 bytes, stream and
  buffers. Rebound or mutated in place = changed; gone = deleted; a name that did not
  exist in the notebook before the block and is not private (``_x``) = added.
* **Write-back.** Only what changed goes, with the target-side version (identity + hash,
  computed on the target both times: a pickle's bytes differ between processes) each
  changed name had at mount, and the pause id. The target refuses a stale version
  (``WriteBackConflict``, nothing written) or a resumed thread (``NotPaused``), and writes
  with ``bridge.frames.write_locals`` (all or nothing).
* **Restore.** Whatever happens, names the mount shadowed get their old values back and
  names it introduced disappear; names the block created that were not mounted stay.

A written-back value *replaces* the target's object: other references to the old object
in the target (``self.rows``, a list that holds it) still see the old one. Use live
references (``size_limit=0``) when the target's own object must change in place.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from bridge import wire
from bridge.protocol import DEFAULT_SIZE_LIMIT, MAX_MESSAGE_BYTES

from . import proxy as proxies
from .display import esc, human_size, table
from .errors import (
    MountStateError,
    NoSession,
    NotPaused,
    Unmountable,
    WriteBackTooLarge,
    WriteBackUnpicklable,
)
from .values import FrameRef

_MISSING = object()

try:
    import xxhash

    def _hash(frames: Sequence[Any]) -> str:
        h = xxhash.xxh3_128()
        for f in frames:
            h.update(f)
        return h.hexdigest()

except ImportError:  # pragma: no cover - xxhash is in the notebook extra
    import hashlib

    def _hash(frames: Sequence[Any]) -> str:
        h = hashlib.blake2b(digest_size=16)
        for f in frames:
            h.update(f)
        return h.hexdigest()


@dataclass
class _Fingerprint:
    """What a value was at mount (or last commit): the object and the hash of its pickle."""

    obj: Any
    digest: Optional[str]

    @classmethod
    def of(cls, value: Any) -> "_Fingerprint":
        if proxies.is_live(value):
            return cls(value, "live")
        frames = proxies.fingerprint_frames(value)
        return cls(value, None if frames is None else _hash(frames))

    def same(self, value: Any) -> bool:
        """Whether ``value`` is the same object, unmutated."""
        if value is not self.obj:
            return False
        if self.digest == "live":
            return True
        now = _Fingerprint.of(value)
        # An unpicklable value is compared by identity only (nothing better is possible).
        return self.digest is None or now.digest == self.digest


@dataclass
class Change:
    """One row of a diff."""

    name: str
    status: str  # "changed", "added", "deleted" or "unchanged"
    live: bool
    type: str
    size: Optional[int]


class Diff(list):
    """The changes a write-back would send (a list of :class:`Change`); prints as a table."""

    @property
    def changed(self) -> List[str]:
        return [c.name for c in self if c.status == "changed"]

    @property
    def added(self) -> List[str]:
        return [c.name for c in self if c.status == "added"]

    @property
    def deleted(self) -> List[str]:
        return [c.name for c in self if c.status == "deleted"]

    def __bool__(self) -> bool:
        return any(c.status != "unchanged" for c in self)

    def __repr__(self) -> str:
        rows = [c for c in self if c.status != "unchanged"]
        if not rows:
            return "(no changes)"
        return "\n".join(f"{c.status:8} {c.name}: {c.type}{' (live)' if c.live else ''}" for c in rows)

    def _repr_html_(self) -> str:
        rows = [c for c in self if c.status != "unchanged"]
        if not rows:
            return "<i>no changes to write back</i>"
        return table(("name", "change", "kind", "type", "size"),
                     ((c.name, c.status, "live" if c.live else "copied", c.type, human_size(c.size)) for c in rows),
                     [f"fb-{c.status}" for c in rows], caption="<b>would be written back</b>")


@dataclass
class _Var:
    name: str
    live: bool
    type: str
    size: Optional[int]
    version: str


def _default_namespace(depth: int) -> Dict[str, Any]:
    """IPython's user_ns when running in IPython, else the globals of the caller's frame."""
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        try:
            shell = ipython.get_ipython()
        except Exception:
            shell = None
        if shell is not None:
            return shell.user_ns
    return sys._getframe(depth + 1).f_globals


def _resolve_session(session: Any) -> Any:
    if session is not None:
        return session
    from .current import has_current_session, current_session

    if has_current_session():
        return current_session()
    from .discovery import attach, sessions

    paused = [s for s in sessions() if s.is_paused]
    if not paused:
        raise NoSession("no paused process to mount: pause one (bridge.set_trace()) or pass a session")
    if len(paused) > 1:
        listing = "\n  ".join(str(s) for s in paused)
        raise NoSession(f"{len(paused)} paused processes; pass the session to mount:\n  {listing}")
    from .current import set_current_session

    s = attach(paused[0].pid)
    set_current_session(s)  # the next jump_context() (and %where, the panel) reuses it
    return s


class Mount:
    """A mounted frame: a context manager. Create with :func:`jump_context`.

    Inside the block: :meth:`diff`, :meth:`commit`, :meth:`discard`; :attr:`live` names the
    variables that are live references (what is done through them is done in the target
    at once, and discarding cannot undo it).
    """

    def __init__(self, session: Any, *, frame: Optional[int] = None, names: Optional[Iterable[str]] = None,
                 write_back: bool = True, copy: Optional[Iterable[str]] = None,
                 size_limit: Optional[int] = DEFAULT_SIZE_LIMIT, namespace: Optional[Dict[str, Any]] = None,
                 timeout: Optional[float] = None) -> None:
        self.session = session
        self.frame = frame
        self.names = None if names is None else [names] if isinstance(names, str) else list(names)
        self.write_back = write_back
        self.copy = [] if copy is None else [copy] if isinstance(copy, str) else list(copy)
        self.size_limit = size_limit
        self.namespace = namespace if namespace is not None else _default_namespace(1)
        self.timeout = timeout
        self.vars: Dict[str, _Var] = {}
        self.pause_id: Optional[int] = None
        self.thread: Optional[int] = None
        self.frame_index: int = 0
        self.can_delete = True
        self.entered = False
        self.discarded = False
        self.committed = 0  # number of commits that wrote something
        self.mount_seconds = 0.0
        self._base: Dict[str, Optional[str]] = {}  # tracked name -> target version (None: not in frame)
        self._prints: Dict[str, _Fingerprint] = {}  # tracked name -> fingerprint
        self._shadowed: Dict[str, Any] = {}  # mounted name -> notebook value it shadowed (or _MISSING)
        self._before: Dict[str, Any] = {}  # notebook names (and objects) at mount
        self._mounted: List[str] = []

    # --- entering ----------------------------------------------------------------------

    def __enter__(self) -> "Mount":
        if self.entered:
            raise MountStateError("this Mount is already in use; create a new one with jump_context()")
        start = time.perf_counter()
        values = self._snapshot()
        ns = self.namespace
        self._before = dict(ns)
        for name, value in values.items():
            self._shadowed[name] = ns.get(name, _MISSING)
            self._prints[name] = _Fingerprint.of(value)
            self._base[name] = self.vars[name].version
        ns.update(values)  # last: a failure above leaves the namespace untouched
        self._mounted = list(values)
        self.entered = True
        self.mount_seconds = time.perf_counter() - start
        return self

    def _request(self, op: str, args: Dict[str, Any], frames: Optional[List[Any]] = None) -> Tuple[Any, List[Any]]:
        if self.thread is None:
            raise MountStateError("the mount has no frame yet: use it as `with jump_context(...) as m:`")
        # The mounted frame, in the mounted pause once known: a later pause is refused.
        at = FrameRef(self.thread, self.frame_index, self.pause_id)
        return self.session.refs.request(op, args, frames, at=at, timeout=self.timeout)

    def _snapshot(self) -> Dict[str, Any]:
        selected = self.session.selected
        if selected is None:
            raise NotPaused(f"no thread of pid {self.session.pid} is paused: nothing to mount")
        self.thread = selected.thread
        self.frame_index = selected.frame if self.frame is None else self.frame
        args: Dict[str, Any] = {"names": self.names, "copy": self.copy, "size_limit": self.size_limit}
        result, frames = self._request("mount_snapshot", args)
        self.pause_id = result["pause_id"]
        self.can_delete = bool(result.get("can_delete", True))
        values, retry = self._decode(result, frames)
        if retry:  # values the notebook cannot rebuild (target __main__ classes): mount them live
            args = {"names": retry, "live": retry, "size_limit": self.size_limit}
            result2, frames2 = self._request("mount_snapshot", args)
            more, still = self._decode(result2, frames2)
            if still:
                raise Unmountable("Unmountable", f"cannot mount {', '.join(still)} even as live references")
            values.update(more)
        return {name: values[name] for name in self.vars}  # the target's order

    def _decode(self, result: Dict[str, Any], frames: List[Any]) -> Tuple[Dict[str, Any], List[str]]:
        values: Dict[str, Any] = {}
        retry: List[str] = []
        pos = 0
        for var in result["vars"]:
            n = var["nframes"]
            chunk, pos = frames[pos:pos + n], pos + n
            self.vars[var["name"]] = _Var(var["name"], var["live"], var["type"], var.get("size"), var["version"])
            try:
                values[var["name"]] = proxies.load(self.session.refs, chunk)
            except proxies.NeedsLive:
                retry.append(var["name"])
            except Exception:  # e.g. a class from a package the notebook lacks: mount it live
                if var["live"]:
                    raise
                retry.append(var["name"])
        return values, retry

    # --- what changed ------------------------------------------------------------------

    @property
    def live(self) -> List[str]:
        """Mounted names that are live references (discarding cannot undo what they did)."""
        return [n for n in self._mounted if self.vars[n].live]

    @property
    def mounted(self) -> List[str]:
        """Names this mount put into the namespace."""
        return list(self._mounted)

    def _added_names(self) -> List[str]:
        # Not added: private names, and the debugger's own handles (``with ... as m`` binds
        # the Mount after the snapshot of the namespace was taken).
        ns = self.namespace
        return [n for n, v in list(ns.items()) if n not in self._prints and n not in self._before
                and not n.startswith("_") and not _is_debugger_object(v)]

    def diff(self) -> Diff:
        """What a write-back would send now: changed, added and deleted names."""
        ns = self.namespace
        out = Diff()
        for name, fp in self._prints.items():
            var = self.vars.get(name)
            live, typ, size = (var.live, var.type, var.size) if var else (False, "", None)
            if name not in ns:
                out.append(Change(name, "deleted", live, typ, size))
                continue
            value = ns[name]
            status = "unchanged" if fp.same(value) else "changed"
            if status == "changed" and value is not fp.obj:
                live, typ, size = proxies.is_live(value), _type_name(value), _size(value)
            out.append(Change(name, status, live, typ, size))
        for name in self._added_names():
            value = ns[name]
            out.append(Change(name, "added", proxies.is_live(value), _type_name(value), _size(value)))
        return out

    # --- deciding ------------------------------------------------------------------------

    def commit(self) -> Diff:
        """Write back what changed so far, now (all or nothing); returns what was written.

        Later changes in the same block are measured from here.
        """
        self._need_entered()
        diff = self.diff()
        if not diff:
            return diff
        ns = self.namespace
        updates = {n: ns[n] for n in diff.changed + diff.added}
        deletes = diff.deleted
        base = {n: self._base[n] for n in diff.changed + deletes if self._base.get(n) is not None}
        frames = self._encode(updates) if updates else None
        if frames is not None:
            total = sum(memoryview(f).nbytes for f in frames)
            if total > MAX_MESSAGE_BYTES and self.session.bulk_mode == "curve":
                raise WriteBackTooLarge(f"write-back of {human_size(total)} exceeds the "
                                        f"{human_size(MAX_MESSAGE_BYTES)} message limit without a bulk path; "
                                        "nothing was written")
        try:
            result, _ = self._request("mount_write", {"base": base, "delete": deletes}, frames)
        except NotPaused as exc:
            raise NotPaused(f"write-back refused, nothing written: the target resumed since the mount "
                            f"(pause {self.pause_id}): {exc}") from None
        for name in updates:
            self._prints[name] = _Fingerprint.of(ns[name])
            self._base[name] = result.get("versions", {}).get(name)
        for name in deletes:
            self._prints.pop(name, None)
            self._base.pop(name, None)
        self.committed += 1
        return diff

    def _encode(self, updates: Dict[str, Any]) -> List[Any]:
        try:
            return proxies.dump(updates)
        except Exception:
            pass
        bad: Dict[str, str] = {}  # find which names, to say so
        for name, value in updates.items():
            try:
                proxies.dump(value)
            except Exception as exc:
                cause = exc.__cause__ or exc
                bad[name] = f"{name} ({type(cause).__name__}: {cause})"
        raise WriteBackUnpicklable("cannot write back " + "; ".join(bad.values() or ["the changes"]) +
                                   ": they cannot be pickled. Nothing was written; delete or rebind them, or discard.",
                                   list(bad))

    def discard(self) -> None:
        """Write nothing back at the end of the block (what live references did stays done)."""
        self.discarded = True

    def _need_entered(self) -> None:
        if not self.entered:
            raise MountStateError("the mount is not active: use it as `with jump_context(...) as m:`")

    # --- leaving -------------------------------------------------------------------------

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        try:
            if exc_type is None and self.write_back and not self.discarded:
                self.commit()
        finally:
            self._restore()
        return False

    def _restore(self) -> None:
        ns = self.namespace
        for name in self._mounted:
            old = self._shadowed.get(name, _MISSING)
            if old is _MISSING:
                ns.pop(name, None)
            else:
                ns[name] = old
        self.entered = False
        try:  # handles of proxies that died with the block go back now, if the target is paused
            refs = self.session.refs
            if refs.pending and self.session.paused:
                refs.flush()
        except Exception:
            pass  # releasing is housekeeping: never let it hide the block's outcome

    # --- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "active" if self.entered else "inactive"
        live = f", live: {', '.join(self.live)}" if self.live else ""
        return f"<Mount of {len(self.vars)} variables from pid {self.session.pid} ({state}{live})>"

    def _repr_html_(self) -> str:
        changes = {c.name: c.status for c in self.diff()} if self.entered else {}
        rows = [(v.name, "live" if v.live else "copied", v.type, human_size(v.size), changes.get(v.name, ""))
                for v in self.vars.values() if v.name in self._mounted]
        caption = f"<b>mounted</b> from pid {esc(self.session.pid)}"
        if self.live:
            caption += (" &mdash; live: " + esc(", ".join(self.live)) +
                        " (changes through them happen in the target at once)")
        return table(("name", "kind", "type", "size", "change"), rows,
                     [f"fb-{changes.get(r[0])}" if changes.get(r[0]) not in ("", "unchanged", None) else ""
                      for r in rows], caption=caption)


def _is_debugger_object(value: Any) -> bool:
    from .session import Session

    return not proxies.is_live(value) and isinstance(value, (Mount, Session))


def _type_name(value: Any) -> str:
    if proxies.is_live(value):
        return proxies.type_of(value)
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _size(value: Any) -> Optional[int]:
    if proxies.is_live(value):
        return None
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return sys.getsizeof(value)
    except Exception:
        return None


def jump_context(session: Any = None, *, frame: Optional[int] = None, names: Optional[Iterable[str]] = None,
                 write_back: bool = True, copy: Optional[Iterable[str]] = None,
                 size_limit: Optional[int] = DEFAULT_SIZE_LIMIT, timeout: Optional[float] = None,
                 namespace: Optional[Dict[str, Any]] = None) -> Mount:
    """Mount the paused frame's variables into the notebook for a ``with`` block.

    ``session``: a Session (default: the current one, else the one paused process).
    ``frame``: frame index (default: the session's selected frame). ``names``: mount only
    these. ``write_back``: False throws every change away. ``copy``: names to copy even
    when over ``size_limit`` (bytes, default 256 MiB; None = no limit, 0 = everything that
    can be live is). ``namespace``: where to put them (default: IPython's ``user_ns``, or
    the caller's globals outside IPython).
    """
    if namespace is None:
        namespace = _default_namespace(1)
    return Mount(_resolve_session(session), frame=frame, names=names, write_back=write_back, copy=copy,
                 size_limit=size_limit, namespace=namespace, timeout=timeout)
