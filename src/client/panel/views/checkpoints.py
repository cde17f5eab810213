"""The checkpoints view: the job's checkpoints (id, where, when, memory held); take one,
rewind to the one picked, drop it; and what the picked one cannot rewind
(docs/howto-rewind.md). A rewind moves the session to the job's new process: the panel
follows it (the session announces its pause there) and refreshes every view."""

from __future__ import annotations

from typing import Any, List, Optional

import ipywidgets as widgets

from ...checkpoint_values import Checkpoint, format_size
from ...display import esc
from ..view import FrameContext, PanelView, Programmatic


class CheckpointsView(PanelView):
    """The list of checkpoints, the buttons that act on them, the picked one's details."""

    name = "checkpoints"
    title = "checkpoints"
    region = "left"

    def build(self) -> widgets.Widget:
        self.programmatic = Programmatic()
        self.items: List[Checkpoint] = []
        stretch = widgets.Layout(width="auto", flex="1 1 auto")
        small = widgets.Layout(width="auto", flex="0 0 auto")
        self.list = widgets.Select(options=[], rows=3, layout=stretch)
        self.take = widgets.Button(description="checkpoint", icon="camera", layout=small, disabled=True,
                                   tooltip="Keep a snapshot of the paused process")
        self.rewind = widgets.Button(description="rewind", icon="history", layout=small, disabled=True,
                                     tooltip="Take the job back to the selected checkpoint")
        self.drop = widgets.Button(description="drop", icon="trash", layout=small, disabled=True,
                                   tooltip="Free the selected checkpoint's memory")
        self.details = widgets.HTML("")
        for widget, css in ((self.list, "fb-cp-list"), (self.take, "fb-cp-take"), (self.rewind, "fb-cp-rewind"),
                            (self.drop, "fb-cp-drop"), (self.details, "fb-cp-details")):
            widget.add_class(css)
        self.take.on_click(lambda _: self.host.submit("checkpoint", self._take))
        self.rewind.on_click(lambda _: self._on_picked("rewind", self._rewind))
        self.drop.on_click(lambda _: self._on_picked("drop", self._drop))
        self.list.observe(lambda _: self._show_details(), names="index")
        return widgets.VBox([self.list, widgets.HBox([self.take, self.rewind, self.drop]), self.details],
                            layout=widgets.Layout(width="auto"))

    def set_compact(self, compact: bool) -> None:
        for button, text in ((self.take, "checkpoint"), (self.rewind, "rewind"), (self.drop, "drop")):
            button.description = "" if compact else text  # icons only (the tooltips say what)

    # --- following the target --------------------------------------------------------------

    def on_resume(self) -> None:
        self.take.disabled = self.rewind.disabled = True  # both work at a pause

    def on_lost(self, error: str) -> None:
        self.take.disabled = self.rewind.disabled = self.drop.disabled = True

    def refresh(self, frame: Optional[FrameContext]) -> None:
        session = self.host.session
        # A process that never took part in a checkpoint has none: no request at every pause.
        taken = session is not None and bool(session.info.get("generation"))
        self._show(session.checkpoints() if taken else [], paused=frame is not None)

    def _show(self, items: List[Checkpoint], *, paused: bool) -> None:
        picked = self._picked()
        self.items = list(items)
        with self.programmatic():
            self.list.options = [(cp.summary(), i) for i, cp in enumerate(self.items)]
            keep = [i for i, cp in enumerate(self.items) if picked is not None and cp.id == picked.id]
            if keep or self.items:
                self.list.index = keep[0] if keep else len(self.items) - 1  # the newest by default
        self.take.disabled = not paused
        self.rewind.disabled = not (paused and self.items)
        self.drop.disabled = not self.items
        self._show_details()

    def _picked(self) -> Optional[Checkpoint]:
        index = self.list.index
        return self.items[index] if index is not None and 0 <= index < len(self.items) else None

    def _show_details(self) -> None:
        cp = self._picked()
        if cp is None:
            self.details.value = "<i>no checkpoint: pause, then take one</i>" if not self.items else ""
            return
        held = "?" if cp.private_bytes is None else format_size(cp.private_bytes)
        lines = "".join(f"<li>{esc(line)}</li>" for line in cp.cannot_rewind.lines())
        self.details.value = (f"<b>#{cp.id}</b> {esc(cp.where)}, holds {held}"
                              + (f"<br>cannot be rewound:<ul>{lines}</ul>" if lines else
                                 "<br><i>nothing outside its memory</i>"))

    # --- actions (the worker thread) ----------------------------------------------------------

    def _on_picked(self, what: str, fn: Any) -> None:
        cp = self._picked()
        if cp is None:
            self.host.say(f"select a checkpoint to {what}")
            return
        self.host.submit(what, fn, cp)

    def _take(self) -> None:
        session = self.host.session
        if session is None:
            return
        cp = session.checkpoint()
        self.host.say(f"checkpoint #{cp.id} at {cp.where}")
        self.host.refresh()

    def _rewind(self, cp: Checkpoint) -> None:
        session = self.host.session
        if session is None:
            return
        session.rewind(cp)
        self.host.say(f"rewound to checkpoint #{cp.id} ({cp.where}): every variable as it was there")
        self.host.refresh()

    def _drop(self, cp: Checkpoint) -> None:
        session = self.host.session
        if session is None:
            return
        session.drop(cp)
        self.host.say(f"dropped checkpoint #{cp.id}")
        self.host.refresh()
