"""What ``Session.checkpoints()``, ``checkpoint()`` and ``rewind()`` hand back: plain values.

:class:`Checkpoint` is one snapshot (where, when, the memory it holds, what it cannot
rewind); :class:`CannotRewind` says, in sentences, what lies outside a snapshot's memory
and so goes on whatever a rewind does (docs/howto-rewind.md, "What cannot be rewound").
Each prints as text and shows as HTML in Jupyter.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .display import esc

#: Devices every process has open; not worth a line.
_QUIET_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/tty", "/dev/pts/", "/dev/ptmx")
#: Descriptor kinds that are event machinery (the debugger's ZeroMQ has some): counted, not listed.
_EVENT_KINDS = ("eventfd", "eventpoll", "signalfd", "timerfd", "inotify", "pidfd")


@dataclass
class CannotRewind:
    """What a checkpoint's process had open or running that is not part of its memory.

    ``raw`` is the target's inventory (docs/design-checkpoints.md, "What cannot be
    rewound"); :meth:`lines` says each item in a sentence; falsy when there is nothing to say.
    """

    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> List[Dict[str, Any]]:
        """Open files (path, offset, mode), the standard streams left out."""
        return [d for d in self._descriptors() if d.get("kind") == "file" and d.get("fd", 0) > 2]

    @property
    def sockets(self) -> List[Dict[str, Any]]:
        """Open sockets (proto, local, peer, state), the debugger's own left out."""
        return [d for d in self._descriptors() if d.get("kind") == "socket"]

    @property
    def threads(self) -> List[str]:
        """Python threads that ran at the checkpoint (a forced one): none runs after it."""
        return list(self.raw.get("python_threads") or [])

    @property
    def gpu(self) -> List[str]:
        """GPU libraries and devices the process had mapped."""
        return list(self.raw.get("gpu") or [])

    def lines(self) -> List[str]:
        """One sentence per thing a rewind does not bring back."""
        out: List[str] = []
        for d in self.files:
            what = "what the job wrote to it since stays written; " if "w" in d.get("mode", "") or "+" in d.get(
                "mode", "") else ""
            out.append(f"file {d.get('path')} ({d.get('mode', '?')}, at byte {d.get('offset', 0)}): {what}"
                       "its position is shared by every timeline")
        for d in self.sockets:
            out.append(_socket_line(d))
        others: Dict[str, int] = {}
        for d in self._descriptors():
            kind = d.get("kind")
            if kind == "pipe" and d.get("fd", 0) > 2:
                out.append(f"pipe (descriptor {d.get('fd')}): bytes already written or read stay so")
            elif kind == "device" and not str(d.get("path", "")).startswith(_QUIET_DEVICES):
                out.append(f"device {d.get('path')}: its state is not part of the snapshot")
            elif kind in _EVENT_KINDS or kind not in ("file", "socket", "pipe", "device", "directory"):
                others[str(kind)] = others.get(str(kind), 0) + 1
        if self.raw.get("descriptors_not_listed"):
            out.append(f"{self.raw['descriptors_not_listed']} more open descriptors (not listed)")
        for child in self.raw.get("children") or []:
            out.append(f"child process {child.get('pid')} ({child.get('cmdline', '')[:80]}): it stays a child of "
                       "the snapshot's keeper, and runs on whatever the job does")
        if self.threads:
            out.append(f"Python threads {', '.join(self.threads)}: forced; none of them runs after the checkpoint")
        native = [n for n in self.raw.get("native_threads") or [] if not n.startswith("ZMQbg/")][1:]
        if native:
            out.append(f"{len(native)} other OS thread{'s' if len(native) > 1 else ''} ({', '.join(sorted(set(native))[:6])}):"
                       " a fork copies only the paused one")
        if self.gpu:
            out.append(f"GPU libraries {', '.join(self.gpu)}: GPU state is not part of a snapshot, and CUDA cannot "
                       "be used in a forked process")
        if self.raw.get("alarm_in"):
            out.append(f"an alarm() timer ({self.raw['alarm_in']:.1f}s left at the checkpoint) stays with the keeper")
        if others:
            counted = ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
            out.append(f"event descriptors ({counted}): internal machinery, the debugger's among them")
        return out

    def _descriptors(self) -> List[Dict[str, Any]]:
        return list(self.raw.get("descriptors") or [])

    def __bool__(self) -> bool:
        return bool(self.lines())

    def __str__(self) -> str:
        lines = self.lines()
        return "\n".join(f"  - {line}" for line in lines) if lines else "  (nothing outside its memory)"


def _socket_line(d: Dict[str, Any]) -> str:
    proto = d.get("proto", "?")
    if proto == "unix":
        return f"unix socket {d.get('path') or '(unnamed)'}: its peer sees one connection, whatever the timelines do"
    if d.get("state") == "LISTEN":
        return f"listening {proto} socket {d.get('local')}: connections it accepts stay accepted"
    if d.get("peer"):
        return (f"{proto} connection {d.get('local')} -> {d.get('peer')} ({d.get('state', '')}): the peer sees one "
                "connection, whatever the timelines send")
    return f"{proto} socket {d.get('local', '')}".rstrip()


@dataclass
class Checkpoint:
    """One checkpoint of the job: where and when it was taken, what it holds.

    ``memory`` is the keeper's, in bytes (``private``: what keeping it costs, what
    dropping it frees; ``pss``, ``rss``, ``swap`` for context), None if not known;
    ``state`` is "kept" or "dropped"; ``rewinds``: how many times the job went back to it.
    """

    id: int
    file: str
    line: int
    function: str
    taken: float
    depth: int = 0
    keeper: int = 0
    rewinds: int = 0
    state: str = "kept"
    thread: str = ""
    memory: Optional[Dict[str, int]] = None
    cannot_rewind: CannotRewind = field(default_factory=CannotRewind)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Checkpoint":
        """From the target's description (the ``checkpoints`` op; a ``checkpoint`` reply)."""
        label = data.get("label") or {}
        return cls(id=int(data.get("id", data.get("checkpoint", 0))), file=str(label.get("file", "")),
                   line=int(label.get("line", 0)), function=str(label.get("function", "")),
                   taken=float(data.get("taken", 0.0)), depth=int(data.get("depth", 0)),
                   keeper=int(data.get("keeper", data.get("job", 0))), rewinds=int(data.get("rewinds", 0)),
                   state=str(data.get("state", "kept")), thread=str(label.get("thread", "")),
                   memory=data.get("memory"), cannot_rewind=CannotRewind(dict(data.get("cannot_rewind") or {})))

    @property
    def where(self) -> str:
        """``file:line in function``."""
        return f"{os.path.basename(self.file)}:{self.line} in {self.function}"

    @property
    def when(self) -> datetime.datetime:
        """When it was taken (local time)."""
        return datetime.datetime.fromtimestamp(self.taken)

    @property
    def private_bytes(self) -> Optional[int]:
        """What keeping it costs now (the keeper's private memory), None if unknown."""
        return None if self.memory is None else int(self.memory.get("private", 0))

    def summary(self) -> str:
        """One line: id, where, when, memory, state."""
        mem = "?" if self.private_bytes is None else format_size(self.private_bytes)
        state = "" if self.state == "kept" else f" [{self.state}]"
        again = f", rewound to {self.rewinds}x" if self.rewinds else ""
        return f"#{self.id} {self.where} at {self.when:%H:%M:%S}, holds {mem}{again}{state}"

    def __str__(self) -> str:
        return f"checkpoint {self.summary()}\n  cannot be rewound:\n{self.cannot_rewind}"

    def _repr_html_(self) -> str:
        return checkpoints_html([self])


class CheckpointList(list):
    """The job's checkpoints, outermost first; ``get(id)`` finds one. Prints as a table."""

    def get(self, cp_id: int) -> Optional[Checkpoint]:
        """The checkpoint ``cp_id``, or None."""
        return next((cp for cp in self if cp.id == cp_id), None)

    def __repr__(self) -> str:
        if not self:
            return "(no checkpoints)"
        return "\n".join(cp.summary() + ("\n" + str(cp.cannot_rewind) if cp.cannot_rewind else "") for cp in self)

    def _repr_html_(self) -> str:
        return checkpoints_html(list(self))


def checkpoints_html(items: List[Checkpoint]) -> str:
    """A table of checkpoints (id, where, when, memory, what cannot be rewound)."""
    if not items:
        return "<i>no checkpoints</i>"
    rows = []
    for cp in items:
        cannot = "<br>".join(esc(line) for line in cp.cannot_rewind.lines()) or "<i>nothing</i>"
        mem = "?" if cp.private_bytes is None else format_size(cp.private_bytes)
        state = "" if cp.state == "kept" else f" ({esc(cp.state)})"
        rows.append(f"<tr><td>#{cp.id}{state}</td><td>{esc(cp.where)}</td><td>{cp.when:%H:%M:%S}</td>"
                    f"<td>{mem}</td><td>{cp.rewinds}</td><td style='text-align:left'>{cannot}</td></tr>")
    return ("<table class='fb-checkpoints'><tr><th>id</th><th>where</th><th>taken</th><th>holds</th>"
            "<th>rewinds</th><th>cannot be rewound</th></tr>" + "".join(rows) + "</table>")


def format_size(n: int) -> str:
    """``n`` bytes as B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
