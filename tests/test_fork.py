"""Forked children of an attachable process: they exit, and never touch the parent's server.

A child forked from a process whose server runs has none of its threads; before, the
parent's atexit ``Server.stop`` ran in the child on the inherited ZeroMQ context and the
child never exited (and its parent hung in ``waitpid``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import client
from conftest import wait_until

# The parent waits for every child with a deadline of its own and prints how each ended,
# so that a child that never exits shows as "hung", not as a test that hangs.
FORKING_JOB = """
import multiprocessing, os, sys, threading, time
import bridge

def waited(pid, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        time.sleep(0.01)  # a child has no notification to wait on but SIGCHLD, which the job may use
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

def square(x):
    return x * x

def in_child(queue):
    queue.put(os.getpid())

def job():
    big = bytearray(4 << 20)  # the client takes it through the bulk path: data port, janitor
    bridge.set_trace()
    results = {}
    pid = os.fork()
    if pid == 0:
        sys.exit(0)
    results["sys.exit"] = waited(pid)
    pid = os.fork()
    if pid == 0:
        raise SystemExit(3)
    results["SystemExit(3)"] = waited(pid)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results["pool"] = pool.map(square, range(6))
    queue = ctx.Queue()
    proc = ctx.Process(target=in_child, args=(queue,))
    proc.start()
    results["process ran"] = queue.get(timeout=20) != os.getpid()
    proc.join(20)
    results["process"] = proc.exitcode
    pid = os.fork()
    if pid == 0:  # a child that needs a debugger starts a server of its own
        marker = "child"
        print("child pid", os.getpid(), flush=True)
        bridge.set_trace()
        sys.exit(0)
    results["child set_trace"] = waited(pid, 60.0)
    print("forks done", results, flush=True)
    bridge.set_trace()  # the parent's own server still serves
    print("parent done", flush=True)

job()
"""


def test_forked_children_exit_and_leave_the_parent_server_alone(target: Any, attach_to: Any,
                                                                tmp_path: Path) -> None:
    script = tmp_path / "forking.py"
    t = target(FORKING_JOB, name="forking.py", module_args=["-m", "bridge", str(script)])
    s = attach_to(t)
    assert len(s.eval("big")) == 4 << 20
    parent_file = t.connection_file()
    endpoint = json.loads(parent_file.read_text())["endpoint"]
    s.cont()

    child_pid = int(re.search(r"child pid (\d+)", t.wait_output("child pid")).group(1))
    child_file = parent_file.with_name(f"bridge-{child_pid}.json")  # its own server, its own file
    wait_until(child_file.exists, 20, "the child's connection file")
    child = client.attach(child_pid)
    try:
        child.wait(20)
        assert child.eval("marker, os.getpid()") == ("child", child_pid)
        lock = child.eval("threading.Lock()")  # a live reference: the child's own table
        assert lock.acquire(False) and lock.locked()
        assert child.info["endpoint"] != endpoint
        child.cont()
    finally:
        child.close()

    out = t.wait_output("forks done", timeout=60)
    results = eval(out[out.index("forks done") + len("forks done"):].splitlines()[0])
    assert results == {"sys.exit": 0, "SystemExit(3)": 3, "pool": [0, 1, 4, 9, 16, 25],
                       "process ran": True, "process": 0, "child set_trace": 0}
    s.wait(20)
    assert s.eval("len(results)") == 6  # the same session, on the parent's own server
    assert parent_file.exists() and json.loads(parent_file.read_text())["endpoint"] == endpoint
    s.cont()
    t.wait_output("parent done")
    assert t.wait_exit(20) == 0


@pytest.mark.parametrize("start", ["listen", "set_trace"])
def test_a_child_of_a_plain_script_exits(target: Any, start: str) -> None:
    # Without python -m bridge: listen() (no pause), or a set_trace that timed out.
    t = target(f"""
        import os, sys, time
        import bridge
        if {start!r} == "listen":
            bridge.listen()
        else:
            bridge.set_trace(timeout=0.2)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exited", status, flush=True)
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            print("child hung", flush=True)
    """)
    assert "child exited 0" in t.wait_output("child ", timeout=40)
    assert t.wait_exit(20) == 0


# A checkpoint's live process is a fork of the paused thread: the parent's server thread
# may hold the pause's inbox lock at that moment (routing a request to it), and no thread
# of the child will ever release it. The child must let go of its inbox without it.
INBOX_AT_FORK_JOB = """
import os, sys, threading, time
from bridge.pause import Inbox

inbox = Inbox()
held, release = threading.Event(), threading.Event()

def hold():
    with inbox._lock:
        held.set()
        release.wait(30)

threading.Thread(target=hold, daemon=True).start()
held.wait(10)
pid = os.fork()
if pid == 0:
    inbox.let_go()
    os._exit(0)
end = time.monotonic() + 10
status = None
while time.monotonic() < end:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)  # a child's end has nothing to wait on here but SIGCHLD
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child: hung", flush=True)
    sys.exit(1)
release.set()
print("child: exited", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_forked_pause_lets_go_of_its_inbox_while_the_parent_held_its_lock(target: Any) -> None:
    t = target(INBOX_AT_FORK_JOB)
    assert t.wait_exit(30) == 0, t.output()
    assert "child: exited 0" in t.output()
