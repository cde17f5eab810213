"""The message spec (bridge/protocol.py) and the target's one place for transport fields.

Transport fields (``pause_id``, ``release``, ``bulk``, ``bulk_in``) are header fields: they
are checked when a request is parsed, a wrong one gets a ProtocolError reply (never a dead
target), releases are applied before any op runs, and a pause's lane and the server socket
answer the same request the same way. The requests are made by hand (tests/rawclient.py)
against bridge's server running in the test process (tests/harness.py).
"""

from __future__ import annotations

import gc
import json
import os
import threading

import pytest

import bridge
from bridge import protocol, refs, wire
from bridge.own_code import is_own_file, user_frames
from rawclient import RawClient
from waiting import wait_for


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


# --- against bridge's server, in this process ------------------------------------------------------


def _paused(inproc):
    """A worker paused with a few variables, and a session attached to it."""

    def job():
        x = 41
        text = "t" * 1000
        lock = threading.Lock()
        other_lock = threading.Lock()
        bridge.set_trace()
        return x, text, lock, other_lock

    inproc.run_paused(job)
    return inproc.attach()


def _raw(inproc, session, via: str) -> RawClient:
    """A raw client to the server socket, or to the pause's lane."""
    if via == "server":
        return inproc.raw()
    pause = session.wait()
    wait_for(lambda: "lane" in pause.extra, what="the lane event")
    return inproc.raw(lane=pause)


def _ref_of(proxy) -> "tuple[int, int]":
    """(ref id, handles held) of a live-reference proxy."""
    return object.__getattribute__(proxy, "_fb_ref"), object.__getattribute__(proxy, "_fb_count")[0]


@pytest.mark.parametrize("via", ["server", "lane"])
def test_releases_in_the_header_are_applied_before_the_op(inproc, via):
    s = _paused(inproc)
    ref, count = _ref_of(s.eval("lock"))
    held = len(refs.TABLE)
    pause = s.wait()
    raw = _raw(inproc, s, via)
    stale = raw.request("ref", {"action": "special", "name": "__repr__", "ref": ref, "thread": pause.thread},
                        pause_id=pause.pause_id, release=[[ref, count]])
    assert stale.error_type == "StaleReference"  # released first: the op finds no such reference
    assert len(refs.TABLE) == held - 1


@pytest.mark.parametrize("via", ["server", "lane"])
def test_a_malformed_release_field_gets_an_error_reply_and_the_target_goes_on(inproc, via):
    s = _paused(inproc)
    proxy = s.eval("lock")
    ref, _ = _ref_of(proxy)
    held = len(refs.TABLE)
    pause = s.wait()
    raw = _raw(inproc, s, via)
    for bad in ("junk", [[ref]], [[ref, "1"]], [[ref, 1.0]], {"ref": 1}, [[True, 1]], [ref, 1]):
        refused = raw.request("eval", {"expr": "x"}, pause_id=pause.pause_id, release=bad)
        assert refused.error_type == "ProtocolError" and "'release' must be" in refused.error["message"], bad
    answered = raw.request("eval", {"expr": "x"}, pause_id=pause.pause_id)
    assert answered.result["value"] == 41 and answered.frames == []  # a small int travels in the header
    assert len(refs.TABLE) == held  # nothing of a refused request was applied
    assert proxy.locked() is False  # the live reference still works


@pytest.mark.parametrize("via", ["server", "lane"])
def test_wrongly_typed_pause_id_and_bulk_fields_get_protocol_errors(inproc, via):
    s = _paused(inproc)
    pause = s.wait()
    raw = _raw(inproc, s, via)
    for fields in ({"pause_id": str(pause.pause_id)}, {"pause_id": True}, {"bulk": "zip"}, {"bulk": 1},
                   {"bulk_in": [1]}, {"bulk_in": "x"}):
        refused = raw.request("eval", {"expr": "x"}, **dict({"pause_id": pause.pause_id}, **fields))
        assert refused.error_type == "ProtocolError", refused.header
        assert next(iter(fields)) in refused.error["message"]
    # A well-typed descriptor that names a buffer the request does not have: the bulk
    # path refuses it before waiting for any upload.
    refused = raw.request("set", {"thread": pause.thread}, [b"\x80\x05N."], pause_id=pause.pause_id,
                          bulk_in={"mode": "aes", "bufs": [{"i": 5, "n": 1}], "chunk": 1, "token": "00", "key": ""})
    assert refused.error_type == "BulkError"
    if via == "server":  # a server op takes no upload at all: it would hold up the server thread
        refused = raw.request("status", bulk_in={"mode": "aes", "bufs": []})
        assert refused.error_type == "BadRequest" and "takes no bulk upload" in refused.error["message"]
    assert s.eval("x") == 41


def test_a_lane_and_the_server_path_answer_the_same_request_alike(inproc):
    s = _paused(inproc)
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
        ("locals", {"frame": 99}, None),  # no such frame
    ]
    answers = {}
    routed = {}
    for via in ("server", "lane"):
        raw = _raw(inproc, s, via)
        before = inproc.server.routed_frame_ops
        answers[via] = []
        for op, args, frames in requests:
            raw.send_request(op, dict(args, thread=pause.thread), frames, pause_id=pause.pause_id)
            reply = raw.receive(10)
            del reply.header["id"]
            answers[via].append((reply.header, reply.frames))
        routed[via] = inproc.server.routed_frame_ops - before
    assert routed == {"server": len(requests), "lane": 0}  # each way was the one it says
    for (op, args, _), on_server, on_lane in zip(requests, answers["server"], answers["lane"]):
        assert on_server == on_lane, (op, args)
    assert [h.get("ok") for h, _ in answers["lane"]] == [True, True, True, True, False, False, True, True, False,
                                                         True, False]


def test_releases_ride_once_even_when_the_op_carrying_them_fails(inproc):
    s = _paused(inproc)
    held = len(refs.TABLE)
    proxy = s.eval("lock")
    other = s.eval("other_lock")
    assert len(refs.TABLE) == held + 2
    del proxy
    gc.collect()
    with pytest.raises(AttributeError):  # a ref op that fails in the target, carrying the release
        other.no_such_attribute
    assert len(refs.TABLE) == held + 1  # the dropped proxy's handle was released by that request
    again = s.eval("lock")  # the same object, handed out anew
    assert other.locked() is False  # the next request must not release `lock` a second time...
    assert again.locked() is False  # ...or this handle would be stale now
