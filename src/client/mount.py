"""jump_context / Mount: a paused frame's variables as notebook variables for one block.

    with jump_context(s) as m:      # snapshot the selected frame into the notebook
        rows = rows[rows.amount > 0]
        m.diff()                    # what would be written back, and how
    # normal exit: what changed goes back in one all-or-nothing step

How it works (docs/howto-mount.md is the user's side of this):

* **Mount.** One ``mount_snapshot`` request returns every variable (or ``names``), each
  pickled on its own stream: by value when it can be copied and is within ``size_limit``,
  else as a live reference (client/proxy.py). Copied values share one pickle memo, so the
  notebook's copies map to the target's objects (client/mount_graph.py). A value the
  notebook cannot unpickle (a class from a package it lacks) is asked for again, live.
* **Change detection and identity.** mount_graph.py keeps a digest of each mapped object's
  own contents; at write-back, unchanged objects are sent as references to the target's
  originals, changed ones are changed in place in the target when their kind allows
  (bridge/inplace.py), and big numeric arrays send only their changed blocks.
* **Write-back.** The target checks each involved name's version (identity + digest,
  computed on the target both times) and the pause id, decides which deletions this
  Python can do, checks every in-place change, and only then writes (all or nothing).
* **Refused.** What was not written stays reachable: ``m.pending`` and the exception's
  ``changes``; ``m.retry(exclude=[...])`` writes the rest, ``with m.reopen():`` puts it
  back in the notebook to go on editing.
* **Restore.** Whatever happens, names the mount shadowed get their old values back and
  names it introduced disappear; names the block created that were not mounted stay.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from bridge.protocol import DEFAULT_SIZE_LIMIT, MAX_MESSAGE_BYTES

from . import proxy as proxies
from .display import esc, human_size, table
from .errors import (
    MountStateError,
    NoSession,
    NotDeleted,
    NotPaused,
    RemoteError,
    Unmountable,
    WriteBackConflict,
    WriteBackTooLarge,
    WriteBackUnpicklable,
)
from .mount_diff import COPIED, IN_PLACE, REBOUND, Change, Diff, PendingChanges, describe
from .mount_graph import Graph, Scan, SnapshotDecoder
from .values import FrameRef

__all__ = ["Mount", "jump_context", "last_mount", "Change", "Diff", "PendingChanges"]

_MISSING = object()
_HOW = {"in place": IN_PLACE, "rebound": REBOUND, "copied": COPIED}
_last: List[Optional["Mount"]] = [None]


def last_mount() -> Optional["Mount"]:
    """The most recent Mount whose write-back was refused or abandoned with changes left
    (``m.pending``), or None: for when the ``with`` statement had no ``as m``."""
    return _last[0]


@dataclass
class _Var:
    name: str
    live: bool
    type: str
    size: Optional[int]
    version: str
    deletable: bool = True


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
    at once, and discarding cannot undo it). After a refused write-back: :attr:`pending`,
    :meth:`retry`, :meth:`reopen`.
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
        #: Bytes the last write-back sent (its values; a big array changed in a few places sends those blocks).
        self.sent_bytes = 0
        #: Names deleted in the notebook that the target kept (this Python cannot delete them): name -> why.
        self.not_deleted: Dict[str, str] = {}
        self._token: Optional[int] = None  # the target's record of this mount (bridge/mount_state.py)
        self._graph: Optional[Graph] = None
        self._base: Dict[str, Optional[str]] = {}  # tracked name -> target version (None: not in frame)
        self._shadowed: Dict[str, Any] = {}  # name in the namespace -> notebook value it shadowed (or _MISSING)
        self._before: Dict[str, Any] = {}  # notebook names (and objects) at mount
        self._mounted: List[str] = []
        self._left: Optional[Dict[str, Any]] = None  # what the block left, when it was not written back
        self._pending = PendingChanges()

    # --- entering ----------------------------------------------------------------------

    def __enter__(self) -> "Mount":
        if self.entered:
            raise MountStateError("this Mount is already in use; create a new one with jump_context()")
        if self._graph is not None:
            return self._reenter()
        start = time.perf_counter()
        values, memo = self._snapshot()
        ns = self.namespace
        self._before = dict(ns)
        self._graph = Graph.build(values, memo)
        for name in values:
            self._shadowed[name] = ns.get(name, _MISSING)
            self._base[name] = self.vars[name].version
        ns.update(values)  # last: a failure above leaves the namespace untouched
        self._mounted = list(values)
        self.entered = True
        self.mount_seconds = time.perf_counter() - start
        return self

    def reopen(self) -> "Mount":
        """Put what a refused or abandoned write-back left back into the notebook, for
        another ``with`` block: ``with m.reopen(): del fh`` (leaving it writes back again)."""
        if self._left is None:
            raise MountStateError("nothing to reopen: this mount was written back, discarded or never left")
        return self

    def _reenter(self) -> "Mount":
        if self._left is None:
            raise MountStateError("this Mount was used already; create a new one with jump_context()")
        ns = self.namespace
        assert self._graph is not None
        # Mounted again: the names the target has; the ones the block created are the
        # notebook's (as they were after the first block): back in place, not restored after.
        self._mounted = [name for name in self._left if name in self._graph.names]
        self._shadowed = {name: ns.get(name, _MISSING) for name in self._mounted}
        self._before = {k: v for k, v in ns.items() if k not in self._left}
        ns.update(self._left)
        self._left = None
        self.discarded = False
        self.entered = True
        return self

    def _request(self, op: str, args: Dict[str, Any], frames: Optional[List[Any]] = None) -> Tuple[Any, List[Any]]:
        if self.thread is None:
            raise MountStateError("the mount has no frame yet: use it as `with jump_context(...) as m:`")
        # The mounted frame, in the mounted pause once known: a later pause is refused.
        at = FrameRef(self.thread, self.frame_index, self.pause_id)
        return self.session.refs.request(op, args, frames, at=at, timeout=self.timeout)

    def _snapshot(self) -> Tuple[Dict[str, Any], Dict[int, Any]]:
        selected = self.session.selected
        if selected is None:
            raise NotPaused(f"no thread of pid {self.session.pid} is paused: nothing to mount")
        self.thread = selected.thread
        self.frame_index = selected.frame if self.frame is None else self.frame
        args: Dict[str, Any] = {"names": self.names, "copy": self.copy, "size_limit": self.size_limit}
        result, frames = self._request("mount_snapshot", args)
        self.pause_id = result["pause_id"]
        self._token = result.get("mount")
        self.can_delete = bool(result.get("can_delete", True))
        decoder = SnapshotDecoder(self.session.refs)
        values, retry = self._decode(result, frames, decoder)
        if retry:  # values the notebook cannot rebuild (target __main__ classes): mount them live
            args = {"names": retry, "live": retry, "size_limit": self.size_limit, "identity": False}
            result2, frames2 = self._request("mount_snapshot", args)
            more, still = self._decode(result2, frames2, SnapshotDecoder(self.session.refs))
            if still:
                raise Unmountable("Unmountable", f"cannot mount {', '.join(still)} even as live references")
            values.update(more)
        return {name: values[name] for name in self.vars}, decoder.memo()  # the target's order

    def _decode(self, result: Dict[str, Any], frames: List[Any], decoder: SnapshotDecoder
                ) -> Tuple[Dict[str, Any], List[str]]:
        values: Dict[str, Any] = {}
        retry: List[str] = []
        pos = 0
        for var in result["vars"]:
            n = var["nframes"]
            chunk, pos = frames[pos:pos + n], pos + n
            name = var["name"]
            self.vars[name] = _Var(name, var["live"], var["type"], var.get("size"), var["version"],
                                   var.get("deletable", True))
            try:
                values[name] = decoder.load(chunk, bool(var.get("shared")))
            except proxies.NeedsLive:
                retry.append(name)
            except Exception:  # e.g. a class from a package the notebook lacks: mount it live
                if var["live"]:
                    raise
                retry.append(name)
        return values, retry

    # --- what changed ------------------------------------------------------------------

    @property
    def live(self) -> List[str]:
        """Mounted names that are live references (discarding cannot undo what they did)."""
        return [n for n in self._mounted if n in self.vars and self.vars[n].live]

    @property
    def mounted(self) -> List[str]:
        """Names this mount put into the namespace."""
        return list(self._mounted)

    @property
    def pending(self) -> PendingChanges:
        """What a refused or abandoned write-back did not write (empty once written back
        or discarded): name -> the notebook's value, and ``.deleted``."""
        if self._left is not None and self._graph is not None and not self._pending:
            # Refused inside the block (m.commit()) and left since: measured from what it left.
            scan, deleted = self._scan(self._left)
            self._pending = self._pending_of(scan, self._left, deleted)
        return self._pending

    def _view(self) -> Dict[str, Any]:
        return self.namespace if self.entered else (self._left or {})

    def _added_names(self, view: Dict[str, Any]) -> List[str]:
        # Not added: private names, and the debugger's own handles (``with ... as m`` binds
        # the Mount after the snapshot of the namespace was taken).
        tracked = self._graph.names if self._graph is not None else {}
        return [n for n, v in list(view.items()) if n not in tracked and n not in self._before
                and not n.startswith("_") and not _is_debugger_object(v)]

    def _scan(self, view: Dict[str, Any], exclude: Sequence[str] = ()) -> Tuple[Scan, List[str]]:
        assert self._graph is not None
        tracked = [n for n in self._graph.names if n not in exclude]
        added = [n for n in self._added_names(view) if n not in exclude]
        deleted = [n for n in tracked if n not in view]
        return self._graph.scan(view, tracked, added), deleted

    def diff(self) -> Diff:
        """What a write-back would send now: per name, changed (in place or rebound),
        added, deleted (or kept, where this Python cannot delete it)."""
        if self._graph is None:
            return Diff()
        view = self._view()
        scan, deleted = self._scan(view)
        return self._diff_of(scan, view, deleted)

    def _diff_of(self, scan: Scan, view: Dict[str, Any], deleted: Sequence[str]) -> Diff:
        out = Diff()
        assert self._graph is not None
        for name in self._graph.names:
            var = self.vars.get(name)
            if name in deleted:
                live, typ, size = (var.live, var.type, var.size) if var else (False, "", None)
                if var is not None and not var.deletable:
                    out.append(Change(name, "kept", live, typ, size, "not deleted", _why_kept()))
                else:
                    out.append(Change(name, "deleted", live, typ, size))
                continue
            status = scan.names.get(name)
            if status is None:
                continue  # excluded
            if status == "unchanged":
                live, typ, size = (var.live, var.type, var.size) if var else (False, "", None)
                out.append(Change(name, "unchanged", live, typ, size))
            else:
                out.append(describe(name, "changed", view[name], how=_HOW[status], note=scan.notes.get(name, "")))
        for name, status in scan.names.items():
            if name not in self._graph.names:
                out.append(describe(name, "added", view[name], note=scan.notes.get(name, "")))
        return out

    # --- deciding ------------------------------------------------------------------------

    def commit(self) -> Diff:
        """Write back what changed so far, now (all or nothing); returns what was written.

        Later changes in the same block are measured from here.
        """
        self._need_entered()
        return self._write(self.namespace)

    def retry(self, exclude: Iterable[str] = (), rebind: Iterable[str] = ()) -> Diff:
        """Write what a refused (or abandoned) write-back left, now, without the names in
        ``exclude`` (they stay in :attr:`pending`); names in ``rebind`` are written by value
        instead of in place (aliases in the target keep the old object)."""
        if self.entered:
            raise MountStateError("the block is still running: call m.commit() instead")
        if self._left is None:
            raise MountStateError("nothing to retry: this mount was written back, discarded or never left")
        exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        rebind = [rebind] if isinstance(rebind, str) else list(rebind)
        written = self._write(self._left, exclude=exclude, rebind=rebind, end=not exclude)
        self._pending = PendingChanges()
        if not exclude:
            self._forget()
        return written

    def _write(self, view: Dict[str, Any], *, exclude: Sequence[str] = (), rebind: Sequence[str] = (),
               end: bool = False) -> Diff:
        assert self._graph is not None
        check = self._check_ahead()
        scan, deleted = self._scan(view, exclude)
        for name in rebind:
            if name in view and name in scan.names:
                scan.binds[name] = view[name]
                scan.copied.add(id(view[name]))
                scan.synced = [n for n in scan.synced if n.obj is not view[name]]
                scan.names[name] = "copied"
        diff = self._diff_of(scan, view, deleted)
        if not diff:
            if end:
                self._end()
            return diff
        try:
            frames = self._graph.payload(scan, scan.binds)
        except Exception as exc:
            bad = self._graph.culprits(scan, scan.binds)
            raise self._refusal(WriteBackUnpicklable(
                "write-back refused, nothing written: cannot send " + "; ".join(
                    f"{name} ({why})" for name, why in bad.items()) + " to the target (they cannot be pickled)",
                list(bad)), scan, view, deleted, exclude=list(bad)) from exc
        total = self.sent_bytes = sum(memoryview(f).nbytes for f in frames)
        if total > MAX_MESSAGE_BYTES and self.session.bulk_mode == "curve":
            raise self._refusal(WriteBackTooLarge(
                f"write-back refused, nothing written: {human_size(total)} exceeds the "
                f"{human_size(MAX_MESSAGE_BYTES)} message limit without a bulk path"), scan, view, deleted)
        tracked = self._graph.names
        involved = [n for n, st in scan.names.items() if st != "unchanged" and n in tracked] + list(deleted)
        base = {n: self._base[n] for n in set(involved) | scan.owners if self._base.get(n) is not None}
        args = {"mount": self._token, "base": base, "delete": list(deleted), "end": end}
        if check is not None:
            check.wait(self.timeout)  # its digests serve the write-back if it came just before it
        try:
            result, _ = self._request("mount_write", args, frames)
        except NotPaused as exc:
            raise self._refusal(NotPaused(
                f"write-back refused, nothing written: the target resumed since the mount (pause "
                f"{self.pause_id}: another client continued it, or it was left with no client attached): {exc}"),
                scan, view, deleted, resumed=True) from None
        except (WriteBackConflict, RemoteError) as exc:
            raise self._refusal(exc, scan, view, deleted) from None
        kept = result.get("kept") or {}
        if kept:
            self.not_deleted.update(kept)
            warnings.warn(NotDeleted("write-back: " + "; ".join(kept.values()) + ". Everything else was written."),
                          stacklevel=3)
        for name, version in (result.get("versions") or {}).items():
            self._base[name] = version
        self._graph.accept(scan, view, list(scan.names), list(deleted))
        for name in deleted:
            self._base.pop(name, None)
        self.committed += 1
        if end:
            self._token = None  # the target forgot it with this write
        return diff

    def _check_ahead(self) -> Any:
        """Let the target read the big arrays for its conflict check while this process reads
        them for the changes: ``mount_check`` (bridge/mount_state.py, check_ahead)."""
        names = [n for n in self._graph.big_array_names() if self._base.get(n)] if self._graph else []
        if not names or self._token is None or self.thread is None:
            return None
        try:  # what fails here, the write-back itself reports (keeping the changes)
            return self.session.submit("mount_check", {"mount": self._token, "names": names}, timeout=self.timeout,
                                       at=FrameRef(self.thread, self.frame_index, self.pause_id))
        except Exception:
            return None

    def _refusal(self, exc: BaseException, scan: Scan, view: Dict[str, Any], deleted: Sequence[str], *,
                 exclude: Sequence[str] = (), resumed: bool = False) -> BaseException:
        """``exc`` reworded with what to do, carrying the changes (``.changes``, ``.mount``)."""
        self._pending = self._pending_of(scan, view, deleted)
        _last[0] = self
        names = ", ".join(f"{n!r}" for n in self._pending) or "none"
        if resumed:
            advice = (f"Your changes are kept in m.pending ({names}; also this error's .changes). The frame "
                      f"they were for has resumed: when the target pauses again, mount it and assign them, "
                      f"e.g. `with jump_context(s): rows = m.pending['rows']`.")
        elif exclude:
            advice = (f"Your changes are kept in m.pending ({names}; also this error's .changes). To write the "
                      f"others now: m.retry(exclude={list(exclude)!r}); to edit them first: `with m.reopen(): ...` "
                      f"(leaving the block writes back again).")
        elif isinstance(exc, WriteBackConflict):
            advice = (f"Your changes are kept in m.pending ({names}; also this error's .changes): look at the "
                      f"target's values, then mount again and assign what you want, e.g. "
                      f"`with jump_context(s): rows = m.pending['rows']`.")
        else:
            exc, culprits = self._name_objects(exc)
            rebind = f"m.retry(rebind={culprits!r})" if culprits else "m.retry(rebind=[...])"
            advice = (f"Your changes are kept in m.pending ({names}; also this error's .changes): "
                      f"{rebind} writes them by value instead of in place (aliases in the target keep the "
                      f"old object), m.retry(exclude=[...]) writes the others, `with m.reopen(): ...` puts them "
                      f"back to edit.")
        advice += " (m is this Mount: `with jump_context(...) as m`, or client.last_mount().)"
        new = _reworded(exc, advice)
        new.changes = self._pending  # type: ignore[attr-defined]
        new.mount = self  # type: ignore[attr-defined]
        return new

    def _name_objects(self, exc: BaseException) -> Tuple[BaseException, List[str]]:
        """``exc`` with the target's ``object #n`` replaced by the names they were mounted
        as, and those names."""
        if not isinstance(exc, RemoteError) or self._graph is None:
            return exc, []
        found: List[str] = []

        def name(match: Any) -> str:
            mounted, text = self._graph.name_of(int(match.group(1)))  # type: ignore[union-attr]
            if mounted is not None and mounted not in found:
                found.append(mounted)
            return text

        message = re.sub(r"object #(\d+)", name, exc.remote_message)
        return type(exc)(exc.remote_type, message, exc.remote_traceback), found

    def _pending_of(self, scan: Scan, view: Dict[str, Any], deleted: Sequence[str]) -> PendingChanges:
        return PendingChanges({n: view[n] for n, st in scan.names.items() if st != "unchanged"},
                              [n for n in deleted if self.vars.get(n) is None or self.vars[n].deletable])

    def discard(self) -> None:
        """Write nothing back at the end of the block (what live references did stays done)."""
        self.discarded = True

    def _need_entered(self) -> None:
        if not self.entered:
            raise MountStateError("the mount is not active: use it as `with jump_context(...) as m:`")

    # --- leaving -------------------------------------------------------------------------

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        keep = self.write_back and not self.discarded
        written = False
        try:
            if exc_type is None and keep:
                self._write(self.namespace, end=True)
                written = True
        finally:
            if keep and not written and self._graph is not None:
                # Refused, or the block raised: keep what it left (m.pending, m.retry()).
                ns = self.namespace
                self._left = {n: ns[n] for n in list(self._graph.names) + self._added_names(ns) if n in ns}
                _last[0] = self
            self._restore()
            if not keep or written:
                self._end()
                self._forget()

    def _forget(self) -> None:
        """Drop the copies and the map (a Mount kept in a variable must not pin big values)."""
        self._graph = None
        self._left = None
        self._pending = PendingChanges()
        if _last[0] is self:
            _last[0] = None

    def _end(self) -> None:
        """Tell the target it can forget this mount's objects (if it is still paused there)."""
        token, self._token = self._token, None
        if token is not None and self.session.paused:
            try:
                self._request("mount_end", {"mount": token})
            except Exception:
                pass  # the pause is over: the target forgot it with the pause

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
        state = "active" if self.entered else "pending" if self._left is not None else "inactive"
        live = f", live: {', '.join(self.live)}" if self.live else ""
        return f"<Mount of {len(self.vars)} variables from pid {self.session.pid} ({state}{live})>"

    def _repr_html_(self) -> str:
        changes = {c.name: c for c in self.diff()} if self.entered else {}
        rows = []
        for v in self.vars.values():
            if v.name not in self._mounted:
                continue
            c = changes.get(v.name)
            rows.append((v.name, "live" if v.live else "copied", v.type, human_size(v.size),
                         "" if c is None or c.status == "unchanged" else f"{c.status} {c.how}".strip()))
        caption = f"<b>mounted</b> from pid {esc(self.session.pid)}"
        if self.live:
            caption += (" &mdash; live: " + esc(", ".join(self.live)) +
                        " (changes through them happen in the target at once)")
        return table(("name", "kind", "type", "size", "change"), rows,
                     [f"fb-{changes[r[0]].status}" if r[0] in changes and changes[r[0]].status != "unchanged" else ""
                      for r in rows], caption=caption)


def _why_kept() -> str:
    return "this Python cannot delete a running function's local variable: it keeps its value"


def _reworded(exc: BaseException, advice: str) -> BaseException:
    """The same kind of error, its message followed by ``advice``."""
    text = f"{exc}\n{advice}"
    if isinstance(exc, WriteBackConflict):
        return WriteBackConflict(text, exc.names)
    if isinstance(exc, WriteBackUnpicklable):
        return WriteBackUnpicklable(text, exc.names)
    if isinstance(exc, RemoteError):
        return type(exc)(exc.remote_type, f"{exc.remote_message}\n{advice}", exc.remote_traceback)
    try:
        return type(exc)(text)
    except Exception:
        return exc


def _is_debugger_object(value: Any) -> bool:
    from .session import Session

    return not proxies.is_live(value) and isinstance(value, (Mount, Session))


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
