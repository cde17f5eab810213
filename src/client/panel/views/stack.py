"""The stack view: frames of the paused thread, innermost first; picking one selects it."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import ipywidgets as widgets

from ..view import FrameContext, PanelView, Programmatic


class StackView(PanelView):
    """A list of ``#i function()  file:line``; the selected frame is the one every view shows."""

    name = "stack"
    title = "stack"
    region = "left"

    def build(self) -> widgets.Widget:
        self.programmatic = Programmatic()
        self.select = widgets.Select(options=[], rows=4, layout=widgets.Layout(width="auto"))
        self.select.add_class("fb-stack")
        self.select.observe(self._picked, names="index")
        return self.select

    def refresh(self, frame: Optional[FrameContext]) -> None:
        options = [] if frame is None else [
            (f"#{f.index} {f.function}()  {os.path.basename(f.file)}:{f.line}", f.index) for f in frame.stack]
        with self.programmatic():
            if tuple(options) != tuple(self.select.options):
                self.select.options = options
            self.select.value = frame.frame.index if frame is not None and options else None

    def set_compact(self, compact: bool) -> None:
        self.select.rows = 3 if compact else 4

    @property
    def label(self) -> str:
        """The selected frame's label (``#0 work()``), for the console's transcript."""
        return (self.select.label or "frame").split("  ")[0]

    def _picked(self, change: Dict[str, Any]) -> None:
        index = change["new"]
        if self.programmatic.active or index is None or index < 0:
            return
        self.host.select_frame(index)
