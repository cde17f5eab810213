"""A stepping thread's events: its next stop is announced on the lane the step came by,
and everyone else still hears every resume and pause, in order (docs/protocol.md,
"Events"); what it keeps from stop to stop stays bound to the pause it serves.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from rawclient import RawClient
from waiting import wait_for

STEPPING = """
import bridge

def helper(k):
    return k + 1

def loop():
    i = 0
    bridge.set_trace()
    while True:  # @while
        i = helper(i)  # @call
        i += 1  # @add
        i -= 1  # @sub

loop()
"""


def loop_lines(t) -> set:
    return {t.line(name) for name in ("while", "call", "add", "sub")}


def lane_connected(session) -> "object":
    """The session's pause, once its lane is connected (frame ops take it from then on)."""
    pause = session.wait(20)
    wait_for(lambda: "lane" in session.current_pause().extra, 20, "the lane event")

    def connected() -> bool:
        session.eval("1")  # requests go by the server socket while the lane connects
        return session._lanes.channel(session.current_pause()) is not None

    wait_for(connected, 20, "the lane's handshake")
    return session.current_pause() or pause


def test_a_step_asked_on_a_lane_is_followed_by_the_next_stop_on_that_lane(target, attach_to):
    t = target(STEPPING)
    s = attach_to(t)
    pause = lane_connected(s)
    with RawClient.to(s, lane=pause) as lane:
        reply = lane.request("next", {"frame": 0, "thread": pause.thread}, pause_id=pause.pause_id, timeout=10)
        assert reply.ok and reply.result == {"thread": pause.thread, "pause_id": pause.pause_id}
        event = lane.receive(10).header  # unasked: the thread's next stop, on the same lane
        assert event["event"] == "paused" and "id" not in event, event
        assert event["thread"] == pause.thread and event["pause_id"] > pause.pause_id
        assert event["reason"] == "step" and event["line"] in loop_lines(t)
        assert (event["lane"], event["lane_key"]) == (pause.extra["lane"], pause.extra["lane_key"])
        # the lane serves the new pause, and refuses the old one
        again = lane.request("eval", {"expr": "i", "frame": 0}, pause_id=event["pause_id"], timeout=10)
        assert again.ok and isinstance(again.result["value"], int)
        old = lane.request("eval", {"expr": "i", "frame": 0}, pause_id=pause.pause_id, timeout=10)
        assert old.error_type == "NotPaused"
        # a step asked on the server socket is not announced on the lane
        with RawClient.to(s) as server:
            assert server.request("next", {"frame": 0, "thread": pause.thread}, pause_id=event["pause_id"],
                                  timeout=10).ok
        lane.expect_nothing(0.3)
    following = wait_for(lambda: (p := s.pause_state.get(pause.thread)) and p.pause_id > event["pause_id"] and p,
                         10, "the stop after the server socket's step")
    assert following.line in loop_lines(t)


def test_every_subscriber_hears_each_resume_and_pause_of_a_stepping_thread_in_order(target, attach_to):
    t = target(STEPPING)
    stepper = attach_to(t)
    watcher = attach_to(t)
    heard = []
    lock = threading.Lock()

    def on_event(event, body):
        if event in ("paused", "resumed"):
            with lock:
                heard.append((event, body["pause_id"]))

    watcher.on_event(on_event)
    first = lane_connected(stepper)
    pause_id = first.pause_id
    expected = []
    for _ in range(12):
        stepper.next()
        new = wait_for(lambda: (p := stepper.pause_state.get(first.thread)) and p.pause_id > pause_id and p,
                       10, "the next stop")
        expected += [("resumed", pause_id), ("paused", new.pause_id)]
        pause_id = new.pause_id
    wait_for(lambda: len(heard) >= len(expected), 10, "the watcher's events",
             details=lambda: f"heard {heard}")
    with lock:
        assert heard == expected
    assert watcher.current_pause().pause_id == pause_id  # its pause state follows too


def test_a_raw_subscriber_gets_the_burst_of_events_whole_and_in_order(target, attach_to):
    t = target(STEPPING)
    s = attach_to(t)
    first = lane_connected(s)
    with RawClient.to(s) as sub:
        assert sub.request("subscribe", timeout=10).ok
        last = first.pause_id
        for _ in range(8):
            s.next()
            last = wait_for(lambda: (p := s.pause_state.get(first.thread)) and p.pause_id > last and p.pause_id,
                            10, "the next stop")
        seen = []
        while not seen or seen[-1] != ("paused", last):
            header = sub.receive(10).header
            parts = header["events"] if header["event"] == "events" else [header]  # a batch: in order
            seen += [(e["event"], e["pause_id"]) for e in parts if e["event"] in ("paused", "resumed")]
    ids = [pid for _, pid in seen]
    assert seen[0] == ("resumed", first.pause_id) and len(seen) == 16
    assert [e for e, _ in seen] == ["resumed", "paused"] * 8
    assert ids == sorted(ids)


def test_a_request_routed_to_the_pause_before_a_step_is_refused(target, attach_to):
    """A stepping thread keeps its inbox and its way back to the server thread from stop to
    stop; a request for an ended pause still gets NotPaused, one for the new pause runs."""
    t = target(STEPPING)
    s = attach_to(t)
    first = lane_connected(s)
    pause_id = first.pause_id
    fds = None
    for _ in range(30):
        s.next()
        pause_id = wait_for(lambda: (p := s.pause_state.get(first.thread)) and p.pause_id > pause_id
                            and p.pause_id, 10, "the next stop")
        fds = fds or len(os.listdir(f"/proc/{t.pid}/fd"))
    # what the thread keeps is reused: 29 more stops open no descriptor
    assert len(os.listdir(f"/proc/{t.pid}/fd")) <= fds
    with RawClient.to(s) as server:
        old = server.request("eval", {"expr": "i", "frame": 0, "thread": first.thread}, pause_id=first.pause_id,
                             timeout=10)
        assert old.error_type == "NotPaused"
        now = server.request("eval", {"expr": "i", "frame": 0, "thread": first.thread}, pause_id=pause_id,
                             timeout=10)
        assert now.ok and isinstance(now.result["value"], int)


def test_steps_without_lanes_are_announced_by_the_server_socket(target, attach_to, monkeypatch):
    monkeypatch.setenv("BRIDGE_LANES", "0")
    t = target(STEPPING)
    s = attach_to(t)
    pause = s.wait(20)
    lines = []
    for _ in range(3):
        s.next()
        pause = wait_for(lambda: (p := s.pause_state.get(pause.thread)) and p.pause_id > pause.pause_id and p,
                         10, "the next stop")
        lines.append(pause.line)
    assert len(lines) == 3 and set(lines) <= loop_lines(t)
    assert s._lanes._by_pause == {}


LONG_CALL = """
import time, bridge

def main():
    bridge.set_trace()
    time.sleep(60)  # @sleep
    print("slept", flush=True)

main()
"""


@pytest.mark.parametrize("action", ["step", "next", "step_out"])
def test_a_step_into_a_long_call_returns_before_its_stop(target, attach_to, action):
    """A step waits a bounded while for its stop on the lane (a quick one is then known when
    it returns); a long one leaves it running, and the client free."""
    t = target(LONG_CALL)
    s = attach_to(t)
    lane_connected(s)
    s.next()
    first = wait_for(lambda: (p := s.current_pause()) and p.line == t.line("sleep") and p, 10, "the sleep line")
    started = time.monotonic()
    getattr(s, action)()
    assert time.monotonic() - started < 5
    assert s.pause_state.get(first.thread) is None  # running: the sleep has not returned
    assert s.request("status")[0]["paused"] == []
