"""The inspector: one variable rendered the way Jupyter renders it.

A click in the variables view publishes ``"inspect"``; the inspector asks the target for
a bounded preview (the ``inspect`` op: a DataFrame's first rows, a downsampled array,
a tree of short reprs, a thumbnail) through the normal value path, capped at
:data:`PREVIEW_CAP` bytes, and shows it. **load all** fetches the whole value (an
ordinary ``eval``, big buffers on the bulk path) and keeps it as :attr:`value`. At each
pause the preview is taken again: the value may have changed.
"""

from __future__ import annotations

import keyword
from typing import Any, Optional

import ipywidgets as widgets

from bridge.previews import Limits, preview

from ...proxy import is_live, load, type_of
from ...errors import BridgeError, ValueLoadError
from ..inspect_render import inspector_html, message_html
from ..render import describe_error
from ..view import FrameContext, PanelView

#: The preview's size cap (bytes, as pickled in the target).
PREVIEW_CAP = 1024 * 1024
STALE_NOTE = "<div class='fb-insp-note fb-stale'>running: this is the value at the last pause</div>"
EMPTY_HTML = "<div class='fb-insp'><div class='fb-insp-note'>click a variable to see its value</div></div>"


def _opaque(value: Any) -> Optional[str]:
    return f"<live {type_of(value)}>" if is_live(value) else None


class InspectorView(PanelView):
    """The value of the variable picked in the variables view."""

    name = "inspector"
    title = "inspector"
    region = "right"

    def build(self) -> widgets.Widget:
        #: The expression shown ("" for none), and the whole value once loaded.
        self.expr = ""
        self.value: Any = None
        self._frame: Optional[FrameContext] = None
        self.html = widgets.HTML(EMPTY_HTML, layout=widgets.Layout(width="auto"))
        self.html.add_class("fb-inspector")
        self.load_all = widgets.Button(description="load all", icon="download", disabled=True,
                                       tooltip="Fetch the whole value (panel.view('inspector').value holds it)",
                                       layout=widgets.Layout(width="auto", flex="0 0 auto"))
        self.load_all.add_class("fb-load-all")
        self.load_all.on_click(lambda _: self._queue_load_all())
        self.host.subscribe("inspect", self._on_inspect)
        return widgets.VBox([self.html, self.load_all], layout=widgets.Layout(width="auto"))

    # --- what to show ------------------------------------------------------------------------

    def _on_inspect(self, expr: str) -> None:
        self.expr, self.value = expr, None
        self.host.submit(f"inspect {expr}", self._show_preview)

    def refresh(self, frame: Optional[FrameContext]) -> None:
        self._frame = frame
        if not self.expr:
            return
        if frame is None:
            self.load_all.disabled = True
            if STALE_NOTE not in self.html.value:  # keep showing the last pause's value, saying so
                self.html.value = STALE_NOTE + self.html.value
            return
        self.value = None  # a new pause: what was loaded in full may be stale
        if self.expr.isidentifier() and not keyword.iskeyword(self.expr) and self.expr not in frame.variables():
            self.html.value = message_html(self.expr, f"is not defined in {frame.frame.function}()")
            self.load_all.disabled = True
            return
        self._show_preview()

    def _show_preview(self) -> None:
        """Ask the target for the preview and show it (worker thread)."""
        frame, expr = self._frame, self.expr
        if frame is None or not expr:
            self.html.value = message_html(expr, "running: nothing to inspect until the target pauses")
            return
        session = frame.session
        try:
            meta, values = session.frame_request("inspect", {"expr": expr, "cap": PREVIEW_CAP}, at=frame.at)
        except BridgeError as exc:
            self.html.value = message_html(expr, describe_error(exc), error=True)
            self.load_all.disabled = True
            raise
        sample = None
        if values:
            try:
                sample = load(session.refs, values)
            except ValueLoadError as exc:  # e.g. pandas is not installed in the notebook
                meta = dict(meta, sample=f"could not be rebuilt here ({describe_error(exc)})")
        self.html.value = inspector_html(expr, meta, sample, plots=self.host.plots)
        self.load_all.disabled = False

    # --- load all ----------------------------------------------------------------------------

    def _queue_load_all(self) -> None:
        expr = self.expr
        if expr:
            self.host.submit(f"load all of {expr}", self._load_all, expr)

    def _load_all(self, expr: str) -> None:
        session = self.host.session
        if session is None or self._frame is None:
            self.host.say("not paused: nothing to load", error=True)
            return
        value = session.eval(expr)
        self.value = value
        if is_live(value):
            self.html.value = inspector_html(expr, {"type": type_of(value), "live": True, "kind": "other",
                                                    "repr": repr(value)}, None, full=True)
        else:
            meta, sample = preview(value, Limits().full(), is_live=is_live, opaque=_opaque)
            self.html.value = inspector_html(expr, meta, sample, plots=self.host.plots, full=True)
        self.host.say(f"loaded {expr} in full: panel.view('inspector').value holds it")
