"""The DebugPanel's patch view in a real IPython kernel, against a real target: it loads the
paused function's source, applies an edit as a patch, shows what it replaced, and unpatches.
Driven by the widget-frontend emulator (tests/widget_frontend.py)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")
pytest.importorskip("jupyter_client")

from widget_frontend import WidgetFrontend  # noqa: E402

pytestmark = pytest.mark.kernel

TARGET = """
import bridge

def helper(x):
    bridge.set_trace()  # @pause
    return x * 2

for i in range(3):
    print("value", helper(i), flush=True)
print("end", flush=True)
"""

ORIGINAL = "def helper(x):\n    bridge.set_trace()  # @pause\n    return x * 2\n"
EDITED = "def helper(x):\n    bridge.set_trace()\n    return x * 100\n"


def test_patch_view_edits_applies_and_unpatches(target: Any, frontend: WidgetFrontend) -> None:
    fe = frontend
    t = target(TARGET)
    t.wait_paused_in_file()
    reply, _ = fe.execute("from client import DebugPanel\npanel = DebugPanel()\npanel")
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: fe.state("fb-patch-editor")["value"] == ORIGINAL and "helper" in fe.text("fb-patch-heading")
                and not fe.state("fb-patch-apply")["disabled"], "the paused function in the patch view")

    fe.type("fb-patch-editor", EDITED)
    fe.click("fb-patch-apply")
    fe.wait_for(lambda: "patched helper; still running the old code: 1 frame(s)" in fe.text("fb-message"),
                "the patch applied, the paused frame named")
    fe.click("fb-cont")  # helper(0) finishes with the old code; helper(1) pauses in the new one
    fe.wait_for(lambda: "value 0" in t.output() and "-helper.py" in fe.text("fb-patch-heading"),
                "the pause in the patched code (its own file)")
    assert fe.state("fb-patch-editor")["value"] == EDITED  # what was applied from here stays shown
    assert "patched from here" in fe.text("fb-patch-heading")

    fe.click("fb-patch-unpatch")
    fe.wait_for(lambda: "restored the original code of helper" in fe.text("fb-message"), "the unpatch")
    fe.click("fb-cont")  # helper(1) ends with the new code, helper(2) runs the original again
    fe.wait_for(lambda: "value 100" in t.output(), "the patched helper's value")
    fe.wait_for(lambda: fe.state("fb-patch-editor")["value"] == ORIGINAL, "the original source back in the view")
    fe.click("fb-cont")
    t.wait_output("end")
    assert "value 4" in t.output()
