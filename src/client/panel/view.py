"""The interface between the DebugPanel and its views (docs/panel.md, "Adding a view").

A *view* is one part of the panel (the source, the variables, the job's output...) in a
module of its own: a :class:`PanelView` subclass that builds its widgets once and then
reacts to what the panel tells it. The panel owns the session, the threads and the
layout; a view never attaches, never starts a thread and never blocks the kernel.

Who calls what, on which thread:

=========================  ===================  =============================================
method                      thread               may it call the target?
=========================  ===================  =============================================
``build()``                 the kernel's         no (once, when the panel is made)
``on_pause(pause)``         the I/O thread       no: quick updates from the event alone
``on_resume()``             the I/O thread       no
``on_lost(error)``          the I/O thread       no
``refresh(frame)``          the panel's worker   yes (``frame`` None: nothing is paused)
``poll()``                  the panel's worker   yes, every ``poll_interval`` seconds
widget callbacks            the kernel's         no: hand the work to ``host.submit``
=========================  ===================  =============================================

Every remote call runs on the one worker thread, in order, with the session's timeout;
an exception a view raises there becomes one line in the panel's message area.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Protocol

if TYPE_CHECKING:  # for type hints only: importing them here would import the session early
    import ipywidgets

    from ..session import Session
    from ..values import FrameInfo, FrameRef, PauseInfo, Stack, Variables

__all__ = ["FrameContext", "PanelView", "Programmatic", "ViewHost", "REGIONS"]

#: Where the wide layout puts a view (the compact one stacks them in this order).
REGIONS = ("left", "right", "bottom")


class FrameContext:
    """The selected frame, as one refresh sees it: shared by every view in that refresh.

    ``at`` pins requests to this pause: if the thread resumes meanwhile they fail with
    NotPaused instead of reading the next pause's frame (the panel then refreshes again).
    """

    def __init__(self, session: "Session", pause: "PauseInfo", stack: "Stack", frame: "FrameInfo",
                 at: "FrameRef") -> None:
        self.session = session
        self.pause = pause
        self.stack = stack
        self.frame = frame
        self.at = at
        self._variables: Optional["Variables"] = None

    def variables(self) -> "Variables":
        """The frame's variables (one ``locals`` request per refresh, whoever asks first)."""
        if self._variables is None:
            from ..values import Variables, VarSummary

            result, _ = self.session.frame_request("locals", at=self.at)
            out = Variables()
            for name, s in result.items():
                out[name] = VarSummary(name=name, type=s["type"], repr=s["repr"], size=s.get("size"),
                                       shape=s.get("shape"), length=s.get("len"))
            self._variables = out
        return self._variables


class ViewHost(Protocol):
    """What the panel offers its views (client.panel.core.DebugPanel implements it)."""

    #: The attached session, or None.
    session: Optional["Session"]
    #: Plot rendering: "auto", "svg" or "matplotlib" (docs/panel.md, "Plots").
    plots: str
    #: The group the panel shows (``DebugPanel(group=g)``), or None.
    group: Optional[Any]

    def show_session(self, session: "Session") -> None:
        """Make ``session`` (a member of :attr:`group`) the one the panel shows (queued)."""

    def submit(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker thread; an exception becomes ``what: error`` in the panel."""

    def say(self, text: str, *, error: bool = False) -> None:
        """Show one line in the panel's message area (empty text clears it)."""

    def publish(self, topic: str, value: Any) -> None:
        """Tell every view subscribed to ``topic`` (on the calling thread)."""

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(value)`` for every ``publish(topic, value)``."""

    def refresh(self) -> None:
        """Queue a refresh of every view (the frame may have changed)."""

    def select_frame(self, index: int) -> None:
        """Select frame ``index`` of the paused thread and refresh (queued)."""

    def breakpoints_changed(self) -> None:
        """Re-read the breakpoints and publish them as ``"breakpoints"`` (queued)."""

    def control(self, action: str) -> None:
        """``cont``, ``step``, ``next``, ``step_out`` or ``pause`` the target (queued)."""


class PanelView:
    """Base class of a DebugPanel view. Subclass it, set the class attributes, override
    :meth:`build` and whichever of the hooks the view needs (the defaults do nothing).

    Topics the panel's own views publish (``host.subscribe``): ``"inspect"`` (a variable
    name picked in the variables view), ``"breakpoints"`` (the list of breakpoints, after
    every change and pause).
    """

    #: Unique within a panel; the view's box gets the CSS class ``fb-view-<name>``.
    name: str = ""
    #: Its heading in the panel.
    title: str = ""
    #: Where the wide layout puts it: one of REGIONS.
    region: str = "right"
    #: Seconds between calls of :meth:`poll` while a session is attached; None: never.
    poll_interval: Optional[float] = None

    def __init__(self, host: ViewHost) -> None:
        self.host = host

    def build(self) -> "ipywidgets.Widget":
        """Create the view's widgets and return the one that holds them (called once)."""
        raise NotImplementedError

    def on_pause(self, pause: "PauseInfo") -> None:
        """A thread paused (``refresh`` follows on the worker)."""

    def on_resume(self) -> None:
        """The target runs again (``refresh(None)`` follows when nothing is paused)."""

    def on_lost(self, error: str) -> None:
        """The target is gone."""

    def refresh(self, frame: Optional[FrameContext]) -> None:
        """Show ``frame`` (None: nothing is paused, or no session)."""

    def poll(self) -> None:
        """Periodic work while attached (see :attr:`poll_interval`)."""

    def set_compact(self, compact: bool) -> None:
        """The panel switched between its wide and compact (sidebar) layout."""

    def close(self) -> None:
        """The panel closes (its widgets are closed by the panel)."""


class Programmatic:
    """Tells a widget change the panel made from one the user made.

    Trait observers run on the thread that sets the trait, so a thread-local flag set
    around the panel's own change is seen by the observer it triggers, and by no other.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self._local.active = True
        try:
            yield
        finally:
            self._local.active = False

    @property
    def active(self) -> bool:
        """Whether the current thread is inside ``with programmatic():``."""
        return getattr(self._local, "active", False)


#: ``factory(host) -> PanelView``: a PanelView subclass or any callable like it.
ViewFactory = Callable[[ViewHost], PanelView]
ViewList = List[ViewFactory]
TopicCallbacks = Dict[str, List[Callable[[Any], None]]]
