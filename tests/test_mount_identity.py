"""Write-back keeps identity (API.md, "Write-back keeps identity"): real targets, real sessions.

Each target holds aliases of the objects it pauses with (another name, a container that
holds them); after the write-back it prints whether the aliases see the change and are
still the same objects. That output is the proof.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from client import FrameWriteError, jump_context
from conftest import other_python

#: A module of the target's (importable by the notebook too: tests/ is on both paths).
SHAPES = '''
class Cfg:
    def __init__(self):
        self.lr = 0.1
        self.tags = ["a"]

class Slotted:
    __slots__ = ("x",)
    def __init__(self):
        self.x = [1]
'''


def result_of(target) -> dict:
    out = target.wait_output("RESULT ")
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture
def shapes_module(tmp_path, monkeypatch):
    """``shapes.py`` in the target's directory, importable here as well."""
    (tmp_path / "shapes.py").write_text(textwrap.dedent(SHAPES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    import sys

    sys.modules.pop("shapes", None)


def test_the_issue_example_an_alias_sees_an_in_place_change(target, attach_to):
    t = target("""
        import json, bridge
        def work():
            model = {"w": [1, 2, 3]}
            w = model["w"]
            bridge.set_trace()
            print("RESULT " + json.dumps({"model_w": model["w"], "same": w is model["w"]}), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, names=["w"], namespace=ns) as m:
        ns["w"].append(4)
        diff = m.diff()
        assert diff.in_place == ["w"] and not diff.rebound
        assert "in place" in repr(diff)
    s.cont()
    assert result_of(t) == {"model_w": [1, 2, 3, 4], "same": True}


KINDS = """
import collections, json, types, bridge
import numpy as np, pandas as pd
import shapes

def work():
    lst = [1, 2]
    dct = collections.OrderedDict(a=1)
    st = {1}
    buf = bytearray(b"ab")
    dq = collections.deque([1], maxlen=5)
    arr = np.zeros(6)
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})
    ser = pd.Series([1.0, 2.0], name="s")
    cfg = shapes.Cfg()
    ns_ = types.SimpleNamespace(k=1)
    holder = {"all": [lst, dct, st, buf, dq, arr, df, ser, cfg, ns_]}   # aliases of every one
    bridge.set_trace()
    a = holder["all"]
    print("RESULT " + json.dumps({
        "same": [x is y for x, y in zip(a, [lst, dct, st, buf, dq, arr, df, ser, cfg, ns_])],
        "lst": a[0], "dct": dict(a[1]), "st": sorted(a[2]), "buf": a[3].decode(), "dq": list(a[4]),
        "arr": a[5].tolist(), "df": a[6].to_dict("list"), "ser": a[7].tolist(), "cfg": [a[8].lr, a[8].tags],
        "tags_same": a[8].tags is cfg.tags, "ns": vars(a[9])}), flush=True)

work()
"""


@pytest.mark.parametrize("version", [None, "3.9", "3.12", "3.13", "3.14"])
def test_every_kind_is_changed_in_place(target, attach_to, shapes_module, version):
    t = target(KINDS, python=None if version is None else other_python(version))
    s = attach_to(t)
    ns: dict = {}
    names = ["lst", "dct", "st", "buf", "dq", "arr", "df", "ser", "cfg", "ns_"]
    import pandas

    theirs = s.eval("pd.__version__")
    if int(theirs.split(".")[0]) > int(pandas.__version__.split(".")[0]):
        pytest.skip(f"pandas {pandas.__version__} here cannot read pandas {theirs}'s pickles")
    with jump_context(s, namespace=ns, names=names) as m:
        assert m.live == []                      # all copied (shapes.Cfg is importable here)
        ns["lst"].append(3)
        ns["dct"]["b"] = 2
        ns["st"].add(2)
        ns["buf"][0:1] = b"z"
        ns["dq"].append(2)
        ns["arr"][4] = 9
        ns["df"].loc[1, "a"] = 20
        ns["ser"].iloc[0] = -1.0
        ns["cfg"].lr = 0.5
        ns["cfg"].tags.append("b")
        ns["ns_"].k = 2
        del ns["ns_"].k
        ns["ns_"].j = 3
        assert sorted(m.diff().in_place) == sorted(names)
    s.cont()
    assert result_of(t) == {
        "same": [True] * 10, "lst": [1, 2, 3], "dct": {"a": 1, "b": 2}, "st": [1, 2], "buf": "zb", "dq": [1, 2],
        "arr": [0, 0, 0, 0, 9, 0], "df": {"a": [1, 20], "b": [0.5, 1.5]}, "ser": [-1.0, 2.0],
        "cfg": [0.5, ["a", "b"]], "tags_same": True, "ns": {"j": 3}}


def test_what_cannot_be_changed_in_place_is_rebound_and_the_diff_says_so_first(target, attach_to, shapes_module):
    t = target("""
        import json, bridge
        import pandas as pd, shapes
        def work():
            df = pd.DataFrame({"a": [1, 2]})
            obj = shapes.Slotted()
            n = 1
            keep = {"df": df, "obj": obj}
            bridge.set_trace()
            print("RESULT " + json.dumps({"df": list(df.columns), "alias": list(keep["df"].columns),
                                          "obj": obj.x, "obj_alias": keep["obj"].x, "n": n}), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns, names=["df", "obj", "n"]) as m:
        ns["df"]["b"] = 0                            # same object, other columns
        ns["obj"].x = [1, 2]                         # a slotted object: its state is not a __dict__
        ns["n"] = 2
        rows = {c.name: c for c in m.diff()}
        assert rows["df"].how == "rebound: aliases in the target keep the old object"
        assert "shape changed" in rows["df"].note
        assert rows["obj"].how == "rebound: aliases in the target keep the old object"
        assert "Slotted cannot be changed in place" in rows["obj"].note
        assert rows["n"].how == "rebound"
        assert sorted(m.diff().rebound) == ["df", "n", "obj"]
    s.cont()
    assert result_of(t) == {"df": ["a", "b"], "alias": ["a"], "obj": [1, 2], "obj_alias": [1], "n": 2}


def test_nested_objects_keep_their_identity(target, attach_to):
    t = target("""
        import json, bridge
        def work():
            w = [1]
            opt = {"m": [0]}
            model = {"w": w, "opt": opt, "layers": [[1], [2]]}
            first = model["layers"][0]
            a, b = [1], [2]
            bridge.set_trace()
            print("RESULT " + json.dumps({
                "w": w, "w_same": model["w"] is w, "opt_same": model["opt"] is opt,
                "first": first, "first_same": model["layers"][1] is first, "layers": model["layers"],
                "swapped": [a is model["b_was"], b is model["a_was"]] if "a_was" in model else None}), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        model = ns["model"]
        assert model["w"] is ns["w"]                 # shared objects are shared in the notebook too
        model["w"].append(2)                         # an inner list, changed in place
        model["layers"].reverse()                    # the outer list reordered: inner lists keep identity
        model["layers"][1].append(10)
        model["a_was"], model["b_was"] = ns["a"], ns["b"]
        ns["a"], ns["b"] = ns["b"], ns["a"]          # a swap rebinds names to the target's own objects
        diff = {c.name: c.how for c in m.diff() if c.status == "changed"}
        assert diff == {"model": "in place", "w": "in place", "first": "in place", "a": "rebound", "b": "rebound"}
    s.cont()
    assert result_of(t) == {"w": [1, 2], "w_same": True, "opt_same": True, "first": [1, 10], "first_same": True,
                            "layers": [[2], [1, 10]], "swapped": [True, True]}


def test_a_failure_half_way_leaves_nothing_written(target, attach_to):
    """A bytearray with a live memoryview cannot change size: the target finds out only
    when it writes it, after the list before it was written: that is undone too."""
    t = target("""
        import json, bridge
        def work():
            lst = [1]
            buf = bytearray(b"abc")
            view = memoryview(buf)                   # an export: buf cannot be resized now
            n = 1
            bridge.set_trace()
            print("RESULT " + json.dumps({"lst": lst, "buf": buf.decode(), "n": n}), flush=True)
            bridge.set_trace()
            print("RESULT " + json.dumps({"lst": lst, "buf": buf.decode(), "n": n, "view": bytes(view).decode()}),
                  flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(FrameWriteError, match="nothing written") as info:
        with jump_context(s, namespace=ns, names=["lst", "buf", "n"]) as m:
            ns["lst"].append(2)
            ns["buf"].extend(b"def")
            ns["n"] = 2
            assert m.diff().in_place == ["lst", "buf"]
    assert info.value.mount is m and sorted(info.value.changes) == ["buf", "lst", "n"]
    assert "changing buf (bytearray) in place failed (BufferError" in str(info.value)
    assert "m.retry(rebind=['buf'])" in str(info.value)                # what the advice says, done below
    assert s.eval("(lst, bytes(buf), n)") == ([1], b"abc", 1)   # the list's write was undone
    written = m.retry(rebind=["buf"])                            # buf by value: the memoryview keeps the old one
    assert sorted(written.changed) == ["buf", "lst", "n"] and not m.pending
    s.cont()
    assert result_of(t) == {"lst": [1, 2], "buf": "abcdef", "n": 2}
    s.wait(10)
    s.cont()
    t.wait_output('"view"')
    assert result_of(t)["view"] == "abc"                         # the memoryview's buffer kept its bytes


def test_big_array_sends_only_changed_blocks_into_the_same_buffer(target, attach_to):
    t = target("""
        import json, bridge
        import numpy as np
        def work():
            arr = np.zeros((1024, 8192))             # 64 MiB
            alias = arr
            address = arr.ctypes.data
            bridge.set_trace()
            print("RESULT " + json.dumps({"same": alias is arr, "buffer": arr.ctypes.data == address,
                                          "changed": np.argwhere(arr != 0).tolist(), "v": float(arr[700, 3])}),
                  flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns, names=["arr"], size_limit=None) as m:
        ns["arr"][700, 3] = 5.0
    assert m.sent_bytes < 1 << 20, m.sent_bytes       # one block of 256 KiB, not 64 MiB
    s.cont()
    assert result_of(t) == {"same": True, "buffer": True, "changed": [[700, 3]], "v": 5.0}


def test_a_second_commit_after_an_in_place_one(target, attach_to):
    t = target("""
        import json, bridge
        def work():
            d = {"a": [1]}
            alias = d["a"]
            bridge.set_trace()
            print("RESULT " + json.dumps({"d": d, "alias_same": alias is d["a"]}), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with jump_context(s, namespace=ns) as m:
        ns["d"]["a"].append(2)
        assert m.commit().in_place == ["d", "alias"]
        assert s.eval("alias") == [1, 2] and not m.diff()
        ns["d"]["a"].append(3)
    s.cont()
    assert result_of(t) == {"d": {"a": [1, 2, 3]}, "alias_same": True}


def test_an_in_place_change_the_target_cannot_take_is_refused_before_writing(target, attach_to):
    t = target("""
        import json, bridge
        import numpy as np
        def work():
            base = np.arange(6.0)
            arr = base[::2]                          # a strided view, read-only in the job
            arr.flags.writeable = False
            n = 1
            bridge.set_trace()
            print("RESULT " + json.dumps({"arr": arr.tolist(), "base": base.tolist(), "n": n}), flush=True)
        work()
    """)
    s = attach_to(t)
    ns: dict = {}
    with pytest.raises(FrameWriteError, match="nothing written") as info:
        with jump_context(s, namespace=ns, names=["arr", "n"]) as m:
            ns["arr"][0] = 5.0                       # the notebook's copy is writable
            ns["n"] = 2
    assert "arr (ndarray) cannot be changed in place: the target's array is read-only" in str(info.value)
    assert s.eval("n") == 1                          # checked before the first write
    m.retry(rebind=["arr"])                          # the advice: rebind it instead
    s.cont()
    assert result_of(t) == {"arr": [5.0, 2.0, 4.0], "base": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "n": 2}
