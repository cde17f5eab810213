"""bridge.codeswap, and breakpoints by code patching (the 3.9-3.11 backend).

In-process: functions of this file are swapped and restored; target code for breakpoints
is marked with ``# @name`` comments (``L("name")``).
"""

from __future__ import annotations

import functools
import os
import sys
import textwrap
import threading
import time
import types

import pytest
from conftest import file_markers

from bridge import codeswap
from bridge.tracing import Debugger, get_debugger

HERE = os.path.realpath(__file__)
WAIT = 10.0
PATCHING = sys.version_info < (3, 12)
needs_patching = pytest.mark.skipif(not PATCHING, reason="breakpoints by code patching are for 3.9-3.11")


MARKS = file_markers(HERE)


def L(name: str) -> int:
    return MARKS[name]


# ----------------------------------------------------------------- target code


def make_adder(k):
    def add(x):
        return x + k  # @add
    return add


def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper


@decorate
def decorated(x):
    return x * 3  # @decorated


class Shape:
    def area(self):
        return 6  # @area

    @staticmethod
    def unit():
        return 1  # @unit


def samples():
    """Functions whose every line is probed and compared with sys.settrace."""

    def loops(n):
        total = 0
        for i in range(n): total += i  # noqa: E701
        while n > 0:
            n -= 1
            if n == 1:
                continue
        return total

    def exceptions():
        try:
            x = 1
            raise ValueError(x)
        except ValueError:
            y = 2
        finally:
            z = 3
        return y + z

    def withs():
        class Ctx:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return True

        with Ctx():
            a = 1
        with Ctx():
            raise KeyError(a)
        return a

    def gens():
        def gen(n):
            for i in range(n):
                yield i
        out = [v for v in gen(3)]
        return sum(x for x in out) + len({k: k for k in out})

    def branches(v):
        r = "a" if v else "b"
        if v and r:
            return r
        elif not v:
            return None
        return r

    def one_line(n): return [n for _ in range(2)]  # noqa: E704

    return [(loops, (3,)), (exceptions, ()), (withs, ()), (gens, ()), (branches, (1,)), (branches, (0,)),
            (one_line, (2,))]


# ----------------------------------------------------------------- the codeswap module


def test_swap_and_restore_give_back_the_very_same_code_object():
    journal = codeswap.CodeJournal("test")
    original = Shape.area.__code__
    replacement = (lambda self: 7).__code__
    journal.swap(Shape.area, replacement)
    assert Shape().area() == 7 and Shape.area in journal
    assert journal.restore(Shape.area) is True
    assert Shape.area.__code__ is original and Shape().area() == 6
    assert journal.restore(Shape.area) is False  # nothing left to restore


def test_restore_leaves_a_function_that_someone_else_swapped_since():
    mine, theirs = codeswap.CodeJournal("mine"), codeswap.CodeJournal("theirs")
    original = Shape.unit.__code__
    mine.swap(Shape.unit, (lambda: 2).__code__)
    theirs.swap(Shape.unit, (lambda: 3).__code__)
    try:
        assert mine.restore(Shape.unit) is False  # theirs is in force now: not undone
        assert Shape.unit() == 3
    finally:
        assert theirs.restore(Shape.unit) is True
    assert Shape.unit() == 2  # theirs put back what ran before it: mine
    Shape.unit.__code__ = original


def test_restore_sees_through_another_tools_instrumentation():
    patch, probes = codeswap.CodeJournal("patch"), codeswap.CodeJournal("probes")
    original = decorated.__wrapped__.__code__
    target = decorated.__wrapped__
    patched = (lambda x: x * 4).__code__
    patch.swap(target, patched)
    instrumented = patched.replace()  # a distinct copy, as probes would make
    codeswap.mark_derived(instrumented, patched)
    probes.swap(target, instrumented)
    assert codeswap.base_code(target.__code__) is patched
    assert patch.restore(target) is True  # undoing the patch takes the probes with it
    assert target.__code__ is original


def test_a_swap_that_changes_free_variables_is_refused():
    add = make_adder(1)
    with pytest.raises(ValueError, match="free variable"):
        codeswap.CodeJournal("test").swap(add, (lambda x: x).__code__)
    assert add(1) == 2


def test_functions_running_finds_every_closure_of_a_code_object():
    adders = [make_adder(k) for k in range(3)]
    code = adders[0].__code__
    found = codeswap.functions_running(code)
    assert all(any(f is a for f in found) for a in adders)
    assert all(f.__code__ is code for f in found)


def test_functions_behind_unwraps_what_names_hold():
    found = list(codeswap.functions_behind(decorated))
    assert decorated.__wrapped__ in found and decorated in found
    assert Shape.area in list(codeswap.functions_behind(Shape().area))  # a bound method
    assert Shape.unit in list(codeswap.functions_behind(Shape.__dict__["unit"]))  # a staticmethod
    assert make_adder in list(codeswap.functions_behind(functools.partial(make_adder, 1)))


def test_with_nested_replaced_rebuilds_only_the_enclosing_chain():
    outer = make_adder.__code__
    inner = make_adder(0).__code__
    assert codeswap.contains_code(outer, inner)
    new_inner = inner.replace()
    rebuilt = codeswap.with_nested_replaced(outer, lambda c: new_inner if c is inner else c)
    assert rebuilt is not outer and codeswap.contains_code(rebuilt, new_inner)
    assert codeswap.with_nested_replaced(outer, lambda c: c) is outer  # nothing changed: the same object


# ----------------------------------------------------------------- probes


@needs_patching
@pytest.mark.parametrize("index", range(len(samples())))
def test_probes_fire_exactly_where_settrace_reports_lines(index):
    from bridge.tracing.probes import insert_probes

    fn, args = samples()[index]
    codes = []

    def collect(code):
        codes.append(code)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                collect(c)

    collect(fn.__code__)
    # sys.settrace's line events, with the locals seen at each
    traced = []

    def tracer(frame, event, arg):
        if frame.f_code in codes and event == "line":
            traced.append((frame.f_code.co_name, frame.f_lineno, sorted(frame.f_locals)))
        return tracer

    sys.settrace(tracer)
    try:
        expected_result = fn(*args)
    finally:
        sys.settrace(None)
    # the same code with a probe at every line, nested code included
    probed = []

    def probe(line):
        frame = sys._getframe(1)
        probed.append((frame.f_code.co_name, line, sorted(frame.f_locals)))

    def build(code):
        lines = frozenset(ln for _, _, ln in code.co_lines() if ln) if hasattr(code, "co_lines") else \
            frozenset(ln for _, ln in __import__("dis").findlinestarts(code))
        code = codeswap.with_nested_replaced(code, build)
        return insert_probes(code, lines, probe)

    swapped = types.FunctionType(build(fn.__code__), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    assert swapped(*args) == expected_result
    assert probed == traced


# ----------------------------------------------------------------- breakpoints by code patching


class Recorder:
    def __init__(self, actions=()):
        self.actions = list(actions)
        self.stops = []

    def __call__(self, frame, reason, info):
        self.stops.append((frame.f_code.co_name, frame.f_lineno, reason))
        return self.actions.pop(0) if self.actions else "continue"


@pytest.fixture
def dbg():
    d = get_debugger()
    if PATCHING and d.mechanism != "code patching":
        pytest.skip("the bytecode library is not installed: no code patching")
    d.reset()
    yield d
    d.reset()
    d.set_stop_handler(None)
    assert sys.gettrace() is None and d.is_idle()


@needs_patching
def test_breakpoints_in_closures_methods_and_decorated_functions_then_exact_restore(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    existing = make_adder(10)
    originals = {f: f.__code__ for f in (existing, make_adder, Shape.area, Shape.unit, decorated.__wrapped__)}
    bps = [dbg.set_break(HERE, L(name)) for name in ("add", "area", "unit", "decorated")]
    assert sys.gettrace() is None  # no tracer: the code carries the breakpoints
    assert existing(1) == 11 and make_adder(20)(1) == 21  # an old closure and a new one
    assert Shape().area() == 6 and Shape.unit() == 1 and decorated(2) == 6
    assert [s[:2] for s in rec.stops] == [("add", L("add")), ("add", L("add")), ("area", L("area")),
                                         ("unit", L("unit")), ("decorated", L("decorated"))]
    for bp in bps:
        dbg.clear_break(bp.id)
    for function, code in originals.items():
        assert function.__code__ is code, function  # the original code object itself
    later = make_adder(30)
    assert later.__code__ is existing.__code__  # closures made after the clear: original code
    assert later(1) == 31 and len(rec.stops) == 5


@needs_patching
def test_conditions_hits_and_temporary_breakpoints_by_patching(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    add = make_adder(0)
    conditional = dbg.set_break(HERE, L("add"), condition="x == 2")
    assert [add(x) for x in range(4)] == [0, 1, 2, 3]
    assert len(rec.stops) == 1 and conditional.hits == 1
    dbg.clear_break(conditional.id)
    dbg.set_break(HERE, L("add"), temporary=True)
    add(5)
    add(6)
    assert len(rec.stops) == 2 and dbg.breakpoints() == []
    assert codeswap.base_code(add.__code__) is add.__code__  # the temporary one took its probe away


@needs_patching
def test_breakpoint_in_a_module_not_imported_yet(dbg, tmp_path, monkeypatch):
    module = tmp_path / "later_module.py"
    module.write_text(textwrap.dedent("""
        def work(v):
            w = v * 2
            return w
        VALUE = work(1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    rec = Recorder()
    dbg.set_stop_handler(rec)
    dbg.set_break(str(module), 3)
    import later_module  # noqa: F401  (instrumented as it loads)

    try:
        assert later_module.VALUE == 2 and later_module.work(5) == 10
        assert [s[:2] for s in rec.stops] == [("work", 3), ("work", 3)]
        assert later_module.__loader__.get_source("later_module")  # the loader still answers
    finally:
        sys.modules.pop("later_module", None)


def definer(dbg):
    dbg.set_break(HERE, L("inner"))  # `inner` does not exist yet: this frame will define it

    def inner():
        return 1  # @inner

    return inner() + inner()


@needs_patching
def test_breakpoint_in_a_function_that_a_running_frame_defines_later(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    assert definer(dbg) == 2
    assert [s[:2] for s in rec.stops] == [("inner", L("inner"))] * 2
    assert sys.gettrace() is None  # the running frame's watch ended with it


def looping_worker(started, stop, counts):
    started.set()
    while not stop.is_set():
        counts.append(Shape.unit())  # calls code that gets a breakpoint while this runs
        time.sleep(0.001)


@needs_patching
def test_breakpoint_reaches_a_thread_that_was_already_running(dbg):
    """sys.settrace could never reach a thread started before the breakpoint; swapped
    code reaches every thread."""
    stopped = threading.Event()

    def handler(frame, reason, info):
        if threading.current_thread() is not threading.main_thread():
            stopped.set()
        return "continue"

    dbg.set_stop_handler(handler)
    started, stop, counts = threading.Event(), threading.Event(), []
    worker = threading.Thread(target=looping_worker, args=(started, stop, counts))
    worker.start()
    try:
        assert started.wait(WAIT)
        bp = dbg.set_break(HERE, L("unit"), temporary=True)
        assert stopped.wait(WAIT)
        assert bp.hits == 1
    finally:
        stop.set()
        worker.join(WAIT)
    assert not worker.is_alive()


@needs_patching
def test_a_running_frame_at_a_breakpoint_is_traced_only_while_it_runs(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    seen = []
    for i in range(3):
        if i == 0:
            dbg.set_break(HERE, L("running"))
            seen.append(sys.gettrace() is not None)  # this frame runs the original code: traced
        seen.append(i)  # @running
    assert [s[:2] for s in rec.stops] == [("test_a_running_frame_at_a_breakpoint_is_traced_only_while_it_runs",
                                          L("running"))] * 3
    assert seen[0] is True


@needs_patching
def test_backend_survives_a_breakpoint_set_and_cleared_many_times(dbg):
    add = make_adder(1)
    original = add.__code__
    for _ in range(50):
        bp = dbg.set_break(HERE, L("add"))
        dbg.clear_break(bp.id)
    assert add.__code__ is original
    assert dbg.is_idle()  # nothing left behind: no swapped function, no import hook


def test_mechanism_is_code_patching_where_it_can_be():
    if PATCHING:
        assert get_debugger().mechanism == "code patching"
        assert Debugger(backend="sys.settrace").mechanism == "sys.settrace"
    else:
        assert get_debugger().mechanism == "sys.monitoring"
