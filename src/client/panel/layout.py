"""The DebugPanel's widgets and how they are laid out (client/panel.py acts on them).

Every part has a CSS class ``fb-<name>``: the handle tests and users' own CSS use to
find it. Nothing here talks to the target.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ipywidgets as widgets

CSS = """<style>
.fb-panel {border:1px solid var(--jp-border-color1,#ccc); padding:4px; gap:4px;}
.fb-panel .widget-button {width:auto; padding:0 8px;}
.fb-state {font-family:var(--jp-code-font-family,monospace); font-size:12px;}
.fb-state .fb-paused {color:#a15c00; font-weight:bold;}
.fb-state .fb-running {color:#17733a; font-weight:bold;}
.fb-state .fb-gone {color:#b00020; font-weight:bold;}
.fb-vars table, .fb-bp-view table {border-collapse:collapse; font-family:var(--jp-code-font-family,monospace);
  font-size:12px;}
.fb-vars td, .fb-vars th {border:1px solid #ddd; padding:1px 6px; text-align:left; vertical-align:top;}
.fb-vars th {background:var(--jp-layout-color2,#f3f3f3);}
.fb-console-log pre {margin:0; padding:0 4px; font-size:12px; white-space:pre-wrap;}
.fb-console-log .fb-in {color:#555;} .fb-console-log .fb-err {color:#b00020;}
.fb-console-log .fb-ok {color:#888; font-style:italic;}
.fb-message {font-size:12px; color:#555;} .fb-message .fb-err {color:#b00020;}
.fb-heading {font-weight:bold; font-size:12px; margin:2px 0 0 0;}
</style>"""

#: Button key -> (label, icon, tooltip). Keys double as the CSS class ``fb-<key>``.
BUTTONS: Dict[str, Tuple[str, str, str]] = {
    "cont": ("continue", "play", "Resume every paused thread"),
    "step": ("step", "arrow-down", "Step into: stop at the next line, entering calls"),
    "next": ("next", "arrow-right", "Step over: stop at the next line of this frame"),
    "step-out": ("step out", "arrow-up", "Run until the selected frame returns"),
    "pause": ("pause", "pause", "Pause the running target at its next line"),
    "mount": ("mount", "download", "Copy the selected frame's variables into the notebook namespace"),
    "write-back": ("write back", "upload", "Write the mounted variables you changed back to the frame"),
    "discard": ("discard", "times", "Unmount without writing anything back"),
}


class PanelLayout(widgets.VBox):
    """The panel's widgets, laid out; :class:`client.panel.DebugPanel` adds what they do."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Set while the panel itself changes a picker, on the thread doing it (trait
        # observers run on the thread that sets the trait), so that change is not
        # mistaken for the user's pick even while other threads update the panel.
        self._local = threading.local()

    def _build(self) -> None:
        """Create the widgets and lay them out (DebugPanel calls it once)."""

        def small() -> widgets.Layout:  # a button as wide as its label, never squeezed
            return widgets.Layout(width="auto", flex="0 0 auto")

        def stretch() -> widgets.Layout:
            return widgets.Layout(width="auto", flex="1 1 auto")

        self.process_picker = widgets.Dropdown(options=[("(no process)", None)], value=None,
                                               description="process", layout=widgets.Layout(width="380px"))
        self.refresh_button = widgets.Button(description="refresh", icon="refresh", layout=small(),
                                             tooltip="Re-read the list of attachable processes and this frame")
        self.pause_state = widgets.HTML(value="<span class='fb-gone'>not attached</span>")
        self.buttons = {key: widgets.Button(description=label, icon=icon, tooltip=tip, layout=small(), disabled=True)
                        for key, (label, icon, tip) in BUTTONS.items()}
        self.stack_view = widgets.Select(options=[], rows=6, layout=widgets.Layout(width="auto"))
        self.variables_view = widgets.HTML(value="<i>no frame</i>",
                                           layout=widgets.Layout(max_height="260px", overflow="auto"))
        self.console_input = widgets.Text(placeholder="expression or statement, runs in the selected frame",
                                          continuous_update=False, layout=stretch())
        self.console_run = widgets.Button(description="run", icon="terminal", layout=small(), disabled=True,
                                          tooltip="Run the input in the selected frame")
        self.console_echo = widgets.HTML(value="")
        self.console_log = widgets.HTML(value="", layout=widgets.Layout(max_height="240px", overflow="auto"))
        self.bp_input = widgets.Text(placeholder="file.py:42 [if condition]", continuous_update=False,
                                     layout=stretch())
        self.bp_add = widgets.Button(description="add", icon="plus", layout=small(), tooltip="Set a breakpoint")
        self.bp_list = widgets.Select(options=[], rows=3, layout=stretch())
        self.bp_remove = widgets.Button(description="remove", icon="minus", layout=small(),
                                        tooltip="Remove the selected breakpoint")
        self.message = widgets.HTML(value="")

        # CSS classes: the handles tests (and users' own CSS) use to find each part.
        for widget, css in [
            (self, "fb-panel"), (self.process_picker, "fb-process"), (self.refresh_button, "fb-refresh"),
            (self.pause_state, "fb-state"), (self.stack_view, "fb-stack"), (self.variables_view, "fb-vars"),
            (self.console_input, "fb-console-input"), (self.console_run, "fb-console-run"),
            (self.console_echo, "fb-console-echo"), (self.console_log, "fb-console-log"),
            (self.bp_input, "fb-bp-input"), (self.bp_add, "fb-bp-add"), (self.bp_list, "fb-bp-list"),
            (self.bp_remove, "fb-bp-remove"), (self.message, "fb-message"),
        ] + [(b, f"fb-{key}") for key, b in self.buttons.items()]:
            widget.add_class(css)

        def heading(text: str) -> widgets.HTML:
            return widgets.HTML(f"<div class='fb-heading'>{text}</div>")

        controls = widgets.HBox([self.buttons[k] for k in ("cont", "step", "next", "step-out", "pause")]
                                + [widgets.HTML("&nbsp;|&nbsp;")]
                                + [self.buttons[k] for k in ("mount", "write-back", "discard")])
        left = widgets.VBox([heading("stack"), self.stack_view, heading("breakpoints"),
                             widgets.HBox([self.bp_input, self.bp_add]),
                             widgets.HBox([self.bp_list, self.bp_remove])],
                            layout=widgets.Layout(flex="0 1 40%", min_width="280px", margin="0 8px 0 0"))
        right = widgets.VBox([heading("variables"), self.variables_view], layout=widgets.Layout(flex="1 1 60%"))
        self.children = [
            widgets.HTML(CSS),
            widgets.HBox([self.process_picker, self.refresh_button]),
            self.pause_state,
            controls,
            widgets.HBox([left, right]),
            heading("console"),
            widgets.HBox([self.console_input, self.console_run]),
            self.console_echo,
            self.console_log,
            self.message,
        ]

    @contextmanager
    def _programmatic(self) -> Iterator[None]:
        self._local.active = True
        try:
            yield
        finally:
            self._local.active = False

    def _is_programmatic(self) -> bool:
        return getattr(self._local, "active", False)

    def _set_stack(self, options: List[Tuple[str, int]], selected: Optional[int]) -> None:
        with self._programmatic():
            self.stack_view.options = options
            self.stack_view.value = selected if options else None

    def _close_widgets(self) -> None:
        """Close every widget of the panel, depth first."""
        _close_tree(self.children)


def _close_tree(children: Any) -> None:
    """Close widgets and, depth first, the widgets inside boxes."""
    for child in children:
        _close_tree(getattr(child, "children", ()))
        child.close()
