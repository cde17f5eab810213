"""The DebugPanel's views in a real IPython kernel: the source view and its gutter, the
debugger keys, the job's output, the inspector's renderings, and errors shown in place.

Driven by the widget-frontend emulator (tests/widget_frontend.py) against real targets;
the browser test (tests/test_panel_browser.py) checks the same parts as a user sees them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import line_of

pytest.importorskip("ipywidgets")
pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")
pytest.importorskip("jupyter_client")

from widget_frontend import WidgetFrontend  # noqa: E402

pytestmark = pytest.mark.kernel

PANEL_CELL = "from client import DebugPanel\npanel = DebugPanel()\npanel"

STEP_TARGET = """
import bridge, sys, threading

stop = threading.Event()

def ticker():
    n = 0
    while not stop.is_set():
        print(f"tick {n}", flush=True)
        print(f"warn {n}", file=sys.stderr, flush=True)
        n += 1
        stop.wait(0.05)

def step_me(k):
    a = k + 1  # @a
    b = a * 2  # @b
    return b  # @ret

threading.Thread(target=ticker, daemon=True).start()
bridge.set_trace()  # @start
for k in range(5):
    x = step_me(k)  # @call
    print(f"after {k} {x}", flush=True)
stop.set()
print("end", flush=True)
"""


def _current(fe: WidgetFrontend) -> int:
    return fe.state("fb-source")["current"]


def test_source_gutter_breakpoints_keys_and_job_output(target: Any, frontend: WidgetFrontend) -> None:
    fe = frontend
    t = target(STEP_TARGET)
    t.wait_paused_in_file()
    line = {name: line_of(STEP_TARGET, name) for name in ("a", "b", "ret", "start", "call")}
    reply, _ = fe.execute(PANEL_CELL)
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: _current(fe) == line["start"], "the source view at the first pause")

    # The job's output: the ticker prints while the main thread is paused, both streams.
    fe.wait_for(lambda: re.search(r"tick [3-9]", fe.text("fb-output")), "the ticker's lines in the output view")
    lines = fe.state("fb-output")["lines"]
    n = int(re.search(r"tick (\d+)", fe.text("fb-output")).group(1))  # lines from before bridge started are not kept
    assert [1, f"tick {n}"] in lines and [2, f"warn {n}"] in lines, lines[:6]
    before = len(lines)
    fe.wait_for(lambda: len(fe.state("fb-output")["lines"]) > before + 4, "the output view following the job")

    # Click a line number: a breakpoint there, in the gutter and in the list.
    fe.event("fb-source", event="toggle", line=line["a"])
    fe.wait_for(lambda: {"line": line["a"], "condition": ""} in fe.state("fb-source")["breakpoints"],
                "the breakpoint in the gutter")
    fe.wait_for(lambda: any(f"target.py:{line['a']}" in o for o in fe.state("fb-bp-list")["_options_labels"]),
                "the breakpoint in the list")
    # The condition form: a conditional breakpoint on another line.
    fe.event("fb-source", event="condition", line=line["b"], condition="k == 3")
    fe.wait_for(lambda: {"line": line["b"], "condition": "k == 3"} in fe.state("fb-source")["breakpoints"],
                "the conditional breakpoint in the gutter")

    # F5 continues into the breakpoint; F10 steps over, F11 steps in, Shift+F11 steps out.
    fe.event("fb-keys", event="key", key="F5", shift=False)
    fe.wait_for(lambda: _current(fe) == line["a"] and "step_me()" in fe.state("fb-source")["title"],
                "the pause at the gutter's breakpoint")
    assert "breakpoint" in fe.text("fb-state")
    fe.event("fb-keys", event="key", key="F10", shift=False)
    fe.wait_for(lambda: _current(fe) == line["b"], "F10 (next) to the next line")
    fe.event("fb-keys", event="key", key="F11", shift=False)
    fe.wait_for(lambda: _current(fe) == line["ret"], "F11 (step)")
    fe.event("fb-keys", event="key", key="F11", shift=True)
    fe.wait_for(lambda: "<module>()" in fe.state("fb-source")["title"], "Shift+F11 (step out) to the caller")

    # Clicking the plain breakpoint's number clears it; the conditional one stops at k == 3.
    fe.event("fb-source", event="toggle", line=line["a"])
    fe.wait_for(lambda: all(bp["line"] != line["a"] for bp in fe.state("fb-source")["breakpoints"]),
                "the breakpoint cleared from the gutter")
    fe.event("fb-keys", event="key", key="F5", shift=False)
    fe.wait_for(lambda: _current(fe) == line["b"] and "step_me()" in fe.state("fb-source")["title"],
                "the pause at the conditional breakpoint")
    fe.wait_for(lambda: re.search(r"^k\s+int.*\s3$", fe.text("fb-vars"), re.M) and
                re.search(r"^a\s+int.*\s4$", fe.text("fb-vars"), re.M), "k == 3 and a == 4 in the variables")
    assert "after 2 6" in t.output() and "after 3" not in t.output()
    fe.event("fb-source", event="toggle", line=line["b"])
    fe.wait_for(lambda: not fe.state("fb-source")["breakpoints"], "the gutter empty")
    fe.event("fb-keys", event="key", key="F5", shift=False)
    t.wait_output("end")
    assert t.wait_exit() == 0
    # Keys do nothing (and say why) when nothing is paused.
    fe.event("fb-keys", event="key", key="F10", shift=False)
    fe.wait_for(lambda: "needs a paused thread" in fe.text("fb-message"), "F10 refused while running")


VALUES_TARGET = """
import bridge, base64
import numpy as np
import pandas as pd

class Settings:
    def __init__(self):
        self.lr = 0.01
        self.layers = [64, 32]

class Picture:
    def _repr_png_(self):  # a 1x1 PNG, as IPython's display protocol asks
        return base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

def work():
    df = pd.DataFrame({"n": np.arange(1000), "x": np.linspace(0.0, 1.0, 1000), "name": ["row"] * 1000})
    s = df["x"]
    grid = np.outer(np.arange(300.0), np.ones(500))
    waves = np.sin(np.linspace(0, 50, 100_000))
    holes = np.array([1.0, np.nan, 3.0, np.inf])
    config = {"model": {"layers": [64, 32, {"deep": [1, 2]}], "lr": 1e-3}, "name": "run-7"}
    many = list(range(1000))
    settings = Settings()
    log = open(__file__)
    picture = Picture()
    text = "lorem ipsum " * 5000
    bridge.set_trace()
    log.close()

work()
"""


def test_inspector_renders_values_the_way_jupyter_does(target: Any, frontend: WidgetFrontend) -> None:
    fe = frontend
    t = target(VALUES_TARGET)
    t.wait_paused_in_file()
    reply, _ = fe.execute(PANEL_CELL)
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: "picture" in fe.text("fb-vars"), "the variables")

    def show(name: str, *expected: str) -> str:
        fe.event("fb-vars", event="select", key=name)
        fe.wait_for(lambda: f">{name}</code>" in fe.state("fb-inspector")["value"]
                    and all(e in fe.state("fb-inspector")["value"] for e in expected), f"the inspector on {name}")
        return fe.state("fb-inspector")["value"]

    html = show("df", "class=\"dataframe fb-df\"", "50 of 1,000 rows")
    assert "1,000 × 3" in html and "dtypes (3)" in html and "<td>float64</td>" in html
    show("s", "fb-df", "Series")
    html = show("grid", "aria-label='image plot'", "every 2th row")
    assert "data:image/png;base64," in html and "300 × 500" in html
    html = show("waves", "aria-label='line plot'", "min and max of every 100 values")
    assert "<b>mean</b>" in html
    html = show("holes", "<b>nan</b> 1", "<b>inf</b> 1")
    assert "<b>max</b> 3<" in html  # of the finite values
    html = show("config", "fb-tree", "run-7")
    assert "&#x27;model&#x27;" in html and "deep" in html
    show("many", "950 more")
    html = show("settings", "fb-live", ".lr", "0.01")
    show("log", "fb-live", "live reference")
    show("picture", "<img class='fb-image' src='data:image/png;base64,iVBOR")
    show("text", "first 20,000 of 60,000 characters")

    # load all: the whole DataFrame arrives, shown in full and kept in the kernel.
    show("df", "50 of 1,000 rows")
    fe.click("fb-load-all")
    fe.wait_for(lambda: "loaded in full" in fe.state("fb-inspector")["value"], "the DataFrame loaded in full")
    assert "all 1,000 rows" in fe.state("fb-inspector")["value"]
    reply, outs = fe.execute("v = panel.view('inspector').value; print(type(v).__name__, v.shape)")
    assert "DataFrame (1000, 3)" in "".join(o.get("text", "") for o in outs), outs

    # An expression that raises: one line, in the inspector and in the message area.
    fe.execute("panel.inspect('len(df) / 0')")
    fe.wait_for(lambda: "ZeroDivisionError" in fe.text("fb-inspector"), "the error in the inspector")
    fe.wait_for(lambda: "ZeroDivisionError: division by zero" in fe.text("fb-message"), "the error line")
    assert "\n" not in fe.text("fb-message")
    fe.click("fb-cont")
    assert t.wait_exit() == 0


ERRORS_TARGET = """
import bridge

def work():
    total = 1
    bridge.set_trace()
    print("resumed", flush=True)

work()
"""


def test_failed_actions_show_one_line_and_leave_the_panel_usable(target: Any, frontend: WidgetFrontend) -> None:
    fe = frontend
    t = target(ERRORS_TARGET)
    t.wait_paused_in_file()
    reply, _ = fe.execute(PANEL_CELL)
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: "total" in fe.text("fb-vars"), "the variables")

    # A timeout: the console keeps the input and says what happened; the panel goes on.
    fe.execute("panel.session.timeout = 1.0")
    fe.type("fb-console-input", "__import__('time').sleep(2.5)")
    fe.click("fb-console-run")
    fe.wait_for(lambda: "RequestTimeout" in fe.text("fb-console-log"), "the timeout in the console")
    assert fe.state("fb-console-input")["value"] == "__import__('time').sleep(2.5)"
    fe.execute("panel.session.timeout = 30.0")
    fe.type("fb-console-input", "total + 41")
    fe.click("fb-console-run")
    fe.wait_for(lambda: ">>> total + 41\n42" in fe.text("fb-console-log"), "the console working again")

    # A remote error from an action: one line in the message area.
    fe.type("fb-bp-input", "no_such_file.py:3")
    fe.click("fb-bp-add")
    fe.wait_for(lambda: "breakpoint:" in fe.text("fb-message") and "no such file" in fe.text("fb-message"),
                "the refused breakpoint")
    assert "\n" not in fe.text("fb-message")

    # The target gone: the state says so, an action says so in one line, nothing hangs.
    t.kill()
    fe.wait_for(lambda: "lost" in fe.text("fb-state"), "the lost target")
    assert fe.state("fb-cont")["disabled"] and fe.state("fb-next")["disabled"]
    fe.type("fb-bp-input", "target.py:5")
    fe.click("fb-bp-add")
    fe.wait_for(lambda: "breakpoint: the target is gone" in fe.text("fb-message"), "the action on a gone target")
    assert "\n" not in fe.text("fb-message")
    fe.click("fb-refresh")
    fe.wait_for(lambda: "(pick a process)" in fe.state("fb-process")["_options_labels"][0], "refresh still works")
    reply, outs = fe.execute("panel.close(); print('closed')")
    assert reply["status"] == "ok" and "closed" in "".join(o.get("text", "") for o in outs)
