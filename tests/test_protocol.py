"""The message spec (bridge/protocol.py) and the target's one place for transport fields.

Transport fields (``pause_id``, ``release``, ``bulk``, ``bulk_in``) are header fields: they
are checked when a request is parsed, a wrong one gets a ProtocolError reply (never a dead
target), releases are applied before any op runs, and a pause's lane and the server socket
answer the same request the same way.
"""

from __future__ import annotations

import gc
import json
import os

import pytest

from bridge import keys, protocol, wire
from bridge.own_code import is_own_file, user_frames
from client.errors import RemoteError
from client.transport import Channel

from conftest import wait_until

PAUSED = """
import threading
import bridge
x = 41
text = "t" * 1000
lock = threading.Lock()
other_lock = threading.Lock()
bridge.set_trace()
"""

HELD = "len(__import__('bridge.refs').refs.TABLE)"
ROUTED = "__import__('bridge.server').server.current_server().routed_frame_ops"


# --- the spec itself, in this process ------------------------------------------------------------


def test_transport_fields_travel_in_the_header_not_in_args():
    frames = protocol.request_message(7, "ref", {"action": "release"}, pause_id=3, release=[[11, 2]],
                                      bulk="shm", bulk_in={"mode": "shm", "bufs": []})
    header = json.loads(frames[0])
    assert header["args"] == {"action": "release"}
    request = protocol.parse_request(frames, b"client")
    assert (request.id, request.op, request.args, request.identity) == (7, "ref", {"action": "release"}, b"client")
    assert (request.pause_id, request.release, request.bulk) == (3, [[11, 2]], "shm")
    assert request.bulk_in == {"mode": "shm", "bufs": []}
    plain = protocol.parse_request(protocol.request_message(8, "eval", {"expr": "x"}))
    assert (plain.pause_id, plain.release, plain.bulk, plain.bulk_in) == (None, None, None, None)
    assert set(json.loads(protocol.request_message(8, "eval")[0])) == {"v", "id", "op", "args", "nbuf"}


@pytest.mark.parametrize("field, value", [
    ("pause_id", "3"), ("pause_id", True), ("pause_id", 1.5), ("pause_id", [3]),
    ("release", "junk"), ("release", [[1]]), ("release", [["a", 1]]), ("release", [[1, 2.5]]),
    ("release", [[True, 1]]), ("release", {"1": 2}), ("release", [1, 2]),
    ("bulk", "zip"), ("bulk", 1), ("bulk", ["shm"]), ("bulk", "curve"),
    ("bulk_in", [1]), ("bulk_in", "descriptor"), ("bulk_in", 0),
])
def test_wrongly_typed_transport_fields_are_refused_with_the_request_id(field, value):
    frames = protocol.make_message({"id": 5, "op": "eval", "args": {"expr": "x"}, field: value})
    with pytest.raises(protocol.BadRequest, match=field) as refused:
        protocol.parse_request(frames)
    assert refused.value.request_id == 5


def test_breakpoint_schema_round_trips_and_is_the_same_class_on_both_sides():
    from bridge.tracing import Breakpoint as EngineBreakpoint
    from client.control import Breakpoint as ClientBreakpoint

    bp = protocol.Breakpoint(3, "/job/etl.py", 12, 10, condition="n > 2", temporary=True, hits=1)
    data = bp.to_json()
    assert json.loads(json.dumps(data)) == data
    assert protocol.Breakpoint.from_json(dict(data, future_field="ignored")) == bp
    assert str(bp) == ("breakpoint 3 at /job/etl.py:12 (asked for line 10, which has no code) if n > 2 "
                       "[temporary], hit 1 time")
    assert EngineBreakpoint is protocol.Breakpoint and ClientBreakpoint is protocol.Breakpoint


def test_the_special_methods_a_proxy_forwards_come_from_one_list():
    from bridge import mount_ops
    from client.proxy import LiveRef

    assert set(mount_ops.SPECIALS) == set(protocol.REF_SPECIALS)
    missing = [name for name in protocol.FORWARDED_SPECIALS if name not in vars(LiveRef)]
    assert not missing, missing


@pytest.mark.parametrize("endpoint, host", [
    ("tcp://127.0.0.1:5555", "127.0.0.1"), ("tcp://[::1]:5555", "::1"), ("tcp://example.org:1", "example.org"),
])
def test_endpoint_host_and_back(endpoint, host):
    assert protocol.endpoint_host(endpoint) == host
    assert protocol.tcp_endpoint(host, int(endpoint.rsplit(":", 1)[1])) == endpoint


def test_own_code_is_every_file_of_our_packages_and_nothing_else(tmp_path):
    import bridge.pause
    import client.session

    bridge_dir = os.path.dirname(bridge.pause.__file__)
    assert is_own_file(bridge.pause.__file__) and is_own_file(client.session.__file__)
    assert is_own_file(os.path.join(bridge_dir, "bulk", "ring.py"))  # a subpackage is ours too
    assert not is_own_file(__file__) and not is_own_file("<string>")
    assert not is_own_file(str(tmp_path / "bridge" / "pause.py"))
    assert user_frames(__import__("sys")._getframe())[0].f_code.co_name == (
        "test_own_code_is_every_file_of_our_packages_and_nothing_else")


# --- against a real target ---------------------------------------------------------------------


def _channel(session, via: str) -> Channel:
    """A raw channel of our own to the target's server socket, or to the pause's lane."""
    if via == "server":
        info = session.info
    else:
        pause = session.wait()
        wait_until(lambda: "lane" in pause.extra, what="the lane event")
        info = dict(session.info, endpoint=f"tcp://127.0.0.1:{pause.extra['lane']}",
                    server_key=pause.extra["lane_key"])
    return Channel(session._context, info, keys.load_client_keypair())


@pytest.mark.parametrize("via", ["server", "lane"])
def test_releases_in_the_header_are_applied_before_the_op(target, attach_to, via):
    s = attach_to(target(PAUSED))
    proxy = s.eval("lock")
    ref = object.__getattribute__(proxy, "_fb_ref")
    count = object.__getattribute__(proxy, "_fb_count")[0]
    held = s.eval(HELD)
    pause = s.wait()
    ch = _channel(s, via)
    try:
        with pytest.raises(RemoteError) as stale:  # released first: the op finds no such reference
            ch.request("ref", {"action": "special", "name": "__repr__", "ref": ref, "thread": pause.thread},
                       pause_id=pause.pause_id, release=[[ref, count]], timeout=10)
        assert stale.value.remote_type == "StaleReference"
    finally:
        ch.close()
    assert s.eval(HELD) == held - 1


@pytest.mark.parametrize("via", ["server", "lane"])
def test_a_malformed_release_field_gets_an_error_reply_and_the_target_goes_on(target, attach_to, via):
    s = attach_to(target(PAUSED))
    proxy = s.eval("lock")
    ref = object.__getattribute__(proxy, "_fb_ref")
    held = s.eval(HELD)
    pause = s.wait()
    ch = _channel(s, via)
    try:
        for bad in ("junk", [[ref]], [[ref, "1"]], [[ref, 1.0]], {"ref": 1}, [[True, 1]], [ref, 1]):
            with pytest.raises(RemoteError, match="'release' must be") as refused:
                ch.request("eval", {"expr": "x"}, pause_id=pause.pause_id, release=bad, timeout=10)
            assert refused.value.remote_type == "ProtocolError"
        result, frames = ch.request("eval", {"expr": "x"}, pause_id=pause.pause_id, timeout=10)
        assert result["value"] == 41 and frames == []  # a small int travels in the header
    finally:
        ch.close()
    assert s.eval(HELD) == held  # nothing of a refused request was applied
    assert proxy.locked() is False  # the live reference still works


@pytest.mark.parametrize("via", ["server", "lane"])
def test_wrongly_typed_pause_id_and_bulk_fields_get_protocol_errors(target, attach_to, via):
    s = attach_to(target(PAUSED))
    pause = s.wait()
    ch = _channel(s, via)
    try:
        for fields in ({"pause_id": str(pause.pause_id)}, {"pause_id": True}, {"bulk": "zip"}, {"bulk": 1},
                       {"bulk_in": [1]}, {"bulk_in": "x"}):
            request = dict({"pause_id": pause.pause_id}, **fields)
            ch.send("eval", {"expr": "x"}, **request)
            with pytest.raises(RemoteError, match=next(iter(fields))) as refused:
                ch.receive(10)
            assert refused.value.remote_type == "ProtocolError", refused.value
        # A well-typed descriptor that names a buffer the request does not have: the bulk
        # path refuses it before waiting for any upload.
        ch.send("set", {"thread": pause.thread}, [b"\x80\x05N."], pause_id=pause.pause_id,
                bulk_in={"mode": "aes", "bufs": [{"i": 5, "n": 1}], "chunk": 1, "token": "00", "key": ""})
        with pytest.raises(RemoteError) as refused:
            ch.receive(10)
        assert refused.value.remote_type == "BulkError"
        if via == "server":  # a server op takes no upload at all: it would hold up the server thread
            ch.send("status", bulk_in={"mode": "aes", "bufs": []})
            with pytest.raises(RemoteError, match="takes no bulk upload") as refused:
                ch.receive(10)
            assert refused.value.remote_type == "BadRequest"
    finally:
        ch.close()
    assert s.eval("x") == 41


def test_a_lane_and_the_server_path_answer_the_same_request_alike(target, attach_to):
    s = attach_to(target(PAUSED))
    pause = s.wait()
    set_frames = wire.dump_value({"x": 41})  # what it is already: both ways see the same frame
    requests = [
        ("stack", {}, None),
        ("locals", {"frame": 0}, None),
        ("eval", {"expr": "x + 1"}, None),
        ("eval", {"expr": "text"}, None),  # too long for the header: pickled in value frames
        ("eval", {"expr": "1 / 0"}, None),  # user code raised: the error and its traceback
        ("eval", {"expr": 5}, None),  # a wrongly typed argument
        ("exec", {"code": "print('hi')"}, None),
        ("get", {"names": ["x", "text"]}, None),
        ("get", {"names": ["nope"]}, None),
        ("set", {}, set_frames),
        ("locals", {"frame": 3}, None),  # no such frame
    ]
    answers = {}
    routed = {}
    for via in ("server", "lane"):
        ch = _channel(s, via)
        before = s.eval(ROUTED)
        try:
            answers[via] = []
            for op, args, frames in requests:
                ch.send(op, dict(args, thread=pause.thread), frames, pause_id=pause.pause_id)
                wait_until(lambda: ch.socket.poll(0), timeout=10, what=f"the {via} reply to {op}")
                parts = ch.socket.recv_multipart()
                header = json.loads(parts[0])
                del header["id"]
                answers[via].append((header, parts[1:]))
        finally:
            ch.close()
        routed[via] = s.eval(ROUTED) - before
    assert routed == {"server": len(requests), "lane": 0}  # each way was the one it says
    for (op, args, _), on_server, on_lane in zip(requests, answers["server"], answers["lane"]):
        assert on_server == on_lane, (op, args)
    assert [h.get("ok") for h, _ in answers["lane"]] == [True, True, True, True, False, False, True, True, False,
                                                         True, False]


def test_releases_ride_once_even_when_the_op_carrying_them_fails(target, attach_to):
    s = attach_to(target(PAUSED))
    held = s.eval(HELD)
    proxy = s.eval("lock")
    other = s.eval("other_lock")
    assert s.eval(HELD) == held + 2
    del proxy
    gc.collect()
    with pytest.raises(AttributeError):  # a ref op that fails in the target, carrying the release
        other.no_such_attribute
    assert s.eval(HELD) == held + 1  # the dropped proxy's handle was released by that request
    again = s.eval("lock")  # the same object, handed out anew
    assert other.locked() is False  # the next request must not release `lock` a second time...
    assert again.locked() is False  # ...or this handle would be stale now
