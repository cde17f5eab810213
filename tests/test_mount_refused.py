"""A refused write-back loses nothing: the whole user path, against real targets.

The block fixes ``rows`` and also creates a value that cannot travel (an open file). The
write-back is refused as a whole (nothing is written); the changes stay reachable on the
exception and the Mount, and the advice in the message, followed as written, works.
"""

from __future__ import annotations

import json
import warnings

import pytest

import client
from client import WriteBackUnpicklable, jump_context

JOB = """
import json, bridge
def work():
    rows = [3, -1, 2]
    seen = {"n": 0}
    bridge.set_trace()
    print("RESULT " + json.dumps({"rows": rows, "seen": seen, "fh": "fh" in dir()}), flush=True)
work()
"""


def result_of(target) -> dict:
    out = target.wait_output("RESULT ")
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def refused_block(s, ns, path):
    with jump_context(s, namespace=ns) as m:
        ns["rows"] = [r for r in ns["rows"] if r > 0]   # the fix
        ns["seen"]["n"] += 1                             # and an in-place change
        ns["fh"] = open(path, "a")                       # a file open for writing cannot be sent
    return m


def test_the_advice_in_the_message_works(target, attach_to, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    t = target(JOB)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(WriteBackUnpicklable) as info:
        refused_block(s, ns, path)
    exc = info.value
    m = exc.mount
    assert exc.names == ["fh"]
    assert "nothing written" in str(exc) and "m.retry(exclude=['fh'])" in str(exc)
    assert exc.changes["rows"] == [3, 2] and exc.changes["seen"] == {"n": 1} and "fh" in exc.changes
    assert m.pending == exc.changes and client.last_mount() is m
    assert list(ns) == ["fh"]                            # restored all the same (fh was made in the block)
    assert s.eval("rows") == [3, -1, 2]                  # nothing was written
    written = m.retry(exclude=["fh"])                    # what the message says
    assert sorted(written.changed) == ["rows", "seen"] and written.in_place == ["seen"]
    assert list(m.pending) == ["fh"]                     # the excluded one is still there
    m.pending["fh"].close()
    s.cont()
    assert result_of(t) == {"rows": [3, 2], "seen": {"n": 1}, "fh": False}


def test_reopen_puts_the_changes_back_to_edit(target, attach_to, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    t = target(JOB)
    s = attach_to(t)
    ns = {"mine": 1}
    with pytest.raises(WriteBackUnpicklable):
        refused_block(s, ns, path)
    m = client.last_mount()                              # no `as m` needed
    with m.reopen():
        assert ns["rows"] == [3, 2] and ns["seen"] == {"n": 1}
        ns["fh"].close()
        del ns["fh"]
    assert ns == {"mine": 1} and not m.pending
    s.cont()
    assert result_of(t) == {"rows": [3, 2], "seen": {"n": 1}, "fh": False}


def test_an_exception_in_the_block_keeps_the_work_too(target, attach_to):
    t = target(JOB)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(ZeroDivisionError):
        with jump_context(s, namespace=ns) as m:
            ns["rows"] = [1]
            1 / 0
    assert s.eval("rows") == [3, -1, 2] and m.pending == {"rows": [1]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.retry()
    assert s.eval("rows") == [1] and not m.pending
    s.cont()
    assert result_of(t)["rows"] == [1]
