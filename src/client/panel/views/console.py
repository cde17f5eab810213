"""The console: code typed here runs in the selected frame; a transcript, newest first.

The input commits when Enter is pressed or the box loses focus (ipywidgets may deliver a
click before the last keystrokes): the line under the box says what **run** will run,
and each transcript entry starts with the frame and the exact text that ran. A failed
run keeps the input and adds the error to the transcript (docs/panel.md).
"""

from __future__ import annotations

import io
import threading
from typing import Any, Dict, List, Optional

import ipywidgets as widgets

from ...errors import BridgeError, NotPaused
from ..render import (console_error_html, console_input_html, console_output_html, is_expression,
                      next_input_html, short)
from ..view import FrameContext, PanelView

#: Console entries kept in the transcript (older ones scroll away).
TRANSCRIPT_ENTRIES = 40


class ConsoleView(PanelView):
    """An input that runs in the selected frame (eval for an expression, exec otherwise)."""

    name = "console"
    title = "console"
    region = "bottom"

    def build(self) -> widgets.Widget:
        self._lock = threading.Lock()
        self._transcript: List[str] = []
        self._frame_label = "frame"
        self.input = widgets.Text(placeholder="expression or statement, runs in the selected frame",
                                  continuous_update=False, layout=widgets.Layout(width="auto", flex="1 1 auto"))
        self.run = widgets.Button(description="run", icon="terminal", disabled=True, tooltip="Run the input "
                                  "in the selected frame", layout=widgets.Layout(width="auto", flex="0 0 auto"))
        self.echo = widgets.HTML("")
        self.log = widgets.HTML("", layout=widgets.Layout(max_height="240px", overflow="auto"))
        for widget, css in ((self.input, "fb-console-input"), (self.run, "fb-console-run"),
                            (self.echo, "fb-console-echo"), (self.log, "fb-console-log")):
            widget.add_class(css)
        self.input.observe(self._typed, names="value")
        self.run.on_click(self._clicked)
        return widgets.VBox([widgets.HBox([self.input, self.run]), self.echo, self.log],
                            layout=widgets.Layout(width="auto"))

    def refresh(self, frame: Optional[FrameContext]) -> None:
        self.run.disabled = frame is None
        if frame is not None:
            self._frame_label = f"#{frame.frame.index} {frame.frame.function}()"

    def on_pause(self, pause: Any) -> None:
        self.run.disabled = False

    def on_resume(self) -> None:
        self.run.disabled = True

    def _typed(self, change: Dict[str, Any]) -> None:
        self.echo.value = next_input_html(change["new"].strip())

    def _clicked(self, _: Any) -> None:
        # Read the input here, in the click's own handler, and carry it with the job:
        # the worker may run later, when the Text holds something else.
        source = self.input.value
        if not source.strip():
            self.host.say("type an expression or a statement first")
            return
        self.host.submit("run", self._run, source)

    def _run(self, source: str) -> None:
        session = self.host.session
        if session is None:
            raise NotPaused("not attached to a process")
        entry = console_input_html(self._frame_label, source)
        try:
            if is_expression(source):
                printed = io.StringIO()
                value = session.eval(source, stdout=printed)  # an uncopyable value arrives live
                out = printed.getvalue() + short(repr(value))
            else:
                out = str(session.exec(source))
                self.host.refresh()  # statements may rebind variables
            entry += console_output_html(out)
        except BridgeError as exc:
            entry += console_error_html(exc)
        with self._lock:
            self._transcript = (self._transcript + [entry])[-TRANSCRIPT_ENTRIES:]
            log = "".join(reversed(self._transcript))  # newest first: no scrolling to see it
        self.log.value = log
