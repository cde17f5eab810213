"""Patch round trip: ``Session.patch`` of one function, from the call to its result at the
client, against an eval round trip measured in the same run.

Run (one command; every case interleaved in the same run)::

    python tests/bench/bench_patch.py [--n 100] [--rounds 5] [--heap 1000000]

Cases, each against a target paused in a loop that calls the functions patched:

* ``eval``: ``Session.eval("1")`` in the paused frame (the baseline).
* ``patch function``: ``Session.patch("scale", source)``: a module-level function.
* ``patch method``: ``Session.patch("Model.step", source)``.
* ``patch nested``: ``Session.patch("make.inner", source)``: a closure; finding every
  function object of its code scans the garbage collector's objects, so this one grows
  with the target's heap (``--heap``: that many extra live objects, in lists).
* ``unpatch``: ``Session.unpatch("scale")`` (each patch case is followed by an untimed
  unpatch, so the target never holds more than one patch per function).

Goal: a patch of one function under 20 ms round trip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, private_dirs, table  # noqa: E402

TARGET = """
import os, bridge

HEAP = [[i] for i in range(int(os.environ.get("BENCH_HEAP", "0")))]

def scale(x):
    return x * 2

class Model:
    def step(self, x):
        return x + 1

def make(k):
    def inner(x):
        return x + k
    return inner

def loop():
    model, inner, i = Model(), make(3), 0
    bridge.set_trace()
    while True:
        i = inner(model.step(scale(i))) % 1000

loop()
"""

SOURCES = {
    "scale": "def scale(x):\n    return x * 3\n",
    "Model.step": "def step(self, x):\n    return x + 2\n",
    "make.inner": "def inner(x):\n    return x - k\n",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="round trips per case and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--heap", type=int, default=0, help="extra live objects in the target (for the gc scan)")
    args = ap.parse_args()

    private_dirs()
    import client

    target = TargetProcess(TARGET, env={"BENCH_HEAP": str(args.heap)})
    try:
        target.wait_attachable(120)
        s = client.attach(target.pid)
        s.wait(120)

        def timed(fn: Callable[[], Any], after: Callable[[], Any] = lambda: None) -> Callable[[], float]:
            def run() -> float:
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
                after()
                return elapsed
            return run

        def patch_case(name: str) -> Callable[[], float]:
            return timed(lambda: s.patch(name, SOURCES[name]), lambda: s.unpatch(name))

        def unpatch_case() -> float:
            s.patch("scale", SOURCES["scale"])
            t0 = time.perf_counter()
            s.unpatch("scale")
            return time.perf_counter() - t0

        cases: Dict[str, Callable[[], float]] = {
            "eval": timed(lambda: s.eval("1")),
            "patch function": patch_case("scale"),
            "patch method": patch_case("Model.step"),
            "patch nested": patch_case("make.inner"),
            "unpatch": unpatch_case,
        }
        samples: Dict[str, List[float]] = {name: [] for name in cases}
        for _ in range(5):  # warm up (lanes connect, imports, caches fill)
            for fn in cases.values():
                fn()
        for _ in range(args.rounds):
            for name, fn in cases.items():
                for _ in range(args.n):
                    samples[name].append(fn())
        result = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
        base = result["eval"]
        objects = s.eval("len(__import__('gc').get_objects())")
        print(f"python {sys.version.split()[0]}  {len(samples['eval'])} round trips per case (median); "
              f"target heap: {objects} gc-tracked objects")
        print(table([[name, f"{ms:.2f}", f"{ms / base:.1f}"] for name, ms in result.items()],
                    ["case", "ms per round trip", "x eval"]))
        s.close()
    finally:
        target.close()


if __name__ == "__main__":
    main()
