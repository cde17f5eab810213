"""The DebugPanel's group view in a real IPython kernel (client/panel/views/group.py).

Two real targets paused by ``bridge.set_trace()``; the kernel makes a group of them and
``DebugPanel(group=g)``; the widget-frontend emulator (tests/widget_frontend.py) reads
the member list and picks a member, and the rest of the panel follows that member.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("ipykernel")
pytest.importorskip("anywidget")
pytest.importorskip("jupyter_client")

from widget_frontend import WidgetFrontend  # noqa: E402

pytestmark = pytest.mark.kernel

TARGET = """
import sys, bridge

def work(tag):
    label = f"member-{tag}"
    bridge.set_trace()
    print("done", label, flush=True)

work(sys.argv[1])
"""


def test_the_group_view_lists_members_and_picking_one_drives_the_panel(target: Any, frontend: WidgetFrontend) -> None:
    fe = frontend
    a = target(TARGET, "a", name="member_a.py")
    b = target(TARGET, "b", name="member_b.py")
    a.wait_paused_in_file()
    b.wait_paused_in_file()
    cell = (f"from client import DebugPanel, attach_all\n"
            f"g = attach_all(pids=[{a.pid}, {b.pid}])\n"
            f"g.wait(2, timeout=30)\n"
            f"panel = DebugPanel(group=g)\n"
            f"panel")
    reply, _ = fe.execute(cell)
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: "2 members: 2 paused" in fe.text("fb-group-head"), "the group's summary")
    labels = fe.state("fb-group-list")["_options_labels"]
    assert len(labels) == 2 and all(re.search(r":\d+  paused  work \(member_[ab]\.py:6\)", row) for row in labels), labels
    pids = [int(re.search(r":(\d+)  ", row).group(1)) for row in labels]
    assert sorted(pids) == sorted([a.pid, b.pid])

    # The panel shows the first member; picking the other makes every view follow it.
    fe.wait_for(lambda: "member-" in fe.text("fb-vars"), "the first member's variables")
    shown = a if "member-a" in fe.text("fb-vars") else b
    other = b if shown is a else a
    index = pids.index(other.pid)
    fe.pick("fb-group-list", index)
    tag = "b" if other is b else "a"
    fe.wait_for(lambda: f"member-{tag}" in fe.text("fb-vars"), "the picked member's variables")
    fe.wait_for(lambda: str(other.pid) in fe.text("fb-state"), "the picked member's pause state")
    assert fe.state("fb-group-list")["index"] == index

    # Its controls act on it: continue it, and the list says it is no longer paused.
    fe.click("fb-cont")
    other.wait_output(f"done member-{tag}")
    fe.wait_for(lambda: re.search(r"2 members: 1 paused, 1 (running|lost)", fe.text("fb-group-head")),
                "the continued member's new state")
    assert "paused" not in fe.state("fb-group-list")["_options_labels"][index]
    assert "done" not in shown.output()  # the member not picked is still paused
