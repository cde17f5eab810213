"""Hostile input: a property-based fuzzer against a real, paused, busy target.

One target process (module-scoped, so the fuzzer's ~10,000 messages do not each pay for a
process start) is paused at a breakpoint while a worker thread of its own keeps counting.
An AUTHORIZED raw DEALER (our CURVE keys, none of our client code) throws malformed,
truncated, oversized, wrongly typed and unknown messages at it. Every message must get an
error reply within a bounded wait; afterwards the worker has kept counting and a normal
client still works. Unauthenticated peers throwing bytes at the TCP port, and messages
bigger than ZMQ_MAXMSGSIZE, must do nothing at all.

Messages are sent in small batches per example (then as many replies are awaited), which
keeps the pipe busy without giving up the one-reply-per-message check.
"""

from __future__ import annotations

import json
import pickle
import socket
from typing import Any, Dict, Iterator, List, Optional

import pytest
import zmq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bridge import keys, protocol, wire
from client.session import Session
from rawclient import RawClient
from target_process import Launcher, Target
from waiting import wait_for

REPLY_WAIT_S = 5.0  # bounded wait for each reply

FUZZ = settings(
    deadline=None,
    database=None,
    # No shrinking: a broken target makes every later example fail slowly (the reply wait),
    # so shrinking would take minutes; the failing batch is printed as it is.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

#: Messages sent per test (the report's total is their sum).
SENT: Dict[str, int] = {}


class FuzzTarget:
    """The module's target process (tests/targets/busy_worker.py) and what a client needs to reach it."""

    def __init__(self, target: Target, keypair: keys.KeyPair) -> None:
        self.target = target
        self.proc = target.proc
        self.info = target.connection_info(paused=True)
        self.keypair = keypair
        self.pause = self.info["paused"][0]

    def output(self) -> str:
        return self.target.output()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def session(self) -> Session:
        """A normal client session (with this module's keys)."""
        return Session(self.info, keypair=self.keypair, timeout=10)

    def port(self) -> int:
        return int(self.info["endpoint"].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    base = tmp_path_factory.mktemp("fuzz")
    env = {"BRIDGE_CONFIG_DIR": str(base / "config"), "BRIDGE_RUNTIME_DIR": str(base / "runtime")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        keypair = keys.load_client_keypair()  # created and authorized for this module's target
    # Module-scoped, so the test's own BRIDGE_* dirs do not apply: the module's, and none
    # of the developer's settings.
    launcher = Launcher(base, env=dict(env, BRIDGE_WAIT_TIMEOUT=None, BRIDGE_HOST=None, BRIDGE_PORT=None))
    try:
        yield FuzzTarget(launcher.script("busy_worker"), keypair)
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def raw(fuzz_target: FuzzTarget) -> Iterator[RawClient]:
    """An authorized raw client on the target's server socket."""
    with RawClient.to(fuzz_target.info, keypair=fuzz_target.keypair) as c:
        yield c


@pytest.fixture(scope="module")
def lane(fuzz_target: FuzzTarget) -> Iterator[RawClient]:
    """A raw client on the paused thread's lane (its port and key come with the pause)."""
    s = fuzz_target.session()
    try:
        pause = s.wait(10)
        wait_for(lambda: "lane" in pause.extra, what="the pause to name its lane")  # its own event, right after
    finally:
        s.close()
    with RawClient.to(fuzz_target.info, lane=pause, keypair=fuzz_target.keypair) as c:
        yield c


def expect_errors(raw: RawClient, target: FuzzTarget, name: str, messages: List[List[bytes]]) -> List[Dict[str, Any]]:
    try:
        replies = raw.exchange(messages, REPLY_WAIT_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nsent: {messages}\ntarget alive: {target.alive()}\n"
                             f"target output:\n{target.output()[-3000:]}") from None
    bad = [r for r in replies if r.get("ok") is not False or "error" not in r]
    assert not bad, f"accepted malformed messages: {bad}"
    for r in replies:
        assert isinstance(r["error"].get("type"), str) and isinstance(r["error"].get("message"), str)
    SENT[name] = SENT.get(name, 0) + len(messages)
    assert target.alive(), target.output()
    return replies


V = protocol.PROTOCOL_VERSION


def header(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# --- strategies -------------------------------------------------------------------------------

# Flat (non-recursive) strategies on purpose: generating values must not cost more than
# the round trip, or 10,000 messages take minutes.
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=4),
                        st.dictionaries(st.text(max_size=8), json_scalars, max_size=4))
# null is not a wrong value: the protocol reads an argument that is null as one left out
# (a `cont` with thread null resumes the default thread), so the "wrong" values exclude it.
_floats = st.floats(allow_nan=False)
_containers = st.one_of(st.lists(json_scalars, max_size=4), st.dictionaries(st.text(max_size=8), json_scalars, max_size=4))
not_int = st.one_of(st.booleans(), _floats, st.text(max_size=20), _containers)
not_str = st.one_of(st.booleans(), st.integers(), _floats, _containers)
not_list_of_str = st.one_of(st.booleans(), st.integers(), _floats, st.text(max_size=20),
                            st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
                            st.lists(st.one_of(st.integers(), st.none(), _floats), min_size=1, max_size=4))
not_dict = st.one_of(st.booleans(), st.integers(), _floats, st.text(max_size=20), st.lists(json_scalars, max_size=4))
bad_id = st.one_of(st.booleans(), _floats, _containers)
bad_version = st.one_of(st.none(), st.booleans(), st.integers().filter(lambda v: v != V),
                      st.just(1.0), st.text(max_size=5), _containers)

#: Ops our core registers, with the arguments each one checks (``pause_id`` is a header
#: field, the others are ``args``). Resume ops only get bad routing fields (thread,
#: pause_id): anything else they would accept -- and resume.
CHECKED_ARGS = {
    "stack": ["thread", "pause_id"],
    "locals": ["thread", "pause_id", "frame"],
    "eval": ["thread", "pause_id", "frame", "expr"],
    "exec": ["thread", "pause_id", "frame", "code"],
    "get": ["thread", "pause_id", "frame", "names"],
    "set": ["thread", "pause_id", "frame", "delete"],
    "cont": ["thread", "pause_id"],
    "step": ["thread", "pause_id"],
    "next": ["thread", "pause_id"],
    "step_out": ["thread", "pause_id"],
}


@st.composite
def wrongly_typed_requests(draw: Any, target: FuzzTarget) -> List[List[bytes]]:
    """One drawn wrong value per argument kind, put into EVERY known op that checks that argument.

    Wrong means of the wrong type, or an int naming a thread/frame/pause that is not there.
    (Reusing a draw across ops keeps generation cheaper than the round trips.)
    """
    real = {"thread": target.pause["thread"], "pause_id": target.pause["pause_id"]}
    wrong = {
        "thread": draw(st.one_of(not_int, st.integers(-2**62, 2**62).filter(lambda i: i != real["thread"]))),
        "pause_id": draw(st.one_of(not_int, st.integers(-2**62, 2**62).filter(lambda i: i != real["pause_id"]))),
        "frame": draw(st.one_of(not_int, st.integers(-2**62, -1), st.integers(1, 2**62))),  # one frame: 0
        "names": draw(not_list_of_str),
        "delete": draw(not_list_of_str),
        "expr": draw(not_str),
        "code": draw(not_str),
    }
    with_thread = draw(st.booleans())  # also name the real paused thread, so the op itself runs
    messages = []
    for op, checked in sorted(CHECKED_ARGS.items()):
        for name in checked:
            fields: Dict[str, Any] = {"v": V, "id": len(messages), "op": op, "args": {}}
            if name == "pause_id":
                fields["pause_id"] = wrong[name]
            else:
                fields["args"][name] = wrong[name]
            if with_thread and name not in ("thread", "pause_id"):
                fields["args"]["thread"] = real["thread"]
            messages.append([header(**fields)])
    return messages


@st.composite
def wrongly_typed_lane_requests(draw: Any, target: FuzzTarget) -> List[List[bytes]]:
    """As :func:`wrongly_typed_requests`, for a lane: every request names the real pause
    (a lane refuses any other before looking further), except those whose wrong argument
    is ``pause_id`` itself."""
    real = {"thread": target.pause["thread"], "pause_id": target.pause["pause_id"]}
    messages = []
    for frames in draw(wrongly_typed_requests(target)):
        fields = json.loads(frames[0])
        fields.setdefault("pause_id", real["pause_id"])
        messages.append([json.dumps(fields).encode()])
    return messages


@st.composite
def malformed_header(draw: Any) -> List[bytes]:
    """A header broken in one way: version, id, op, args, or nbuf."""
    fields: Dict[str, Any] = {"v": 1, "id": draw(st.integers(0, 2**31)), "op": "status", "args": {}}
    flaw = draw(st.sampled_from(["v", "no_v", "id", "no_id", "op", "no_op", "args", "nbuf"]))
    if flaw == "v":
        fields["v"] = draw(bad_version)
    elif flaw == "id":
        fields["id"] = draw(bad_id)
    elif flaw == "op":
        fields["op"] = draw(not_str)
    elif flaw == "args":
        fields["args"] = draw(not_dict)
    elif flaw == "nbuf":
        fields["nbuf"] = draw(st.one_of(not_int, st.integers(-2**40, -1), st.integers(1, 2**40)))
    else:
        del fields[flaw[3:]]
    return [json.dumps(fields).encode()]


not_release = st.one_of(st.booleans(), st.integers(), _floats, st.text(max_size=20),
                        st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
                        st.lists(st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), min_size=1, max_size=4)
                        .filter(lambda v: not all(isinstance(p, list) and len(p) == 2 and all(
                            type(x) is int for x in p) for p in v)))
not_bulk_mode = st.one_of(st.booleans(), st.integers(), _floats, _containers,
                          st.text(max_size=8).filter(lambda v: v not in protocol.BULK_MODES))


@st.composite
def wrongly_typed_transport_fields(draw: Any, target: FuzzTarget) -> List[bytes]:
    """A request (a server op or a frame op for the real pause) with one transport header
    field of the wrong type: refused as a whole, before any op runs."""
    fields: Dict[str, Any] = {"v": V, "id": draw(st.integers(0, 2**31)),
                              "op": draw(st.sampled_from(["status", "eval", "ref", "cont"])),
                              "args": {"expr": "1", "action": "release"}, "pause_id": target.pause["pause_id"]}
    flaw = draw(st.sampled_from(["pause_id", "release", "bulk", "bulk_in"]))
    fields[flaw] = draw({"pause_id": not_int, "release": not_release, "bulk": not_bulk_mode,
                         "bulk_in": not_dict}[flaw])
    return [header(**fields)]


unknown_op = st.text(min_size=0, max_size=40).filter(lambda s: s not in CHECKED_ARGS and s not in (
    "hello", "subscribe", "unsubscribe", "status", "threads"))


@st.composite
def unknown_op_request(draw: Any) -> List[bytes]:
    """A well-formed request for an op nobody registered (any args, any value frames)."""
    op = draw(unknown_op.filter(lambda s: not _is_registered(s)))
    extra = draw(st.lists(st.binary(max_size=64), max_size=2))
    return [header(v=V, id=draw(st.integers(0, 2**31)), op=op, args=draw(st.dictionaries(
        st.text(max_size=8), json_values, max_size=2)), nbuf=len(extra)), *extra]


def _is_registered(op: str) -> bool:
    from bridge import ops

    ops.load_all()
    return op in ops.FRAME_OPS or op in ops.SERVER_OPS


@st.composite
def garbage_header(draw: Any) -> List[bytes]:
    """Header frames that are not UTF-8 JSON objects: raw bytes, invalid UTF-8, JSON non-objects, empty."""
    kind = draw(st.sampled_from(["bytes", "non_utf8", "json_non_object", "empty", "truncated"]))
    if kind == "bytes":
        first = draw(st.binary(max_size=256))
    elif kind == "non_utf8":
        first = b'{"v":%d,"id":1,"op":"' % V + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + b'"}'
    elif kind == "json_non_object":
        first = json.dumps(draw(not_dict)).encode()
    elif kind == "empty":
        first = b""
    else:
        full = header(v=V, id=draw(st.integers(0, 99)), op="status", args={"thread": 1})
        first = full[: draw(st.integers(0, len(full) - 1))]
    extra = draw(st.lists(st.binary(max_size=32), max_size=3))
    return [first, *extra]


@st.composite
def wrong_frame_count(draw: Any) -> List[bytes]:
    """A valid header whose nbuf disagrees with the value frames that follow (empty ones included)."""
    nbuf = draw(st.integers(0, 6))
    count = draw(st.integers(0, 6).filter(lambda n: n != nbuf))
    op = draw(st.sampled_from(["status", "eval", "set", "cont"]))
    frames = draw(st.lists(st.sampled_from([b"", b"\x80\x05.", b"x" * 100]), min_size=count, max_size=count))
    return [header(v=V, id=draw(st.integers(0, 2**31)), op=op, args={}, nbuf=nbuf), *frames]


def _valid_pickles() -> List[bytes]:
    import numpy as np

    values = [{"a": 1}, {"x": [1, 2, 3], "y": "text"}, list(range(50)), np.arange(10)]
    return [b"".join(bytes(f) for f in wire.dump_value(v)) for v in values]


VALID_PICKLES = _valid_pickles()


@st.composite
def bad_pickle_set(draw: Any) -> List[bytes]:
    """A ``set`` whose value frames are not a pickled dict: truncated, corrupt, or the wrong kind."""
    kind = draw(st.sampled_from(["truncated", "bad_opcode", "random_after_proto", "not_a_dict", "missing_buffer"]))
    if kind == "truncated":  # a proper prefix never reaches STOP: always an error
        full = draw(st.sampled_from(VALID_PICKLES))
        stream = full[: draw(st.integers(0, len(full) - 1))]
    elif kind == "bad_opcode":
        stream = b"\xff" + draw(st.binary(max_size=64))
    elif kind == "random_after_proto":
        stream = b"\x80\x05\xff" + draw(st.binary(max_size=64))
    elif kind == "not_a_dict":
        stream = pickle.dumps(draw(st.one_of(st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=10))),
                              protocol=5)
    else:  # announces an out-of-band buffer that never comes
        stream = pickle.dumps(pickle.PickleBuffer(b"abcdef"), protocol=5, buffer_callback=lambda b: False)
    return [header(v=V, id=draw(st.integers(0, 2**31)), op="set", args={}, nbuf=1), stream]


@st.composite
def huge_header(draw: Any) -> List[bytes]:
    """A header over MAX_HEADER_BYTES (valid JSON otherwise): refused by size."""
    size = draw(st.integers(protocol.MAX_HEADER_BYTES + 1, 4 * protocol.MAX_HEADER_BYTES))
    pad = "p" * size
    return [header(v=V, id=1, op="status", args={"pad": pad})]


def _json_object_keys(body: bytes) -> Optional[set]:
    """The keys of ``body`` if it is a JSON object, else None (random bytes may begin with "{")."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return set(value) if isinstance(value, dict) else None


@st.composite
def bad_spill(draw: Any) -> List[bytes]:
    """A header whose ``spill`` (fields moved to the last frame) is malformed or lies (never
    a well-formed one: that would run the op, and ``cont`` would resume the target)."""
    names = draw(st.one_of(not_list_of_str, st.just([]), st.lists(st.sampled_from(sorted(protocol.ENVELOPE_FIELDS)),
                                                                    min_size=1, max_size=2),
                           st.just(["args"])))
    op = draw(st.sampled_from(["status", "eval", "set", "cont", "threads"]))
    body = draw(st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode()),
                          st.dictionaries(st.sampled_from(["args", "release", "pause_id", "id"]), json_values,
                                          max_size=3).map(lambda d: json.dumps(d).encode())))
    if names == ["args"] and _json_object_keys(body) == {"args"}:
        body = b'{"args": 1}'  # the one well-formed case: make its args wrong
    frames = draw(st.sampled_from([[], [body], [b"", body]]))
    return [header(v=V, id=draw(st.integers(0, 2**31)), op=op, spill=names, nbuf=len(frames)), *frames]


def batches(strategy: Any) -> Any:
    return st.lists(strategy, min_size=3, max_size=10)


# --- the fuzz tests ---------------------------------------------------------------------------------


# 250 examples x 29 messages, plus >= 3 per example below: over 10,000 even at the minimum.
@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_wrongly_typed_args_of_every_known_op(fuzz_target, raw, data):
    msgs = data.draw(wrongly_typed_requests(fuzz_target))
    expect_errors(raw, fuzz_target, "wrong_types", msgs)


@settings(FUZZ, max_examples=250)
@given(msgs=batches(malformed_header()))
def test_malformed_headers(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "malformed_header", msgs)


@settings(FUZZ, max_examples=150)
@given(msgs=batches(unknown_op_request()))
def test_unknown_ops(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "unknown_op", msgs)


@settings(FUZZ, max_examples=250)
@given(msgs=batches(garbage_header()))
def test_garbage_non_utf8_and_empty_headers(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "garbage_header", msgs)


@settings(FUZZ, max_examples=150)
@given(msgs=batches(wrong_frame_count()))
def test_wrong_value_frame_counts(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "wrong_nbuf", msgs)


@settings(FUZZ, max_examples=250)
@given(msgs=batches(bad_pickle_set()))
def test_bad_pickles_in_value_frames(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "bad_pickle", msgs)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_wrongly_typed_transport_fields(fuzz_target, raw, data):
    msgs = data.draw(batches(wrongly_typed_transport_fields(fuzz_target)))
    replies = expect_errors(raw, fuzz_target, "transport_fields", msgs)
    assert all(r["error"]["type"] == "ProtocolError" for r in replies), replies


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_lane_wrongly_typed_args_of_every_known_op(fuzz_target, lane, data):
    msgs = data.draw(wrongly_typed_lane_requests(fuzz_target))
    expect_errors(lane, fuzz_target, "lane_wrong_types", msgs)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_lane_malformed_garbage_and_unknown(fuzz_target, lane, data):
    msgs = data.draw(batches(st.one_of(malformed_header(), garbage_header(), unknown_op_request(),
                                       wrong_frame_count(), wrongly_typed_transport_fields(fuzz_target))))
    expect_errors(lane, fuzz_target, "lane_malformed", msgs)


@settings(FUZZ, max_examples=150)
@given(msgs=batches(bad_spill()))
def test_bad_spills(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "bad_spill", msgs)


@settings(FUZZ, max_examples=40)
@given(msgs=st.lists(huge_header(), min_size=1, max_size=2))
def test_huge_headers(fuzz_target, raw, msgs):
    expect_errors(raw, fuzz_target, "huge_header", msgs)


# --- unauthenticated peers and oversized messages -----------------------------------------------------

ZMTP_CURVE_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00" * 31


@settings(FUZZ, max_examples=60)
@given(junk=st.one_of(st.binary(min_size=1, max_size=2048),
                      st.binary(max_size=512).map(lambda b: ZMTP_CURVE_GREETING + b)))
def test_unauthenticated_random_bytes_do_nothing(fuzz_target, junk):
    with socket.create_connection(("127.0.0.1", fuzz_target.port()), timeout=5) as sock:
        try:
            sock.sendall(junk)
            sock.settimeout(2)
            # Whatever comes back is at most a ZMTP greeting/handshake command, never a reply.
            got = sock.recv(4096)
            assert b'"ok"' not in got
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
    SENT["raw_tcp"] = SENT.get("raw_tcp", 0) + 1
    assert fuzz_target.alive(), fuzz_target.output()


def test_oversized_message_is_refused_unread(fuzz_target):
    """A frame over ZMQ_MAXMSGSIZE: the peer is cut off at the size field; nothing is buffered."""
    with RawClient.to(fuzz_target.info, keypair=fuzz_target.keypair, monitor=zmq.EVENT_DISCONNECTED) as c:
        # A first small request proves the connection is up and authenticated.
        assert c.exchange([[header(v=V, id=1, op="status", args={})]])[0]["ok"] is True
        rss_before = fuzz_target.rss_bytes()
        payload = bytearray(protocol.MAX_MESSAGE_BYTES + 1)
        c.send([header(v=V, id=2, op="set", args={}, nbuf=1), zmq.Frame(payload)], copy=False)
        del payload
        try:
            c.wait_event(zmq.EVENT_DISCONNECTED, timeout=30)
        except AssertionError:
            raise AssertionError("the target did not cut off an oversized message") from None
        grown = fuzz_target.rss_bytes() - rss_before
        assert grown < protocol.MAX_MESSAGE_BYTES // 8, f"target RSS grew by {grown} bytes"
        c.expect_nothing(0.2)  # an oversized message gets no reply
    assert fuzz_target.alive()
    SENT["oversized"] = SENT.get("oversized", 0) + 1


def test_after_the_fuzzing_the_target_and_a_normal_client_are_fine(fuzz_target):
    s = fuzz_target.session()
    try:
        s.wait(10)
        assert s.eval("secret_value") == 42
        before = s.eval("counter[0]")
        # The worker counts every ~1 ms: it shows it still runs within the wait, or it stopped.
        wait_for(lambda: s.eval("counter[0]") > before, 10, "the target's own work (its counter) to go on")
        assert s.locals()["secret_value"].repr == "42"
    finally:
        s.close()
    out = fuzz_target.output()
    assert "Traceback" not in out, out
    total = sum(v for k, v in SENT.items() if k not in ("raw_tcp", "oversized"))
    print(f"\nfuzzer: {total} malformed messages from an authorized client ({SENT})")
    if {"wrong_types", "malformed_header", "unknown_op", "garbage_header", "wrong_nbuf", "bad_pickle",
            "huge_header"} <= set(SENT):
        assert total >= 10_000, SENT
