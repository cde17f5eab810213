"""The source view: the selected frame's file around its current line, breakpoints in the gutter.

The text comes from the target (the ``source`` op reads ``linecache`` there: the file
need not exist here) and is cached per file and version, so stepping through a file
sends it once; the view then only moves its current-line marker (docs/panel.md).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import ipywidgets as widgets

from ...proxy import load
from ..highlight import highlight_lines
from ..view import FrameContext, PanelView
from ..widgets import SourceWidget

#: Files whose highlighted text the view keeps.
CACHED_FILES = 32
RUNNING = " · running"


class SourceView(PanelView):
    """Numbered, highlighted source; click a line number to set or clear a breakpoint,
    right-click (or Shift+click) it for a conditional one."""

    name = "source"
    title = "source"
    region = "left"

    def build(self) -> widgets.Widget:
        self.widget = SourceWidget(layout=widgets.Layout(width="auto"))
        self.widget.add_class("fb-source")
        self.widget.on_event("toggle", lambda m: self._queue_breakpoint(int(m["line"]), None, False))
        self.widget.on_event("condition",
                             lambda m: self._queue_breakpoint(int(m["line"]), str(m.get("condition") or ""), True))
        self.host.subscribe("breakpoints", self._on_breakpoints)
        # file -> (version, first line number, highlighted lines)
        self._cache: "OrderedDict[str, Tuple[str, int, List[str]]]" = OrderedDict()
        self._shown: Tuple[str, str] = ("", "")  # (file, version) in the widget now
        self._path = ""  # the shown file as breakpoints name it (realpath in the target)
        self._frame_index = 0
        self._breakpoints: List[Any] = []
        return self.widget

    # --- following the target --------------------------------------------------------------

    def on_pause(self, pause: Any) -> None:
        # A new pause starts at its innermost frame: if that is in the file shown, move the
        # marker now, before the refresh has asked the target anything.
        if pause.file == self._shown[0]:
            self._frame_index = 0
            self.widget.current = pause.line

    def on_resume(self) -> None:
        self.widget.current = 0  # no current line while the target runs

    def refresh(self, frame: Optional[FrameContext]) -> None:
        if frame is None:
            with self.widget.hold_sync():
                self.widget.current = 0
                if self.widget.title and not self.widget.title.endswith(RUNNING):
                    self.widget.title += RUNNING
            return
        session = frame.session
        file = frame.frame.file
        cached = self._cache.get(file)
        result, frames = session.frame_request("source", {"known": cached[0] if cached else ""}, at=frame.at)
        if frames or cached is None or cached[0] != result["version"]:
            text = load(session.refs, frames) if frames else ""
            cached = (result["version"], int(result.get("first", 1)), highlight_lines(text))
            self._cache[file] = cached
            while len(self._cache) > CACHED_FILES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(file)
        version, first, lines = cached
        self._path = result.get("path", file)
        self._frame_index = frame.frame.index
        with self.widget.hold_sync():  # one message: lines, marker and gutter change together
            if self._shown != (file, version):
                self.widget.lines = lines
                self.widget.first = first
                self._shown = (file, version)
            self.widget.current = int(result["line"])
            self.widget.title = f"{os.path.basename(file)}:{result['line']} in {result.get('function', '?')}()"
            self.widget.note = "" if result.get("available", True) else (
                f"no source for {file} (code from exec() or a string)")
            self.widget.breakpoints = self._gutter()

    # --- breakpoints -----------------------------------------------------------------------

    def _on_breakpoints(self, breakpoints: List[Any]) -> None:
        self._breakpoints = list(breakpoints)
        self.widget.breakpoints = self._gutter()

    def _gutter(self) -> List[Dict[str, Any]]:
        return [{"line": bp.line, "condition": bp.condition or ""} for bp in self._breakpoints
                if self._path and bp.file == self._path]

    def _queue_breakpoint(self, line: int, condition: Optional[str], conditional: bool) -> None:
        what = f"breakpoint at line {line}"
        self.host.submit(what, self._set_breakpoint, line, condition, conditional)

    def _set_breakpoint(self, line: int, condition: Optional[str], conditional: bool) -> None:
        """Toggle the breakpoint at ``line`` (worker thread); ``conditional``: set it with
        ``condition`` (replacing one there; an empty condition makes it plain)."""
        session = self.host.session
        if session is None or not self._path:
            self.host.say("no source shown: attach and pause first", error=True)
            return
        here = [bp for bp in self._breakpoints if bp.file == self._path and bp.line == line]
        for bp in here:
            session.clear(bp)
        if here and not conditional:
            self.host.say(f"cleared the breakpoint at {os.path.basename(self._path)}:{line}")
        else:
            bp = session.break_at(self._path, line, condition=condition or None)
            where = f"{os.path.basename(bp.file)}:{bp.line}"
            self.host.say(f"breakpoint {bp.id} at {where}" + (f" if {bp.condition}" if bp.condition else ""))
        self.host.breakpoints_changed()
