"""Variable summaries (``locals``, watches) are bounded in time and size, and one bad value
never costs another its summary.

Before, ``locals`` computed the full repr of every variable on the paused thread: a
``__repr__`` that blocks wedged it for good (``cont()`` timed out too), a 512 MiB bytes
object cost seconds and gigabytes, and a ``__getattr__`` that raises broke the whole frame.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.bounded_repr import BoundedRepr
from bridge.summaries import REPR_LIMIT, summarize
from conftest import wait_until

JOB = """
import resource, threading
import bridge

class Blocks:
    def __repr__(self):
        threading.Event().wait()  # for ever

class Loops:
    spins = 0
    def __repr__(self):
        while True:
            Loops.spins += 1

class Counted:
    calls = 0
    def __repr__(self):
        Counted.calls += 1
        return "c"

class BadAttr:
    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")

class RaisesSystemExit:
    def __repr__(self):
        raise SystemExit(3)

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def job():
    blocker = Blocks()
    same_type = Blocks()
    looper = Loops()
    bad = BadAttr()
    raiser = RaisesSystemExit()
    big_bytes = b"a" * (512 << 20)
    big_list = [Counted()] * 20_000_000
    huge_int = 2 ** 100_000
    plain = {"a": [1, 2], "b": "text"}
    bridge.set_trace()
    bridge.set_trace()
    print("after", len(plain), flush=True)

job()
"""


def test_locals_is_bounded_and_one_bad_value_spoils_nothing(target: Any, attach_to: Any) -> None:
    t = target(JOB)
    s = attach_to(t)
    peak_before = s.eval("peak_kib()")
    summary = s.locals()

    assert summary["plain"].repr == "{'a': [1, 2], 'b': 'text'}" and summary["plain"].length == 2
    assert "did not finish within" in summary["blocker"].repr and summary["blocker"].type == "__main__.Blocks"
    assert "skipped: an earlier one has been running" in summary["same_type"].repr
    assert "did not finish within" in summary["looper"].repr
    assert summary["bad"].repr.startswith("<__main__.BadAttr object at") and summary["bad"].shape is None
    assert summary["raiser"].repr == "<__main__.RaisesSystemExit object; repr failed: SystemExit>"
    assert summary["big_bytes"].repr.startswith("b'aaaa") and summary["big_bytes"].length == 512 << 20
    assert len(summary["big_bytes"].repr) <= 120
    assert summary["big_list"].repr == "[" + "c, " * 12 + "...]" and summary["big_list"].length == 20_000_000
    assert summary["huge_int"].repr == "<int of 100001 bits>"
    # Bounded work: a few elements of the list looked at, no full repr of the bytes built.
    assert s.eval("Counted.calls") <= 12
    assert s.eval("peak_kib()") - peak_before < 64 << 10

    # The repr that looped was stopped (an exception raised into its helper thread).
    def stopped() -> bool:
        first = s.eval("Loops.spins")
        time.sleep(0.2)  # sampling a counter: nothing to wait on
        return s.eval("Loops.spins") == first

    wait_until(stopped, 10, "the looping __repr__ to stop")

    # The paused thread stayed responsive: it answers, and a blocked type is skipped at once.
    assert s.eval("len(plain)") == 2
    assert "skipped" in s.locals()["blocker"].repr
    assert s.watch("blocker") == ["blocker"]
    s.cont()
    pause = s.wait(20)
    assert "skipped" in pause.extra["watches"]["blocker"]
    s.cont()
    assert "after 2" in t.wait_output("after")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                     st.binary(max_size=30))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=14), st.tuples(inner, inner), st.dictionaries(st.text(max_size=5), inner, max_size=9),
    st.frozensets(st.integers(), max_size=14), st.sets(st.text(max_size=3), max_size=14)), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(value=_values)
def test_builtin_values_repr_as_python_does_until_cut(value: Any) -> None:
    text = BoundedRepr(REPR_LIMIT, strict=True).repr(value)
    assert len(text) <= REPR_LIMIT
    if "..." not in text and "..." not in repr(value):  # not cut: exactly Python's repr
        assert text == repr(value)
    summary = summarize(value)
    assert summary["repr"] == text and summary["type"] == type(value).__name__
