"""The patch view: edit the selected frame's function and apply it to the running target.

At each pause the view loads the ``def`` of the selected frame's function from the
target (the ``source`` op, the same text the source view shows; cached per file and
version) into a text box, unless the box holds edits not applied yet. **apply** sends
the box to ``Session.patch`` under the function's qualified name; **unpatch** puts its
original code back; **reload** drops the edits. The message line says what was
replaced and which frames still run the old code (docs/howto-patch.md).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import ipywidgets as widgets

from ...errors import NotPaused
from ...patching import FunctionSource, function_at
from ...proxy import load
from ..view import FrameContext, PanelView, Programmatic


class PatchView(PanelView):
    """A text box with the selected frame's function; apply it as a patch."""

    name = "patch"
    title = "patch"
    region = "bottom"

    def build(self) -> widgets.Widget:
        self._programmatic = Programmatic()
        self._loaded: Optional[FunctionSource] = None  # what the box was last loaded with
        self._edited = False
        self._applied: Dict[str, str] = {}  # qualname -> the source last applied from here
        self._texts: Dict[str, Tuple[str, int, str]] = {}  # file -> (version, first line, text)
        self.heading = widgets.HTML("<i>pause to edit the selected frame's function</i>")
        self.heading.add_class("fb-patch-heading")
        self.editor = widgets.Textarea(layout=widgets.Layout(width="auto", height="180px"))
        self.editor.add_class("fb-patch-editor")
        self.editor.observe(self._typed, names="value")
        self.apply = widgets.Button(description="apply", icon="check", disabled=True,
                                    tooltip="Patch the running function with this source")
        self.unpatch = widgets.Button(description="unpatch", icon="undo", disabled=True,
                                      tooltip="Put the function's original code back")
        self.reload = widgets.Button(description="reload", icon="refresh", disabled=True,
                                     tooltip="Drop the edits: load the function's source again")
        for button, css in ((self.apply, "fb-patch-apply"), (self.unpatch, "fb-patch-unpatch"),
                            (self.reload, "fb-patch-reload")):
            button.add_class(css)
        self.apply.on_click(lambda _: self._queue("patch", self._apply, self.editor.value))
        self.unpatch.on_click(lambda _: self._queue("unpatch", self._unpatch))
        self.reload.on_click(lambda _: self._queue("reload", self._reload))
        return widgets.VBox([self.heading, self.editor, widgets.HBox([self.apply, self.unpatch, self.reload])],
                            layout=widgets.Layout(width="auto"))

    # --- following the target --------------------------------------------------------------

    def on_resume(self) -> None:
        self.apply.disabled = True  # a patch runs on a paused thread (its def runs there once)

    def refresh(self, frame: Optional[FrameContext]) -> None:
        if frame is None:
            self.apply.disabled = True
            return
        self._frame = frame
        found = self._function_of(frame)
        same = self._loaded is not None and found is not None and found.qualname == self._loaded.qualname
        if not (same and self._edited):  # keep edits not applied yet to this very function
            self._show(found)
        self.apply.disabled = found is None
        self.unpatch.disabled = found is None
        self.reload.disabled = found is None

    def _function_of(self, frame: FrameContext) -> Optional[FunctionSource]:
        session = frame.session
        file = frame.frame.file
        cached = self._texts.get(file)
        result, frames = session.frame_request("source", {"known": cached[0] if cached else ""}, at=frame.at)
        if frames or cached is None or cached[0] != result["version"]:
            cached = (result["version"], int(result.get("first", 1)), load(session.refs, frames) if frames else "")
            self._texts = {file: cached}  # the selected frame's file only: a patch is edited in one place
        _, first, text = cached
        return function_at(text, int(result["line"]), str(result.get("function", "")), first)

    def _show(self, found: Optional[FunctionSource]) -> None:
        self._loaded = found
        self._edited = False
        applied = self._applied.get(found.qualname) if found is not None else None
        with self._programmatic():
            self.editor.value = applied or (found.source if found is not None else "")
        if found is None:
            self.heading.value = "<i>the selected frame is not in a function whose source is available</i>"
        else:
            state = " (patched from here)" if applied else ""
            self.heading.value = (f"<b>{_esc(found.qualname)}</b>{state} <span style='color:#777'>line "
                                  f"{found.line} of {_esc(self._frame.frame.file)}</span>")

    def _typed(self, change: Dict[str, Any]) -> None:
        if not self._programmatic.active:
            self._edited = True

    # --- actions (the worker thread) ----------------------------------------------------------

    def _queue(self, what: str, fn: Any, *args: Any) -> None:
        if self._loaded is None:
            self.host.say("no function to patch: pause in a function first", error=True)
            return
        self.host.submit(what, fn, self._loaded.qualname, *args)

    def _session(self) -> Any:
        session = self.host.session
        if session is None:
            raise NotPaused("not attached to a process")
        return session

    def _apply(self, qualname: str, source: str) -> None:
        result = self._session().patch(qualname, source)
        self._applied[qualname] = source
        self._edited = False
        running = result.running_old_code
        tail = f"; still running the old code: {len(running)} frame(s)" if running else ""
        self.host.say(f"patched {', '.join(result.names)}{tail}")
        self.host.refresh()

    def _unpatch(self, qualname: str) -> None:
        self.host.say(str(self._session().unpatch(qualname)))
        self._applied.pop(qualname, None)
        self._edited = False
        self.host.refresh()

    def _reload(self, qualname: str) -> None:
        self._edited = False
        self.host.refresh()


def _esc(text: Any) -> str:
    from ...display import esc

    return esc(text)
