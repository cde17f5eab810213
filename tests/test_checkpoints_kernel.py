"""Checkpoints from a notebook: %checkpoint, %rewind, %checkpoints, %drop in a REAL kernel,
and the DebugPanel's checkpoints view driven as a frontend drives it, against real jobs."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Iterator

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checkpoints need Linux")]

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from kernel_driver import Kernel, error_text, result, stream  # noqa: E402
from process_groups import assert_nothing_left  # noqa: E402


@pytest.fixture
def k(tmp_path: Any, bridge_dirs: Dict[str, Any]) -> Iterator[Kernel]:
    kernel = Kernel(str(tmp_path))
    try:
        kernel.ok("%load_ext client")
        yield kernel
    finally:
        kernel.run("import client as _c\n_s = _c.set_current_session(None)\n_s is not None and _s.close()")
        kernel.shutdown()


def test_checkpoint_and_rewind_magics_in_a_real_kernel(k: Kernel, target: Any) -> None:
    t = target.script("rewindable", "1")
    t.wait_attachable()
    k.ok(f"%attach {t.pid} --wait 20")
    out = stream(k.ok("%checkpoint"))
    assert f"checkpoint #1 at rewindable.py:{t.line('start')} in <module>" in out, out

    k.ok("_s = __import__('client').current_session(); _s.cont(); _s.wait(20)")
    assert stream(k.ok("%%remote\nprint(total, items)")).strip() == "15 [0]"
    assert "#1 rewindable.py" in result(k.ok("%checkpoints"))

    out = stream(k.ok("%rewind"))  # the newest checkpoint
    assert "rewound to checkpoint #1" in out and "rewind 1 to it" in out, out
    assert stream(k.ok("%%remote\nprint(total, items)")).strip() == "10 []"
    k.ok("%%remote\ntotal = 1000")
    out = stream(k.ok("%rewind 1"))  # again, by id: the change above is undone too
    assert "rewind 2 to it" in out, out
    assert stream(k.ok("%%remote\nprint(total)")).strip() == "10"
    k.ok("%%remote\ntotal = 1000")

    reply, outputs = k.run("%rewind 7")
    assert reply["status"] == "error" and "CheckpointError" in error_text(outputs)
    assert "dropped checkpoint #1" in stream(k.ok("%drop 1"))
    reply, outputs = k.run("%rewind")
    assert reply["status"] == "error" and "no checkpoint to rewind to" in stream(outputs, "stderr")  # a UsageError

    pid = json.loads(stream(k.ok("import json; print(json.dumps([_s.pid, _s.job]))")))
    assert pid[1] == t.pid and pid[0] != t.pid  # the same session object, now on the job's live process
    k.ok("_s.cont(); _s.wait(20); _s.cont()")
    assert t.wait_exit(30) == 3
    assert 'RESULT {"total": 1005, "items": [0]}' in t.output(), t.output()
    assert t.output().count("RESULT") == 1
    assert_nothing_left(t.pid)


def test_the_panels_checkpoints_view_takes_rewinds_and_drops(target: Any, frontend: Any) -> None:
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    fe = frontend
    t = target.script("rewindable", "1")
    t.wait_paused_in_file()
    reply, _ = fe.execute("from client import DebugPanel\npanel = DebugPanel()\npanel")
    assert reply["status"] == "ok", reply
    fe.wait_for(lambda: not fe.state("fb-cp-take")["disabled"], "the checkpoint button at the pause")
    assert fe.state("fb-cp-rewind")["disabled"]  # nothing to rewind to yet

    fe.click("fb-cp-take")
    fe.wait_for(lambda: "checkpoint #1 at rewindable.py" in fe.text("fb-message"), "the checkpoint taken")
    fe.wait_for(lambda: "#1 rewindable.py" in "".join(fe.state("fb-cp-list")["_options_labels"]), "the list")
    fe.wait_for(lambda: "holds" in fe.text("fb-cp-details"), "the picked checkpoint's details")

    fe.click("fb-cont")
    fe.wait_for(lambda: "STEP 0 15" in t.output() and "total" in fe.text("fb-vars") and "15" in fe.text("fb-vars"),
                "the next pause in the variables view")
    fe.wait_for(lambda: not fe.state("fb-cp-rewind")["disabled"], "the rewind button at the pause")
    fe.click("fb-cp-rewind")
    fe.wait_for(lambda: "rewound to checkpoint #1" in fe.text("fb-message"), "the rewind")
    fe.wait_for(lambda: "10" in fe.text("fb-vars") and "15" not in fe.text("fb-vars"),
                "the variables as they were at the checkpoint")
    fe.wait_for(lambda: "rewound to 1x" in "".join(fe.state("fb-cp-list")["_options_labels"]), "the rewind counted")

    fe.click("fb-cp-drop")
    fe.wait_for(lambda: "dropped checkpoint #1" in fe.text("fb-message"), "the drop")
    fe.wait_for(lambda: "[dropped]" in "".join(fe.state("fb-cp-list")["_options_labels"]), "the dropped state")
    fe.click("fb-cont")
    fe.wait_for(lambda: "STEP 0 15" in t.output().split("STEP 0 15", 1)[1], "the step again, after the rewind")
    fe.wait_for(lambda: not fe.state("fb-cont")["disabled"], "the pause after the step")
    fe.click("fb-cont")
    assert t.wait_exit(30) == 3
    assert t.output().count("RESULT") == 1
    assert_nothing_left(t.pid)
