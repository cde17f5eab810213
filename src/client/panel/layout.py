"""The DebugPanel's frame and how its views are laid out (client/panel/core.py acts on them).

The frame is what every panel has: process picker, state line, the control buttons, the
debugger keys and the message line. Views (views/) are laid out in two ways: *wide* (in
a notebook cell: left and right columns, then a bottom row) and *compact* (JupyterLab's
right sidebar: one column, smaller boxes). Every part has a CSS class ``fb-<name>``: the
handle tests and users' own CSS use to find it. Nothing here talks to the target.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import ipywidgets as widgets

from .view import REGIONS, PanelView, Programmatic
from .widgets import KeysWidget

CSS = """<style>
.fb-panel {border:1px solid var(--jp-border-color2,#ddd); border-radius:4px; padding:6px 8px; gap:3px;
  background:var(--jp-layout-color0,#fff); color:var(--jp-ui-font-color1,#222);}
.fb-panel:focus {outline:none;}
.fb-panel.fb-armed {box-shadow:0 0 0 2px var(--jp-brand-color2,#90caf9);}
.fb-panel .widget-button {width:auto; padding:0 8px;}
.fb-panel .widget-html, .fb-panel .widget-html-content {line-height:1.4;}
.fb-toolbar {flex-wrap:wrap; align-items:center; gap:2px;}
.fb-keys-hint {font-size:11px; color:var(--jp-ui-font-color2,#777); margin-left:auto; white-space:nowrap;}
.fb-keys-hint kbd {font-family:var(--jp-code-font-family,monospace); font-size:10px; padding:0 3px;
  border:1px solid var(--jp-border-color1,#bbb); border-radius:3px; background:var(--jp-layout-color1,#fafafa);}
.fb-heading {font-weight:600; font-size:11px; text-transform:uppercase; letter-spacing:.05em;
  color:var(--jp-ui-font-color2,#666); margin:6px 0 2px;}
.fb-column {min-width:0; gap:2px;}
.fb-state {font-family:var(--jp-code-font-family,monospace); font-size:12px;}
.fb-state .fb-paused {color:#a15c00; font-weight:bold;}
.fb-state .fb-running {color:#17733a; font-weight:bold;}
.fb-state .fb-gone {color:#b00020; font-weight:bold;}
.fb-message {font-size:12px; color:var(--jp-ui-font-color2,#555); min-height:1.3em;}
.fb-message .fb-err {color:var(--jp-error-color1,#b00020);}
.fb-src {border:1px solid var(--jp-border-color2,#ddd); border-radius:3px;
  background:var(--jp-cell-editor-background,#f7f7f7);}
.fb-src-head {display:flex; justify-content:space-between; gap:8px; padding:2px 6px; font-size:11px;
  border-bottom:1px solid var(--jp-border-color2,#ddd); color:var(--jp-ui-font-color2,#777);}
.fb-src-title {font-family:var(--jp-code-font-family,monospace); color:var(--jp-ui-font-color1,#222);
  white-space:nowrap; flex:0 0 auto;}
.fb-src-hint {white-space:nowrap; overflow:hidden; text-overflow:ellipsis; min-width:0;}
.fb-src-note {padding:4px 8px; font-size:12px; color:var(--jp-ui-font-color2,#777);}
.fb-src-body {position:relative; max-height:320px; overflow:auto;}
.fb-compact .fb-src-body {max-height:220px;}
.fb-src-table {border-collapse:collapse; width:100%; font-family:var(--jp-code-font-family,monospace);
  font-size:var(--jp-code-font-size,12px); line-height:1.5;}
.fb-src-table td {padding:0; vertical-align:top;}
.fb-gutter {width:1%; text-align:right; padding:0 8px 0 16px !important; color:var(--jp-ui-font-color3,#999);
  cursor:pointer; user-select:none; position:relative; white-space:nowrap;}
.fb-gutter:hover {color:var(--jp-ui-font-color0,#000); background:var(--jp-layout-color3,#e0e0e0);}
tr.fb-bp > .fb-gutter::before {content:""; position:absolute; left:4px; top:50%; width:8px; height:8px;
  margin-top:-4px; border-radius:50%; background:#e51400;}
tr.fb-bp-cond > .fb-gutter::before {background:#e8a317;}
.fb-code {white-space:pre; padding-left:8px !important; color:var(--jp-content-font-color1,#222);}
tr.fb-cur {background:var(--jp-warn-color3,#fff3cd);}
tr.fb-cur > .fb-gutter {color:var(--jp-ui-font-color0,#000); font-weight:bold;}
tr.fb-cur > .fb-code {box-shadow:inset 3px 0 0 var(--jp-warn-color1,#f0ad4e);}
.fb-k {color:var(--jp-mirror-editor-keyword-color,#008000); font-weight:bold;}
.fb-s {color:var(--jp-mirror-editor-string-color,#ba2121);}
.fb-c {color:var(--jp-mirror-editor-comment-color,#408080); font-style:italic;}
.fb-n {color:var(--jp-mirror-editor-number-color,#080);}
.fb-b {color:var(--jp-mirror-editor-builtin-color,#008000);}
.fb-f {color:var(--jp-mirror-editor-def-color,#00f);}
.fb-o {color:var(--jp-mirror-editor-operator-color,#aa22ff);}
.fb-d {color:var(--jp-mirror-editor-meta-color,#aa22ff);}
.fb-cond-row td {padding:3px 8px !important; background:var(--jp-layout-color2,#eee);}
.fb-cond-row input {width:60%; font-family:var(--jp-code-font-family,monospace); font-size:12px;}
.fb-table-body {max-height:240px; overflow:auto; border:1px solid var(--jp-border-color2,#ddd); border-radius:3px;}
.fb-compact .fb-table-body {max-height:170px;}
.fb-table table {border-collapse:collapse; width:100%; font-family:var(--jp-code-font-family,monospace); font-size:12px;}
.fb-table th {position:sticky; top:0; background:var(--jp-layout-color2,#eee); text-align:left; font-weight:600;
  padding:2px 8px; border-bottom:1px solid var(--jp-border-color2,#ddd);}
.fb-table td {padding:1px 8px; border-bottom:1px solid var(--jp-border-color3,#eee); white-space:nowrap;
  max-width:24em; overflow:hidden; text-overflow:ellipsis;}
.fb-table td:first-child {font-weight:600;}
.fb-table tr[data-key] {cursor:pointer;}
.fb-table tr[data-key]:hover {background:var(--jp-layout-color2,#f0f0f0);}
.fb-table tr.fb-selected, .fb-table tr.fb-selected:hover {background:var(--jp-brand-color3,#bbdefb);}
.fb-table-empty {font-style:italic; color:var(--jp-ui-font-color2,#777); padding:2px;}
.fb-insp {font-size:12px;}
.fb-insp-head {margin:2px 0 4px;}
.fb-insp-name {font-weight:bold; font-size:13px;}
.fb-insp-type {color:var(--jp-ui-font-color2,#666); margin-left:4px;}
.fb-badge {font-size:10px; padding:1px 6px; border-radius:8px; margin-left:6px;}
.fb-badge.fb-live {background:#fde2c5; color:#8a4b00;}
.fb-badge.fb-full {background:#d6f0dc; color:#17602e;}
.fb-df-box {max-height:240px; overflow:auto; border:1px solid var(--jp-border-color2,#ddd); border-radius:3px;}
.fb-df {border-collapse:collapse; font-size:12px; font-family:var(--jp-code-font-family,monospace);}
.fb-df th, .fb-df td {padding:1px 8px; border:none; border-bottom:1px solid var(--jp-border-color3,#eee);
  text-align:right; white-space:nowrap;}
.fb-df thead th {position:sticky; top:0; background:var(--jp-layout-color2,#eee);}
.fb-df tbody tr:nth-child(odd) {background:var(--jp-layout-color1,#fafafa);}
.fb-dtypes table {font-family:var(--jp-code-font-family,monospace); font-size:11px;}
.fb-dtypes td {padding:0 8px 0 0;}
.fb-stats {display:flex; flex-wrap:wrap; gap:2px 14px; font-family:var(--jp-code-font-family,monospace); margin:2px 0 4px;}
.fb-stat b {color:var(--jp-ui-font-color2,#666); font-weight:normal;}
.fb-plot-box {margin:2px 0;}
.fb-plot .fb-line {fill:none; stroke:var(--jp-brand-color1,#1976d2); stroke-width:1.3;}
.fb-plot .fb-grid {stroke:var(--jp-border-color2,#e0e0e0); stroke-width:1;}
.fb-plot .fb-axis text {font-size:10px; fill:var(--jp-ui-font-color2,#666); font-family:var(--jp-ui-font-family,sans-serif);}
.fb-tree, .fb-tree ul {list-style:none; margin:0; padding-left:16px; font-family:var(--jp-code-font-family,monospace);}
.fb-tree {padding-left:0;}
.fb-tree summary {cursor:pointer;}
.fb-key {color:var(--jp-mirror-editor-variable-2-color,#05a);}
.fb-type {color:var(--jp-ui-font-color3,#999); font-size:11px;}
.fb-len, .fb-dim, .fb-more {color:var(--jp-ui-font-color2,#777);}
.fb-insp-caption, .fb-insp-note {color:var(--jp-ui-font-color2,#777); font-size:11px; margin:2px 0;}
.fb-insp-note.fb-err {color:var(--jp-error-color1,#b00020);}
.fb-image {max-width:100%; max-height:280px; border:1px solid var(--jp-border-color2,#ddd);}
.fb-insp-text, .fb-insp-repr {max-height:220px; overflow:auto; margin:0; white-space:pre-wrap; font-size:12px;}
.fb-log-note {font-size:11px; color:var(--jp-ui-font-color2,#777);}
.fb-log-body {max-height:200px; min-height:3em; overflow:auto; margin:0; padding:3px 6px;
  font-family:var(--jp-code-font-family,monospace); font-size:12px; background:var(--jp-layout-color1,#fafafa);
  border:1px solid var(--jp-border-color2,#ddd); border-radius:3px;}
.fb-compact .fb-log-body {max-height:140px;}
.fb-log-line {white-space:pre-wrap;}
.fb-log .fb-stderr {color:var(--jp-error-color1,#c62828);}
.fb-console-log pre {margin:0; padding:0 4px; font-size:12px; white-space:pre-wrap;}
.fb-console-log .fb-in {color:var(--jp-ui-font-color2,#555);} .fb-console-log .fb-err {color:#b00020;}
.fb-console-log .fb-ok {color:#888; font-style:italic;}
.fb-keys-widget {display:none;}
.fb-load-all {align-self:flex-start;}
.fb-compact .fb-process .widget-label {display:none;}
.fb-compact .fb-process {flex:1 1 auto !important; min-width:0;}
.fb-compact .fb-src-hint {display:none;}
</style>"""

#: Button key -> (label, icon, tooltip). Keys double as the CSS class ``fb-<key>``.
BUTTONS: Dict[str, Tuple[str, str, str]] = {
    "cont": ("continue", "play", "Resume every paused thread (F5)"),
    "step": ("step", "arrow-down", "Step into: stop at the next line, entering calls (F11)"),
    "next": ("next", "arrow-right", "Step over: stop at the next line of this frame (F10)"),
    "step-out": ("step out", "arrow-up", "Run until the selected frame returns (Shift+F11)"),
    "pause": ("pause", "pause", "Pause the running target at its next line"),
    "mount": ("mount", "download", "Copy the selected frame's variables into the notebook namespace"),
    "write-back": ("write back", "upload", "Write the mounted variables you changed back to the frame"),
    "discard": ("discard", "times", "Unmount without writing anything back"),
}
KEYS_HINT = ("<span class='fb-keys-hint' title='Click the panel first: the keys act while it has focus'>"
             "<kbd>F5</kbd> continue <kbd>F10</kbd> next <kbd>F11</kbd> step <kbd>⇧F11</kbd> out</span>")


class PanelLayout(widgets.VBox):
    """The panel's frame and its views, laid out; :class:`client.panel.core.DebugPanel` adds
    what they do."""

    def _build_frame(self) -> None:
        """Create the frame's widgets (DebugPanel calls it once, before the views)."""

        def small() -> widgets.Layout:  # a button as wide as its label, never squeezed
            return widgets.Layout(width="auto", flex="0 0 auto")

        self.programmatic = Programmatic()
        self.process_picker = widgets.Dropdown(options=[("(no process)", None)], value=None,
                                               description="process",
                                               layout=widgets.Layout(width="auto", flex="0 1 380px"))
        self.refresh_button = widgets.Button(description="refresh", icon="refresh", layout=small(),
                                             tooltip="Re-read the list of attachable processes and this frame")
        self.pause_state = widgets.HTML(value="<span class='fb-gone'>not attached</span>")
        self.buttons = {key: widgets.Button(description=label, icon=icon, tooltip=tip, layout=small(), disabled=True)
                        for key, (label, icon, tip) in BUTTONS.items()}
        self.key_widget = KeysWidget()
        self.message = widgets.HTML(value="")
        self._style = widgets.HTML(CSS, layout=widgets.Layout(display="none"))
        for widget, css in [
            (self, "fb-panel"), (self.process_picker, "fb-process"), (self.refresh_button, "fb-refresh"),
            (self.pause_state, "fb-state"), (self.message, "fb-message"), (self.key_widget, "fb-keys"),
        ] + [(b, f"fb-{key}") for key, b in self.buttons.items()]:
            widget.add_class(css)

    def _arrange(self, views: Sequence[PanelView], built: Dict[str, widgets.Widget], compact: bool) -> None:
        """Lay out the frame and the views' widgets (``built``: view name -> its widget)."""
        for old in getattr(self, "_containers", []):  # the boxes of a previous arrangement
            old.close()
        made: List[widgets.Widget] = []
        sections: Dict[str, List[widgets.Widget]] = {region: [] for region in REGIONS}
        for view in views:
            box = widgets.VBox([widgets.HTML(f"<div class='fb-heading'>{view.title}</div>"), built[view.name]],
                               layout=widgets.Layout(width="auto", min_width="0"))
            box.add_class("fb-view")
            box.add_class(f"fb-view-{view.name}")
            made += [box, box.children[0]]
            sections[view.region if view.region in sections else "right"].append(box)
        for key, button in self.buttons.items():  # compact: icons only (the tooltip says what)
            button.description = "" if compact else BUTTONS[key][0]
        self.refresh_button.description = "" if compact else "refresh"
        controls = widgets.HBox([self.buttons[k] for k in ("cont", "step", "next", "step-out", "pause")]
                                + [widgets.HTML("&nbsp;|&nbsp;")]
                                + [self.buttons[k] for k in ("mount", "write-back", "discard")]
                                + ([] if compact else [widgets.HTML(KEYS_HINT, layout=widgets.Layout(margin="0 0 0 auto"))]))
        controls.add_class("fb-toolbar")
        made += [controls] + [c for c in controls.children if c not in self.buttons.values()]
        picker_row = widgets.HBox([self.process_picker, self.refresh_button])
        made.append(picker_row)
        head = [self._style, self.key_widget, picker_row, self.pause_state, controls]
        if compact:
            body: List[widgets.Widget] = [box for region in REGIONS for box in sections[region]]
            self.add_class("fb-compact")
        else:
            def column(boxes: List[widgets.Widget], flex: str) -> widgets.VBox:
                col = widgets.VBox(boxes, layout=widgets.Layout(flex=flex, min_width="0", margin="0 6px 0 0"))
                col.add_class("fb-column")
                made.append(col)
                return col

            body = [widgets.HBox([column(sections["left"], "1 1 50%"), column(sections["right"], "1 1 50%")])]
            if sections["bottom"]:
                body.append(widgets.HBox([column([box], "1 1 0") for box in sections["bottom"]]))
            made += body
            self.remove_class("fb-compact")
        self._containers = made
        self.children = head + body + [self.message]

    def _close_widgets(self) -> None:
        """Close every widget of the panel, depth first."""
        _close_tree(self.children)


def _close_tree(children: Any) -> None:
    """Close widgets and, depth first, the widgets inside boxes."""
    for child in children:
        _close_tree(getattr(child, "children", ()))
        child.close()
