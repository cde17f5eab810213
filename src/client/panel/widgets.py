"""The DebugPanel's own widgets: small anywidget classes whose JavaScript is in ``js/``.

ipywidgets has no widget for a source view with a clickable gutter, a table whose rows
can be clicked, a log that follows its end, or page-wide keys, and writing a JupyterLab
extension for them would tie the panel to one frontend's build. anywidget (a small,
well-kept library) runs an ES module per widget in JupyterLab, Notebook 7 and VS Code.

Each widget's clicks arrive as custom messages; :meth:`EventWidget.on_event` routes them
by their ``event`` field to a handler (on the kernel's thread: handlers only queue work).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict

import anywidget
import traitlets

_JS = Path(__file__).resolve().parent / "js"


def _esm(name: str) -> str:
    return (_JS / name).read_text(encoding="utf-8")


class EventWidget(anywidget.AnyWidget):
    """An anywidget whose frontend sends ``{"event": name, ...}`` messages."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handlers: Dict[str, Callable[[Dict[str, Any]], None]] = {}
        self.on_msg(self._dispatch)

    def on_event(self, event: str, handler: Callable[[Dict[str, Any]], None]) -> None:
        """Call ``handler(message)`` for each message whose ``event`` is ``event``."""
        self._handlers[event] = handler

    def _dispatch(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        handler = self._handlers.get(content.get("event"))
        if handler is None:
            return
        try:
            handler(content)
        except Exception as exc:  # a comm handler has nowhere to raise to
            print(f"framebridge panel: {content.get('event')} failed: {exc!r}", file=sys.stderr)


class SourceWidget(EventWidget):
    """Numbered, highlighted source lines; the current line marked; breakpoints in the gutter.

    Events: ``toggle`` {line}, ``condition`` {line, condition}.
    """

    _esm = _esm("source_view.js")
    title = traitlets.Unicode("").tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)
    lines = traitlets.List(traitlets.Unicode()).tag(sync=True)
    first = traitlets.Int(1).tag(sync=True)
    current = traitlets.Int(0).tag(sync=True)
    breakpoints = traitlets.List(traitlets.Dict()).tag(sync=True)


class TableWidget(EventWidget):
    """A table whose rows can be clicked (the first cell of a row is its key). Event: ``select`` {key}."""

    _esm = _esm("table_view.js")
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    rows = traitlets.List(traitlets.List()).tag(sync=True)
    row_classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    empty = traitlets.Unicode("").tag(sync=True)


class LogWidget(EventWidget):
    """Lines of output (``[stream, text]``, stream 2 = stderr) that follow their end."""

    _esm = _esm("log_view.js")
    lines = traitlets.List(traitlets.List()).tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)


class KeysWidget(EventWidget):
    """Invisible: sends ``key`` {key, shift} for F5, F10, F11 while its panel has focus."""

    _esm = _esm("keys.js")
