"""The DebugPanel's views, one module each (docs/panel.md, "Adding a view").

:data:`DEFAULT_VIEWS` is what ``DebugPanel()`` shows, in this order: the order in which
they are refreshed at a pause (cheapest and most looked-at first) and, within each
region, the order on screen. A new view is a module here (or anywhere) with a
:class:`client.panel.view.PanelView` subclass; add it to this list, or pass it to one
panel with ``DebugPanel(extra_views=[MyView])``.
"""

from __future__ import annotations

from typing import List

from ..view import ViewFactory
from .breakpoints import BreakpointsView
from .checkpoints import CheckpointsView
from .console import ConsoleView
from .inspector import InspectorView
from .output import OutputView
from .patch import PatchView
from .source import SourceView
from .stack import StackView
from .variables import VariablesView

DEFAULT_VIEWS: List[ViewFactory] = [
    SourceView,
    StackView,
    VariablesView,
    InspectorView,
    BreakpointsView,
    ConsoleView,
    OutputView,
    PatchView,
    CheckpointsView,
]

__all__ = ["DEFAULT_VIEWS", "BreakpointsView", "CheckpointsView", "ConsoleView", "InspectorView", "OutputView", "PatchView", "SourceView",
           "StackView", "VariablesView"]
