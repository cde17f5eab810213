"""Engine tests for bridge.tracing: breakpoints, stepping, pausing (in-process, no sockets).

Target functions below mark their lines with ``# @name`` comments; ``L("name")`` is
that line number, so edits to this file do not break the expected sequences.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from conftest import file_markers

from bridge.tracing import Debugger, get_debugger

HERE = os.path.realpath(__file__)
IS_312 = sys.version_info >= (3, 12)
WAIT = 10.0  # seconds: upper bound of every wait in this file


MARKS = file_markers(HERE)


def L(name: str) -> int:
    return MARKS[name]


# ----------------------------------------------------------------- target code


def leaf(x):
    y = x + 1  # @leaf1
    return y * 2  # @leaf2


def middle(x):
    a = leaf(x)  # @mid1
    b = leaf(a)  # @mid2
    return a + b  # @mid3


def outer():
    r = middle(1)  # @out1
    r += 1  # @out2
    return r  # @out3


def raiser():
    x = 1  # @r1
    raise ValueError(x)  # @r2


def catcher():
    try:
        raiser()  # @c1
    except ValueError:  # @c2
        handled = True  # @c3
    return handled  # @c4


def looper(n):
    total = 0
    for i in range(n):
        total += i  # @loop
    return total


def with_blank():
    a = 1  # @blank0

    # @comment (a comment-only line)
    b = 2  # @after_blank
    return a + b


def shared_work(tag):
    value = tag * 2  # @shared
    return value


def armed_target(dbg, action):
    dbg.arm(sys._getframe(0), action)  # @arm0
    x = leaf(1)  # @arm1
    return x  # @arm2


def busy_loop(started, paused, deadline):
    started.set()
    n = 0
    while not paused and time.monotonic() < deadline:
        n += 1  # @busy
    return n


# ----------------------------------------------------------------- fixtures


class Recorder:
    """A stop handler: records (reason, function, line, locals, info), returns
    scripted actions (then "continue")."""

    def __init__(self, actions=()):
        self.actions = list(actions)
        self.stops = []
        self.lock = threading.Lock()

    def __call__(self, frame, reason, info):
        with self.lock:
            self.stops.append((reason, frame.f_code.co_name, frame.f_lineno, dict(frame.f_locals), info))
            return self.actions.pop(0) if self.actions else "continue"

    def where(self):
        return [(fn, line) for _, fn, line, _, _ in self.stops]


# every backend this Python has: the default, and before 3.12 the sys.settrace fallback
BACKENDS = ["sys.monitoring"] if IS_312 else ["code patching", "sys.settrace"]
_others: dict = {}


def _debugger(backend: str) -> Debugger:
    default = get_debugger()
    if default.mechanism == backend:
        return default
    if backend not in _others:
        _others[backend] = Debugger(backend=backend)
    return _others[backend]


@pytest.fixture(params=BACKENDS)
def dbg(request):
    d = _debugger(request.param)
    d.reset()
    yield d
    d.reset()
    d.set_stop_handler(None)
    # no tracer or monitoring tool left behind
    assert sys.gettrace() is None
    if IS_312:
        assert sys.monitoring.get_tool(sys.monitoring.DEBUGGER_ID) != "framebridge"
    assert d.is_idle()


# ----------------------------------------------------------------- breakpoints


def test_breakpoint_hit(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    bp = dbg.set_break(HERE, L("mid2"))
    assert outer() == 15  # the program's result is unchanged
    assert rec.where() == [("middle", L("mid2"))]
    reason, _, _, loc, info = rec.stops[0]
    assert reason == "breakpoint"
    assert loc["a"] == 4
    assert info["breakpoint"] == bp.id and info["hits"] == 1


def test_breakpoint_in_a_loop_already_running(dbg):
    """A breakpoint set while its function is running (from inside the loop) hits."""
    rec = Recorder()
    dbg.set_stop_handler(rec)
    total = 0
    for i in range(3):
        if i == 0:
            dbg.set_break(HERE, L("late"))
        total += i  # @late
    assert [line for _, line in rec.where()] == [L("late")] * 3


def test_blank_and_comment_lines_move_to_next_code_line(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    for requested in (L("blank0") + 1, L("comment")):
        bp = dbg.set_break(HERE, requested)
        assert bp.line == L("after_blank") and bp.requested_line == requested
    with_blank()
    # two breakpoints on the same line: one stop
    assert rec.where() == [("with_blank", L("after_blank"))]


def test_refused_lines_and_files(dbg):
    with pytest.raises(ValueError, match="no code at or after line"):
        dbg.set_break(HERE, 10_000_000)
    with pytest.raises(ValueError, match="no such file"):
        dbg.set_break(HERE + ".missing.py", 1)
    with pytest.raises(ValueError, match="positive"):
        dbg.set_break(HERE, 0)
    with pytest.raises(ValueError, match="does not compile"):
        dbg.set_break(HERE, L("loop"), condition="i ==")
    import bridge.tracing

    with pytest.raises(ValueError, match="framebridge's own code"):
        dbg.set_break(bridge.tracing.__file__, 100)
    assert dbg.breakpoints() == []


def test_conditional_breakpoint_stops_on_the_right_iteration(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    bp = dbg.set_break(HERE, L("loop"), condition="i == 3")
    assert looper(6) == 15
    assert rec.where() == [("looper", L("loop"))]
    assert rec.stops[0][3]["i"] == 3 and rec.stops[0][3]["total"] == 3
    assert bp.hits == 1  # hits count only when the condition holds


def test_condition_that_raises_counts_as_true(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("loop"), condition="undefined_name > 1")
    looper(2)
    assert len(rec.stops) == 2
    assert "NameError" in rec.stops[0][4]["condition_error"]


def test_hit_counts(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    bp = dbg.set_break(HERE, L("loop"))
    looper(4)
    assert bp.hits == 4
    assert [s[4]["hits"] for s in rec.stops] == [1, 2, 3, 4]
    assert [s[3]["i"] for s in rec.stops] == [0, 1, 2, 3]


def test_temporary_breakpoint_hits_once_then_is_removed(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    bp = dbg.set_break(HERE, L("loop"), temporary=True)
    looper(4)
    assert len(rec.stops) == 1 and rec.stops[0][4]["temporary"] is True
    assert bp.hits == 1
    assert dbg.breakpoints() == []


def test_clear(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    bp1 = dbg.set_break(HERE, L("loop"))
    bp2 = dbg.set_break(HERE, L("leaf1"))
    assert [b.id for b in dbg.breakpoints()] == [bp1.id, bp2.id]
    dbg.clear_break(bp1.id)
    looper(3)
    leaf(1)
    assert rec.where() == [("leaf", L("leaf1"))]
    with pytest.raises(KeyError, match="no breakpoint with id"):
        dbg.clear_break(bp1.id)
    dbg.clear_break(bp2.id)
    assert dbg.breakpoints() == []
    leaf(1)
    assert len(rec.stops) == 1


# ----------------------------------------------------------------- stepping


def test_step_into_nested_calls(dbg):
    rec = Recorder(["step"] * 5)
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("mid1"), temporary=True)
    outer()
    assert rec.where() == [
        ("middle", L("mid1")),
        ("leaf", L("leaf1")),
        ("leaf", L("leaf2")),
        ("middle", L("mid2")),  # back from the return, in the caller
        ("leaf", L("leaf1")),
        ("leaf", L("leaf2")),
    ]
    assert [s[0] for s in rec.stops] == ["breakpoint"] + ["step"] * 5


def test_next_steps_over_calls_and_across_return(dbg):
    rec = Recorder(["next"] * 4)
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("mid1"), temporary=True)
    outer()
    assert rec.where() == [
        ("middle", L("mid1")),
        ("middle", L("mid2")),
        ("middle", L("mid3")),
        ("outer", L("out2")),  # middle returned: next line of the caller
        ("outer", L("out3")),
    ]


def test_step_out(dbg):
    rec = Recorder(["step_out", "step_out"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("leaf1"), temporary=True)
    outer()
    assert rec.where() == [
        ("leaf", L("leaf1")),
        ("middle", L("mid2")),
        ("outer", L("out2")),
    ]


def test_next_ignores_recursive_calls_of_the_same_code(dbg):
    def fact(n):
        if n <= 1:  # @fact1
            return 1
        return n * fact(n - 1)  # @fact3

    rec = Recorder(["next", "next", "next"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("fact1"), temporary=True)
    assert fact(3) == 6
    # the inner calls run the same code but are other frames: no stop in them
    assert rec.where()[:2] == [("fact", L("fact1")), ("fact", L("fact3"))]
    assert rec.stops[1][3]["n"] == 3
    assert rec.stops[2][1] == "test_next_ignores_recursive_calls_of_the_same_code"


def test_next_across_an_exception_stops_in_the_handler(dbg):
    rec = Recorder(["next", "next"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("r2"), temporary=True)
    assert catcher() is True
    assert rec.where() == [
        ("raiser", L("r2")),
        ("catcher", L("c2")),  # the frame that handles it
        ("catcher", L("c3")),
    ]


def test_step_out_across_an_exception(dbg):
    rec = Recorder(["step_out"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("r1"), temporary=True)
    assert catcher() is True
    assert rec.where() == [("raiser", L("r1")), ("catcher", L("c2"))]


def test_arm_after_a_pause_outside_the_tracer(dbg):
    """bridge.set_trace() pauses without the engine, then arms the chosen action."""
    rec = Recorder(["step", "continue"])
    dbg.set_stop_handler(rec)
    assert armed_target(dbg, "next") == 4
    assert rec.where()[0] == ("armed_target", L("arm1"))
    assert rec.where()[1] == ("leaf", L("leaf1"))


def test_arm_continue_disarms(dbg):
    rec = Recorder()
    dbg.set_stop_handler(rec)
    # on one line: a line boundary in between would (rightly) stop the "step"
    dbg.arm(sys._getframe(0), "step"); dbg.arm(sys._getframe(0), "continue")  # noqa: E702
    leaf(1)
    assert rec.stops == []
    with pytest.raises(ValueError, match="unknown action"):
        dbg.arm(sys._getframe(0), "jump")


# ----------------------------------------------------------------- threads


def test_two_threads_stop_at_once_on_the_same_breakpoint(dbg):
    both_stopped = threading.Barrier(2, timeout=WAIT)
    seen = []

    def handler(frame, reason, info):
        seen.append((threading.get_ident(), frame.f_locals["tag"], reason))
        both_stopped.wait()  # only passes if the two threads are stopped together
        return "continue"

    dbg.set_stop_handler(handler)
    dbg.set_break(HERE, L("shared"))
    results = {}
    threads = [
        threading.Thread(target=lambda t=t: results.__setitem__(t, shared_work(t)))
        for t in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert results == {1: 2, 2: 4}
    assert sorted(tag for _, tag, _ in seen) == [1, 2]
    assert len({tid for tid, _, _ in seen}) == 2


def test_stepping_is_per_thread(dbg):
    """A thread that steps does not make another thread stop."""
    rec = Recorder(["step", "step"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("shared"), temporary=True)
    done = threading.Event()

    def other():
        for _ in range(50):
            leaf(1)
        done.set()

    t = threading.Thread(target=other)
    shared_work(1)  # stops, then steps twice on this thread
    t.start()
    assert done.wait(WAIT)
    t.join(WAIT)
    assert all(s[1] in ("shared_work", "test_stepping_is_per_thread") for s in rec.stops), rec.where()


# ----------------------------------------------------------------- pausing


def _pause_busy_main(dbg):
    rec = Recorder()
    paused = []

    def handler(frame, reason, info):
        paused.append(True)
        return rec(frame, reason, info)

    dbg.set_stop_handler(handler)
    started = threading.Event()
    desc = []

    def requester():
        if started.wait(WAIT):
            desc.append(dbg.request_pause())

    t = threading.Thread(target=requester)
    t.start()
    busy_loop(started, paused, time.monotonic() + WAIT)
    t.join(WAIT)
    return rec, desc


def test_request_pause_of_busy_main_thread(dbg):
    if not IS_312:
        dbg.install_signal_handler()
    try:
        rec, desc = _pause_busy_main(dbg)
    finally:
        if not IS_312:
            dbg.uninstall_signal_handler()
    assert desc, "request_pause did not return"
    assert [s[0] for s in rec.stops] == ["pause"]
    assert rec.stops[0][1] == "busy_loop"


@pytest.mark.skipif(not IS_312, reason="pausing a non-main thread needs sys.monitoring (3.12+)")
def test_request_pause_of_a_worker_thread(dbg):
    rec = Recorder()
    paused = []

    def handler(frame, reason, info):
        paused.append(True)
        return rec(frame, reason, info)

    dbg.set_stop_handler(handler)
    started = threading.Event()
    t = threading.Thread(target=busy_loop, args=(started, paused, time.monotonic() + WAIT))
    t.start()
    assert started.wait(WAIT)
    dbg.request_pause(t.ident)
    t.join(WAIT)
    assert not t.is_alive()
    assert [(s[0], s[1]) for s in rec.stops] == [("pause", "busy_loop")]


@pytest.mark.skipif(IS_312, reason="tests the refusal before 3.12; 3.12+ pauses any thread")
def test_request_pause_of_a_worker_thread_is_refused_before_312(dbg):
    with pytest.raises(RuntimeError, match="only the main thread"):
        dbg.request_pause(threading.get_ident() + 1)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1 (POSIX)")
def test_signal_handler_chains_to_the_programs_own(dbg):
    got = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        dbg.install_signal_handler()
        signal.raise_signal(signal.SIGUSR1)  # not a pause request: the program's handler runs
        assert got == [signal.SIGUSR1]
        dbg.uninstall_signal_handler()
        assert signal.getsignal(signal.SIGUSR1) is not None
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_framebridge_frames_never_stop(dbg):
    """Stepping into framebridge code passes through it without stopping there."""
    files = []
    rec = Recorder(["step"] * 3)

    def handler(frame, reason, info):
        files.append(frame.f_code.co_filename)
        return rec(frame, reason, info)

    dbg.set_stop_handler(handler)
    dbg.set_break(HERE, L("arm0"), temporary=True)
    armed_target(dbg, "step")  # the first step enters Debugger.arm (framebridge code)
    assert rec.where() == [
        ("armed_target", L("arm0")),
        ("armed_target", L("arm1")),
        ("leaf", L("leaf1")),
        ("leaf", L("leaf2")),
    ]
    assert all(os.path.realpath(f) == HERE for f in files)


# ----------------------------------------------------------------- stepping defects (docs/stepping.md)


def one_line_loop(n):
    i = s = 0
    for i in range(n): s += i  # @oneline  # noqa: E701
    return s


inc = lambda v: v + 1  # @lambda  # noqa: E731


def part_a():
    x = 1  # @a1
    return x


def part_b():
    return 2  # @b1


def a_plus_b():
    return part_a() + part_b()


class Tracked:
    """Records in ``freed`` when it is finalized (reference counting only: gc is off)."""

    def __init__(self, freed):
        self.freed = freed

    def __del__(self):
        self.freed.append(True)


def holder(freed):
    obj = Tracked(freed)  # noqa: F841  (kept alive by this frame only)
    x = 1  # @hold1
    return x  # @hold2


def test_conditional_breakpoint_in_a_one_line_loop(dbg):
    """Each iteration of a one-line loop is a new entry of the line (3.12+ used to see
    the line once: the condition was never true when it was looked at)."""
    rec = Recorder()
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("oneline"), condition="i == 3")
    assert one_line_loop(6) == 15
    assert [(s[1], s[3]["i"], s[3]["s"]) for s in rec.stops] == [("one_line_loop", 3, 6)]


def test_breakpoint_in_a_one_line_function_stops_at_every_call(dbg):
    """3.13 reported a one-line function's line only at its first call."""
    rec = Recorder()
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("lambda"))
    assert [inc(1), inc(2), inc(3)] == [2, 3, 4]
    assert [(s[1], s[3]["v"]) for s in rec.stops] == [("<lambda>", 1), ("<lambda>", 2), ("<lambda>", 3)]


def test_step_out_then_step_enters_the_next_call_of_the_line(dbg):
    """step_out is pdb's `return` then `step`: after a() in `a() + b()`, b's first line."""
    rec = Recorder(["step_out", "step_out"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("a1"), temporary=True)
    assert a_plus_b() == 3
    assert rec.where()[:2] == [("part_a", L("a1")), ("part_b", L("b1"))]


def test_next_at_a_return_continues_as_step(dbg):
    """pdb's `next` at a frame's last line ends in the next line run anywhere."""
    rec = Recorder(["next", "next"])
    dbg.set_stop_handler(rec)
    dbg.set_break(HERE, L("a1"), temporary=True)
    a_plus_b()
    assert rec.where() == [("part_a", L("a1")), ("part_a", L("a1") + 1), ("part_b", L("b1"))]


def test_a_stopped_frame_is_freed_when_it_returns(dbg):
    """The engine keeps no reference to a stopped frame once the thread resumes (its
    bookkeeping used to hold the thread's frames in a cycle until the next gc)."""
    import gc

    actions = iter(["next", "continue"])
    dbg.set_stop_handler(lambda frame, reason, info: next(actions))
    dbg.set_break(HERE, L("hold1"), temporary=True)
    freed: list = []
    gc.disable()
    try:
        assert holder(freed) == 1
        assert freed == [True]
    finally:
        gc.enable()
