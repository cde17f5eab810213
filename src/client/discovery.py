"""Finding attachable processes: ``sessions()`` and ``attach()``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

from bridge import keys

from .errors import NoSession
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
    def is_paused(self) -> bool:
        """Whether a thread of it was paused when it last wrote its connection file."""
        return bool(self.paused)

    def __str__(self) -> str:
        where = ""
        if self.paused:
            p = self.paused[0]
            where = f" paused at {os.path.basename(p.get('file', '?'))}:{p.get('line')} in {p.get('function')}"
        return f"pid {self.pid}: {' '.join(self.argv)} [{self.python}]{where or ' running'}"


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

