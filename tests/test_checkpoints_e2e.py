"""Checkpoints and rewind through the client, with real processes end to end.

A real job (tests/targets/rewindable.py, or inline source) pauses; a real Session takes
checkpoints, runs on, rewinds, changes variables and finishes. Each job runs in a process
group of its own, so "nothing left behind" is a scan of /proc for that group
(tests/process_groups.py). The target-side core alone is tests/test_checkpoints_core.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, List

import pytest

import client
from bridge import keys
from client import CheckpointError, NotPaused, ThreadsRunning
from conftest import SRC
from process_groups import assert_nothing_left, group_members
from waiting import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checkpoints need Linux")


def results(out: str) -> List[Any]:
    return [json.loads(line[len("RESULT "):]) for line in out.splitlines() if line.startswith("RESULT ")]


def attachable_pids() -> List[int]:
    return [s.pid for s in client.sessions()]


def test_checkpoint_run_on_rewind_change_a_variable_finish(target: Any, attach_to: Any) -> None:
    t = target.script("rewindable", "2")
    s = attach_to(t)
    name = s.name
    heard: List[str] = []
    s.on_event(lambda event, body: heard.append(event))
    assert s.current_pause().line == t.line("start")

    cp = s.checkpoint()
    assert (cp.id, cp.line, cp.function) == (1, t.line("start"), "<module>")
    # The job goes on in a new process; the session follows it; the job's pid keeps the snapshot.
    assert s.job == t.pid and s.pid != t.pid and s.name == name
    assert s.current_pause().reason == "checkpoint" and s.current_pause().line == t.line("start")
    assert attachable_pids() == [s.pid]  # the keeper has no connection file
    assert not keys.connection_path(t.pid).exists()
    listed = s.checkpoints()
    assert [c.id for c in listed] == [1] and listed[0].private_bytes and listed[0].private_bytes > 0
    assert listed[0].memory["private"] < listed[0].memory["rss"]

    s.cont()
    s.wait(20)
    assert s.current_pause().line == t.line("step") and s.eval("total") == 15
    first_live = s.pid
    t.wait_output("STEP 0 15")

    back = s.rewind(cp)
    assert back.id == 1 and back.rewinds == 1
    assert s.pid not in (first_live, t.pid) and s.job == t.pid and s.name == name
    assert s.current_pause().reason == "rewind" and s.current_pause().line == t.line("start")
    assert s.eval("(total, items)") == (10, [])  # every variable as it was at the checkpoint
    wait_for(lambda: not os.path.exists(f"/proc/{first_live}"), 10, "the abandoned timeline to be gone")
    s.set(total=100)
    s.cont()
    s.wait(20)
    assert s.eval("total") == 105
    s.cont()
    s.wait(20)
    s.cont()
    assert t.wait_exit(30) == 3  # the job's exit code, relayed by the pid the test started
    out = t.output()
    assert results(out) == [{"total": 110, "items": [0, 1]}], out
    assert out.count("STEP 0 15") == 1 and "STEP 0 105" in out and "Traceback" not in out, out
    assert "moved" in heard and "lost" not in heard
    assert_nothing_left(t.pid)


def test_two_rewinds_to_the_same_checkpoint(target: Any, attach_to: Any) -> None:
    t = target.script("rewindable", "1")
    s = attach_to(t)
    cp = s.checkpoint()
    pids = {t.pid, s.pid}
    for round_, (ran_on, value) in enumerate(((15, 40), (45, 50)), 1):
        s.cont()
        s.wait(20)
        assert s.eval("total") == ran_on
        back = s.rewind(cp)
        assert back.rewinds == round_ and s.pid not in pids
        pids.add(s.pid)
        assert s.eval("total") == 10
        s.set(total=value)
    assert s.checkpoints()[0].rewinds == 2
    s.cont()
    s.wait(20)
    assert s.eval("total") == 55
    s.cont()
    assert t.wait_exit(30) == 3
    assert results(t.output()) == [{"total": 55, "items": [0]}], t.output()
    assert_nothing_left(t.pid)


def test_nested_checkpoints(target: Any, attach_to: Any) -> None:
    t = target.script("rewindable", "3")
    s = attach_to(t)
    outer = s.checkpoint()
    s.cont()
    s.wait(20)
    inner = s.checkpoint()
    assert (outer.id, inner.id, inner.depth) == (1, 2, 1) and s.eval("items") == [0]
    s.cont()
    s.wait(20)
    assert s.eval("items") == [0, 1]
    s.rewind(inner)
    assert s.eval("(total, items)") == (15, [0])
    assert [c.id for c in s.checkpoints()] == [1, 2]  # both still there: the inner one is on this timeline
    s.rewind(outer)
    assert s.eval("(total, items)") == (10, [])
    assert [c.id for c in s.checkpoints()] == [1]  # the inner one was taken after: gone with its timeline
    with pytest.raises(CheckpointError, match="not on this timeline"):
        s.rewind(inner)
    assert s.eval("total") == 10  # refused: nothing moved
    for _ in range(3):
        s.cont()
        s.wait(20)
    s.cont()
    assert t.wait_exit(30) == 3
    assert results(t.output()) == [{"total": 25, "items": [0, 1, 2]}], t.output()
    assert_nothing_left(t.pid)


THREADED = """
import threading, time, bridge
stop = threading.Event()
loader = threading.Thread(target=stop.wait, name="loader-7", daemon=True)
loader.start()
bridge.set_trace()  # @pause
print("loader alive:", loader.is_alive(), "threads:", sorted(t.name for t in threading.enumerate()), flush=True)
"""


def test_a_multithreaded_target_is_refused_by_name_unless_forced(target: Any, attach_to: Any) -> None:
    t = target(THREADED)
    s = attach_to(t)
    with pytest.raises(ThreadsRunning) as refused:
        s.checkpoint()
    assert refused.value.threads == ["'loader-7' (daemon)"]
    assert "loader-7" in str(refused.value) and "force=True" in str(refused.value)
    assert s.pid == t.pid and s.eval("loader.is_alive()") is True  # nothing changed
    cp = s.checkpoint(force=True)
    assert cp.cannot_rewind.threads == ["'loader-7' (daemon)"]
    assert any("loader-7" in line for line in cp.cannot_rewind.lines())
    assert s.eval("loader.is_alive()") is False  # the forced thread does not exist after the checkpoint
    s.cont()
    assert t.wait_exit(30) == 0
    out = t.output()
    assert "loader alive: False" in out and "loader-7" not in out, out
    assert_nothing_left(t.pid)


def test_sigterm_to_the_jobs_pid_ends_the_live_job(target: Any, attach_to: Any) -> None:
    t = target.script("rewindable", "1")
    s = attach_to(t)
    s.checkpoint()
    live = s.pid
    os.kill(t.pid, signal.SIGTERM)  # what a supervisor does: its one pid
    assert t.wait_exit(30) == -signal.SIGTERM
    wait_for(lambda: not os.path.exists(f"/proc/{live}"), 10, "the live process to end")
    assert_nothing_left(t.pid)


CLIENT = """
import sys, os
import client
s = client.attach(int(sys.argv[1]))
s.wait(20)
s.checkpoint()
s.cont()
s.wait(20)
s.checkpoint()
print("CHECKPOINTED", s.pid, flush=True)
sys.stdin.read()   # killed here, holding two checkpoints of a paused job
"""


def test_a_client_killed_while_checkpoints_exist_leaves_nothing_behind(target: Any, tmp_path: Path) -> None:
    t = target.script("rewindable", "2", env={"BRIDGE_WAIT_TIMEOUT": "2"})
    t.wait_paused_in_file()
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(CLIENT))
    notebook = subprocess.Popen([sys.executable, str(script), str(t.pid)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=SRC))
    try:
        line = wait_for(lambda: notebook.stdout.readline(), 60, "the client's two checkpoints")
        assert line.startswith("CHECKPOINTED"), line
        assert len(group_members(t.pid)) >= 4  # two keepers, the witness, the live process
        notebook.kill()  # SIGKILL: no goodbye, its connections just drop
        notebook.wait(10)
    finally:
        if notebook.poll() is None:
            notebook.kill()
            notebook.wait(10)
        notebook.stdin.close()
        notebook.stdout.close()
    # No client: each pause gives up after BRIDGE_WAIT_TIMEOUT and the job runs to its end.
    assert t.wait_exit(60) == 3
    assert len(results(t.output())) == 1, t.output()
    assert_nothing_left(t.pid)  # no keeper, no relay, no witness, nothing stopped
    assert list(keys.iter_connection_files()) == []


def test_bad_requests_get_clear_errors_and_change_nothing(target: Any, attach_to: Any) -> None:
    t = target.script("rewindable", "1")
    s = attach_to(t)
    with pytest.raises(CheckpointError, match="no checkpoints"):
        s.rewind(1)  # none taken yet
    cp = s.checkpoint()
    live = s.pid
    for bad in (99, -1):
        with pytest.raises(CheckpointError, match="not on this timeline"):
            s.rewind(bad)
        with pytest.raises(CheckpointError, match="not on this timeline"):
            s.drop(bad)
    with pytest.raises(TypeError):
        s.rewind("1")  # type: ignore[arg-type]
    assert s.pid == live and s.eval("total") == 10  # still the same process, still paused
    s.drop(cp)
    s.drop(cp)  # a dropped checkpoint: nothing to do
    assert s.checkpoints()[0].state == "dropped"
    with pytest.raises(CheckpointError, match="dropped"):
        s.rewind(cp)
    s.cont()
    s.wait(20)
    s.cont()
    assert t.wait_exit(30) == 3
    assert_nothing_left(t.pid)


def test_checkpoint_and_rewind_need_a_pause_and_the_list_works_while_running(target: Any, attach_to: Any) -> None:
    t = target.script("listening")
    t.wait_output("listening")
    s = attach_to(t, wait_pause=False)
    with pytest.raises(NotPaused, match="at a pause"):
        s.checkpoint()
    with pytest.raises(NotPaused, match="at a pause"):
        s.rewind(1)
    assert s.checkpoints() == []  # a server op: no pause needed


IN_CODE = """
import bridge, sys
data = {"n": 1}
bridge.set_trace()  # @first
cp = bridge.checkpoint()
print("CHECKPOINT", cp.id, cp.rewinds, data["n"], flush=True)
data["n"] += 1
bridge.set_trace()  # @second
print("END", data["n"], flush=True)
"""


def test_bridge_checkpoint_in_the_jobs_code_and_a_session_that_follows(target: Any, attach_to: Any) -> None:
    t = target(IN_CODE)
    s = attach_to(t)
    s.cont()  # the job checkpoints itself: the session's process now keeps the snapshot
    t.wait_output("CHECKPOINT 1 0 1")
    assert wait_for(lambda: s.follow(), 20, "the session to follow the job to its live process")
    assert s.job == t.pid and s.pid != t.pid
    s.wait(20)
    assert s.current_pause().line == t.line("second") and s.eval("data") == {"n": 2}
    other = client.attach(t.pid)  # the job's pid attaches to its live process
    try:
        assert other.pid == s.pid
    finally:
        other.close()
    s.rewind(1)  # back into bridge.checkpoint(): it returns again, resumed
    t.wait_output("CHECKPOINT 1 1 1")
    s.wait(20)
    assert s.eval("data") == {"n": 2}
    s.cont()
    assert t.wait_exit(30) == 0
    assert t.output().count("END") == 1 and "END 2" in t.output()
    assert_nothing_left(t.pid)


NO_FORK = """
import os, bridge
del os.fork  # an interpreter without fork(), as on Windows
total = 10
bridge.set_trace()  # @pause
print("DONE", total, flush=True)
"""


def test_without_fork_a_clear_error_and_the_job_goes_on(target: Any, attach_to: Any) -> None:
    t = target(NO_FORK)
    s = attach_to(t)
    with pytest.raises(client.Unsupported, match=r"os\.fork\(\)"):
        s.checkpoint()
    assert s.pid == t.pid and s.eval("total") == 10  # the same process, still paused
    assert s.checkpoints() == []
    s.set(total=11)
    s.cont()
    assert t.wait_exit(30) == 0
    assert "DONE 11" in t.output(), t.output()


OPEN_FILE = """
import sys, bridge
log = open(sys.argv[1], "w")
log.write("before the checkpoint\\n")
log.flush()
bridge.set_trace()  # @pause
log.write("after\\n")
log.close()
"""


def test_what_cannot_be_rewound_is_reported_to_the_client(target: Any, attach_to: Any, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    t = target(OPEN_FILE, str(log))
    s = attach_to(t)
    cp = s.checkpoint()
    written = [f for f in cp.cannot_rewind.files if f.get("path") == str(log)]
    assert written and written[0]["mode"] == "w", cp.cannot_rewind.raw
    assert any(str(log) in line for line in cp.cannot_rewind.lines()), cp.cannot_rewind.lines()
    assert s.checkpoints().get(cp.id).cannot_rewind.files == cp.cannot_rewind.files
    back = s.rewind(cp)
    assert any(f.get("path") == str(log) for f in back.cannot_rewind.files)  # said again at the rewind
    s.cont()
    assert t.wait_exit(30) == 0
    assert log.read_text() == "before the checkpoint\nafter\n"
    assert_nothing_left(t.pid)
