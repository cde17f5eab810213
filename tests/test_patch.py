"""Editing running code, end to end: patch, unpatch and jump against real target processes,
on this Python and on 3.9, 3.12 and 3.14 (FRAMEBRIDGE_TEST_PYTHONS; tests/README.md).

The job (tests/targets/patchable.py) calls, in every round of a loop, functions reached
through references taken before any patch: a callback in a list, a bound method, a
``functools.wraps``-decorated function, a closure, a property.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from client.errors import JumpError, PatchError
from conftest import other_python

VERSIONS = ["3.11", "3.9", "3.12", "3.14"]

#: Identity of the code every patchable function runs (and the patches in force).
CODE_IDS = ("[id(f.__code__) for f in (scale, callbacks[0], label.__wrapped__, Model.step, step.__func__, "
            "Model.unit, Model.name.fget, numbers, make_counter, bump, main)] + "
            "[list(f.__defaults__ or ()) for f in (scale, label.__wrapped__)] + "
            "[len(__import__('bridge.patching', fromlist=['patches']).patches())]")


@pytest.fixture(params=VERSIONS)
def python(request: Any) -> str:
    """The target's interpreter: this one, or another CPython of VERSIONS."""
    if request.param == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return sys.executable
    return other_python(request.param)


def _patched(target: Any, attach_to: Any, python: str, rounds: int = 4) -> Any:
    t = target.script("patchable", str(rounds), python=python)
    return t, attach_to(t)


def _next_pause(s: Any) -> Any:
    s.cont()
    return s.wait(20)


def test_patched_code_runs_through_every_old_reference(target: Any, attach_to: Any, python: str) -> None:
    t, s = _patched(target, attach_to, python)

    def step(self, x):  # a function defined here, in the notebook: its source is sent
        return x * 1000

    s.exec("global twice\ndef twice(v):\n    return v * 2\n")  # a new helper: defined first, not patched
    r = s.patch("__main__:scale", "def scale(x):\n    return twice(x) * 50\n")  # "module:qualname"
    assert r.names == ["scale"] and r.replaced[0].kind == "function" and r.running_old_code == []
    assert r.warnings == []  # twice is there
    assert s.patch("Model.step", step).replaced[0].kind == "method"
    assert s.patch("__main__:", "def label(x):\n    return 'L%d' % x\n").names == ["label"]  # behind @timed
    closure = s.patch("make_counter.bump", "def bump(n):\n    return start * 2 + n\n").replaced[0]
    assert closure.kind == "nested function" and closure.functions == 1  # the bump main holds
    assert s.patch(None, "class Model:\n    @property\n    def name(self):\n        return 'patched'\n").names \
        == ["Model.name"]
    # main itself is running: the result says that frame finishes with the old code
    running = s.patch("main", "def main(rounds):\n    print('never runs', flush=True)\n").running_old_code
    assert [(f["function"], f["line"]) for f in running] == [("main", t.line("pause"))]
    s.exec("global started\nstarted = numbers(3)\nnext(started)")  # a generator suspended at its yield
    suspended = s.patch("numbers", "def numbers(n):\n    yield from range(10, 10 + n)\n").running_old_code
    assert [(f["function"], f["suspended"]) for f in suspended] == [("numbers", True)]
    assert s.eval("list(started), list(numbers(2))") == ([1, 2], [10, 11])  # the old code to its end

    _next_pause(s)
    assert "round 0 (0, 10, 'v0', 100, 1, 'model', [0, 1])" in t.output()
    assert list(s.eval("out")) == [100, 1000, "L1", 201, 1, "patched", [10, 11]]
    assert s.eval("make_counter(1)(1)") == 3  # closures made after the patch run the new code too
    assert s.eval("scale.__code__.co_filename") == r.replaced[0].file  # the patch's own file
    assert s.eval("__import__('inspect').getsource(scale)") == "def scale(x):\n    return twice(x) * 50\n"


REFUSED = [
    ("def scale(x:\n", "scale", "does not compile"),
    ("def nope(x):\n    return x\n", "nope", "no name 'nope'"),
    ("def LIMIT():\n    pass\n", "LIMIT", "an int, not a function"),
    ("def numbers(n):\n    return [0, 1]\n", "numbers", "is a generator and the new definition a plain function"),
    ("def scale(x):\n    yield x\n", "scale", "is a plain function and the new definition a generator"),
    ("async def scale(x):\n    return x\n", "scale", "coroutine"),
    ("def bump(n):\n    return start + n + unit\n", "make_counter.bump", "reads unit from the enclosing function"),
    ("import os\ndef scale(x):\n    return x\n", None, "not a def or class statement"),
    ("class Model:\n    def step(self, x):\n        return super().step(x)\n", None, "super"),
    ("def scale(x):\n    return 0\ndef nope():\n    pass\n", None, "no name 'nope'"),  # all or nothing
    ("class Model:\n    def jump(self):\n        pass\n", None, "no attribute 'jump'"),
    ("@staticmethod\ndef step(x):\n    return x\n", "Model.step",
     "method and the new def is decorated as a staticmethod"),
    ("def scale(x, k=undefined_name):\n    return x\n", "scale", "default values.*NameError"),
]


def test_a_refused_patch_changes_nothing(target: Any, attach_to: Any, python: str, bridge_dirs: Any) -> None:
    t, s = _patched(target, attach_to, python)
    before = s.eval(CODE_IDS)
    for source, name, message in REFUSED:
        with pytest.raises(PatchError, match=message):
            s.patch(name, source)
        assert s.eval(CODE_IDS) == before, f"{source!r} changed the target"
    assert s.patches() == []
    assert not list(bridge_dirs["runtime"].glob(f"patches-{t.pid}/*.py"))  # not even a file
    _next_pause(s)
    assert "round 0 (0, 10, 'v0', 100, 1, 'model', [0, 1])" in t.output()
    assert list(s.eval("out")) == [2, 11, "v1", 101, 1, "model", [0, 1]]


def test_unpatch_one_name_then_all(target: Any, attach_to: Any, python: str) -> None:
    t, s = _patched(target, attach_to, python)
    before = s.eval(CODE_IDS)
    s.patch("scale", "def scale(x, k=3):\n    return x * k\n")
    s.patch("label", "def label(x):\n    return 'L%d' % x\n")
    s.patch("Model", "class Model:\n    def step(self, x):\n        return -x\n    @staticmethod\n"
                     "    def unit():\n        return 7\n")
    assert [p["name"] for p in s.patches()] == ["scale", "label", "Model.step", "Model.unit"]
    assert s.eval("scale(1), scale.__defaults__") == (3, (3,))

    undone = s.unpatch("scale")
    assert undone.restored == ["scale"] and undone.functions == 1
    assert s.eval("scale(1), scale.__defaults__, label(1)") == (2, None, "L1")
    assert s.unpatch("Model").restored == ["Model.step", "Model.unit"]  # a class: all its methods
    assert s.eval("step(1), Model.unit()") == (11, 1)
    assert s.unpatch().restored == ["label"]
    assert s.eval(CODE_IDS) == before  # the very same code objects as before any patch
    with pytest.raises(PatchError, match="nothing named 'scale' is patched"):
        s.unpatch("scale")
    _next_pause(s)
    assert list(s.eval("out")) == [2, 11, "v1", 101, 1, "model", [0, 1]]


def test_patch_a_helper_then_jump_back_to_rerun_the_loop_body(target: Any, attach_to: Any, python: str) -> None:
    t, s = _patched(target, attach_to, python)
    s.patch("label", "def label(x):\n    return 'L%d' % x\n")
    # set_trace() pauses inside a call: the frame jumps at its next line and pauses there
    r = s.jump(t.line("body"))
    assert r.deferred and (r.from_line, r.line) == (t.line("pause"), t.line("body"))
    pause = s.current_pause()
    assert (pause.reason, pause.line, pause.extra["jump"]) == ("jump", t.line("body"), {
        "from": t.line("print"), "to": t.line("body")})
    assert s.eval("i, out[2]") == (0, "v0")  # the body has not run again yet
    paused = _next_pause(s)  # the body runs again, with the patched helper, and pauses
    assert paused.line == t.line("pause") and s.eval("i, out[2]") == (0, "L0")
    _next_pause(s)
    printed = t.output()
    assert "round 0 (0, 10, 'L0'" in printed and "'v0'" not in printed  # the old round 0 never printed


JUMP_RULES = """
import bridge

def f():
    total = 0  # @start
    for i in range(3):
        total += i  # @inloop
    bridge.set_trace()  # @after
    print("total", total, flush=True)  # @end
    return total

f()
print("finished", flush=True)
"""


def test_jump_follows_pdb_rules_and_moves_a_stepped_frame_at_once(target: Any, attach_to: Any, python: str) -> None:
    from conftest import line_of

    t = target(JUMP_RULES, python=python)
    s = attach_to(t)
    line = {name: line_of(JUMP_RULES, name) for name in ("start", "inloop", "after", "end")}
    # From set_trace() the jump is tried at the next line, where CPython refuses this one
    with pytest.raises(JumpError, match="for loop.*paused at line %d" % line["end"]):
        s.jump(line["inloop"])
    refused_at = s.current_pause()
    assert (refused_at.reason, refused_at.line) == ("jump", line["end"])
    # This pause is inside a line event: jumps happen (or are refused) at once
    with pytest.raises(JumpError, match="for loop"):
        s.jump(line["inloop"])
    with pytest.raises(JumpError, match="line 999 is not in f"):
        s.jump(999)
    s.select(1)  # the module's frame: waiting for f() to return
    with pytest.raises(JumpError, match="innermost frame only"):
        s.jump(3)
    s.select(0)
    assert s.current_pause().pause_id == refused_at.pause_id and s.eval("total") == 3
    r = s.jump(line["start"])
    assert not r.deferred and (r.from_line, r.line) == (line["end"], line["start"])
    assert s.current_pause().line == line["start"]  # the same pause, moved
    s.next()
    assert s.wait(20).line == line["start"] + 1
    s.cont()
    again = s.wait(20)  # the loop ran again: set_trace() once more
    assert again.line == line["after"] and s.eval("total") == 3
    s.next()  # a step stops in a line event: the jump is immediate
    assert s.wait(20).line == line["end"]
    r = s.jump(line["start"])
    assert not r.deferred and s.current_pause().line == line["start"]
    s.cont()
    assert s.wait(20).line == line["after"]  # the third run of the loop
    s.cont()
    assert "finished" in t.wait_output("finished")
    assert t.output().count("total 3") == 1  # every earlier print was jumped over


def _mechanism(s: Any) -> str:
    return s.eval("__import__('bridge.tracing', fromlist=['get_debugger']).get_debugger().mechanism")


AT_A_BREAKPOINT = """
import bridge

def work(n):
    acc = 0  # @start
    acc += n  # @add
    return acc  # @end

bridge.set_trace()
print("result", work(1), flush=True)
"""


def test_jump_at_a_breakpoint(target: Any, attach_to: Any, python: str) -> None:
    from conftest import line_of

    t = target(AT_A_BREAKPOINT, python=python)
    s = attach_to(t)
    line = {name: line_of(AT_A_BREAKPOINT, name) for name in ("start", "add", "end")}
    s.break_at(str(t.script), line["add"])
    paused = _next_pause(s)
    assert (paused.reason, paused.line) == ("breakpoint", line["add"])
    if _mechanism(s) == "code patching":
        # The breakpoint is a call compiled into the start of its line: the line has not
        # run, and CPython jumps only at a line event: refused, saying what to do instead
        with pytest.raises(JumpError, match="breakpoint compiled into the code.*next\\(\\)"):
            s.jump(line["start"])
        assert s.current_pause().pause_id == paused.pause_id and s.eval("acc") == 0
        s.next()
        assert s.wait(20).line == line["end"] and s.eval("acc") == 1
    r = s.jump(line["start"])  # a stop in a line event (3.12+: the breakpoint's own): at once
    assert not r.deferred and s.current_pause().line == line["start"]
    again = _next_pause(s)  # acc = 0 again, then the breakpoint's line once more
    assert (again.reason, again.line) == ("breakpoint", line["add"]) and s.eval("acc") == 0
    s.clear(all=True)
    s.cont()
    assert "result 1" in t.wait_output("result")


def test_patch_a_function_that_holds_a_breakpoint(target: Any, attach_to: Any, python: str) -> None:
    t, s = _patched(target, attach_to, python)
    if s.eval("__import__('sys').version_info < (3, 12)"):
        assert _mechanism(s) == "code patching"  # 3.9-3.11: the breakpoint is compiled into scale's code
    bp = s.break_at(str(t.script), t.line("scale_body"))
    stop = _next_pause(s)
    assert (stop.reason, stop.function, stop.line) == ("breakpoint", "scale", t.line("scale_body"))
    r = s.patch("scale", "def scale(x):\n    # the new code\n    return x * 100\n")
    new = r.replaced[0]
    assert [f["function"] for f in new.running] == ["scale"]  # the stopped frame keeps the old code
    assert [(c["from"], c["file"], c["line"]) for c in new.breakpoints] == [(bp.id, new.file, 3)]
    copy_id = new.breakpoints[0]["id"]
    # the running scale(1) finishes with the old code; round 2's scale(2) stops in the new one
    stop = _next_pause(s)
    assert (stop.reason, stop.line) == ("set_trace", t.line("pause")) and s.eval("out[0]") == 2
    stop = _next_pause(s)
    assert (stop.reason, stop.file, stop.line) == ("breakpoint", new.file, 3) and s.eval("x") == 2
    assert s.unpatch("scale").breakpoints_cleared == [copy_id]
    assert [b.id for b in s.breakpoints()] == [bp.id]
    _next_pause(s)  # round 2 ends with the new code's value
    assert s.eval("out[0]") == 200
    stop = _next_pause(s)  # round 3: the original code again, and its breakpoint
    assert (stop.reason, stop.file, stop.line) == ("breakpoint", str(t.script), t.line("scale_body"))
    s.clear(all=True)
    _next_pause(s)  # round 3's set_trace()
    s.cont()
    t.wait_output("done")


# ------------------------------------------------------------------ the notebook side alone


def test_what_the_notebook_sends_for_a_function() -> None:
    from client.patching import function_at, source_for

    class Model:
        @staticmethod
        def unit():
            return 2

    def helper(x):
        return x + 1

    assert source_for(helper) == ("def helper(x):\n    return x + 1\n", "helper")
    assert source_for(Model.unit)[0].startswith("@staticmethod\ndef unit():")  # dedented, decorators kept
    assert source_for("def f(): pass") == ("def f(): pass", None)
    with pytest.raises(PatchError, match="lambda"):
        source_for(lambda x: x)
    made = {}
    exec("def made_by_exec():\n    return 1\n", made)
    with pytest.raises(PatchError, match="source of made_by_exec is not available"):
        source_for(made["made_by_exec"])
    with pytest.raises(TypeError):
        source_for(42)

    text = "import x\n\nclass A:\n    def m(self):\n        def inner():\n            return 1\n        return inner\n"
    found = function_at(text, 6, "A.m.<locals>.inner")
    assert (found.qualname, found.line, found.source) == ("A.m.<locals>.inner", 5, "def inner():\n    return 1\n")
    assert function_at(text, 4, "m").qualname == "A.m"
    assert function_at(text, 1, "<module>") is None
    windowed = function_at("def m():\n    return 1\n", 11, "m", first=10)  # a window of a big file
    assert (windowed.qualname, windowed.line) == ("m", 10)
