"""What a mount would write back (:class:`Diff`), and what a refused one left (:class:`PendingChanges`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

from . import proxy as proxies
from .display import esc, human_size, table

IN_PLACE = "in place"
REBOUND = "rebound"
COPIED = "rebound: aliases in the target keep the old object"


@dataclass
class Change:
    """One row of a diff.

    ``status``: ``changed``, ``added``, ``deleted``, ``kept`` (deleted in the notebook, but
    this Python cannot delete the target's variable: it keeps its value) or ``unchanged``.
    ``how`` for a changed name: ``in place`` (the target's own object is changed, every
    alias sees it), ``rebound``, or ``rebound: aliases in the target keep the old object``
    (the same object was changed in a way that cannot be applied in place). ``note`` says
    why, and which inner objects are copied.
    """

    name: str
    status: str
    live: bool
    type: str
    size: Optional[int]
    how: str = ""
    note: str = ""


class Diff(list):
    """The changes a write-back would send (a list of :class:`Change`); prints as a table."""

    def _names(self, status: str) -> List[str]:
        return [c.name for c in self if c.status == status]

    @property
    def changed(self) -> List[str]:
        """Mounted names rebound or changed in place."""
        return self._names("changed")

    @property
    def added(self) -> List[str]:
        return self._names("added")

    @property
    def deleted(self) -> List[str]:
        return self._names("deleted")

    @property
    def kept(self) -> List[str]:
        """Names deleted in the notebook that this Python cannot delete in the target."""
        return self._names("kept")

    @property
    def in_place(self) -> List[str]:
        """Changed names whose target object is changed in place."""
        return [c.name for c in self if c.status == "changed" and c.how == IN_PLACE]

    @property
    def rebound(self) -> List[str]:
        """Changed names bound to a new object in the target (with or without aliases left behind)."""
        return [c.name for c in self if c.status == "changed" and c.how != IN_PLACE]

    def __bool__(self) -> bool:
        return any(c.status != "unchanged" for c in self)

    def __repr__(self) -> str:
        rows = [c for c in self if c.status != "unchanged"]
        if not rows:
            return "(no changes)"
        lines = []
        for c in rows:
            line = f"{c.status:8} {c.name}: {c.type}{' (live)' if c.live else ''}"
            if c.how:
                line += f" -- {c.how}"
            if c.note:
                line += f" ({c.note})"
            lines.append(line)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [c for c in self if c.status != "unchanged"]
        if not rows:
            return "<i>no changes to write back</i>"
        return table(("name", "change", "how", "kind", "type", "size"),
                     ((c.name, c.status, " ".join(filter(None, [c.how, f"({c.note})" if c.note else ""])),
                       "live" if c.live else "copied", c.type, human_size(c.size)) for c in rows),
                     [f"fb-{c.status}" for c in rows], caption="<b>would be written back</b>")


class PendingChanges(dict):
    """What a refused (or abandoned) write-back did not write: name -> the notebook's value,
    and :attr:`deleted`, the names it would have deleted. The values are the notebook's own
    objects (not copies): take what you need, e.g. ``rows = m.pending["rows"]``."""

    def __init__(self, values: Optional[Dict[str, Any]] = None, deleted: Iterable[str] = ()) -> None:
        super().__init__(values or {})
        self.deleted = list(deleted)

    def __bool__(self) -> bool:
        return bool(len(self)) or bool(self.deleted)

    def __repr__(self) -> str:
        if not self:
            return "(nothing pending)"
        parts = [f"{name}: {_type_name(value)}" for name, value in self.items()]
        parts += [f"{name}: deleted" for name in self.deleted]
        return "pending: " + ", ".join(parts)

    def _repr_html_(self) -> str:
        return f"<b>pending</b>: {esc(', '.join(list(self) + [n + ' (deleted)' for n in self.deleted]))}"


def describe(name: str, status: str, value: Any, *, how: str = "", note: str = "") -> Change:
    """A Change for ``value`` as the notebook has it."""
    return Change(name, status, proxies.is_live(value), _type_name(value), _size(value), how, note)


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
