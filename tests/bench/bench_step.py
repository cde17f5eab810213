"""Step round trip: from ``Session.next()`` / ``step()`` to the next pause at the client,
against an eval round trip measured in the same run.

Run (one command; every case interleaved in the same run)::

    python tests/bench/bench_step.py [--n 300] [--rounds 5] [--block 20] [--profile]

Cases, each against a target paused in a loop of plain lines and calls:

* ``eval``: ``Session.eval("i")`` in the paused frame (the baseline).
* ``next``: ``Session.next()`` until the next pause event arrives (pause id above the last).
* ``step``: ``Session.step()`` the same way (into the loop's call).

Each case runs in blocks of ``--block`` round trips, the cases interleaved, and the table
shows the median single round trip. Goal: a step/next round trip under 3x an eval round
trip. ``--profile`` also writes a
cProfile of the target's side (the stop handler's path) to stdout, to see where the
time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, private_dirs, table  # noqa: E402

TARGET = """
import os, sys, bridge
if os.environ.get("BENCH_PROFILE"):  # the paused (main) thread's profile, printed on demand
    import builtins, cProfile, pstats
    profile = cProfile.Profile()

    def _bench_dump():
        profile.disable()
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(35)

    builtins._bench_dump = _bench_dump
    profile.enable()

def helper(k):
    return k + 1

def loop():
    i = 0
    bridge.set_trace()
    while True:
        i = helper(i)
        i += 1
        i -= 1

loop()
"""


def next_pause(s: Any, after: int, timeout: float = 10.0) -> Any:
    """The first pause with an id above ``after``, woken by the session's event listener."""
    deadline = time.monotonic() + timeout

    def found() -> Any:
        return next((p for p in s.pauses() if p.pause_id > after), None)

    state = getattr(s, "pause_state", None)
    if state is not None:  # the session's pause state (client/pause_state.py)
        pause = state.wait_for(found, deadline)
    else:  # the session before it had its pause state split out: its own condition
        with s._state:
            pause = found()
            while pause is None and time.monotonic() < deadline:
                s._state.wait(deadline - time.monotonic())
                pause = found()
    if pause is None:
        raise TimeoutError(f"no pause after {after}")
    return pause


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="round trips per case and round")
    ap.add_argument("--block", type=int, default=20, help="round trips of one case in a row")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile the target, print it at the end")
    args = ap.parse_args()

    private_dirs()
    import client

    env = {"BENCH_PROFILE": "1"} if args.profile else {}
    target = TargetProcess(TARGET, env=env)
    try:
        target.wait_attachable()
        s = client.attach(target.pid)
        last = [s.wait(10).pause_id]

        def eval_once() -> float:
            t0 = time.perf_counter()
            s.eval("1")
            return time.perf_counter() - t0

        def resume_once(action: str):
            def run() -> float:
                t0 = time.perf_counter()
                getattr(s, action)()
                last[0] = next_pause(s, last[0]).pause_id
                return time.perf_counter() - t0
            return run

        cases = {"eval": eval_once, "next": resume_once("next"), "step": resume_once("step")}
        samples: dict = {name: [] for name in cases}
        for _ in range(20):  # warm up (lanes connect, caches fill)
            for fn in cases.values():
                fn()
        # Blocks of --block round trips per case, interleaved, --rounds times: each case
        # sees the same load; the median of single round trips shrugs off load spikes.
        for _ in range(args.rounds * args.n // args.block):
            for name, fn in cases.items():
                for _ in range(args.block):
                    samples[name].append(fn())
        result = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
        base = result["eval"]
        print(f"python {sys.version.split()[0]}  {len(samples['eval'])} round trips per case (median)")
        print(table([[name, f"{us:.0f}", f"{us / base:.2f}"] for name, us in result.items()],
                    ["case", "us per round trip", "x eval"]))
        if args.profile:
            print(s.exec("_bench_dump()"))
        s.close()
    finally:
        target.close()


if __name__ == "__main__":
    main()
