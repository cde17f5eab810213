"""DebugPanel: an ipywidgets front end for one attached target process.

    from client import DebugPanel
    DebugPanel()          # attaches to the one paused process (or pick one in the panel)

The panel is a frame (process picker, state line, buttons, keys, message line: layout.py)
around *views*, one module each (views/, interface in view.py). Four threads touch it,
each for one reason:

* the kernel's main thread runs the widget handlers (clicks, selections, keys). They
  only read widget values and queue work, so a slow or hung target never blocks the notebook;
* one worker thread (``framebridge-panel``) runs every remote call, in click order;
* the process's I/O thread (client/io_loop.py), which reads every session's events, calls
  :meth:`DebugPanel._on_event` when the target pauses or resumes. It updates the pause
  state and the views' quick parts at once (no remote call: that thread serves every
  session) and queues a refresh of the views for the worker;
* one poller thread (``framebridge-panel-poll``) queues each view's ``poll`` every
  ``poll_interval`` seconds (the job's output while it runs).

Widget updates from the worker and I/O threads reach the browser (ipykernel sends
comm messages from any thread), so the panel follows the target without a running cell.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..current import current_session, has_current_session, set_current_session
from ..discovery import attach, sessions
from ..errors import NotPaused
from ..session import Session
from .actions import PanelActions
from .layout import PanelLayout
from .render import describe_error, lost_html, message_html, pause_state_html
from .view import FrameContext, PanelView, ViewFactory

__all__ = ["DebugPanel"]

#: A resume shows "running" in the views only if no pause follows within this many
#: seconds: a step's resume and pause are then one update, not two (no flicker).
RESUME_GRACE_S = 0.3
#: How often the poller thread looks for views whose poll is due.
POLL_TICK_S = 0.25
#: What the debugger keys do: (key, shift) -> action.
KEY_ACTIONS = {("F5", False): "cont", ("F10", False): "next", ("F11", False): "step", ("F11", True): "step_out"}


class DebugPanel(PanelActions, PanelLayout):
    """An ipywidgets panel on one target: process picker, pause state, control buttons and
    keys, and its views: source, stack, variables, inspector, breakpoints, console and the
    job's output (docs/panel.md).

    ``session``: an attached :class:`Session` (the panel does not close it), or None for
    the current session (``%attach``), else the one paused process, which then becomes the
    current session (else the choice is left to the process picker). ``views``: the view
    factories to show (default: ``client.panel.views.DEFAULT_VIEWS``); ``extra_views``:
    more after them. ``compact``: the one-column layout (see :meth:`sidebar`). ``plots``:
    "auto", "svg" or "matplotlib" (docs/panel.md, "Plots"). The panel updates itself when
    the target pauses; remote calls run on a worker thread, so the notebook never waits on
    the target. ``close()`` detaches what the panel attached. ``group``: a group (a hub's,
    ``attach_dask``'s, ``attach_all()``'s) whose members the group view lists; picking one
    makes the panel show it (docs/panel.md, "A group").
    """

    def __init__(self, session: Optional[Session] = None, *, views: Optional[Sequence[ViewFactory]] = None,
                 extra_views: Sequence[ViewFactory] = (), compact: bool = False, plots: str = "auto",
                 group: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if plots not in ("auto", "svg", "matplotlib"):
            raise ValueError(f"plots must be 'auto', 'svg' or 'matplotlib', not {plots!r}")
        self._stop_polling = threading.Event()
        if views is None:
            from .views import DEFAULT_VIEWS

            views = DEFAULT_VIEWS
            if group is not None:
                from .views.group import GroupView

                views = [GroupView, *views]
        #: The group the group view lists (None: a panel on one process).
        self.group = group
        self.views: List[PanelView] = [factory(self) for factory in list(views) + list(extra_views)]
        names = [v.name for v in self.views]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"views need unique, non-empty names: {names}")
        self.session: Optional[Session] = None
        self.plots = plots
        self.compact = compact
        self.mount: Any = None  # the active client.mount.Mount, if any
        self.sidecar: Any = None  # the sidecar.Sidecar that sidebar() made
        self.last_pause_latency: Optional[float] = None  # seconds from the target's pause to our update
        self._owns_session = False
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._process_rows: List[Tuple[int, str, str]] = []  # (pid, state when listed, command)
        self._refresh_queued = False
        self._told_pause = 0  # the last pause the views' on_pause heard of
        self._lost = False
        self._closed = False
        self._topics: Dict[str, List[Callable[[Any], None]]] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framebridge-panel")
        self._build_frame()
        self._built = {view.name: view.build() for view in self.views}
        self.set_compact(compact)
        self._connect()
        self._poller = threading.Thread(target=self._poll_loop, name="framebridge-panel-poll", daemon=True)
        self._poller.start()
        if session is None and group is not None and len(group):
            session = (group.paused() or group.members())[0]
        if session is not None:
            self._submit("attach", self._use_session, session, False)
        elif group is None:  # a group's panel waits for a member to pause (views/group.py)
            self._submit("attach", self._attach_default)

    def view(self, name: str) -> PanelView:
        """The view called ``name`` (KeyError if the panel has none)."""
        for view in self.views:
            if view.name == name:
                return view
        raise KeyError(f"no view {name!r} in this panel (it has {', '.join(v.name for v in self.views)})")

    def inspect(self, expr: str) -> None:
        """Show ``expr`` (a variable name or an expression in the selected frame) in the inspector."""
        self.publish("inspect", expr)

    # --- layout --------------------------------------------------------------------------

    def set_compact(self, compact: bool) -> None:
        """Switch between the wide layout (a notebook cell) and the compact one (a sidebar)."""
        self.compact = compact
        self._arrange(self.views, self._built, compact)
        for view in self.views:
            self._safely(view.set_compact, compact)

    def sidebar(self, title: str = "framebridge", anchor: str = "right") -> None:
        """Show this panel, compact, in JupyterLab's right sidebar (:attr:`sidecar` holds it).

        Uses ``sidecar`` (``pip install sidecar``, in framebridge's ``notebook`` extra).
        Without it the compact panel is shown in the cell instead, and the panel says how
        to get the sidebar. ``anchor``: where JupyterLab puts it (``"split-right"``: beside
        the notebook). Returns None, so that the cell does not show the panel a second time.
        """
        from IPython.display import display

        self.set_compact(True)
        try:
            from sidecar import Sidecar
        except ImportError:
            display(self)
            self._say("the sidebar needs the sidecar package (pip install sidecar): showing the panel here")
            return
        if self.sidecar is not None:
            self.sidecar.close()
        self.sidecar = Sidecar(title=title, anchor=anchor)
        with self.sidecar:
            display(self)

    # --- what views may use (client.panel.view.ViewHost) ---------------------------------------

    def submit(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the worker thread; an exception becomes ``what: error`` in the panel."""
        self._submit(what, fn, *args)

    def say(self, text: str, *, error: bool = False) -> None:
        """Show one line in the message area (empty text clears it)."""
        self._say(text, error=error)

    def publish(self, topic: str, value: Any) -> None:
        """Call every subscriber of ``topic`` with ``value`` (on this thread)."""
        for callback in list(self._topics.get(topic, [])):
            self._safely(callback, value)

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(value)`` for every ``publish(topic, value)``."""
        self._topics.setdefault(topic, []).append(callback)

    def refresh(self) -> None:
        """Queue a refresh of every view."""
        self._queue_refresh()

    def select_frame(self, index: int) -> None:
        """Select frame ``index`` of the paused thread, then refresh (queued)."""
        session = self.session
        if session is None:
            return

        def select() -> None:
            session.select(index)
            self._refresh_frame()

        self._submit(f"select frame {index}", select)

    def show_session(self, session: Session) -> None:
        """Show ``session`` (a member of :attr:`group`; the panel does not close it) (queued)."""
        self._submit("show member", self._use_session, session, False)

    def breakpoints_changed(self) -> None:
        """Re-read the breakpoints and publish them (queued)."""
        self._submit("breakpoints", self._refresh_breakpoints)

    def control(self, action: str) -> None:
        """``cont``, ``step``, ``next``, ``step_out`` or ``pause`` (queued)."""
        self._submit(action.replace("_", " "), self._control, action)

    # --- running work off the kernel thread --------------------------------------------

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any) -> Optional[Future]:
        """Queue ``fn(*args)`` on the worker thread; its error becomes one line in the panel."""
        if self._closed:
            return None

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # shown in the panel: a widget callback has nowhere else to raise
                self._say(f"{what}: {describe_error(exc)}", error=True)

        try:
            return self._worker.submit(run)
        except RuntimeError:  # the worker shut down (closing)
            return None

    def _safely(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call a view's hook; its failure is a line in the panel, not a broken panel."""
        try:
            fn(*args)
        except Exception as exc:
            self._say(f"{getattr(fn, '__qualname__', fn)}: {describe_error(exc)}", error=True)

    def _attached(self) -> Session:
        """The attached session (NotPaused, shown in the panel, if there is none)."""
        session = self.session
        if session is None:
            raise NotPaused("not attached to a process")
        return session

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.value = message_html(text, error=error)

    def _poll_loop(self) -> None:
        due: Dict[str, float] = {}
        pending: Dict[str, Future] = {}
        while not self._stop_polling.wait(POLL_TICK_S):
            if self.session is None or self._lost:
                continue
            now = time.monotonic()
            for view in self.views:
                interval = view.poll_interval
                if interval is None or now < due.get(view.name, 0.0):
                    continue
                running = pending.get(view.name)
                if running is not None and not running.done():
                    continue  # the last poll is still queued behind slower work
                due[view.name] = now + interval
                future = self._submit(f"{view.title}", view.poll)
                if future is not None:
                    pending[view.name] = future

    # --- attaching ---------------------------------------------------------------------

    def _attach_default(self) -> None:
        if has_current_session():  # the one %attach made
            self._use_session(current_session(), False)
            return
        found = self._refresh_processes()
        paused = [s for s in found if s.is_paused]
        pool = paused or found
        if len(pool) == 1:
            self._use_session(attach(pool[0]), True)
            set_current_session(self.session)  # so %%remote and jump_context() act on it too
        elif not found:
            self._say("no attachable process: start one with bridge.set_trace() or bridge.listen(), then refresh")
        else:
            self._say(f"{len(pool)} {'paused' if paused else 'attachable'} processes: pick one above")

    def _use_session(self, session: Session, owned: bool) -> None:
        """Switch the panel to ``session`` (closing the one it attached before, if any)."""
        self._detach()
        self.session, self._owns_session, self._lost = session, owned, False
        self._unsubscribe = session.on_event(self._on_event)
        self._refresh_processes()
        self._refresh_all()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.session is not None and self._owns_session:
            if has_current_session() and current_session() is self.session:
                set_current_session(None)
            self.session.close()
        self.session = None

    def _refresh_processes(self) -> List[Any]:
        found = sessions()
        self._process_rows = [
            (s.pid, "paused" if s.is_paused else "running",
             " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(s.argv)))
            for s in found]
        self._show_processes()
        return found

    def _show_processes(self) -> None:
        """Fill the picker; the attached process's state comes from its live session."""
        session = self.session
        current = session.pid if session is not None else None
        options: List[Tuple[str, Optional[int]]] = [("(pick a process)", None)]
        for pid, state, command in self._process_rows:
            if session is not None and pid == session.pid:
                state = "lost" if self._lost else ("paused" if session.paused else "running")
            options.append((f"{pid}  {state}  {command}"[:80], pid))
        if current is not None and current not in [pid for _, pid in options]:
            options.append((f"{current}  (attached)", current))
        if tuple(options) == tuple(self.process_picker.options) and self.process_picker.value == current:
            return
        with self.programmatic():
            self.process_picker.options = options
            self.process_picker.value = current

    def _on_pick_process(self, change: Dict[str, Any]) -> None:
        pid = change["new"]
        if self.programmatic.active or pid is None or (self.session is not None and self.session.pid == pid):
            return
        self._submit(f"attach {pid}", self._attach_pid, pid)

    def _attach_pid(self, pid: int) -> None:
        self._use_session(attach(pid), True)
        if not has_current_session():
            set_current_session(self.session)

    # --- following the target ----------------------------------------------------------

    def _on_event(self, event: str, body: Dict[str, Any]) -> None:
        """Called on the I/O thread (every session's events): update the state now, the rest later."""
        session = self.session
        if session is None:
            return
        if event == "paused":
            self._show_state()
            sent = body.get("time")
            if isinstance(sent, (int, float)):
                self.last_pause_latency = time.time() - sent
            shown = session.current_pause()
            if shown is not None and shown.pause_id == body.get("pause_id"):
                self._tell_pause(shown)
            self._queue_refresh()
        elif event == "resumed":
            self._show_state()
            if not session.paused:
                for view in self.views:
                    self._safely(view.on_resume)
                retired = session.pause_state.retired_count
                timer = threading.Timer(RESUME_GRACE_S, self._refresh_if_running, (session, retired))
                timer.daemon = True
                timer.start()
        elif event == "lost":
            self._lost = True
            self._enable(paused=False, alive=False)
            self.pause_state.value = lost_html(body.get("error", ""))
            for view in self.views:
                self._safely(view.on_lost, str(body.get("error", "")))

    def _tell_pause(self, pause: Any) -> None:
        """Call every view's ``on_pause`` once per pause (from the event, or from the first
        refresh when the panel attached to a process that was paused already)."""
        with self._lock:
            if pause.pause_id == self._told_pause:
                return
            self._told_pause = pause.pause_id
        for view in self.views:
            self._safely(view.on_pause, pause)

    def _refresh_if_running(self, session: Session, retired: int) -> None:
        # Still running, and no pause came and went meanwhile: the views show "running".
        if session is self.session and not session.paused and session.pause_state.retired_count == retired:
            self._queue_refresh()

    def _queue_refresh(self) -> None:
        # Pauses can come in bursts (stepping): one pending refresh covers them all.
        with self._lock:
            if self._refresh_queued:
                return
            self._refresh_queued = True

        def refresh() -> None:
            with self._lock:
                self._refresh_queued = False
            self._refresh_frame()

        self._submit("refresh", refresh)

    def _show_state(self) -> None:
        # The listener and the worker both call this: the lock keeps a stale read of the
        # pause state from overwriting a newer one.
        with self._state_lock:
            self._show_state_locked()

    def _show_state_locked(self) -> None:
        session = self.session
        if session is None:
            self._enable(paused=False, alive=False)
            self.pause_state.value = "<span class='fb-gone'>not attached</span>"
            return
        if self._lost:
            return
        pauses = session.pauses()
        text = pause_state_html(session.pid, pauses)
        self._enable(paused=bool(pauses), alive=True)  # before the text: whoever sees it finds the buttons right
        self.pause_state.value = text
        self._show_processes()

    def _enable(self, *, paused: bool, alive: bool) -> None:
        mounted = self.mount is not None
        for key in ("cont", "step", "next", "step-out"):
            self.buttons[key].disabled = not paused
        self.buttons["pause"].disabled = not alive or paused
        self.buttons["mount"].disabled = not paused or mounted
        self.buttons["write-back"].disabled = not mounted
        self.buttons["discard"].disabled = not mounted

    def _refresh_all(self) -> None:
        self._refresh_frame()
        self._refresh_breakpoints()

    def _frame_context(self) -> Optional[FrameContext]:
        """The selected frame of the paused thread (one ``stack`` request); None if nothing is paused."""
        session = self.session
        if session is None or not session.paused:
            return None
        at = session.selected
        pause = session.current_pause()
        if at is None or pause is None:
            return None
        stack = session.stack()
        frame = next((f for f in stack if f.selected), stack[0] if stack else None)
        if frame is None:
            return None
        return FrameContext(session, pause, stack, frame, at)

    def _refresh_frame(self) -> None:
        """Every view, for the selected frame (worker thread)."""
        self._show_state()
        try:
            frame = self._frame_context()
        except NotPaused:
            return  # it resumed meanwhile: its events queue what comes next
        if frame is not None:
            self._tell_pause(frame.pause)
        for view in self.views:
            try:
                view.refresh(frame)
            except NotPaused:
                return  # resumed during the refresh: the next event refreshes again
            except Exception as exc:
                self._say(f"{view.title}: {describe_error(exc)}", error=True)
        if frame is not None:
            self._refresh_breakpoints()  # hit counts change at pauses

    def _refresh_breakpoints(self) -> None:
        session = self.session
        if session is None:
            return
        self.publish("breakpoints", list(session.breakpoints()))

    # --- widgets of the frame -------------------------------------------------------------

    def _connect(self) -> None:
        """What each widget of the frame does."""
        self.refresh_button.on_click(lambda _: self._submit("refresh", self._refresh_processes_and_all))
        self.process_picker.observe(self._on_pick_process, names="value")
        actions = {"cont": "cont", "step": "step", "next": "next", "step-out": "step_out", "pause": "pause"}
        for key, action in actions.items():
            self.buttons[key].on_click(lambda _, a=action: self.control(a))
        self.buttons["mount"].on_click(lambda _: self._submit("mount", self._mount))
        self.buttons["write-back"].on_click(lambda _: self._submit("write back", self._unmount, True))
        self.buttons["discard"].on_click(lambda _: self._submit("discard", self._unmount, False))
        self.key_widget.on_event("key", self._on_key)

    def _refresh_processes_and_all(self) -> None:
        self._refresh_processes()
        self._refresh_all()

    def _on_key(self, message: Dict[str, Any]) -> None:
        action = KEY_ACTIONS.get((str(message.get("key")), bool(message.get("shift"))))
        if action is None:
            return
        button = self.buttons["step-out" if action == "step_out" else action]
        if button.disabled:
            self._say(f"{message.get('key')}: {action.replace('_', ' ')} needs a paused thread")
            return
        self.control(action)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Detach (closing the session only if the panel attached it) and remove the widgets."""
        if not getattr(self, "_closed", True):  # (also when __init__ failed half-way)
            self._closed = True
            self._stop_polling.set()
            self._worker.shutdown(wait=False)
            for view in self.views:
                self._safely(view.close)
            self._discard_mount()
            self._detach()
            self._close_widgets()
            if self.sidecar is not None:
                self.sidecar.close()
        super().close()

