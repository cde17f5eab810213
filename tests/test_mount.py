"""jump_context end to end: real target processes, real CURVE sessions, real write-back.

Each target pauses in a function, the test mounts the frame into a plain dict namespace
(or the module's globals), changes things, and the target prints what it sees after it
is continued: that output is the proof of what was (or was not) written back.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext

import pytest

import client
from client import LiveRef, NotDeleted, NotPaused, WriteBackConflict, is_live, jump_context
from client.errors import RemoteError
from conftest import other_python

WORK = """
import json, sys
import numpy as np
import pandas as pd
import bridge

def work():
    lst = [1, 2, 3]
    d = {"a": 1}
    arr = np.zeros(4)
    df = pd.DataFrame({"a": [1, 2]})
    n = 5
    untouched = "same"
    def inner():
        return n          # n is a cell variable: the closure must see a write-back
    bridge.set_trace()
    print("RESULT " + json.dumps({"lst": lst, "d": d, "arr": arr.tolist(), "df": df["a"].tolist(),
                                  "n": n, "inner": inner(), "untouched": untouched}), flush=True)

work()
"""


def result_of(target) -> dict:
    out = target.wait_output("RESULT ")
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


ORIGINAL = {"lst": [1, 2, 3], "d": {"a": 1}, "arr": [0.0] * 4, "df": [1, 2], "n": 5, "inner": 5, "untouched": "same"}


def test_rebind_and_in_place_mutations_are_written_back(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        assert sorted(m.mounted) == ["arr", "d", "df", "inner", "lst", "n", "untouched"]
        assert m.live == ["inner"]  # a function of the target's __main__ stays there
        ns["lst"].append(4)                     # in place: list
        ns["d"]["b"] = 2                        # in place: dict
        ns["arr"][1] = 7                        # in place: numpy array
        ns["df"].loc[0, "a"] = 100              # in place: DataFrame
        ns["n"] = 6                             # rebinding a cell variable
        diff = m.diff()
        assert sorted(diff.changed) == ["arr", "d", "df", "lst", "n"]
        assert not diff.added and not diff.deleted
    assert ns == {}
    s.cont()
    assert result_of(t) == {"lst": [1, 2, 3, 4], "d": {"a": 1, "b": 2}, "arr": [0.0, 7.0, 0.0, 0.0],
                            "df": [100, 2], "n": 6, "inner": 6, "untouched": "same"}


def test_exception_in_block_writes_nothing_and_restores(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    ns = {"lst": "mine", "keep": 1}
    with pytest.raises(ZeroDivisionError):
        with jump_context(s, namespace=ns):
            ns["lst"].append(99)
            ns["n"] = 0
            1 / 0
    assert ns == {"lst": "mine", "keep": 1}
    s.cont()
    assert result_of(t) == ORIGINAL


def test_write_back_false_and_discard_write_nothing(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns, write_back=False):
        ns["n"] = 100
    with jump_context(s, namespace=ns) as m:
        ns["lst"].clear()
        m.discard()
    assert s.get("n") == 5 and s.get("lst") == [1, 2, 3]
    s.cont()
    assert result_of(t) == ORIGINAL


def test_commit_inside_the_block_then_discard_the_rest(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        ns["n"] = 7
        written = m.commit()
        assert written.changed == ["n"]
        assert s.get("n") == 7                  # written at once, while the block goes on
        assert not m.diff()                     # measured from the commit now
        ns["d"]["z"] = 1
        m.discard()                             # ...and this later change is thrown away
    s.cont()
    assert result_of(t) == dict(ORIGINAL, n=7, inner=7)


def test_conflict_when_the_target_changed_since_the_mount(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    other = client.attach(t.pid)
    try:
        ns: dict = {}
        with pytest.raises(WriteBackConflict) as info:
            with jump_context(s, namespace=ns):
                ns["lst"].append(4)
                ns["n"] = 6
                other.set(lst=["from", "another", "client"])   # changes lst behind the mount
        assert info.value.names == ["lst"]
        assert "lst" in info.value._repr_html_()
        assert ns == {}
    finally:
        other.close()
    s.cont()
    # nothing of the refused write-back landed (n included): all or nothing
    assert result_of(t) == dict(ORIGINAL, lst=["from", "another", "client"])


def test_in_place_change_by_another_client_is_a_conflict_too(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(WriteBackConflict) as info:
        with jump_context(s, namespace=ns):
            ns["d"]["mine"] = 1
            s.exec("d['theirs'] = 2")   # same object in the target, mutated: hash differs
    assert info.value.names == ["d"]
    s.cont()
    assert result_of(t)["d"] == {"a": 1, "theirs": 2}


def test_write_back_after_resume_is_refused_cleanly(target, attach_to):
    t = target(WORK.replace("work()\n", "work()\nbridge.set_trace()\n"))
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(NotPaused, match="resumed since the mount"):
        with jump_context(s, namespace=ns):
            ns["n"] = 6
            ns["lst"].append(4)
            s.cont()                                   # the frame is gone ...
            t.wait_output("RESULT ")
            s.wait(10)                                 # ... and the process paused elsewhere
    assert ns == {}
    assert result_of(t) == ORIGINAL                    # nothing half-applied
    assert "n" not in s.eval("dir()")


def test_namespace_restore_shadowed_new_and_deleted_names(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    sentinel = object()
    ns = {"n": sentinel, "lst": "notebook list", "mine": 1}
    # 3.12+ cannot unbind a running function's local: the rest is written, the deletions reported.
    no_delete = sys.version_info >= (3, 12)
    with pytest.warns(NotDeleted, match="cannot delete") if no_delete else nullcontext():
        with jump_context(s, namespace=ns, names=["n", "lst", "d"]) as m:
            assert ns["n"] == 5 and ns["lst"] == [1, 2, 3]
            del ns["lst"]          # a mounted name that shadowed a notebook name: deleted
            del ns["d"]            # a mounted name that shadowed nothing: deleted
            ns["fresh"] = 42       # new in the block, not mounted: stays, and is written back
            ns["_private"] = 0     # private: stays in the notebook, not written back
            ns["mine"] = 2         # the notebook's own name, rebound: stays the notebook's business
            diff = m.diff()
            assert sorted(diff.kept if no_delete else diff.deleted) == ["d", "lst"] and diff.added == ["fresh"]
    # Restored exactly either way: shadowed names back, mounted names gone, own names kept.
    assert ns == {"n": sentinel, "lst": "notebook list", "mine": 2, "fresh": 42, "_private": 0}
    assert s.eval("fresh") == 42
    if no_delete:
        assert s.eval("lst") == [1, 2, 3] and sorted(m.not_deleted) == ["d", "lst"]
    else:
        assert "lst" not in s.eval("dir()") and "d" not in s.eval("dir()")


def test_mount_into_the_callers_globals_outside_ipython(target, attach_to):
    t = target(WORK)
    s = attach_to(t)
    g = globals()
    assert "untouched" not in g
    with jump_context(s, names=["untouched", "n"]):
        assert g["untouched"] == "same"
        g["n"] = 8
    assert "untouched" not in g and "n" not in g
    assert s.get("n") == 8


def test_frame_selection(target, attach_to):
    t = target("""
        import bridge
        def inner():
            x = "inner"
            bridge.set_trace()
        def outer():
            y = "outer"
            inner()
            print("Y", y, flush=True)
        outer()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, frame=1, namespace=ns):
        assert "x" not in ns and ns["y"] == "outer"
        ns["y"] = "changed"
    s.cont()
    assert "Y changed" in t.wait_output("Y ")


def test_no_paused_process_is_a_clear_error(target):
    with pytest.raises(client.NoSession, match="no paused process"):
        jump_context()


def test_notebook_function_is_written_back_by_value_and_called_by_the_target(target, attach_to):
    t = target("""
        import bridge
        def work():
            f = None
            bridge.set_trace()
            print("CALLED", f(20), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    factor = 3

    def triple_plus(x):            # defined here (like a notebook cell), closes over `factor`
        return x * factor + 1

    with jump_context(s, namespace=ns):
        ns["f"] = triple_plus
    s.cont()
    assert "CALLED 61" in t.wait_output("CALLED")


def test_notebook_class_instance_written_back(target, attach_to):
    t = target("""
        import bridge
        def work():
            obj = None
            bridge.set_trace()
            print("AREA", obj.area(), type(obj).__name__, flush=True)
        work()
    """)
    s = attach_to(t)

    class Rect:
        def __init__(self, w, h):
            self.w, self.h = w, h

        def area(self):
            return self.w * self.h

    ns: dict = {}
    with jump_context(s, namespace=ns):
        ns["obj"] = Rect(3, 4)
    s.cont()
    assert "AREA 12 Rect" in t.wait_output("AREA")


def test_target_without_cloudpickle_says_so(target, attach_to):
    t = target("""
        import sys
        sys.modules["cloudpickle"] = None      # as if it were not installed in the target
        import bridge
        def work():
            f = None
            bridge.set_trace()
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(RemoteError, match="install cloudpickle in the target"):
        with jump_context(s, namespace=ns):
            ns["f"] = lambda x: x + 1
    assert s.get("f") is None


def test_live_file_and_lock(target, attach_to, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("first\nsecond\n")
    t = target(f"""
        import threading, bridge
        def work():
            fh = open({str(path)!r})
            lock = threading.Lock()
            bridge.set_trace()
            print("LOCKED", lock.locked(), "POS", fh.tell(), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        assert sorted(m.live) == ["fh", "lock"]
        fh, lock = ns["fh"], ns["lock"]
        assert is_live(fh) and type(fh) is LiveRef
        assert fh.readline() == "first\n"               # runs in the target: moves its offset
        assert "TextIOWrapper" in repr(fh)
        assert lock.acquire() is True
        assert lock.locked() is True
        lock.release()
        with lock:                                       # context manager through the proxy
            assert lock.locked() is True
        assert lock.locked() is False
        assert "live" in m._repr_html_()
        assert not m.diff()                              # using a live value is not a change
    s.cont()
    assert "LOCKED False POS 6" in t.wait_output("LOCKED")


def test_size_limit_makes_big_values_live_and_copy_forces_a_copy(target, attach_to):
    t = target("""
        import numpy as np, bridge
        def work():
            big = np.arange(1000.0)
            also_big = np.ones(1000)
            bridge.set_trace()
            print("BIG", big[:3].tolist(), also_big[:2].tolist(), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns, size_limit=1024, copy=["also_big"]) as m:
        assert m.live == ["big"]
        assert len(ns["big"]) == 1000 and ns["big"][2] == 2.0
        ns["big"][0] = -1.0                              # __setitem__ in the target, at once
        assert type(ns["also_big"]).__name__ == "ndarray"
        ns["also_big"][0] = 5
    s.cont()
    assert "BIG [-1.0, 1.0, 2.0] [5.0, 1.0]" in t.wait_output("BIG")


def test_eval_returns_a_live_reference_for_an_unpicklable_value(target, attach_to, tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("hello")
    t = target(f"""
        import bridge
        fh = open({str(path)!r})
        bridge.set_trace()
    """)
    s = attach_to(t)
    fh = s.eval("fh")
    assert is_live(fh) and fh.read() == "hello"
    assert s.eval("fh") is fh                           # one proxy per remote object
    s.set(alias=fh)                                      # a live reference goes back as itself
    assert s.eval("alias is fh") is True


def test_module_frame_mount_and_delete(target, attach_to):
    t = target("""
        import math, bridge
        x = 1
        gone = "bye"
        bridge.set_trace()
        print("X", x, "gone" in globals(), math.pi > 3, flush=True)
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns):
        assert ns["math"] is sys.modules["math"]         # modules come by name, not as copies
        ns["x"] = 2
        del ns["gone"]
    s.cont()
    assert "X 2 False True" in t.wait_output("X ")


def test_mount_of_100_small_variables_is_fast(target, attach_to):
    assigns = "\n".join(f"    v{i} = {{'i': {i}, 'items': list(range(10))}}" for i in range(100))
    t = target(f"import bridge\ndef work():\n{assigns}\n    bridge.set_trace()\nwork()\n")
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        assert len(m.mounted) == 100
        ns["v5"]["i"] = -5
    assert m.mount_seconds < 2.0, m.mount_seconds
    assert s.eval("v5['i']") == -5


# --- other target Pythons (frames are written differently up to 3.12 and from 3.13) ----------

#: Target versions whose frame writes differ: ≤3.11 (LocalsToFast, deletes), 3.12, 3.13+ (PEP 667).
_OTHER_PYTHONS = ("3.9", "3.12", "3.13", "3.14")

PLAIN = """
import json, sys, bridge
def work():
    lst = [1]
    alias = lst
    n = 1
    doomed = "x"
    def inner():
        return n
    bridge.set_trace()
    print("ALIAS " + json.dumps({"alias": alias, "same": alias is lst}), flush=True)
    print("RESULT " + json.dumps({"lst": lst, "n": n, "inner": inner(), "doomed": doomed}), flush=True)
work()
"""


@pytest.mark.parametrize("version", _OTHER_PYTHONS)
def test_other_target_pythons(target, attach_to, version):
    t = target(PLAIN, python=other_python(version))
    s = attach_to(t)
    ns: dict = {}
    no_delete = tuple(map(int, version.split("."))) >= (3, 12)  # 3.12 would set a deleted local to None
    # Where this Python cannot delete a local, the rest is written and the deletion reported.
    with pytest.warns(NotDeleted, match="cannot delete doomed") if no_delete else nullcontext():
        with jump_context(s, namespace=ns, names=["lst", "n", "doomed"]) as m:
            ns["lst"].append(2)
            ns["n"] = 2
            del ns["doomed"]
            diff = m.diff()       # decided before anything is written
            assert diff.in_place == ["lst"] and diff.rebound == ["n"]
            assert (diff.kept, diff.deleted) == ((["doomed"], []) if no_delete else ([], ["doomed"]))
    assert sorted(m.not_deleted) == (["doomed"] if no_delete else [])
    s.cont()
    assert json.loads(t.wait_output("ALIAS ").split("ALIAS ")[1].splitlines()[0]) == {"alias": [1, 2], "same": True}
    if no_delete:
        assert result_of(t) == {"lst": [1, 2], "n": 2, "inner": 2, "doomed": "x"}
    else:  # the deleted local is unbound in the target: its print fails with UnboundLocalError
        assert "UnboundLocalError" in t.wait_output("UnboundLocalError")
