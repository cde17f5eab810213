"""The variables view: the selected frame's variables (name, type, size, short value).

No value is transferred: the ``locals`` op sends summaries. Clicking a row publishes
``"inspect"`` with the variable's name (the inspector shows it).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import ipywidgets as widgets

from ..render import variable_rows
from ..view import FrameContext, PanelView
from ..widgets import TableWidget


class VariablesView(PanelView):
    """A clickable table of the selected frame's variables."""

    name = "variables"
    title = "variables"
    region = "right"

    def build(self) -> widgets.Widget:
        self.table = TableWidget(columns=["name", "type", "size", "value"], empty="no frame",
                                 layout=widgets.Layout(width="auto"))
        self.table.add_class("fb-vars")
        self.table.on_event("select", self._picked)
        return self.table

    def refresh(self, frame: Optional[FrameContext]) -> None:
        if frame is None:
            with self.table.hold_sync():
                self.table.rows, self.table.row_classes = [], []
                self.table.empty = "running: no frame" if self.host.session is not None else "no frame"
            return
        rows, classes = variable_rows(frame.variables())
        with self.table.hold_sync():
            self.table.rows, self.table.row_classes = rows, classes
            self.table.empty = "(no variables)"

    def _picked(self, message: Dict[str, Any]) -> None:
        key = str(message.get("key", ""))
        if not key or key.startswith("... "):
            return
        self.table.selected = key
        self.host.publish("inspect", key)
