"""Mount and write-back through ``jump_context``: 100 small variables, and one 1 GiB array.

Run (one command)::

    python tests/bench/bench_mount.py [--rounds 5] [--skip-1g]

* 100 small: a paused function with 100 locals (ints, floats, short strings, small
  lists); mount them all, rebind every one, write back.
* 1 GiB: a paused frame holding one 1 GiB float64 array; mount it (``size_limit=None`` so
  it is copied, not live) and write it back, three ways, interleaved (a mount each):

  - *delta*: one element changed; only its block goes back, into the target's buffer;
  - *full, in place*: every element changed (``+= 1``); every block goes back, into the
    target's buffer;
  - *full, by value*: the name rebound to a changed copy; the whole array goes back and
    the target binds a new one (what every write-back of a changed array did before
    write-back kept identity).

Floors in the same run: a bare ``Session.eval("0")`` round trip (for the small case), and
memcpy of 1 GiB into a warm destination (for the big one).

Goals: mount of 100 small variables <= 20 ms; a delta write-back of the 1 GiB array
<= 10 % of a full write-back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, median_us, private_dirs, table  # noqa: E402

TARGET = """
import numpy as np
import bridge

def small_frame():
{assigns}
    bridge.set_trace()

def big_frame():
    big = np.random.default_rng(0).random({n} // 8)
    bridge.set_trace()

small_frame()
big_frame()
"""


def small_assigns() -> str:
    kinds = ["{i}", "{i}.5", "'text-{i}'", "[{i}, {i}, {i}]"]
    return "\n".join(f"    v{i} = {kinds[i % 4].format(i=i)}" for i in range(100))


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-1g", action="store_true")
    args = parser.parse_args(argv)
    private_dirs()
    import numpy as np

    import client
    from client import jump_context

    n = (256 if args.skip_1g else 1024) * 2**20
    target = TargetProcess(TARGET.format(assigns=small_assigns(), n=n))
    rows = []
    try:
        target.wait_attachable(60)
        s = client.attach(target.pid, timeout=300)
        s.wait(60)
        rt = median_us(lambda: s.eval("0"), 200) / 1000
        mounts, writes = [], []
        for r in range(args.rounds):
            ns: dict = {}
            t0 = time.perf_counter()
            m = jump_context(s, namespace=ns)
            m.__enter__()
            mounts.append(time.perf_counter() - t0)
            assert len(m.mounted) == 100, m.mounted
            for i in range(100):
                ns[f"v{i}"] = ns[f"v{i}"] * 2 if not isinstance(ns[f"v{i}"], list) else ns[f"v{i}"] + [r]
            t0 = time.perf_counter()
            m.__exit__(None, None, None)
            writes.append(time.perf_counter() - t0)
        assert s.eval("v4") == 4 * 2 ** args.rounds  # every round wrote back
        mount_ms, write_ms = statistics.median(mounts) * 1000, statistics.median(writes) * 1000
        rows.append(["100 small variables", "mount", f"{mount_ms:.1f}", f"{mount_ms / rt:.1f}x eval RT ({rt:.2f} ms)"])
        rows.append(["100 small variables", "write-back", f"{write_ms:.1f}", f"{write_ms / rt:.1f}x eval RT"])

        s.cont()
        info = s.wait(120)
        assert info.function == "big_frame", info
        src = np.ones(n // 8)
        warm = np.zeros_like(src)
        copies = []
        for _ in range(3):
            t0 = time.perf_counter()
            np.copyto(warm, src)
            copies.append(time.perf_counter() - t0)
        del src, warm
        memcpy_ms = statistics.median(copies) * 1000
        mounts: list = []
        steps: dict = {"delta": [], "full, in place": [], "full, by value": []}
        sent: dict = {}
        for r in range(max(1, args.rounds)):
            for step in steps:  # each in a mount of its own, interleaved; the write-back on leaving
                ns = {}
                t0 = time.perf_counter()
                m = jump_context(s, namespace=ns, size_limit=None)
                m.__enter__()
                mounts.append(time.perf_counter() - t0)
                if step == "delta":
                    ns["big"][1 + (r * 7919) % (n // 8 - 1)] = -1.0 - r  # one element (not big[0]: checked below)
                elif step == "full, in place":
                    ns["big"] += 1.0
                else:
                    ns["big"] = ns["big"] + 1.0
                t0 = time.perf_counter()
                m.__exit__(None, None, None)
                steps[step].append(time.perf_counter() - t0)
                sent[step] = m.sent_bytes
                del m, ns
        assert s.eval("float(big[0])") == float(np.random.default_rng(0).random(1)[0]) + 2 * max(1, args.rounds)
        label = f"one {n // 2**20} MiB array"
        ms = statistics.median(mounts) * 1000
        rows.append([label, "mount", f"{ms:,.0f}", f"{ms / memcpy_ms:.1f}x memcpy ({memcpy_ms:.0f} ms); "
                     f"{n / (ms / 1000) / 1e9:.2f} GB/s"])
        medians = {step: statistics.median(vals) * 1000 for step, vals in steps.items()}
        for step, step_ms in medians.items():
            rows.append([label, f"write-back, {step}", f"{step_ms:,.1f}",
                         f"{step_ms / medians['full, by value'] * 100:.1f} % of full by value; "
                         f"{step_ms / medians['full, in place'] * 100:.1f} % of full in place; "
                         f"sent {sent[step] / 2**20:,.2f} MiB"])
        print(table(rows, ["value", "step", "median ms", "ratio"]))
        print(f"\nmount of 100 small variables: {mount_ms:.1f} ms (goal <= 20 ms)")
        if medians:
            print(f"delta write-back of the {n // 2**20} MiB array: {medians['delta']:.1f} ms = "
                  f"{medians['delta'] / medians['full, by value'] * 100:.1f} % of a full write-back "
                  f"({medians['full, by value']:.0f} ms; goal <= 10 %), "
                  f"{medians['delta'] / medians['full, in place'] * 100:.1f} % of a full one in place "
                  f"({medians['full, in place']:.0f} ms)")
        s.close()
    finally:
        target.close()


if __name__ == "__main__":
    main()
