"""What intercepting the job's output costs the job: printing N lines with and without
bridge active.

Run (one command)::

    python tests/bench/bench_output.py [--n 200000] [--reps 7]

Each run is a fresh interpreter that prints N short lines (``print(f"line {i} ...")``)
to /dev/null (the cheapest destination, so the interception's share is the largest it
can be) and reports the time of its print loop: once block-buffered, once with
``flush=True`` (a log line written at once: a system call per line). Three variants,
interleaved, ``reps`` times each:

* ``baseline``: no bridge;
* ``routers``: ``bridge.listen()`` with the output tail off (sys.stdout is a router);
* ``active``: ``bridge.listen()`` as it runs (routers, and the tail the panel reads).

Reported: the median ns per printed line of each, and the ratios to the baseline of the
same run (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SRC, private_dirs  # noqa: E402

JOB = r"""
import sys, time
mode, n, flush = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "flush"
if mode != "baseline":
    import bridge
    bridge.listen()
    if mode == "routers":
        from bridge import capture
        capture.install(record=False)
out = sys.stdout
assert (type(out).__name__ == "Router") == (mode != "baseline"), type(out)
started = time.perf_counter()
for i in range(n):
    print(f"line {i} of the job's output", flush=flush)
elapsed = time.perf_counter() - started
sys.stdout.flush()
print(elapsed, file=sys.stderr)
"""


def run(mode: str, n: int, flush: bool) -> float:
    """Seconds the print loop took in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONUNBUFFERED", None)  # a job's usual block-buffered stdout
    with open(os.devnull, "w") as devnull:
        done = subprocess.run([sys.executable, "-c", JOB, mode, str(n), "flush" if flush else "buffered"], stdout=devnull,
                              stderr=subprocess.PIPE, env=env, text=True, timeout=300, check=True)
    return float(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    private_dirs()
    report: Dict[str, object] = {"n": args.n, "reps": args.reps, "python": sys.version.split()[0]}
    for flush in (False, True):
        times: Dict[str, List[float]] = {"baseline": [], "routers": [], "active": []}
        for _ in range(args.reps):
            for mode in times:  # interleaved: drift of a shared machine hits every variant alike
                times[mode].append(run(mode, args.n, flush))
        per_line = {mode: statistics.median(ts) / args.n * 1e9 for mode, ts in times.items()}
        report["print(..., flush=True)" if flush else "print(...)"] = {
            "ns_per_line": {mode: round(v, 1) for mode, v in per_line.items()},
            "ratio_routers": round(per_line["routers"] / per_line["baseline"], 2),
            "ratio_active": round(per_line["active"] / per_line["baseline"], 2),
            "added_ns_per_line_active": round(per_line["active"] - per_line["baseline"], 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
