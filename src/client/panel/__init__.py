"""The DebugPanel (docs/panel.md): an ipywidgets panel on a paused process.

``client.panel.DebugPanel`` is the panel; ``client.panel.view.PanelView`` the base class
of its views (``client.panel.views`` holds the panel's own, one module each). The panel
itself is imported on first use, so its pure parts (rendering, plots, highlighting) can
be imported without ipywidgets and anywidget.
"""

from __future__ import annotations

from typing import Any

from .render import is_expression, parse_location
from .view import FrameContext, PanelView

__all__ = ["DebugPanel", "FrameContext", "PanelView", "is_expression", "parse_location"]


def __getattr__(name: str) -> Any:
    if name == "DebugPanel":
        from .core import DebugPanel

        return DebugPanel
    raise AttributeError(f"module 'client.panel' has no attribute {name!r}")
