"""The job's output: the last lines the target printed, stdout and stderr (in red).

The target keeps them in a bounded buffer in memory while bridge is active
(bridge/capture.py); this view polls the ``output`` op every :data:`POLL_S` seconds
while a session is attached, and once more at every pause, asking only for what came
after the last chunk it has (docs/panel.md, "The job's output").
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Optional

import ipywidgets as widgets

from ...proxy import load
from ...errors import SessionLost, UnknownOp
from ..render import describe_error
from ..view import FrameContext, PanelView
from ..widgets import LogWidget

#: Seconds between two polls of the target's output.
POLL_S = 1.0
#: Lines the view keeps.
LINES = 500


class OutputView(PanelView):
    """The last :data:`LINES` lines the job printed, following new ones."""

    name = "output"
    title = "job output"
    region = "bottom"
    poll_interval = POLL_S

    def build(self) -> widgets.Widget:
        self.log = LogWidget(note="the job's output appears here once attached",
                             layout=widgets.Layout(width="auto"))
        self.log.add_class("fb-output")
        self._session: Any = None
        self._since = 0
        self._lines: Deque[List[Any]] = deque(maxlen=LINES)
        self._partial: Dict[int, str] = {1: "", 2: ""}
        self._unsupported = False
        self._last_error = ""
        return self.log

    def refresh(self, frame: Optional[FrameContext]) -> None:
        self.poll()

    def poll(self) -> None:
        session = self.host.session
        if session is None:
            return
        if session is not self._session:  # another process: start over
            self._session, self._since, self._unsupported = session, 0, False
            self._lines.clear()
            self._partial = {1: "", 2: ""}
        if self._unsupported:
            return
        try:
            result, frames = session.request("output", {"since": self._since}, timeout=min(session.timeout, 10.0))
            chunks = load(session.refs, frames) if frames else []
        except UnknownOp:
            self._unsupported = True
            self.log.note = "this target does not keep its output (a framebridge older than the panel)"
            return
        except SessionLost:
            return  # the panel says so in its state line
        except Exception as exc:  # shown once, not every second
            text = describe_error(exc)
            if text != self._last_error:
                self._last_error = text
                self.host.say(f"job output: {text}", error=True)
            return
        self._last_error = ""
        if result.get("dropped") and self._since:
            self._lines.append([0, "[... earlier output dropped: the target keeps only its last lines ...]"])
        for _, stream, text in chunks:
            self._feed(int(stream), str(text))
        self._since = int(result.get("last", self._since))
        note = "" if result.get("recording", True) else "the target is not recording its output"
        shown = list(self._lines) + [[s, t] for s, t in self._partial.items() if t]
        with self.log.hold_sync():
            if shown != self.log.lines:
                self.log.lines = shown
            self.log.note = note

    def _feed(self, stream: int, text: str) -> None:
        """Add one chunk: whole lines go to the list, the rest waits for its newline. A
        carriage return (a progress bar) keeps only what follows it."""
        pending = self._partial.get(stream, "") + text
        *whole, rest = pending.split("\n")
        for line in whole:
            self._lines.append([stream, line.rsplit("\r", 1)[-1]])
        self._partial[stream] = rest.rsplit("\r", 1)[-1] if "\r" in rest[:-1] else rest
