"""Debugger control end to end: real target processes, real CURVE sessions.

Covers listen/threads, pause on demand, several threads paused at once, breakpoints
(conditions, hit counts, temporary, clear, lines without code), stepping through nested
calls from a set_trace pause and from a breakpoint pause, and watch expressions.

Target scripts mark lines with ``# @name``; ``line_of(source, name)`` finds them.
"""

from __future__ import annotations

import sys
import time
import warnings

import pytest

import client
from client import BreakpointError, PausePending
from conftest import line_of, other_python

WAIT = 20.0  # upper bound of every wait in this file
IS_312 = sys.version_info >= (3, 12)



def wait_for_pauses(s: client.Session, count: int, timeout: float = WAIT) -> list:
    """Block until ``count`` threads of the target are paused; return the pauses."""
    pauses = s.pause_state.wait_for(lambda: s.pauses() if len(s.pauses()) >= count else None,
                                    time.monotonic() + timeout, poll=0.1)
    if pauses is None:
        raise AssertionError(f"only {len(s.pauses())} of {count} threads paused: {s.pauses()}")
    return pauses


def next_pause(s: client.Session, after: int, timeout: float = WAIT):
    """The next pause with a pause_id above ``after`` (the previous pause)."""
    deadline = time.monotonic() + timeout
    while True:
        p = s.wait(max(0.01, deadline - time.monotonic()))
        if p.pause_id > after:
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"no new pause after {after}")
        # woken by the session's event listener when the pauses change
        s.pause_state.wait_for(lambda: None, time.monotonic() + 0.05, poll=0.05)


BUSY = """
    import threading, time, bridge
    bridge.listen()
    stop = threading.Event()

    def idle_worker():
        stop.wait(60)  # @idle

    threading.Thread(target=idle_worker, name="idle-worker", daemon=True).start()
    print("ready", flush=True)
    n = 0
    while True:  # @while
        n += 1  # @busy
"""
LOOP_LINES = {line_of(BUSY, "while"), line_of(BUSY, "busy")}


def test_listen_threads_and_pause_a_busy_loop(target, attach_to):
    t = target(BUSY)
    t.wait_output("ready")
    s = attach_to(t, wait_pause=False)
    assert not s.paused
    threads = {th["name"]: th for th in s.threads()}
    assert threads["MainThread"]["state"] == "running"
    assert threads["MainThread"]["line"] in LOOP_LINES
    assert threads["idle-worker"]["state"] == "running"
    assert threads["idle-worker"]["function"] == "idle_worker"  # the user's frame, not threading.py's
    assert "bridge-server" not in threads

    t0 = time.perf_counter()
    p = s.pause()
    elapsed = time.perf_counter() - t0
    assert p is not None and p.reason == "pause"
    assert p.line in LOOP_LINES and p.function == "<module>"
    assert elapsed < 1.0, f"pause took {elapsed * 1000:.0f} ms"
    n1 = s.eval("n")
    assert n1 > 0 and s.eval("n") == n1  # really stopped
    main = [th for th in s.threads() if th["name"] == "MainThread"][0]
    assert main["state"] == "paused"
    # pausing a paused thread is a no-op, not a second stop after resume
    assert s.pause() is not None
    s.cont()
    # a new pause right after resuming is a new stop (it may land before n moves on)
    p2 = s.pause()
    assert p2 is not None and p2.pause_id > p.pause_id
    assert s.eval("n") >= n1
    s.cont()


@pytest.mark.skipif(not IS_312, reason="pausing a thread other than main needs sys.monitoring (3.12+)")
def test_pause_a_worker_thread_and_a_thread_in_a_long_c_call(target, attach_to):
    src = """
        import threading, time, bridge
        bridge.listen()

        def spinner():
            k = 0
            while True:  # @spin0
                k += 1  # @spin

        def sleeper():
            while True:
                time.sleep(1.5)  # @sleep
                marker = 1  # @after_sleep

        threading.Thread(target=spinner, name="spinner", daemon=True).start()
        threading.Thread(target=sleeper, name="sleeper", daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait(120)
    """
    t = target(src)
    t.wait_output("ready")
    s = attach_to(t, wait_pause=False)
    ids = {th["name"]: th["thread"] for th in s.threads()}
    p = s.pause(thread=ids["spinner"])
    assert p is not None and p.line in (line_of(src, "spin0"), line_of(src, "spin")) and p.name == "spinner"
    assert s.eval("k") > 0
    s.cont()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = s.pause(thread=ids["sleeper"], wait=0.2)
    if p is None:  # inside time.sleep: told, then it lands when the sleep returns
        assert any(issubclass(w.category, PausePending) for w in caught)
        p = s.wait(WAIT)
    assert p.name == "sleeper" and p.line in (line_of(src, "sleep"), line_of(src, "after_sleep"))
    s.cont()


@pytest.mark.skipif(IS_312, reason="tests the refusal before 3.12; 3.12+ pauses any thread")
def test_pause_of_a_worker_thread_is_refused_clearly_before_312(target, attach_to):
    t = target(BUSY)
    t.wait_output("ready")
    s = attach_to(t, wait_pause=False)
    worker = [th["thread"] for th in s.threads() if th["name"] == "idle-worker"][0]
    with pytest.raises(client.RemoteError, match="before 3.12 only the main thread"):
        s.pause(thread=worker)


THREADS = """
    import sys, threading, bridge
    N = int(sys.argv[1])

    def worker(i):
        x = i * 10
        y = x + 1  # @bp
        return y

    bridge.set_trace()  # the client sets the breakpoint here, then continues  # @start
    threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(N)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("all done", flush=True)
"""


@pytest.mark.parametrize("n", [2, 8])
def test_several_threads_paused_at_once(target, attach_to, n):
    t = target(THREADS, str(n))
    s = attach_to(t)
    bp = s.break_at(str(t.script), line_of(THREADS, "bp"))
    s.cont()
    pauses = wait_for_pauses(s, n)
    assert sorted(p.name for p in pauses) == sorted(f"w{i}" for i in range(n))
    assert all(p.reason == "breakpoint" and p.line == line_of(THREADS, "bp") for p in pauses)
    # each paused thread serves its own frame
    for p in pauses:
        s.select(thread=p.thread)
        assert s.eval("x") == int(p.name[1:]) * 10
        assert s.stack()[0].function == "worker"
    states = {th["name"]: th["state"] for th in s.threads()}
    assert all(states[f"w{i}"] == "paused" for i in range(n))
    # cont(thread=...) resumes only that one
    first = pauses[0]
    s.cont(thread=first.thread)
    resumed = s.pause_state.wait_for(lambda: s.pause_state.get(first.thread) is None or None,
                                     time.monotonic() + WAIT, poll=0.05)
    assert resumed, f"thread {first.thread} still paused"
    assert len(s.pauses()) == n - 1
    assert s.breakpoints()[0].hits == n
    s.clear(bp)
    s.cont()  # every other paused thread
    t.wait_output("all done")
    assert t.wait_exit(WAIT) == 0


LOOP = """
    import bridge

    def helper(k):
        return k * 2


    def run():
        total = 0
        for i in range(10):

            # a comment line, then the loop body  # @blank
            total += helper(i)  # @body
        return total  # @ret

    bridge.set_trace()  # @start
    print("result", run(), flush=True)
    # nothing after here  # @tail
"""


def test_breakpoints_condition_hits_temporary_clear(target, attach_to):
    t = target(LOOP)
    s = attach_to(t)
    script = str(t.script)
    # a line without code moves to the next code line
    bp = s.break_at(script, line_of(LOOP, "blank"), condition="i == 7")
    assert bp.line == line_of(LOOP, "body") and bp.requested_line == line_of(LOOP, "blank")
    # refused: no code at or after the line; a missing file; a bad condition
    with pytest.raises(BreakpointError, match="no code at or after"):
        s.break_at(script, line_of(LOOP, "tail") + 5)
    with pytest.raises(ValueError, match="no such file"):
        s.break_at(script + ".missing", 3)
    with pytest.raises(BreakpointError, match="does not compile"):
        s.break_at(script, line_of(LOOP, "body"), condition="i ==")
    if sys.version_info < (3, 12):  # breakpoints are compiled into the code: no tracer
        assert s.eval("__import__('bridge.tracing').tracing.get_debugger().mechanism") == "code patching"
    tmp = s.break_at(script, line_of(LOOP, "ret"), temporary=True)
    assert [b.id for b in s.breakpoints()] == [bp.id, tmp.id]
    first = s.wait().pause_id
    s.cont()

    p = next_pause(s, first)
    assert p.reason == "breakpoint" and p.line == line_of(LOOP, "body")
    assert p.extra["breakpoint"] == bp.id and p.extra["hits"] == 1
    assert s.eval("i") == 7 and s.eval("total") == sum(2 * k for k in range(7))
    assert s.clear(bp) == [bp.id]
    with pytest.raises(BreakpointError, match="no breakpoint with id"):
        s.clear(bp)
    s.cont()

    p = next_pause(s, p.pause_id)
    assert p.line == line_of(LOOP, "ret") and p.extra["temporary"] is True
    assert s.breakpoints() == []  # the temporary one went away when it stopped
    s.cont()
    t.wait_output("result 90")
    assert t.wait_exit(WAIT) == 0


def test_hit_counts_of_an_unconditional_breakpoint(target, attach_to):
    t = target(LOOP)
    s = attach_to(t)
    bp = s.break_at(str(t.script), line_of(LOOP, "body"))
    last = s.wait().pause_id
    s.cont()
    for expected in (1, 2, 3):
        p = next_pause(s, last)
        assert p.extra["hits"] == expected and s.eval("i") == expected - 1
        assert {b.id: b.hits for b in s.breakpoints()}[bp.id] == expected  # the listing agrees
        last = p.pause_id
        s.cont()
    assert s.wait().pause_id > last  # 4th hit
    assert [b.hits for b in s.breakpoints()] == [4]
    s.clear(all=True)
    s.cont()
    assert t.wait_exit(WAIT) == 0


NESTED = """
    import bridge

    def leaf(x):
        y = x + 1  # @leaf1
        return y * 2  # @leaf2

    def middle(x):
        a = leaf(x)  # @mid1
        b = leaf(a)  # @mid2
        return a + b  # @mid3

    def raiser():
        v = 1  # @r1
        raise ValueError(v)  # @r2

    def catcher():
        try:
            raiser()  # @c1
        except ValueError:  # @c2
            handled = True  # @c3
        return handled  # @c4

    def outer():
        bridge.set_trace()  # @out0
        r = middle(1)  # @out1
        r += catcher()  # @out2
        return r  # @out3

    print("result", outer(), flush=True)  # @main
"""


def _where(p) -> tuple:
    return (p.function.rsplit(".", 1)[-1], p.line)


def _finish(s, t, output: str) -> None:
    """Clear every breakpoint, continue, and see the program print ``output`` and exit 0."""
    s.clear(all=True)
    s.cont()
    t.wait_output(output)
    assert t.wait_exit(WAIT) == 0


def _do(s, action: str, last: int):
    getattr(s, action)()
    return next_pause(s, last)


def test_step_next_step_out_from_set_trace(target, attach_to):
    t = target(NESTED)
    s = attach_to(t)
    L = lambda name: line_of(NESTED, name)  # noqa: E731
    p = s.wait()
    assert _where(p) == ("outer", L("out0")) and p.reason == "set_trace"
    # After a return, the stop is in the caller: at the call's own line when the
    # interpreter reports that line again (it does when the caller's tracing was just
    # switched on), else at the caller's next line. Both are "back in the caller";
    # `settle` takes the first to the second so the sequence is the same on every Python.
    def settle(p, call_line, next_line):
        assert p.line in (call_line, next_line), _where(p)
        return _do(s, "next", p.pause_id) if p.line == call_line else p

    p = _do(s, "next", p.pause_id)
    assert _where(p) == ("outer", L("out1")) and p.reason == "step"
    p = _do(s, "step", p.pause_id)
    assert _where(p) == ("middle", L("mid1"))  # into middle
    p = _do(s, "next", p.pause_id)
    assert _where(p) == ("middle", L("mid2"))  # over leaf
    p = _do(s, "step", p.pause_id)
    assert _where(p) == ("leaf", L("leaf1"))  # into leaf
    p = _do(s, "step_out", p.pause_id)
    assert p.function == "middle"
    p = settle(p, L("mid2"), L("mid3"))
    assert _where(p) == ("middle", L("mid3")) and s.eval("b") == 10
    p = _do(s, "step", p.pause_id)  # across the return, into the caller
    assert p.function == "outer"
    p = settle(p, L("out1"), L("out2"))
    assert _where(p) == ("outer", L("out2"))
    p = _do(s, "next", p.pause_id)  # over catcher, whose exception is handled inside
    assert _where(p) == ("outer", L("out3")) and p.reason == "step"
    assert s.eval("r") == 15
    s.cont()
    t.wait_output("result 15")
    assert t.wait_exit(WAIT) == 0


NESTED_BP = NESTED.replace("bridge.set_trace()  # @out0", "pass  # @out0").replace(
    'print("result"', 'bridge.set_trace()  # the client sets breakpoints here\n    print("result"')


def test_step_across_an_exception_from_a_breakpoint(target, attach_to):
    t = target(NESTED_BP)
    s = attach_to(t)
    L = lambda name: line_of(NESTED_BP, name)  # noqa: E731
    s.break_at(str(t.script), L("r1"))
    p = _do(s, "cont", s.wait().pause_id)
    assert p.reason == "breakpoint" and _where(p) == ("raiser", L("r1"))
    p = _do(s, "next", p.pause_id)
    assert _where(p) == ("raiser", L("r2"))
    p = _do(s, "next", p.pause_id)  # the exception unwinds raiser: next stops in the handler
    assert _where(p) == ("catcher", L("c2"))
    p = _do(s, "next", p.pause_id)
    assert _where(p) == ("catcher", L("c3"))
    p = _do(s, "step_out", p.pause_id)  # out of catcher, back in outer
    assert p.function == "outer" and p.line in (L("out2"), L("out3"))
    if p.line == L("out2"):
        p = _do(s, "next", p.pause_id)
    assert _where(p) == ("outer", L("out3")) and s.eval("r") == 15
    _finish(s, t, "result 15")


def test_step_out_across_an_exception(target, attach_to):
    t = target(NESTED_BP)
    s = attach_to(t)
    L = lambda name: line_of(NESTED_BP, name)  # noqa: E731
    s.break_at(str(t.script), L("r1"), temporary=True)
    p = _do(s, "cont", s.wait().pause_id)
    assert _where(p) == ("raiser", L("r1"))
    p = _do(s, "step_out", p.pause_id)  # raiser is unwound by its exception
    assert _where(p) == ("catcher", L("c2"))
    s.cont()
    assert t.wait_exit(WAIT) == 0


def test_watch_values_arrive_with_every_pause(target, attach_to):
    t = target(LOOP)
    s = attach_to(t)
    assert s.watch("total") == ["total"]
    assert s.watch("i * 100") == ["total", "i * 100"]
    with pytest.raises(BreakpointError, match="does not compile"):
        s.watch("i *")
    s.break_at(str(t.script), line_of(LOOP, "body"), condition="i in (2, 3)")
    last = s.wait().pause_id
    s.cont()
    p = next_pause(s, last)
    assert p.extra["watches"] == {"total": "2", "i * 100": "200"}
    p = _do(s, "cont", p.pause_id)
    assert p.extra["watches"] == {"total": "6", "i * 100": "300"}
    assert "watch total = 6" in str(p)
    assert s.unwatch("total") == ["i * 100"]
    p = _do(s, "next", p.pause_id)
    assert p.extra["watches"] == {"i * 100": "300"}
    s.unwatch(all=True)
    s.clear(all=True)
    s.cont()
    assert t.wait_exit(WAIT) == 0


NEVER_IMPORTS_BRIDGE = """
    import sys
    print("ready", "bridge" in sys.modules, flush=True)
    n = 0
    while True:  # @while
        n += 1  # @busy
"""


def test_inject_without_remote_exec_says_what_to_do(target):
    if hasattr(sys, "remote_exec"):
        pytest.skip("this Python has sys.remote_exec")
    t = target(NEVER_IMPORTS_BRIDGE)
    t.wait_output("ready False")
    with pytest.raises(client.RemoteAttachError, match=r"sys.remote_exec.*bridge.listen\(\)"):
        client.inject(t.pid, timeout=10)
    t.wait_output("ready")  # unharmed
    assert t.proc.poll() is None


def test_inject_into_a_314_process_that_never_imported_bridge(target):
    # The client runs on whatever version this suite runs on; the target is a plain 3.14
    # interpreter that never imported bridge (sys.remote_exec needs 3.14 in the target only).
    t = target(NEVER_IMPORTS_BRIDGE, python=other_python("3.14"))
    t.wait_output("ready False")
    s = client.inject(t.pid, timeout=20)
    try:
        p = s.pause()
        assert p is not None and p.reason == "pause" and p.line in (
            line_of(NEVER_IMPORTS_BRIDGE, "while"), line_of(NEVER_IMPORTS_BRIDGE, "busy"))
        assert s.eval("n") > 0
        s.cont()
    finally:
        s.close()


# ----------------------------------------------------------------- stepping defects (docs/stepping.md)


def _run_bridge(target, source: str, *runner_args: str, name: str = "prog.py"):
    """``python -m bridge [runner_args] prog.py`` on ``source``."""
    return target(source, name=name, module_args=["-m", "bridge", *runner_args, name])


def test_stepping_past_the_end_under_the_runner_lets_the_program_finish(target, attach_to):
    """`x = 1` under `python -m bridge --wait`: one step past the end finishes the program,
    as pdb's does (it used to stop in runpy, then hang at exit inside pyzmq)."""
    t = _run_bridge(target, "x = 1\n", "--wait")
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "start" and p.line == 1
    s.step()
    assert t.wait_exit(WAIT) == 0
    assert "Traceback" not in t.output()


def test_stepping_past_the_end_after_set_trace_lets_the_program_finish(target, attach_to):
    src = """
        import bridge
        bridge.set_trace()  # @trace
        x = 1  # @last
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    assert p.line == line_of(src, "trace")
    p = _do(s, "step", p.pause_id)
    assert p.line == line_of(src, "last") and p.file.endswith("target.py")
    s.step()  # past the last line: threading's shutdown, then exit handlers (the server's own)
    assert t.wait_exit(WAIT) == 0
    assert "Traceback" not in t.output()


def test_stepping_into_an_uncaught_exception_stops_only_in_the_program(target, attach_to):
    """Every step stops in the program, up to the post-mortem pause (it used to stop in
    posixpath, pyzmq, traceback.py, linecache.py: the runner's and the pause loop's code)."""
    src = """
        def fail():
            raise ValueError("boom")  # @raise

        x = 1
        fail()
    """
    t = _run_bridge(target, src, "--wait")
    s = attach_to(t)
    p = s.wait()
    seen = [(p.function, p.line)]
    for _ in range(12):
        p = _do(s, "step", p.pause_id)
        if p.reason == "post_mortem":
            break
        assert p.file.endswith("prog.py"), f"stopped outside the program: {p}"
        seen.append((p.function, p.line))
    assert p.reason == "post_mortem" and (p.function, p.line) == ("fail", line_of(src, "raise")), seen
    s.cont()
    assert t.wait_exit(WAIT) == 1


def test_a_stopped_frames_locals_are_freed_when_it_returns(target, attach_to):
    """Nothing of the engine or the pause keeps a stopped frame alive: its locals go when
    the function returns, without a garbage collection (they used to live until the
    next one: a cycle through the engine's own frame)."""
    src = """
        import gc, bridge
        gc.disable()  # only reference counting may free the object

        class Resource:
            def __del__(self):
                print("freed", flush=True)

        def work():
            resource = Resource()
            bridge.set_trace()
            after = 1  # @after
            return after

        work()
        print("returned", flush=True)
        bridge.set_trace()  # @end
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    p = _do(s, "next", p.pause_id)  # a stop made by the engine, not only set_trace
    assert p.line == line_of(src, "after")
    p = _do(s, "cont", p.pause_id)
    assert p.line == line_of(src, "end")
    out = t.output()
    assert "freed" in out and out.index("freed") < out.index("returned"), out
    s.cont()
    assert t.wait_exit(WAIT) == 0


def test_step_out_after_a_call_in_an_expression_steps_into_the_next_call(target, attach_to):
    """step_out is pdb's `return` then `step`: out of a() in `x = a() + b()`, the next
    line run is b()'s first."""
    src = """
        import bridge

        def a():
            bridge.set_trace()
            return 1  # @a

        def b():
            return 2  # @b

        x = a() + b()
        print("x", x, flush=True)
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    p = _do(s, "next", p.pause_id)
    assert (p.function, p.line) == ("a", line_of(src, "a"))
    p = _do(s, "step_out", p.pause_id)
    assert (p.function, p.line) == ("b", line_of(src, "b"))
    s.cont()
    t.wait_output("x 3")
    assert t.wait_exit(WAIT) == 0


def test_breakpoint_in_a_function_the_paused_program_has_not_defined_yet(target, attach_to):
    """Paused before its first line, the program has no `work` yet: the breakpoint gets
    into `work` when the program defines it (code patching watches the running module)."""
    src = """
        import time

        def work(i):
            return i * 2  # @work

        total = sum(work(i) for i in range(3))
        print("total", total, flush=True)
    """
    t = _run_bridge(target, src, "--wait")
    s = attach_to(t)
    p = s.wait()
    s.break_at(str(t.script), line_of(src, "work"), condition="i == 1")
    p = _do(s, "cont", p.pause_id)
    assert p.reason == "breakpoint" and (p.function, p.line) == ("work", line_of(src, "work"))
    assert s.eval("i") == 1
    _finish(s, t, "total 6")


def test_breakpoint_in_a_loop_already_running_at_module_level(target, attach_to):
    t = target(BUSY)
    t.wait_output("ready")
    s = attach_to(t, wait_pause=False)
    bp = s.break_at(str(t.script), line_of(BUSY, "busy"), condition="n % 1000 == 0")
    p = s.wait(WAIT)
    assert p.reason == "breakpoint" and p.line == line_of(BUSY, "busy")
    n = s.eval("n")
    assert n % 1000 == 0
    p = _do(s, "cont", p.pause_id)
    assert s.eval("n") == n + 1000
    s.clear(bp)
    s.cont()
    assert s.pause() is not None  # still running, still attachable after the clear
    s.cont()
