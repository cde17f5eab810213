"""Faults with real processes: dead clients, dead targets, two clients, idle clients, Ctrl-C,
and a target that resumes under an open mount.

The promise under test: the debugger is never what kills the job or hangs the notebook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from client import FrameRef, NotPaused, SessionLost, jump_context
from conftest import wait_until

LOST_BUDGET_S = 5.0

PAUSED_TWICE = """
import bridge

def work():
    x = 1
    items = [1, 2, 3]
    bridge.set_trace()
    bridge.set_trace()
    print("done", x, items, flush=True)

work()
"""


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)  # a marker file written by the target: nothing to block on


def slow_expr(marker: Path, seconds: float, result: str = "slow") -> str:
    """An expression that drops ``marker`` (so the test knows it is running), then takes ``seconds``."""
    return f"(open({str(marker)!r}, 'w').close(), __import__('time').sleep({seconds}), {result!r})[2]"



# --- a client killed in the middle of a request ---------------------------------------------------


CLIENT_SCRIPT = """
import sys, client
s = client.attach(int(sys.argv[1]))
s.wait(10)
s.eval(sys.argv[2])
print("the request finished: it should have been killed", flush=True)
"""


def test_client_killed_mid_request_target_serves_the_next(target, attach_to, tmp_path):
    t = target(PAUSED_TWICE)
    t.wait_attachable()
    script = tmp_path / "client_proc.py"
    script.write_text(CLIENT_SCRIPT)
    marker = tmp_path / "running"
    proc = subprocess.Popen([sys.executable, str(script), str(t.pid), slow_expr(marker, 1.5)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_file(marker)  # the eval is running in the target now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert b"should have been killed" not in proc.stdout.read()

    s = attach_to(t)  # a new client: the target is still paused and answers it
    assert s.eval("x") == 1
    assert s.eval("items") == [1, 2, 3]
    s.cont()
    s.wait(10)
    s.cont()
    assert t.wait_exit(10) == 0
    assert "done 1 [1, 2, 3]" in t.output()


# --- the target killed while the client waits -------------------------------------------------------


def test_target_killed_during_a_request_raises_session_lost(target, attach_to, tmp_path):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    marker = tmp_path / "running"
    killer_done = threading.Event()

    def kill_when_running() -> None:
        try:
            wait_for_file(marker)
            os.kill(t.pid, signal.SIGKILL)  # by the pid we started
        finally:
            killer_done.set()

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    started = time.monotonic()
    with pytest.raises(SessionLost):
        s.eval(slow_expr(marker, 60), timeout=60)
    elapsed = time.monotonic() - started
    assert killer_done.wait(10)
    assert elapsed < LOST_BUDGET_S + 1, f"SessionLost took {elapsed:.1f}s"
    with pytest.raises(SessionLost):
        s.eval("x")  # and it stays lost, at once


def test_target_dying_inside_the_request_itself(target, attach_to):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    started = time.monotonic()
    with pytest.raises(SessionLost):
        s.eval("__import__('os').kill(__import__('os').getpid(), 9)", timeout=60)
    assert time.monotonic() - started < LOST_BUDGET_S


def test_target_killed_while_session_waits_for_a_pause(target, attach_to):
    t = target("""
        import os, signal, time, bridge
        bridge.set_trace()
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    s = attach_to(t)
    s.cont()
    started = time.monotonic()
    with pytest.raises(SessionLost):
        s.wait(60)
    assert time.monotonic() - started < LOST_BUDGET_S + 0.3


# --- two clients on one target ----------------------------------------------------------------------


def test_two_clients_both_eval_first_cont_wins_other_sees_the_pause_end(target, attach_to, tmp_path):
    t = target("""
        import time, bridge
        x = 1
        bridge.set_trace()
        print("resumed", flush=True)
        while True:
            time.sleep(0.05)
    """)
    a = attach_to(t)
    b = attach_to(t)
    assert a.eval("x") == 1 and b.eval("x") == 1

    # Frame ops of both clients are served one at a time, in arrival order.
    marker = tmp_path / "running"
    slow = {}
    runner = threading.Thread(target=lambda: slow.setdefault("a", a.eval(slow_expr(marker, 0.5))))
    runner.start()
    wait_for_file(marker)
    started = time.monotonic()
    assert b.eval("x + 1") == 2  # queued behind a's eval, not refused
    queued_for = time.monotonic() - started
    runner.join(10)
    assert slow == {"a": "slow"}
    assert queued_for > 0.2, "b's eval ran while a's was still running on the paused thread"

    b_events = []
    resumed = threading.Event()
    b.on_event(lambda event, body: (b_events.append(event), event == "resumed" and resumed.set()))
    a.cont()
    t.wait_output("resumed")
    assert resumed.wait(5), "the other client was not told the pause ended"
    wait_until(lambda: not b.paused, what="b to see the pause end")
    with pytest.raises(NotPaused):
        b.eval("x")
    with pytest.raises(NotPaused):
        b.cont()  # the second cont finds nothing to resume
    assert t.proc.poll() is None


# --- a client that never continues --------------------------------------------------------------------


def test_detached_client_leaves_the_target_paused_for_another(target, attach_to):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    assert s.eval("x") == 1
    s.close()  # walks away without continuing
    other = attach_to(t)
    assert other.paused and other.eval("items") == [1, 2, 3]
    assert t.proc.poll() is None
    other.cont()
    other.wait(10)
    other.cont()
    assert t.wait_exit(10) == 0


def test_wait_timeout_resumes_an_abandoned_pause_with_one_line(target, attach_to):
    t = target("""
        import bridge
        bridge.set_trace()
        print("after the pause", flush=True)
    """, env={"BRIDGE_WAIT_TIMEOUT": "1.5"})
    s = attach_to(t)
    s.eval("1")  # a client that did something, then detached without continuing
    s.close()
    started = time.monotonic()
    assert t.wait_exit(20) == 0
    waited = time.monotonic() - started
    out = t.output()
    assert "after the pause" in out
    lines = [line for line in out.splitlines() if "no client continued" in line]
    assert len(lines) == 1, out
    assert "within 1.5s; resuming" in lines[0]
    assert 1.0 < waited < 10, waited


def test_without_wait_timeout_the_target_stays_paused(target, attach_to):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    s.close()
    # Nobody continues: a second look after the default would-be timeout still finds it paused.
    other = attach_to(t)
    assert other.paused
    assert "no client continued" not in t.output()


# --- Ctrl-C in the notebook ----------------------------------------------------------------------------


@pytest.fixture
def sigint_raises():
    """Make SIGINT raise KeyboardInterrupt in this process (as in a notebook kernel)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_main_when(condition) -> threading.Thread:
    main = threading.main_thread().ident

    def run() -> None:
        condition()
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_cancels_wait_and_the_session_stays_usable(target, attach_to, sigint_raises):
    t = target("""
        import time, bridge
        bridge.listen()
        ticks = 0
        while True:
            ticks += 1
            time.sleep(0.01)
    """)
    s = attach_to(t, wait_pause=False)
    entered = threading.Event()
    # The interrupt is sent once wait() is surely blocking: shortly after we call it.
    sender = interrupt_main_when(lambda: entered.wait(10) and time.sleep(0.3))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        entered.set()
        s.wait(60)
    assert time.monotonic() - started < 5
    sender.join(5)
    assert not s.paused
    assert any(th["main"] for th in s.threads())  # the session still answers


def test_ctrl_c_during_a_long_eval_discards_the_stale_reply(target, attach_to, tmp_path, sigint_raises):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    marker = tmp_path / "running"
    sender = interrupt_main_when(lambda: wait_for_file(marker))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        s.eval(slow_expr(marker, 1.0, "stale"), timeout=60)
    assert time.monotonic() - started < 1.0, "Ctrl-C did not cut the wait short"
    sender.join(5)
    # The next request is queued behind the slow one; its reply, not "stale", comes back.
    assert s.eval("x + 41") == 42
    assert s.eval("'fresh'") == "fresh"
    assert s.paused


# --- the target resumes while a mount is open ------------------------------------------------------------


def test_write_back_after_the_target_resumed_fails_and_writes_nothing(target, attach_to):
    t = target(PAUSED_TWICE)
    a = attach_to(t)
    b = attach_to(t)
    ns = {"x": "notebook's own x"}
    with pytest.raises(NotPaused, match="nothing written"):
        with jump_context(a, namespace=ns) as mount:
            assert ns["x"] == 1 and ns["items"] == [1, 2, 3]
            first_pause = mount.pause_id
            b.cont()  # another client resumes; the target pauses again, same frame
            b.wait(10)
            wait_until(lambda: b.pauses() and b.pauses()[0].pause_id != first_pause, what="the second pause")
            ns["x"] = 99
            ns["items"].append(4)
            ns["new_name"] = "added"
    # The mounted names are restored anyway: x is the notebook's again, items is gone.
    assert ns["x"] == "notebook's own x" and "items" not in ns
    # Nothing was half-applied to the new pause.
    assert b.eval("x") == 1
    assert b.eval("items") == [1, 2, 3]
    assert b.eval("'new_name' in dir()") is False


def test_protocol_refuses_a_set_carrying_a_stale_pause_id(target, attach_to):
    t = target(PAUSED_TWICE)
    s = attach_to(t)
    old = s.wait(10)
    s.cont()
    new = s.wait(10)
    assert new.pause_id != old.pause_id
    with pytest.raises(NotPaused):
        s.frame_request("set", at=FrameRef(old.thread, 0, old.pause_id), value={"x": 5})
    assert s.eval("x") == 1
