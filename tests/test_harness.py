"""The in-process harness (tests/harness.py): a real server, pause loop and clients in the
test process. These tests are also the examples of how to test an op without a process."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

import bridge
import client
from bridge import refs
from harness import InProcessBridge
from rawclient import RawClient

pytestmark = pytest.mark.timeout(60)


def test_eval_exec_get_set_locals_on_a_paused_worker(inproc):
    def job():
        rows = [1, 2, 3]
        factor = 10
        bridge.set_trace()
        return [r * factor for r in rows]

    worker = inproc.run_paused(job)
    s = inproc.attach()
    pause = s.wait(5)
    assert pause.thread == worker.ident and pause.function.endswith("job") and pause.reason == "set_trace"
    assert s.locals()["rows"].repr == "[1, 2, 3]"
    assert s.eval("rows") == [1, 2, 3] and s.get("factor") == 10
    assert s.exec("print('f', factor); factor = 2") == "f 10\n"
    s.set(rows=[5])
    s.cont()
    assert worker.join() == [10]  # the job saw both writes


def test_a_worker_pauses_again_and_again(inproc):
    def job():
        seen = []
        for i in range(3):
            bridge.set_trace()
            seen.append(i)
        return seen

    worker = inproc.run_paused(job)
    s = inproc.attach()
    for expected in range(3):
        if expected:
            worker.wait_paused()
        assert s.wait(5).pause_id == worker.pause.pause_id
        assert s.eval("i") == expected
        if expected == 1:
            s.exec("seen.append('written')")
        s.cont()
    assert worker.join() == [0, "written", 1, 2]


def test_server_ops_see_the_pause(inproc):
    worker = inproc.run_paused(lambda: bridge.set_trace(), name="pauser")
    raw = inproc.raw()
    status = raw.request("status")
    assert status.ok and status.result["pid"] == inproc.pid
    assert [p["thread"] for p in status.result["paused"]] == [worker.ident]
    s = inproc.attach()
    threads = {t["name"]: t for t in s.threads()}
    assert threads["pauser"]["state"] == "paused"
    assert threads[threading.current_thread().name]["state"] == "running"


def test_a_live_reference_is_held_until_released(inproc):
    def job():
        lock = threading.Lock()
        bridge.set_trace()
        return lock.locked()

    worker = inproc.run_paused(job)
    s = inproc.attach()
    before = len(refs.TABLE)
    proxy = s.eval("lock")  # a lock cannot be copied: it stays in the target, behind a proxy
    assert len(refs.TABLE) == before + 1
    assert proxy.locked() is False  # a call on the object in the target
    del proxy
    gc.collect()
    s.refs.flush()  # releases ride with the session's next ref request; this sends them now
    assert len(refs.TABLE) == before
    s.cont()
    assert worker.join() is False


def test_malformed_requests_get_error_replies_and_the_pause_goes_on(inproc):
    def job():
        y = 5
        bridge.set_trace()
        return y

    worker = inproc.run_paused(job)
    pause = worker.pause
    raw = inproc.raw()
    assert raw.ask([b"\xff\xfe not json"]).error_type == "ProtocolError"
    assert raw.ask({"v": 99, "id": 1, "op": "status"}).error_type == "ProtocolError"
    assert raw.request("no_such_op").error_type == "UnknownOp"
    bad = raw.request("eval", {"expr": 5, "thread": worker.ident})
    assert bad.error_type == "BadRequest" and "expr" in bad.error["message"]
    assert raw.request("eval", {"expr": "y"}, pause_id=pause.pause_id + 1).error_type == "NotPaused"
    good = raw.request("eval", {"expr": "y + 1", "thread": worker.ident}, pause_id=pause.pause_id)
    assert good.ok and good.result["value"] == 6
    assert raw.request("cont", {"thread": worker.ident}).ok
    assert worker.join() == 5


def test_a_lane_is_reachable_through_the_raw_client(inproc):
    worker = inproc.run_paused(lambda: bridge.set_trace(), name="laned")
    s = inproc.attach()
    pause = s.wait(5)
    from waiting import wait_for

    wait_for(lambda: "lane" in pause.extra, 5, "the lane event")
    lane = inproc.raw(lane=pause)
    reply = lane.request("stack", {"thread": worker.ident}, pause_id=pause.pause_id)
    assert reply.ok and reply.result["thread"] == worker.ident
    refused = lane.request("status", pause_id=pause.pause_id)
    assert not refused.ok and "frame operations only" in refused.error["message"]


def test_pause_frames_serves_a_suspended_generators_frame(inproc):
    def numbers():
        n = 1
        while True:
            yield n
            n += 1

    gen = numbers()
    assert next(gen) == 1
    worker = inproc.pause_frames([gen.gi_frame], reason="inspect")
    s = inproc.attach()
    assert s.wait(5).reason == "inspect"
    assert s.eval("n") == 1
    s.set(n=41)
    s.cont()
    assert worker.join() == "continue"
    assert next(gen) == 42


def test_post_mortem_on_a_worker(inproc):
    def job():
        try:
            items = {"k": 1}
            items["missing"]
        except KeyError:
            bridge.post_mortem()
        return "after"

    worker = inproc.run_paused(job)
    s = inproc.attach()
    pause = s.wait(5)
    assert pause.reason == "post_mortem" and "missing" in pause.extra["exception"]
    assert s.eval("items") == {"k": 1}
    s.cont()
    assert worker.join() == "after"


def test_teardown_resumes_what_the_test_left_paused(inproc):
    worker = inproc.run_paused(lambda: bridge.set_trace() or "resumed")
    inproc.attach()  # attached and left: the teardown closes it and resumes the worker
    assert worker.thread.is_alive()


# --- the teardown's checks can fail --------------------------------------------------------------


def test_teardown_names_a_worker_that_does_not_end(bridge_dirs, monkeypatch):
    import harness

    monkeypatch.setattr(harness, "TEARDOWN_TIMEOUT", 1.0)
    release = threading.Event()
    h = InProcessBridge()
    try:
        h.run(release.wait, 30, name="stuck")
    finally:
        with pytest.raises(AssertionError, match="worker stuck did not end") as found:
            h.close()
        release.set()
        h.workers[0].join(5)
    assert "thread 'stuck' is still alive" in str(found.value)
    assert sys.modules["bridge.server"].current_server() is None  # stopped and forgotten all the same


def test_teardown_names_a_socket_left_open(bridge_dirs, monkeypatch):
    import harness

    monkeypatch.setattr(harness, "TEARDOWN_TIMEOUT", 1.0)
    h = InProcessBridge()
    leaked = RawClient.to(h.info)  # not through h.raw(): nobody closes it
    try:
        assert leaked.request("status").ok
        with pytest.raises(AssertionError, match="file descriptor"):
            h.close()
    finally:
        leaked.close()


def test_teardown_names_live_references_left_held(bridge_dirs):
    h = InProcessBridge()
    release = threading.Event()

    def job():
        lock = threading.Lock()
        bridge.set_trace()
        release.wait(10)
        return lock

    worker = h.run_paused(job)
    s = client.attach(h.pid)
    try:
        s.wait(5)
        kept = s.eval("lock")
        s.cont()  # resumed with the reference held: the session cannot give it back any more
    finally:
        s.close()
        release.set()
        worker.join()
        with pytest.raises(AssertionError, match=r"1 live reference\(s\) still held"):
            h.close()
    del kept
    refs.TABLE.release([[id(worker.result), 1]])  # what a client would have sent
    assert len(refs.TABLE) == h._refs_before


# --- the other helpers ------------------------------------------------------------------------------


def test_wait_for_returns_the_value_or_says_what_it_waited_for():
    from waiting import WaitTimeout, wait_for

    calls = []
    assert wait_for(lambda: calls.append(1) or len(calls) >= 3 and "ready", 5, "three calls") == "ready"
    with pytest.raises(WaitTimeout, match=r"timed out after 0.1s waiting for the moon\nstate: dark"):
        wait_for(lambda: False, 0.1, "the moon", details=lambda: "state: dark")

    def gone():
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited"):  # ends the wait at once
        wait_for(gone, 60, "never")


def test_named_scripts_and_their_markers(target):
    from target_process import script_path

    with pytest.raises(KeyError, match="etl_like"):  # an unknown name lists the known ones
        script_path("no_such_job")
    t = target.script("paused_module", "resumed fine")
    assert t.connection_info(paused=True)["paused"][0]["line"] == t.line("pause")
    with RawClient.to(t) as raw:
        assert raw.request("cont", {}).ok
    assert "resumed fine" in t.wait_output("resumed fine")
    assert t.wait_exit(10) == 0
