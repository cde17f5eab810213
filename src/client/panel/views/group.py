"""The group view: every member of a group with its state; picking one drives the panel.

Shown by ``DebugPanel(group=g)`` (a hub's group, ``attach_dask``'s, ``attach_all()``'s):
one row per member, ``name  state  where`` (paused members say where, and which task
when a cluster framework runs it), and a summary line. It follows the group through the
group's interface for user interfaces (docs/groups.md, "For a user interface"):
``g.subscribe`` tells it of joins, leaves, pauses and resumes (on the I/O thread, so it
only re-reads ``g.states()``, which asks no target), and picking a row makes that member
the panel's session (``host.show_session``), so every other view shows that member.
"""

from __future__ import annotations

import html
import threading
from typing import Any, Callable, Dict, List, Optional

import ipywidgets as widgets

from ...group import Group, MemberState
from ..view import PanelView, Programmatic

#: Rows the member list shows before it scrolls.
LIST_ROWS = 6


def member_label(state: MemberState) -> str:
    """One member's row: name, state, and where it is paused (and its task, if any)."""
    text = f"{state.name}  {state.state}"
    pause = state.pause
    if pause is not None:
        text += f"  {pause.function} ({pause.file.rsplit('/', 1)[-1]}:{pause.line})"
        task = pause.extra.get("task")
        if task:
            text += f"  task {task}"
    return text


def summary_html(states: List[MemberState]) -> str:
    """"3 members: 2 paused, 1 running" (states in the order paused, running, lost, closed)."""
    counts: Dict[str, int] = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    parts = [f"{counts[s]} {s}" for s in ("paused", "running", "lost", "closed") if counts.get(s)]
    noun = "member" if len(states) == 1 else "members"
    return f"<span class='fb-group-summary'>{len(states)} {noun}{': ' if parts else ''}{html.escape(', '.join(parts))}</span>"


class GroupView(PanelView):
    """The members of the panel's group (``host.group``), one row each."""

    name = "group"
    title = "group"
    region = "left"

    def build(self) -> widgets.Widget:
        self.programmatic = Programmatic()
        self.group: Optional[Group] = getattr(self.host, "group", None)
        self._names: List[str] = []
        self._lock = threading.Lock()
        self.summary = widgets.HTML()
        self.summary.add_class("fb-group-head")
        self.list = widgets.Select(options=[], rows=LIST_ROWS, layout=widgets.Layout(width="auto"))
        self.list.add_class("fb-group-list")
        self.list.observe(self._on_pick, names="index")
        self._unsubscribe: Optional[Callable[[], None]] = None
        if self.group is not None:
            self._unsubscribe = self.group.subscribe(self._on_group_event)
        self.show()
        return widgets.VBox([self.summary, self.list], layout=widgets.Layout(width="auto"))

    def show(self) -> None:
        """Re-read the members' states (local: no request) and show them."""
        group = self.group
        if group is None:
            self.summary.value = "<span class='fb-group-summary'>no group (DebugPanel(group=g))</span>"
            return
        members = group.members()
        states = group.states()  # the same members, in the same order (unless one joined between)
        session = self.host.session
        current = next((i for i, m in enumerate(members) if m is session), None) if len(members) == len(states) else None
        with self._lock:
            self._names = [s.name for s in states]
            with self.programmatic():
                self.list.options = [member_label(s) for s in states]
                self.list.index = current
        self.summary.value = summary_html(states)

    def _on_group_event(self, event: str, name: str, body: Dict[str, Any]) -> None:
        # The I/O thread: states() asks no target, so this stays quick.
        if event not in ("joined", "left", "paused", "resumed", "lost"):
            return
        self.show()
        if event == "paused" and self.host.session is None and self.group is not None and name in self.group:
            self.host.show_session(self.group[name])  # the first member to pause, in a panel showing none

    def refresh(self, frame: Any) -> None:
        self.show()  # the panel may show another member now: its row is the one picked

    def _on_pick(self, change: Dict[str, Any]) -> None:
        index = change["new"]
        if self.programmatic.active or index is None or self.group is None:
            return
        with self._lock:
            name = self._names[index] if 0 <= index < len(self._names) else None
        if name is None:
            return
        try:
            member = self.group[name]
        except KeyError:
            return
        if member is not self.host.session:
            self.host.show_session(member)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
