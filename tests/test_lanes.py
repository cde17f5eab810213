"""Lanes: each pause's own CURVE socket, served by the paused thread itself.

A lane must be as closed as the server socket (authorized keys only, CURVE only), serve
only its own pause, never leave a request hanging when its pause ends, and be optional:
a session without lanes works the same, only slower.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import zmq

from bridge import keys
from bridge.protocol import PROTOCOL_VERSION
from client.errors import AuthenticationError, NotPaused, RemoteError
from client.lanes import lanes_allowed
from client.transport import Channel

from conftest import wait_until

PAUSED = """
import bridge
x = 41
bridge.set_trace()
"""

TWO_PAUSES = """
import bridge
for round in range(2):
    x = round
    bridge.set_trace()
print("done", flush=True)
"""

PAUSE_THEN_RUN = """
import bridge, time
x = 41
bridge.set_trace()
print("running", flush=True)
time.sleep(120)
"""

PAUSE_ON_FILE = """
import os, time
import bridge
bridge.listen()
while not os.path.exists({go!r}):
    time.sleep(0.01)  # the test's signal: a file, nothing to wait on
x = 41
bridge.set_trace()
"""

ROUTED = "__import__('bridge.server').server.current_server().routed_frame_ops"


def lane_of(session) -> "tuple[int, int]":
    """(pause id, lane port) of the session's paused thread; evals until its lane is connected."""
    pause = session.wait(20)
    wait_until(lambda: "lane" in pause.extra, what="the lane event")
    port = pause.extra["lane"]
    assert isinstance(port, int), f"the pause names no lane: {pause.extra}"
    deadline = time.monotonic() + 10
    while session._lanes.channel(pause) is None:  # the lane connects beside the first requests
        assert time.monotonic() < deadline, "the lane never connected"
        assert session.eval("x") is not None
    return pause.pause_id, port


def lane_channel(session, port: int, keypair=None) -> Channel:
    """A raw channel to a lane, as a client of our own would open it."""
    key = session.wait().extra["lane_key"]
    info = dict(session.info, endpoint=f"tcp://127.0.0.1:{port}", server_key=key)
    return Channel(session._context, info, keypair or keys.load_client_keypair())


def test_frame_ops_take_the_lane_not_the_server_thread(target, attach_to):
    s = attach_to(target(PAUSED))
    lane_of(s)
    routed = s.eval(ROUTED)
    for i in range(20):
        assert s.eval("x + 1") == 42
    s.exec("y = x * 2")
    assert s.get("y") == 82
    assert [f.function for f in s.stack()] == ["<module>"]
    # The server thread routed none of them: they went straight to the paused thread.
    assert s.eval(ROUTED) == routed


def test_requests_before_the_lane_is_named_take_the_server_and_then_the_lane(target, attach_to, tmp_path):
    go = tmp_path / "go"
    t = target(PAUSE_ON_FILE.format(go=str(go)))
    s = attach_to(t, wait_pause=False)  # attached before the pause: it sees the pause happen
    go.write_text("go")
    s.wait(20)
    # Right after the pause is announced its lane is usually not named yet: the server
    # socket serves, and the session switches once the lane event has come.
    assert s.eval("x") == 41
    deadline = time.monotonic() + 10
    while s._lanes.channel(s.wait()) is None:
        assert time.monotonic() < deadline, "the pause never switched to its lane"
        assert s.eval("x") == 41
    routed = s.eval(ROUTED)
    assert s.eval("x") == 41
    assert s.eval(ROUTED) == routed


def test_a_lane_that_never_connects_is_given_up_and_the_server_serves(target, attach_to, monkeypatch):
    from client import lanes

    monkeypatch.setattr(lanes, "CONNECT_GIVE_UP_S", 0.3)
    s = attach_to(target(PAUSED))
    pause = s.wait(20)
    wait_until(lambda: "lane" in pause.extra, what="the lane event")
    with socket.socket() as probe:  # a port with nothing behind it (a tunnel that does not forward it)
        probe.bind(("127.0.0.1", 0))
        pause.extra["lane"] = probe.getsockname()[1]
    routed = s.eval(ROUTED)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # evals go on through the server meanwhile
        assert s.eval("x") == 41
    assert s.eval("x") == 41
    assert s._lanes._by_pause[pause.pause_id] is None  # given up: no socket retrying in the background
    assert s.eval(ROUTED) > routed


def test_lane_refuses_an_unauthorized_key(target, attach_to):
    s = attach_to(target(PAUSED))
    _, port = lane_of(s)
    stranger = keys.KeyPair(*(k.decode("ascii") for k in zmq.curve_keypair()))
    ch = lane_channel(s, port, stranger)
    try:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="refused our client key"):
            ch.request("eval", {"expr": "x"}, pause_id=s.wait().pause_id, timeout=10)
        assert time.monotonic() - started < 2.0
    finally:
        ch.close()
    assert s.eval("x") == 41  # the pause goes on serving its own user


def test_lane_refuses_a_plaintext_client(target, attach_to):
    s = attach_to(target(PAUSED))
    _, port = lane_of(s)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # the NULL mechanism: no CURVE
    sock.linger = 0
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(json.dumps({"v": PROTOCOL_VERSION, "id": 1, "op": "eval", "args": {"expr": "x"},
                              "pause_id": 1}).encode())
        assert not sock.poll(1000), "a plaintext client got an answer from a lane"
    finally:
        sock.close()
        ctx.term()
    assert s.eval("x") == 41


def test_lane_serves_only_frame_ops_of_its_own_pause(target, attach_to):
    s = attach_to(target(PAUSED))
    pause_id, port = lane_of(s)
    ch = lane_channel(s, port)
    try:
        with pytest.raises(NotPaused, match="not pause 999"):
            ch.request("eval", {"expr": "x"}, pause_id=999, timeout=10)
        with pytest.raises(RemoteError, match="needs the integer 'pause_id'"):
            ch.request("eval", {"expr": "x"}, timeout=10)
        with pytest.raises(RemoteError, match="frame operations only"):
            ch.request("status", pause_id=pause_id, timeout=10)
        ch.socket.send(b"{not json")  # malformed: an error reply, and the lane goes on
        with pytest.raises(RemoteError, match="not UTF-8 JSON") as bad:
            ch.receive(10)
        assert bad.value.remote_type == "ProtocolError"
        result, frames = ch.request("eval", {"expr": "x", "frame": 0}, pause_id=pause_id, timeout=10)
        assert result["value"] == 41 and frames == []  # a small int travels in the header
    finally:
        ch.close()


def test_a_request_on_a_lane_whose_pause_ended_is_answered_not_paused(target, attach_to):
    t = target(PAUSE_THEN_RUN)
    waiting = attach_to(t)
    lane_of(waiting)
    attach_to(t).cont()  # another client resumes the thread under the first one
    t.wait_output("running")
    # `waiting` may not have heard of the resume yet and send to the closed lane: the
    # request must end with NotPaused once the resume is known, not wait out its timeout.
    started = time.monotonic()
    with pytest.raises(NotPaused):
        waiting.eval("x", timeout=30)
    assert time.monotonic() - started < 5


def test_each_pause_gets_its_own_lane(target, attach_to):
    t = target(TWO_PAUSES)
    s = attach_to(t)
    first_id, first_port = lane_of(s)
    assert s.eval("x") == 0
    s.cont()
    second = s.wait(20)
    assert second.pause_id != first_id
    second_id, second_port = lane_of(s)
    assert second_id == second.pause_id and second_port != first_port
    assert s.eval("x") == 1
    assert first_id not in s._lanes._by_pause  # the ended pause's lane was closed
    s.cont()
    assert "done" in t.wait_output("done")


def test_without_lanes_everything_goes_through_the_server(target, attach_to, monkeypatch):
    monkeypatch.setenv("BRIDGE_LANES", "0")
    s = attach_to(target(PAUSED))
    routed = s.eval(ROUTED)
    for _ in range(5):
        assert s.eval("x") == 41
    assert s.eval(ROUTED) == routed + 6  # five evals, and the read itself
    assert s._lanes._by_pause == {}


def test_lanes_are_not_tried_through_a_tunnel():
    class Loopback:
        local = True

    class Remote:
        local = False

    from bridge.bulk import host_identity

    ours = host_identity()["boot_id"]
    assert lanes_allowed(Loopback(), {"host": {"boot_id": ours}})
    # A loopback endpoint served by another kernel is a tunnel: it forwards one port only.
    assert not lanes_allowed(Loopback(), {"host": {"boot_id": "another-machine"}})
    assert not lanes_allowed(Loopback(), {})  # an older target says nothing: no lanes
    assert lanes_allowed(Remote(), {"host": {"boot_id": "another-machine"}})  # reached directly
