"""A mount keeps its pause, and a write-back into a pause that ended says so and keeps the changes.

``BRIDGE_WAIT_TIMEOUT`` lets an unattended job go on when nobody debugs it; it counts the
time with no client attached (API.md: "if no client has attached by then"), so a user who
thinks longer than it inside a mount does not lose the fix. Real targets, real clients: one
of them a separate process that is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import client
from client import NotPaused, jump_context
from conftest import SRC

PAUSED = """
import bridge
def work():
    n = 1
    bridge.set_trace()
    print("N", n, flush=True)
work()
"""


def test_an_open_mount_keeps_the_pause_past_the_wait_timeout(target, attach_to):
    t = target(PAUSED, env={"BRIDGE_WAIT_TIMEOUT": "1"})
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns):
        ns["n"] = 2
        # The user thinks for three times the wait timeout (this wait is the scenario, not
        # a stand-in for synchronisation): the target must still be paused at the end.
        time.sleep(3)
    assert "resuming" not in t.output()
    s.cont()
    assert "N 2" in t.wait_output("N ")


def test_an_attached_client_keeps_the_pause_and_a_closed_one_lets_it_go(target, attach_to):
    t = target(PAUSED, env={"BRIDGE_WAIT_TIMEOUT": "1"})
    s = attach_to(t)
    time.sleep(2.5)  # the scenario: an attached user reading the stack for longer than the timeout
    assert s.eval("n") == 1 and t.proc.poll() is None
    s.close()
    out = t.wait_output("N 1", timeout=15)
    assert "no client continued" in out


def test_a_killed_client_lets_the_wait_timeout_resume(target, tmp_path):
    t = target(PAUSED, env={"BRIDGE_WAIT_TIMEOUT": "1"})
    t.wait_paused_in_file()
    script = tmp_path / "client_proc.py"
    script.write_text(
        "import sys, client\n"
        f"s = client.attach({t.pid})\n"
        "s.wait(20)\n"
        "print('attached', flush=True)\n"
        "sys.stdin.read()\n"  # holds the session until killed
    )
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == b"attached"
        time.sleep(2)  # the scenario: attached past the timeout, so the target waits
        assert t.proc.poll() is None and "N " not in t.output()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        out = t.wait_output("N 1", timeout=15)
        assert "no client continued" in out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_write_back_after_another_client_continued_keeps_the_changes(target, attach_to):
    t = target(PAUSED.replace("work()\n", "work()\nbridge.set_trace()\n"))
    s = attach_to(t)
    other = client.attach(t.pid)
    ns: dict = {}
    try:
        with pytest.raises(NotPaused, match="resumed since the mount") as info:
            with jump_context(s, namespace=ns) as m:
                ns["n"] = 42
                other.cont()
                t.wait_output("N 1")
        assert "m.pending" in str(info.value) and info.value.changes == {"n": 42}
        assert m.pending == {"n": 42} and client.last_mount() is m
        assert ns == {}
        with pytest.raises(NotPaused):           # the frame is gone: retrying says so again
            m.retry()
        s.wait(10)                               # paused again (module level): the changes go there
        with jump_context(s, namespace=ns):
            ns["n"] = m.pending["n"]
        assert s.eval("n") == 42
    finally:
        other.close()
