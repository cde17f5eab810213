"""What a breakpoint costs the code around it: framebridge against native and pdb.

Run (one process measures every case, interleaved, so the ratios are comparable)::

    PYTHONPATH=src python tests/bench/bench_tracing.py [--calls 300000] [--reps 11]

Workload: a pure-Python loop calling a tiny function N times (the worst case for a
tracer: per-call cost dominates). Cases:

* native: no breakpoint, no tracer.
* framebridge, bp never hit (same file / other file): a breakpoint in a function that is
  never called, in this file or in another one.
* framebridge, false condition in the hot function: a breakpoint inside the function
  the loop calls, with a condition that is never true (every call checks it).
* framebridge, bp in the running frame: the loop's own frame holds a breakpoint (on a
  line after the loop) when it starts. Before 3.12 that frame runs its original code,
  so its thread gets a tracer and the frame ``f_trace``: this measures what that costs
  the code the frame calls.
* framebridge sys.settrace fallback (3.9-3.11): the global tracer used where the
  ``bytecode`` library is missing.
* settrace(getattr): the floor of any sys.settrace tracer (a C builtin returning None).
* bdb/pdb: the same breakpoints held by bdb (pdb's engine) with its tracer on
  (set_trace, then set_continue), including the false condition in the hot function.

Each case runs R times, interleaved, timed in the thread's CPU time; the table shows the
median and the ratio of medians to native, and the same for the fastest run of each case.
"""

from __future__ import annotations

import argparse
import bdb
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
from bridge.tracing import Debugger, get_debugger  # noqa: E402

THIS_FILE = os.path.realpath(__file__)


def small(x):
    return x + 1  # hot line: the false-condition breakpoint


def work(n):
    s = 0
    for _ in range(n):
        s = small(s)
    return s


def work_running(n, arm):
    arm()  # sets a breakpoint on this frame's last line while it runs
    s = 0
    for _ in range(n):
        s = small(s)
    return s  # running-frame breakpoint line (no stop handler: it does not stop)


def never_called():
    return "never"  # breakpoint line (same file)


NEVER_LINE = never_called.__code__.co_firstlineno + 1
HOT_LINE = small.__code__.co_firstlineno + 1
RUNNING_LINE = work_running.__code__.co_firstlineno + 6
OTHER_SOURCE = "def never_called_elsewhere():\n    return 'never'\n"


def timed(fn: Callable[[], object], warm: Optional[Callable[[], object]] = None) -> float:
    """CPU seconds of this thread that ``fn()`` takes, after ``warm()`` (default: a short
    ``work``: 3.11+ re-warms its specialised instructions after a case that traced them).
    Thread CPU time, not wall time: other processes on a shared machine do not inflate it."""
    (warm or (lambda: work(20000)))()
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


class _QuietBdb(bdb.Bdb):
    def user_line(self, frame):
        self.set_continue()  # keeps its tracer: there is a breakpoint


def case_bdb(n: int, file: str, line: int, cond: Optional[str] = None) -> float:
    b = _QuietBdb()
    err = b.set_break(file, line, cond=cond)
    assert err is None, err
    b.set_trace(sys._getframe())  # stops at the next line, which continues
    try:
        return timed(lambda: work(n))
    finally:
        sys.settrace(None)
        b.clear_all_breaks()


def case_framebridge(dbg: Debugger, n: int, file: str, line: int, cond: Optional[str] = None) -> float:
    bp = dbg.set_break(file, line, condition=cond)
    try:
        return timed(lambda: work(n))
    finally:
        dbg.clear_break(bp.id)
        assert dbg.is_idle()


def case_running_frame(dbg: Debugger, n: int) -> float:
    bps: List = []
    try:
        return timed(lambda: work_running(n, lambda: bps.append(dbg.set_break(THIS_FILE, RUNNING_LINE))),
                     lambda: work_running(20000, lambda: None))
    finally:
        dbg.clear_break(bps[0].id)
        assert dbg.is_idle()


def case_floor(n: int) -> float:
    sys.settrace(getattr)  # the cheapest possible tracer: a C builtin that returns None
    try:
        return timed(lambda: work(n))
    finally:
        sys.settrace(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    n = args.calls

    tmp = tempfile.mkdtemp(prefix="bench_tracing_")
    other = os.path.join(tmp, "other_module.py")
    with open(other, "w") as f:
        f.write(OTHER_SOURCE)
    sys.path.insert(0, tmp)
    import other_module  # noqa: F401  (code objects exist, as in a real program)

    dbg = get_debugger()
    fb = dbg.mechanism
    cases: Dict[str, Callable[[], float]] = {
        "native": lambda: timed(lambda: work(n)),
        f"framebridge ({fb}), bp never hit, same file": lambda: case_framebridge(dbg, n, THIS_FILE, NEVER_LINE),
        f"framebridge ({fb}), bp never hit, other file": lambda: case_framebridge(dbg, n, other, 2),
        f"framebridge ({fb}), false condition in hot fn": lambda: case_framebridge(dbg, n, THIS_FILE, HOT_LINE, "x < 0"),
        "native, running-frame workload": lambda: timed(lambda: work_running(n, lambda: None),
                                                        lambda: work_running(20000, lambda: None)),
        f"framebridge ({fb}), bp in the running frame": lambda: case_running_frame(dbg, n),
    }
    if sys.version_info < (3, 12):
        fallback = Debugger(backend="sys.settrace")
        cases["framebridge (sys.settrace fallback), bp never hit"] = \
            lambda: case_framebridge(fallback, n, THIS_FILE, NEVER_LINE)
    cases.update({
        "settrace(getattr): tracer floor": lambda: case_floor(n),
        "bdb/pdb, bp never hit, same file": lambda: case_bdb(n, THIS_FILE, NEVER_LINE),
        "bdb/pdb, bp never hit, other file": lambda: case_bdb(n, other, 2),
        "bdb/pdb, false condition in hot fn": lambda: case_bdb(n, THIS_FILE, HOT_LINE, "x < 0"),
    })
    work(1000)  # warm up
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            times[name].append(fn())

    native = statistics.median(times["native"])
    native_min = min(times["native"])
    print(f"{sys.implementation.name} {sys.version.split()[0]}  calls={n:,}  reps={args.reps}")
    width = max(len(name) for name in cases)
    print(f"{'case':{width}} {'median s':>9} {'x native':>9} {'min s':>9} {'x native':>9}")
    for name in cases:
        med, low = statistics.median(times[name]), min(times[name])
        print(f"{name:{width}} {med:9.4f} {med / native:9.2f} {low:9.4f} {low / native_min:9.2f}")


if __name__ == "__main__":
    main()
