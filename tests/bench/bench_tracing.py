"""Overhead of a breakpoint that is set but never hit, compared with native and pdb.

Run (one process measures every case, so the ratios are comparable)::

    PYTHONPATH=src python tests/bench/bench_tracing.py [--calls N] [--reps R]

Workload: a pure-Python loop calling a tiny function N times (the worst case for a
tracer: per-call cost dominates).  Cases:

* native: no tracer at all
* framebridge, same file: our breakpoint in a never-called function of this file
* framebridge, other file: our breakpoint in a never-called function of another file
* settrace(getattr): the floor of any sys.settrace tracer (a C builtin returning None)
* bdb (pdb's engine), same file / other file: the same breakpoints held by bdb with
  its tracer active (set_trace, then set_continue)
* debugpy: if importable and ``--debugpy`` is given (it needs a listening adapter)

Each case runs R times, interleaved; the table shows the median time and the ratio
of medians to native.
"""

from __future__ import annotations

import argparse
import bdb
import os
import statistics
import sys
import tempfile
import time

from bridge.tracing import get_debugger

THIS_FILE = os.path.realpath(__file__)


def small(x):
    return x + 1


def work(n):
    s = 0
    for _ in range(n):
        s = small(s)
    return s


def never_called():
    return "never"  # breakpoint line (same file)


NEVER_LINE = never_called.__code__.co_firstlineno + 1

OTHER_SOURCE = "def never_called_elsewhere():\n    return 'never'\n"


def timed(n: int) -> float:
    t0 = time.perf_counter()
    work(n)
    return time.perf_counter() - t0


def case_native(n, file, line):
    return timed(n)


def case_framebridge(n, file, line):
    dbg = get_debugger()
    bp = dbg.set_break(file, line)
    try:
        return timed(n)
    finally:
        dbg.clear_break(bp.id)
        assert dbg.is_idle()


def case_floor(n, file, line):
    # the cheapest possible tracer: a C builtin that returns None for every call
    sys.settrace(getattr)
    try:
        return timed(n)
    finally:
        sys.settrace(None)


class _QuietBdb(bdb.Bdb):
    def user_line(self, frame):
        self.set_continue()  # keeps its tracer: there is a breakpoint


def case_bdb(n, file, line):
    b = _QuietBdb()
    err = b.set_break(file, line)
    assert err is None, err
    b.set_trace(sys._getframe())  # stops at the next line, which continues
    try:
        return timed(n)
    finally:
        sys.settrace(None)
        b.clear_all_breaks()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench_tracing_")
    other = os.path.join(tmp, "other_module.py")
    with open(other, "w") as f:
        f.write(OTHER_SOURCE)
    sys.path.insert(0, tmp)
    import other_module  # noqa: F401  (code objects exist, as in a real program)

    cases = [
        ("native", case_native, None, None),
        ("framebridge, bp in same file", case_framebridge, THIS_FILE, NEVER_LINE),
        ("framebridge, bp in other file", case_framebridge, other, 2),
        ("settrace(getattr): tracer floor", case_floor, None, None),
        ("bdb/pdb, bp in same file", case_bdb, THIS_FILE, NEVER_LINE),
        ("bdb/pdb, bp in other file", case_bdb, other, 2),
    ]
    work(1000)  # warm up
    times = {name: [] for name, *_ in cases}
    for _ in range(args.reps):
        for name, fn, file, line in cases:
            times[name].append(fn(args.calls, file, line))

    native = statistics.median(times["native"])
    impl = sys.implementation.name
    print(f"{impl} {sys.version.split()[0]}  mechanism={get_debugger().mechanism}  "
          f"calls={args.calls:,}  reps={args.reps} (median)")
    print(f"{'case':34} {'median s':>9} {'x native':>9}")
    for name, *_ in cases:
        med = statistics.median(times[name])
        print(f"{name:34} {med:9.4f} {med / native:9.2f}")
    try:
        import debugpy  # noqa: F401

        print("debugpy: importable, but not measured (needs a client to set breakpoints)")
    except ImportError:
        print("debugpy: not installed, not measured")


if __name__ == "__main__":
    main()
