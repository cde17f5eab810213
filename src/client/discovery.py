"""Finding attachable processes: ``sessions()``, ``attach()`` and ``attach_all()``."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Union

from bridge import keys

from .errors import NoSession
from .follow import job_of, newest_of_job
from .group import Group, member_name
from .session import DEFAULT_TIMEOUT, Session


@dataclass
class SessionInfo:
    """An attachable process, read from its connection file."""

    pid: int
    argv: List[str]
    python: str
    endpoint: str
    paused: List[Dict[str, Any]]
    path: str
    raw: Dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def job(self) -> int:
        """The job's pid (the process its supervisor started): the same as ``pid`` unless
        the job has checkpoints, whose live process this is (docs/howto-rewind.md)."""
        return job_of(self.raw) if self.raw else self.pid

    @property
    def is_paused(self) -> bool:
        """Whether a thread of it was paused when it last wrote its connection file."""
        return bool(self.paused)

    def __str__(self) -> str:
        where = ""
        if self.paused:
            p = self.paused[0]
            where = f" paused at {os.path.basename(p.get('file', '?'))}:{p.get('line')} in {p.get('function')}"
        job = f" (job {self.job})" if self.job != self.pid else ""
        return f"pid {self.pid}{job}: {' '.join(self.argv)} [{self.python}]{where or ' running'}"


class SessionList(list):
    """A list of SessionInfo that prints as a table."""

    def __repr__(self) -> str:
        return "\n".join(str(s) for s in self) or "(no attachable processes)"

    def _repr_html_(self) -> str:
        from .display import sessions_html

        return sessions_html(self)


def sessions() -> SessionList:
    """Every attachable process of this user, newest first, with its pause state.

    Connection files of processes that are gone are deleted on the way.
    """
    keys.remove_stale_connection_files()
    out = SessionList()
    for path in keys.iter_connection_files():
        try:
            info = keys.read_connection_file(path)
        except (OSError, ValueError):
            continue  # half-written or foreign file: not attachable, not our business
        if not keys.process_alive(info["pid"]):
            continue
        out.append(SessionInfo(pid=info["pid"], argv=list(info.get("argv") or []),
                               python=str(info.get("python", "")), endpoint=info["endpoint"],
                               paused=list(info.get("paused") or []), path=str(path), raw=info))
    return out


def attach(target: Union[None, int, str, Path, SessionInfo] = None, *, timeout: float = DEFAULT_TIMEOUT) -> Session:
    """Attach to a process: the one paused one (None), a pid, or a connection file path.

    A job's pid attaches to its live process when the job has checkpoints (the pid its
    supervisor started keeps a snapshot and serves no one: docs/howto-rewind.md).

    With no argument: the one paused process; if none is paused, the one attachable
    process. Anything ambiguous raises NoSession listing the candidates.
    """
    info = _resolve(target)
    return Session(info, timeout=timeout)


def _resolve(target: Union[None, int, str, Path, SessionInfo]) -> Dict[str, Any]:
    if isinstance(target, SessionInfo):
        return dict(target.raw)
    if isinstance(target, int) and not isinstance(target, bool):
        path = keys.connection_path(target)
        if not path.exists():
            live = newest_of_job(target)  # a job with checkpoints: its pid keeps a snapshot, its live process serves
            if live is not None:
                return live
            raise NoSession(f"no attachable process with pid {target} (no {path.name} in {path.parent})")
        return keys.read_connection_file(path)
    if isinstance(target, (str, Path)):
        path = Path(target)
        if not path.exists():
            raise NoSession(f"no connection file at {path}")
        return keys.read_connection_file(path)
    if target is not None:
        raise TypeError(f"attach() takes a pid, a connection file path or nothing, not {type(target).__name__}")
    found = sessions()
    paused = [s for s in found if s.is_paused]
    if len(paused) == 1:
        return paused[0].raw
    if not paused and len(found) == 1:
        return found[0].raw
    if not found:
        raise NoSession(f"no attachable process of this user (runtime dir {keys.runtime_dir()})")
    pool = paused or found
    listing = "\n  ".join(str(s) for s in pool)
    kind = "paused" if paused else "attachable"
    raise NoSession(f"{len(pool)} {kind} processes; say which with attach(pid):\n  {listing}")


# --- many processes ------------------------------------------------------------------------------


def attach_all(*, pids: Optional[Iterable[int]] = None, tree: Optional[int] = None,
               timeout: float = DEFAULT_TIMEOUT) -> Group:
    """Attach to many processes at once; return them as a :class:`~client.group.Group`.

    With no argument: every attachable process of this user on this host. ``pids``:
    those processes. ``tree``: that process and its descendants (children started by
    ``multiprocessing``, ``concurrent.futures`` or ``subprocess``; see
    ``bridge.listen(children=True)``). All are attached together (under a second for
    64); one that cannot be attached is in ``group.attach_errors``, never the group's
    error. The group keeps its scan: :meth:`Group.refresh` and :meth:`Group.wait`
    attach the matching processes that appear later.
    """
    if pids is not None and tree is not None:
        raise TypeError("attach_all() takes pids or tree, not both")
    source = ProcessScan(pids=pids, tree=tree)
    group = Group(source=source, timeout=timeout)
    infos = source.scan()
    group._attach(infos)
    if pids is not None:
        found = {int(info["pid"]) for info in infos}
        for pid in source.pids or ():
            if pid not in found:
                path = keys.connection_path(pid)
                group.attach_errors[member_name({"pid": pid, "endpoint": "tcp://127.0.0.1"})] = NoSession(
                    f"no attachable process with pid {pid} (no {path.name} in {path.parent})")
    return group


class ProcessScan:
    """A group's source: the attachable processes of this user (all, ``pids``, or the
    process ``tree`` and its descendants), read from their connection files."""

    def __init__(self, *, pids: Optional[Iterable[int]] = None, tree: Optional[int] = None) -> None:
        self.pids: Optional[Set[int]] = None if pids is None else {int(p) for p in pids}
        self.tree = tree

    def scan(self) -> List[Dict[str, Any]]:
        """Connection infos of the matching processes that live now, oldest first."""
        wanted = self.pids
        if self.tree is not None:
            wanted = {self.tree} | descendants(self.tree)
        infos = [s.raw for s in sessions()]
        if wanted is not None:
            infos = [info for info in infos if int(info["pid"]) in wanted]
        return sorted(infos, key=lambda info: (info.get("started", 0), info["pid"]))

    def __repr__(self) -> str:
        what = f"tree={self.tree}" if self.tree is not None else f"pids={sorted(self.pids)}" if self.pids else "all"
        return f"<ProcessScan {what}>"


def descendants(pid: int) -> Set[int]:
    """The process ids of ``pid``'s children, their children, and so on (now)."""
    children: Dict[int, List[int]] = {}
    for child, parent in _parent_pids():
        children.setdefault(parent, []).append(child)
    out: Set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _parent_pids() -> List["tuple[int, int]"]:
    """(pid, parent pid) of every process: /proc where there is one, else ``ps``."""
    pairs = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                # Field 4 is the parent pid; the command name before it may hold spaces.
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        pairs.append((int(entry), ppid))
    if pairs:
        return pairs
    try:
        text = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in text.splitlines() if line.strip())]
