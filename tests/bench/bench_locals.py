"""``locals()`` of a frame holding huge values, against ``locals()`` of a small frame.

Run (one command)::

    python tests/bench/bench_locals.py [--rounds 5]

Two targets, each paused in a frame: *small* holds a handful of small values (the floor:
one round trip plus a few summaries); *huge* holds the same plus a 512 MiB bytes object,
a 20-million-element list and a 100,000-bit int. Summaries are bounded (bridge/summaries.py),
so the two should cost about the same; before, *huge* took seconds and grew the
target by gigabytes (the full repr of every value). Reports medians over interleaved
rounds, the ratio huge/small, and the target's peak RSS growth (VmHWM) over the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, interleave, peak_rss_reset, private_dirs, status_kib, table  # noqa: E402

SMALL = """
import bridge
def job():
    a, b, c = 1, "text", {"k": [1, 2, 3]}
    bridge.set_trace()
job()
"""

HUGE = """
import bridge
def job():
    a, b, c = 1, "text", {"k": [1, 2, 3]}
    big_bytes = b"a" * (512 << 20)
    big_list = [0] * 20_000_000
    huge_int = 2 ** 100_000
    bridge.set_trace()
job()
"""


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    private_dirs()
    import client

    targets = {name: TargetProcess(source) for name, source in (("small", SMALL), ("huge", HUGE))}
    sessions = {}
    try:
        for name, target in targets.items():
            target.wait_attachable()
            sessions[name] = client.attach(target.pid)
            sessions[name].wait(60)
            sessions[name].locals()  # warm: imports, helper thread
            peak_rss_reset(target.pid)
        before = {name: status_kib(t.pid, "VmHWM") for name, t in targets.items()}

        def timed(name: str):
            def run() -> float:
                t0 = time.perf_counter()
                sessions[name].locals()
                return (time.perf_counter() - t0) * 1000
            return run

        ms = interleave({name: timed(name) for name in targets}, args.rounds)
        grown = {name: (status_kib(t.pid, "VmHWM") - before[name]) / 1024 for name, t in targets.items()}
        rows = [(name, f"{ms[name]:.2f}", f"{grown[name]:.1f}") for name in targets]
        print(table(rows, ("frame", "locals() median ms", "peak RSS growth MiB")))
        print(f"ratio huge/small: {ms['huge'] / ms['small']:.2f}")
    finally:
        for s in sessions.values():
            try:
                s.cont()
                s.close()
            except Exception:
                pass
        for t in targets.values():
            t.close()


if __name__ == "__main__":
    main()
