"""What the client costs and how it ends: one context and one I/O thread for every session,
sessions dropped without close() collected without hanging, a clean error at the open-file limit.

Each check runs in a client process of its own (a hang then fails the test instead of
stopping the run, and the thread and descriptor counts are that process's alone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict

import pytest

from bridge import keys
from conftest import SRC

PAUSED = """
    import bridge, time
    x = 41
    bridge.set_trace()
    time.sleep(float(__import__("os").environ.get("AFTER_PAUSE", "60")))
"""

LISTENING = """
    import bridge, time
    bridge.listen()
    print("listening", flush=True)
    time.sleep(60)
"""


def run_client(code: str, *args: Any, timeout: float = 60.0, limit: int = 0) -> Dict[str, Any]:
    """Run ``code`` in a fresh client process; its last stdout line, parsed as JSON.

    ``limit``: RLIMIT_NOFILE (soft and hard) of that process, set before it imports anything.
    """
    prologue = ""
    if limit:
        prologue = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"client exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


COUNTS = """
    import os
    def threads(): return len(os.listdir("/proc/self/task"))
    def fds(): return len(os.listdir("/proc/self/fd")) - 1
"""


def counting(code: str) -> str:
    """``code`` with ``threads()`` and ``fds()`` (this process's) defined first."""
    return textwrap.dedent(COUNTS) + textwrap.dedent(code)


@pytest.mark.parametrize("state", ["running", "paused", "resumed", "gone"])
def test_a_dropped_session_is_collected_at_once_whatever_its_target_does(target, state):
    t = target(LISTENING if state == "running" else PAUSED, env={"AFTER_PAUSE": "0" if state == "gone" else "60"})
    t.wait_attachable()
    got = run_client(counting("""
        import gc, json, sys, time, weakref
        import client
        from bridge import keys
        pid, state = int(sys.argv[1]), sys.argv[2]
        client.attach(pid).close()  # the context and the I/O thread exist from here on
        base_threads, base_fds = threads(), fds()

        s = client.attach(pid)
        if state != "running":
            s.wait(20)
        if state in ("resumed", "gone"):
            s.cont()
        if state == "gone":
            deadline = time.monotonic() + 20
            while keys.process_alive(pid) or s.pause_state.failure is None:  # gone, and the session knows
                assert time.monotonic() < deadline
                time.sleep(0.02)  # the target's exit has no notification to wait on here
        ref = weakref.ref(s)
        started = time.monotonic()
        del s
        gc.collect()
        dropped = {"seconds": time.monotonic() - started, "collected": ref() is None}

        if state != "gone":
            for _ in range(50):  # a notebook cell re-run 50 times: `s = attach(pid)`
                s = client.attach(pid)
            del s
            gc.collect()
        deadline = time.monotonic() + 5
        while fds() > base_fds + 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the I/O thread closes a dropped session's link soon after
        print(json.dumps(dict(dropped, threads=threads() - base_threads, fds=fds() - base_fds)))
    """), t.pid, state)
    assert got["collected"] and got["seconds"] < 2.0, got
    assert got["threads"] == 0, got
    assert got["fds"] <= 2, got


def test_sessions_share_one_context_and_one_io_thread(target):
    t = target(PAUSED)
    t.wait_attachable()
    got = run_client(counting("""
        import json, sys
        import client
        from client.io_loop import client_threads
        before = threads()
        sessions = [client.attach(int(sys.argv[1])) for _ in range(30)]
        for s in sessions:
            s.wait(20)
        values = [s.eval("x") for s in sessions]
        print(json.dumps({"threads": threads(), "before": before, "ours": client_threads(),
                          "fds": fds(), "values": sorted(set(values))}))
    """), t.pid)
    assert got["values"] == [41]
    assert got["ours"] == 3 and got["threads"] - got["before"] == 3, got  # was 3 per session
    # A session: its link (a socket, a connection, a monitor's two ends) and its direct channel
    # (the same), and the lane of the pause it evaluated in; was 17.
    assert got["fds"] <= 12 * 30 + 40, got


def test_a_group_of_twelve_costs_the_client_four_threads(target):
    keys.load_client_keypair()
    workers = [target(PAUSED, name=f"w{i}.py") for i in range(12)]
    for w in workers:
        w.wait_attachable()
    got = run_client(counting("""
        import json, sys
        import client
        g = client.attach_all(pids=[int(p) for p in sys.argv[1:]])
        g.wait(timeout=30)
        r = g.eval("x + 1")
        print(json.dumps({"threads": threads(), "fds": fds(), "ok": r.ok, "values": sorted(set(r.values().values())),
                          "members": len(g)}))
    """), *[w.pid for w in workers])
    assert got["members"] == 12 and got["ok"] and got["values"] == [42]
    assert got["threads"] <= 4, got  # main, the I/O thread, ZeroMQ's I/O thread and reaper
    # A member: its link and the lane of its pause, each one socket, its connection and its
    # monitor's two ends.
    assert got["fds"] <= 8 * 12 + 30, got


@pytest.mark.parametrize("limit", [24, 48, 64, 100, 257])
def test_the_open_file_limit_gives_a_clean_error_never_an_abort(target, limit):
    t = target(PAUSED)
    t.wait_attachable()
    got = run_client(counting("""
        import json, sys, time
        import client
        pid = int(sys.argv[1])
        base = fds()
        sessions, error, group_error = [], None, None
        try:
            for _ in range(200):
                s = client.attach(pid)
                s.wait(20)
                s.eval("x")  # opens the pause's lane too
                sessions.append(s)
        except client.BridgeError as exc:
            error = f"{type(exc).__name__}: {exc}"
        g = client.attach_all(pids=[pid])
        group_error = [type(e).__name__ for e in g.attach_errors.values()] or None
        g.close()
        for s in sessions:
            s.close()
        deadline = time.monotonic() + 5
        while fds() > base + 12 and time.monotonic() < deadline:
            time.sleep(0.02)  # closed sockets are released by ZeroMQ's reaper thread, soon after
        try:
            again = client.attach(pid).eval("x")  # room again: attaching works
        except client.ResourceLimit:
            again = None
        print(json.dumps({"opened": len(sessions), "error": error, "group": group_error, "again": again}))
    """), t.pid, limit=limit)
    assert got["error"] is not None and got["error"].startswith("ResourceLimit:"), got
    assert "ulimit -n" in got["error"]
    assert got["group"] == ["ResourceLimit"]
    assert 0 < got["opened"] < 200 if limit > 48 else got["opened"] < 200
    if got["opened"]:
        assert got["again"] == 41  # what a closed session held is free again
