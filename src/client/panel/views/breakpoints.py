"""The breakpoints view: every breakpoint of the target with its hit count; add by
``file.py:42 [if condition]``, remove the one picked. (The source view's gutter sets and
clears them by line; both show the list the panel publishes as ``"breakpoints"``.)"""

from __future__ import annotations

from typing import Any, List, Optional

import ipywidgets as widgets

from ..render import breakpoint_label, parse_location
from ..view import PanelView, Programmatic


class BreakpointsView(PanelView):
    """The list of breakpoints, an input to add one and a button to remove one."""

    name = "breakpoints"
    title = "breakpoints"
    region = "left"

    def build(self) -> widgets.Widget:
        self.programmatic = Programmatic()
        self.items: List[Any] = []
        stretch = widgets.Layout(width="auto", flex="1 1 auto")
        small = widgets.Layout(width="auto", flex="0 0 auto")
        self.input = widgets.Text(placeholder="file.py:42 [if condition]", continuous_update=False, layout=stretch)
        self.add = widgets.Button(description="add", icon="plus", layout=small, tooltip="Set a breakpoint")
        self.list = widgets.Select(options=[], rows=2, layout=stretch)
        self.remove = widgets.Button(description="remove", icon="minus", layout=small,
                                     tooltip="Remove the selected breakpoint")
        for widget, css in ((self.input, "fb-bp-input"), (self.add, "fb-bp-add"), (self.list, "fb-bp-list"),
                            (self.remove, "fb-bp-remove")):
            widget.add_class(css)
        self.add.on_click(self._on_add)
        self.remove.on_click(self._on_remove)
        self.host.subscribe("breakpoints", self._show)
        return widgets.VBox([widgets.HBox([self.input, self.add]), widgets.HBox([self.list, self.remove])],
                            layout=widgets.Layout(width="auto"))

    def set_compact(self, compact: bool) -> None:
        self.add.description = "" if compact else "add"  # icons only (the tooltips say what)
        self.remove.description = "" if compact else "remove"

    def _show(self, items: List[Any]) -> None:
        self.items = list(items)
        with self.programmatic():
            self.list.options = [(breakpoint_label(bp), i) for i, bp in enumerate(self.items)]

    def _on_add(self, _: Any) -> None:
        text = self.input.value
        try:
            file, line, condition = parse_location(text)
        except ValueError as exc:
            self.host.say(str(exc), error=True)
            return
        self.host.submit("breakpoint", self._add, file, line, condition)

    def _add(self, file: str, line: int, condition: Optional[str]) -> None:
        session = self.host.session
        if session is None:
            self.host.say("breakpoints are not available (attach first)", error=True)
            return
        bp = session.break_at(file, line, condition=condition)
        self.host.say(f"set {bp}")
        self.host.breakpoints_changed()

    def _on_remove(self, _: Any) -> None:
        index = self.list.index
        if index is None or not 0 <= index < len(self.items):
            self.host.say("select a breakpoint to remove")
            return
        self.host.submit("remove breakpoint", self._remove, self.items[index])

    def _remove(self, bp: Any) -> None:
        session = self.host.session
        if session is None:
            return
        session.clear(bp)
        self.host.say(f"removed {bp}")
        self.host.breakpoints_changed()
