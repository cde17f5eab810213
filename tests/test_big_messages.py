"""Big results travel: a header over 64 KiB spills into a frame (docs/protocol.md, "spill").

Before, the 64 KiB header limit, which keeps what a receiver parses first small, was
also applied to replies and to the client's own requests: a long output, a deep stack,
many variables, threads or arguments, a write-back of many names and many dropped live
references all failed with ProtocolError, some after the operation had run.
"""

from __future__ import annotations

import gc
import io
from typing import Any

import pytest

from bridge import protocol
from client import jump_context
from client.errors import RemoteError

ARGS = [f"argument-{i:05d}-of-a-long-command-line" for i in range(3000)]

BIG_JOB = """
import sys, threading
import bridge

stop = threading.Event()
workers = [threading.Thread(target=stop.wait, name=f"worker-{i}", daemon=True) for i in range(400)]
for w in workers:
    w.start()

def dive(n):
    if n:
        return dive(n - 1)
    counter = 0
    bridge.set_trace()  # 700 frames deep, 400 other threads
    return counter

ran = dive(700)
stop.set()
for i in range(600):
    globals()[f"var_{i:03d}"] = i
bridge.set_trace()  # module level: over 600 variables
print("done", ran, len(sys.argv), new_1499, flush=True)
"""


def test_long_argv_deep_stack_many_threads_and_long_output(target: Any, attach_to: Any) -> None:
    t = target(BIG_JOB, *ARGS)
    s = attach_to(t)  # hello carries the job's argv: about 100 KB of it
    assert s.eval("sys.argv[1:]") == ARGS

    stack = s.stack()
    assert len(stack) >= 701 and [f.function for f in stack[:701]] == ["dive"] * 701

    workers = [th for th in s.threads() if th["name"].startswith("worker-")]
    assert len(workers) == 400

    out = s.exec("counter += 1\nprint('x' * 70000)")
    assert out == "x" * 70000 + "\n"
    printed = io.StringIO()
    assert s.eval("print('y' * 70000) or counter", stdout=printed) == 1  # the exec ran once
    assert printed.getvalue() == "y" * 70000 + "\n"

    with pytest.raises(RemoteError) as raised:  # a big error travels too
        s.exec("raise ValueError('v' * 100000)")
    assert "v" * 100000 in str(raised.value)

    s.cont()
    s.wait(20)
    s.exec("new_1499 = 0")
    s.cont()
    assert "done 1 3001 0" in t.wait_output("done")


MANY_NAMES_JOB = """
import bridge
for i in range(600):
    globals()[f"var_{i:03d}"] = i
bridge.set_trace()
bridge.set_trace()
print("done", sum(globals()[f"new_{i}"] for i in range(1500)), flush=True)
"""


def test_mount_and_write_back_of_thousands_of_names(target: Any, attach_to: Any) -> None:
    t = target(MANY_NAMES_JOB)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as mount:
        assert all(ns[f"var_{i:03d}"] == i for i in range(600))
        for i in range(1500):
            ns[f"new_{i}"] = i
    assert mount.committed == 1  # reported written (no error), and written:
    assert s.eval("new_1499") == 1499
    again: dict = {}
    with jump_context(s, namespace=again):  # the frame can still be mounted: 2,100 names
        assert again["new_1499"] == 1499 and again["var_599"] == 599
        again["var_000"] = -1
    assert s.eval("var_000") == -1
    s.cont()
    s.wait(20)
    s.cont()
    assert f"done {sum(range(1500))}" in t.wait_output("done")


LIVE_JOB = """
import threading
import bridge
def job():
    locks = [threading.Lock() for _ in range(5000)]
    keep = threading.Lock()
    bridge.set_trace()
    print("done", flush=True)
job()
"""


def test_thousands_of_dropped_live_references(target: Any, attach_to: Any) -> None:
    t = target(LIVE_JOB)
    s = attach_to(t)
    proxies = s.eval("locks")  # 5,000 live references (a lock cannot be copied)
    assert len(proxies) == 5000 and not proxies[0].locked()
    keep = s.eval("keep")
    held = "len(__import__('bridge').refs.TABLE)"
    before = s.eval(held)  # the locks, keep, and method proxies (``locked``) not released yet
    assert before >= 5001
    del proxies
    gc.collect()
    # The next reference op carries all 5,000 releases (over 64 KiB of them).
    assert keep.acquire(False) and keep.locked()
    assert s.eval(held) <= 3  # keep and at most its two method proxies (acquire, locked)
    assert s.eval("keep.locked() and sum(l.locked() for l in locks)") == 0
    s.cont()
    t.wait_output("done")


def test_spill_round_trip_and_malformed_spills() -> None:
    # Small headers are unchanged; a big one spills everything but the envelope.
    small = protocol.request_message(1, "eval", {"expr": "x"})
    assert len(small) == 1 and b"spill" not in small[0]
    big = protocol.request_message(2, "exec", {"code": "#" * 100_000}, [b"value"],
                                   pause_id=3, release=[[i, 1] for i in range(10)])
    assert len(big) == 3 and len(big[0]) < 200
    request = protocol.parse_request(big)
    assert (request.id, request.op, request.args["code"], request.values, request.pause_id) == (
        2, "exec", "#" * 100_000, [b"value"], 3)
    assert request.release == [[i, 1] for i in range(10)]
    reply = protocol.encode_reply(7, {"output": "o" * 70_000})
    header, values = protocol.split_message(reply)
    assert header["result"] == {"output": "o" * 70_000} and values == [] and header["nbuf"] == 0

    def raw(header: dict, *frames: bytes) -> list:
        head = dict(header, v=protocol.PROTOCOL_VERSION, nbuf=len(frames))
        return [protocol.encode_header(head), *frames]

    cases = {
        "not a list": raw({"id": 1, "op": "status", "spill": "args"}, b"{}"),
        "empty list": raw({"id": 1, "op": "status", "spill": []}, b"{}"),
        "envelope field": raw({"id": 1, "op": "status", "spill": ["id"]}, b'{"id": 2}'),
        "no frame": raw({"id": 1, "op": "status", "spill": ["args"]}),
        "not JSON": raw({"id": 1, "op": "status", "spill": ["args"]}, b"\xff"),
        "not an object": raw({"id": 1, "op": "status", "spill": ["args"]}, b"[1]"),
        "other fields": raw({"id": 1, "op": "status", "spill": ["args"]}, b'{"release": []}'),
        "args not an object": raw({"id": 1, "op": "status", "spill": ["args"]}, b'{"args": 5}'),
    }
    for what, frames in cases.items():
        with pytest.raises(protocol.BadRequest) as refused:
            protocol.parse_request(frames)
        assert refused.value.request_id == 1, what
