"""DebugPanel: an ipywidgets front end for one attached target process.

    from client import DebugPanel
    DebugPanel()          # attaches to the one paused process (or pick one in the panel)

Three threads touch the panel, each for one reason:

* the kernel's main thread runs the widget handlers (clicks, selections). They only read
  widget values and queue work, so a slow or hung target never blocks the notebook;
* one worker thread (``framebridge-panel``) runs every remote call, in click order;
* the session's event-listener thread calls :meth:`DebugPanel._on_event` when the target
  pauses or resumes. It updates the pause state at once (no remote call) and queues a
  refresh of the stack and variables for the worker.

Widget updates from the worker and listener threads reach the browser (ipykernel sends
comm messages from any thread), so the panel follows the target without a running cell.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

from .current import current_session, has_current_session, set_current_session
from .discovery import attach, sessions
from .errors import BridgeError, NotPaused
from .panel_layout import PanelLayout
from .panel_render import (
    breakpoint_label,
    console_error_html,
    console_input_html,
    console_output_html,
    describe_error,
    is_expression,
    lost_html,
    message_html,
    next_input_html,
    parse_location,
    pause_state_html,
    short,
    variables_html,
)
from .session import Session

__all__ = ["DebugPanel", "is_expression", "parse_location"]

#: Console entries kept in the transcript (older ones scroll away).
TRANSCRIPT_ENTRIES = 40
#: How long the pause button waits for the pause to land before saying it is pending.
PAUSE_WAIT_S = 2.0


def _notebook_namespace() -> Dict[str, Any]:
    """Where a mount puts variables: IPython's user namespace, else ``__main__``'s globals."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else vars(sys.modules["__main__"])


class DebugPanel(PanelLayout):
    """An ipywidgets panel on one target: process picker, pause state, stack, variables,
    a console that runs in the selected frame, stepping and mount buttons, breakpoints.

    ``session``: an attached :class:`Session` (the panel does not close it), or None for
    the current session (``%attach``), else the one paused process, which then becomes the
    current session (else the choice is left to the process picker). The
    panel updates itself when the target pauses; remote calls run on a worker thread, so
    the notebook never waits on the target. ``close()`` detaches what the panel attached.
    """

    def __init__(self, session: Optional[Session] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session: Optional[Session] = None
        self.mount: Any = None  # the active client.mount.Mount, if any
        self.breakpoint_items: List[Any] = []
        self.last_pause_latency: Optional[float] = None  # seconds from the target's pause to our update
        self._owns_session = False
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._transcript: List[str] = []
        self._process_rows: List[Tuple[int, str, str]] = []  # (pid, state when listed, command)
        self._refresh_queued = False
        self._closed = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framebridge-panel")
        self._build()
        self._connect()
        if session is not None:
            self._submit("attach", self._use_session, session, False)
        else:
            self._submit("attach", self._attach_default)

    def _connect(self) -> None:
        """What each widget does."""
        self.refresh_button.on_click(lambda _: self._submit("refresh", self._refresh_all))
        self.process_picker.observe(self._on_pick_process, names="value")
        self.stack_view.observe(self._on_pick_frame, names="index")
        self.console_input.observe(self._on_console_typed, names="value")
        self.console_run.on_click(self._on_run_clicked)
        self.bp_add.on_click(self._on_bp_add)
        self.bp_remove.on_click(self._on_bp_remove)
        actions = {"cont": "cont", "step": "step", "next": "next", "step-out": "step_out", "pause": "pause"}
        for key, action in actions.items():
            self.buttons[key].on_click(lambda _, a=action: self._submit(a, self._control, a))
        self.buttons["mount"].on_click(lambda _: self._submit("mount", self._mount))
        self.buttons["write-back"].on_click(lambda _: self._submit("write back", self._unmount, True))
        self.buttons["discard"].on_click(lambda _: self._submit("discard", self._unmount, False))

    # --- running work off the kernel thread --------------------------------------------

    def _submit(self, what: str, fn: Callable[..., Any], *args: Any) -> Optional[Future]:
        """Queue ``fn(*args)`` on the worker thread; its error becomes a message in the panel."""
        if self._closed:
            return None

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # shown in the panel: a widget callback has nowhere else to raise
                self._say(f"{what}: {describe_error(exc)}", error=True)

        return self._worker.submit(run)

    def _attached(self) -> Session:
        """The attached session (NotPaused, shown in the panel, if there is none)."""
        session = self.session
        if session is None:
            raise NotPaused("not attached to a process")
        return session

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.value = message_html(text, error=error)

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
        self.session, self._owns_session = session, owned
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
                state = "paused" if session.paused else "running"
            options.append((f"{pid}  {state}  {command}"[:80], pid))
        if current is not None and current not in [pid for _, pid in options]:
            options.append((f"{current}  (attached)", current))
        if tuple(options) == tuple(self.process_picker.options) and self.process_picker.value == current:
            return
        with self._programmatic():
            self.process_picker.options = options
            self.process_picker.value = current

    def _on_pick_process(self, change: Dict[str, Any]) -> None:
        pid = change["new"]
        if self._is_programmatic() or pid is None or (self.session is not None and self.session.pid == pid):
            return
        self._submit(f"attach {pid}", self._attach_pid, pid)

    def _attach_pid(self, pid: int) -> None:
        self._use_session(attach(pid), True)
        if not has_current_session():
            set_current_session(self.session)

    # --- following the target ----------------------------------------------------------

    def _on_event(self, event: str, body: Dict[str, Any]) -> None:
        """Called on the session's listener thread: update the state now, the rest later."""
        if event == "paused":
            self._show_state()
            sent = body.get("time")
            if isinstance(sent, (int, float)):
                self.last_pause_latency = time.time() - sent
            self._queue_refresh()
        elif event == "resumed":
            self._show_state()
        elif event == "lost":
            self._enable(paused=False, alive=False)
            self.pause_state.value = lost_html(body.get("error", ""))

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
        self.console_run.disabled = not paused
        self.bp_add.disabled = self.bp_remove.disabled = not alive

    def _refresh_all(self) -> None:
        self._show_state()
        self._refresh_frame()
        self._refresh_breakpoints()

    def _refresh_frame(self) -> None:
        """Stack and variables of the selected frame (worker thread)."""
        session = self.session
        self._show_state()
        if session is None or not session.paused:
            self._set_stack([], None)
            self.variables_view.value = "<i>running: no frame</i>" if session else "<i>no frame</i>"
            return
        try:
            stack = session.stack()
            variables = session.locals()
        except NotPaused:
            self._show_state()  # it resumed meanwhile
            return
        selected = next((f.index for f in stack if f.selected), 0)
        self._set_stack([(f"#{f.index} {f.function}()  {os.path.basename(f.file)}:{f.line}", f.index)
                         for f in stack], selected)
        self.variables_view.value = variables_html(variables)

    def _on_pick_frame(self, change: Dict[str, Any]) -> None:
        index = change["new"]
        if self._is_programmatic() or index is None or index < 0 or self.session is None:
            return
        session = self.session

        def select() -> None:
            session.select(index)
            self._refresh_frame()

        self._submit(f"select frame {index}", select)

    # --- console -------------------------------------------------------------------------

    def _on_console_typed(self, change: Dict[str, Any]) -> None:
        # Shows what the kernel has, i.e. what "run" will run (ipywidgets may deliver a
        # click before the last keystrokes; the transcript shows what actually ran).
        text = change["new"].strip()
        self.console_echo.value = next_input_html(text)

    def _on_run_clicked(self, _: Any) -> None:
        # Read the input here, in the click's own handler, and carry it with the job:
        # the worker may run later, when the Text holds something else.
        source = self.console_input.value
        if not source.strip():
            self._say("type an expression or a statement first")
            return
        self._submit("run", self._run_console, source)

    def _run_console(self, source: str) -> None:
        session = self._attached()
        entry = console_input_html(self.stack_view.label or "frame", source)
        try:
            if is_expression(source):
                printed = io.StringIO()
                value = session.eval(source, stdout=printed)  # an uncopyable value arrives live
                out = printed.getvalue() + short(repr(value))
            else:
                out = str(session.exec(source))
                self._queue_refresh()  # statements may rebind variables
            entry += console_output_html(out)
        except BridgeError as exc:
            entry += console_error_html(exc)
        with self._lock:
            self._transcript = (self._transcript + [entry])[-TRANSCRIPT_ENTRIES:]
            log = "".join(reversed(self._transcript))  # newest first: no scrolling to see it
        self.console_log.value = log

    # --- execution control -----------------------------------------------------------

    def _control(self, action: str) -> None:
        session = self._attached()
        if action == "pause":
            # The pause event updates the panel; a pause that cannot land at once (the
            # thread is in a long C call) is said in the panel, not as a kernel warning.
            # catch_warnings is process-wide, held here only for this one call.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session.pause(wait=PAUSE_WAIT_S)
            self._say(str(caught[-1].message) if caught else "")
            return
        getattr(session, action)()
        self._say("")
        self._show_state()
        if not session.paused:
            self._set_stack([], None)
            self.variables_view.value = "<i>running: no frame</i>"

    # --- mount / write back / discard ----------------------------------------------

    def _mount(self) -> None:
        try:
            from .mount import jump_context
        except ImportError:
            self._say("mount is not available in this framebridge (client.mount is missing)", error=True)
            return
        mount = jump_context(self._attached(), namespace=_notebook_namespace())  # the selected frame
        mount.__enter__()
        self.mount = mount
        self._show_state()  # enables write back / discard
        names = list(getattr(mount, "mounted", []))
        live = list(getattr(mount, "live", []))
        text = f"mounted {', '.join(names) or 'nothing'} into the notebook namespace"
        if live:
            text += f" ({', '.join(live)} live: changes through them happen in the target at once)"
        self._say(text + "; change them in cells, then write back or discard")

    def _unmount(self, write_back: bool) -> None:
        mount = self.mount
        if mount is None:
            self._say("nothing is mounted")
            return
        if write_back:
            written = mount.commit()  # a conflict raises here and leaves the mount in place to discard
        else:
            mount.discard()
        mount.__exit__(None, None, None)  # restores the notebook's namespace (nothing more to write)
        self.mount = None
        if not write_back:
            self._say("discarded: nothing written back; the notebook's namespace is restored")
        else:
            parts = [f"{label} {', '.join(names)}" for label, names in (
                ("changed", getattr(written, "changed", [])), ("added", getattr(written, "added", [])),
                ("deleted", getattr(written, "deleted", []))) if names]
            self._say("wrote back: " + ("; ".join(parts) if parts else "nothing had changed"))
        self._refresh_frame()

    # --- breakpoints -----------------------------------------------------------------------

    def _on_bp_add(self, _: Any) -> None:
        text = self.bp_input.value
        try:
            file, line, condition = parse_location(text)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self._submit("breakpoint", self._add_breakpoint, file, line, condition)

    def _add_breakpoint(self, file: str, line: int, condition: Optional[str]) -> None:
        session = self.session
        if session is None:
            self._say("breakpoints are not available (attach first)", error=True)
            return
        bp = session.break_at(file, line, condition=condition)
        self._say(f"set {bp}")
        self._refresh_breakpoints()

    def _on_bp_remove(self, _: Any) -> None:
        index = self.bp_list.index
        if index is None or not 0 <= index < len(self.breakpoint_items):
            self._say("select a breakpoint to remove")
            return
        self._submit("remove breakpoint", self._remove_breakpoint, self.breakpoint_items[index])

    def _remove_breakpoint(self, bp: Any) -> None:
        self._attached().clear(bp)
        self._say(f"removed {bp}")
        self._refresh_breakpoints()

    def _refresh_breakpoints(self) -> None:
        session = self.session
        if session is None:
            return
        items = list(session.breakpoints())
        self.breakpoint_items = items
        with self._programmatic():
            self.bp_list.options = [(breakpoint_label(bp), i) for i, bp in enumerate(items)]

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Detach (closing the session only if the panel attached it) and remove the widgets."""
        if not self._closed:
            self._closed = True
            self._worker.shutdown(wait=False)
            if self.mount is not None:
                try:  # an open mount is discarded: closing is not a decision to write back
                    self.mount.discard()
                    self.mount.__exit__(None, None, None)
                except Exception:
                    pass
                self.mount = None
            self._detach()
            self._close_widgets()
        super().close()

