"""A widget frontend emulator for kernel-level panel tests (no browser).

``WidgetFrontend`` speaks the comm messages JupyterLab speaks: it tracks widget models,
types into Text widgets, picks Select rows, clicks buttons and sends the custom messages
the panel's own (anywidget) widgets send, and finds widgets by the CSS classes the panel
gives them (as the browser test does). The ``frontend`` fixture (conftest.py) is a real
kernel and a frontend on it.
"""

from __future__ import annotations

import html
import queue
import re
import time
from typing import Any, Callable, Dict, List, Tuple


TIMEOUT = 30.0


class WidgetFrontend:
    """Stands in for the browser's widget manager, over a BlockingKernelClient.

    Keeps every ``jupyter.widget`` model the kernel opens and applies its state updates,
    noting the wall-clock time each update arrived (``history``), so tests can time how
    fast the kernel pushed a change.
    """

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.models: Dict[str, Dict[str, Any]] = {}
        self.history: List[Tuple[float, str, Dict[str, Any]]] = []  # (time.time(), comm_id, state delta)
        self.idle: Dict[str, float] = {}
        self.outputs: Dict[str, List[Dict[str, Any]]] = {}

    def pump(self, timeout: float) -> bool:
        """Handle at most one iopub message; False if none came within ``timeout``."""
        try:
            msg = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return False
        now = time.time()
        kind, content = msg["msg_type"], msg["content"]
        parent = msg.get("parent_header", {}).get("msg_id", "")
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = dict(content["data"].get("state", {}))
            self.models[content["comm_id"]] = state
            self.history.append((now, content["comm_id"], state))
        elif kind == "comm_msg" and content["comm_id"] in self.models:
            data = content["data"]
            if data.get("method") in ("update", "echo_update"):
                self.models[content["comm_id"]].update(data.get("state", {}))
                self.history.append((now, content["comm_id"], dict(data.get("state", {}))))
        elif kind == "comm_close":
            self.models.pop(content["comm_id"], None)
        elif kind == "status" and content.get("execution_state") == "idle":
            self.idle[parent] = now
        elif kind in ("stream", "error", "execute_result", "display_data"):
            self.outputs.setdefault(parent, []).append(dict(content, output_type=kind))
        return True

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        """Pump messages until ``predicate()`` is truthy; its value, or TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            self.pump(min(left, 0.1))

    def find(self, css: str) -> str:
        """comm id of the widget with CSS class ``css``."""
        hits = [cid for cid, s in self.models.items() if css in s.get("_dom_classes", [])]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} widgets with class {css!r}")
        return hits[0]

    def state(self, css: str) -> Dict[str, Any]:
        return self.models[self.find(css)]

    def text(self, css: str) -> str:
        """Visible text of a widget: an HTML/Label widget's value (tags stripped, entities
        decoded), a table's rows, a log's lines, a source view's title and current line."""
        state = self.state(css)
        if "value" in state:
            value = re.sub(r"</(pre|div|p|tr|li|summary)>|<br>", "\n", str(state["value"]))
            return html.unescape(re.sub(r"<[^>]+>", "", value)).strip()
        if "rows" in state:  # the panel's TableWidget
            return "\n".join("  ".join(str(c) for c in row) for row in state["rows"]) or state.get("empty", "")
        if "lines" in state and "current" in state:  # the SourceWidget
            return f"{state.get('title', '')} @{state.get('current')}"
        if "lines" in state:  # the LogWidget
            return "\n".join(str(text) for _, text in state["lines"])
        raise KeyError(f"{css} has no text")

    def event(self, css: str, **content: Any) -> str:
        """Send a custom message, as the panel's own widgets do (a row click, a key)."""
        return self.send(css, {"method": "custom", "content": content})

    def send(self, css: str, data: Dict[str, Any]) -> str:
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.find(css), "data": data})
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def type(self, css: str, value: str) -> None:
        """Type into a Text widget and wait until the kernel has handled it (pitfall #4)."""
        msg_id = self.send(css, {"method": "update", "state": {"value": value}, "buffer_paths": []})
        self.wait_for(lambda: msg_id in self.idle, f"kernel to take {value!r}")

    def pick(self, css: str, index: int) -> None:
        """Pick row ``index`` of a Select (the browser sends ``index``, not ``value``)."""
        msg_id = self.send(css, {"method": "update", "state": {"index": index}, "buffer_paths": []})
        self.wait_for(lambda: msg_id in self.idle, f"kernel to take index {index}")

    def click(self, css: str) -> float:
        """Click a button; returns the wall time the click was sent."""
        assert not self.state(css).get("disabled"), f"{css} is disabled"
        sent = time.time()
        self.send(css, {"method": "custom", "content": {"event": "click"}})
        return sent

    def execute(self, code: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
        """Run a cell; (execute_reply content, its outputs)."""
        msg_id = self.kc.execute(code)
        self.wait_for(lambda: msg_id in self.idle, f"cell {code[:40]!r}")
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        return reply["content"], self.outputs.pop(msg_id, [])
