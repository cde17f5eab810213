"""The DebugPanel (docs/panel.md): an ipywidgets panel on a paused process.

``client.panel.DebugPanel`` is the panel; ``client.panel.view.PanelView`` the base class
of its views (``client.panel.views`` holds the panel's own, one module each).
"""

from __future__ import annotations

from .core import DebugPanel
from .render import is_expression, parse_location
from .view import FrameContext, PanelView

__all__ = ["DebugPanel", "FrameContext", "PanelView", "is_expression", "parse_location"]
