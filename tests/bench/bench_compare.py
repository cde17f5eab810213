"""Single-session eval round trip of this checkout against another one, in the same run.

Run::

    python tests/bench/bench_compare.py --base /path/to/other/checkout [--n 1000] [--rounds 8]

Two client processes, one importing this checkout's ``src`` and one the base's, each
attached to a paused target of its own checkout, take turns measuring the median of
``n`` ``Session.eval("x")`` round trips (over the pause's lane, as a notebook would) and
of ``n`` with ``BRIDGE_LANES=0`` (through the server socket). The machine is shared and
noisy, so the rounds alternate and the report gives each side's median of medians and
their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table  # noqa: E402

HERE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

WORKER = textwrap.dedent(r'''
    import json, os, statistics, subprocess, sys, tempfile, time
    root = tempfile.mkdtemp(prefix="framebridge-cmp-")
    os.environ["BRIDGE_CONFIG_DIR"] = root + "/config"
    os.environ["BRIDGE_RUNTIME_DIR"] = root + "/runtime"
    import client
    from bridge import keys
    target = subprocess.Popen([sys.executable, "-c", "import bridge\nx = 1\nbridge.set_trace()\n"])
    try:
        path = keys.connection_path(target.pid)
        deadline = time.monotonic() + 30
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("target never became attachable")
            time.sleep(0.02)  # the connection file has no notification to wait on
        lane = client.attach(target.pid)
        lane.wait(30)
        os.environ["BRIDGE_LANES"] = "0"
        server = client.attach(target.pid)
        server.wait(30)
        for _ in range(300):  # warm up; the lane connects beside the first requests
            lane.eval("x"); server.eval("x")

        def median_us(s, n):
            times = []
            for _ in range(n):
                t0 = time.perf_counter(); s.eval("x"); times.append(time.perf_counter() - t0)
            return statistics.median(times) * 1e6

        print("ready", flush=True)
        for line in sys.stdin:
            n = int(line)
            print(json.dumps({"lane": median_us(lane, n), "server": median_us(server, n)}), flush=True)
    finally:
        target.kill()
''')


def start(checkout: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.join(checkout, "src"))
    proc = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "worker did not start"
    return proc


def measure(proc: subprocess.Popen, n: int) -> Dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the other checkout (its src/ is imported)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    sides = {"this": start(HERE), "base": start(os.path.abspath(args.base))}
    results: Dict[str, Dict[str, List[float]]] = {k: {"lane": [], "server": []} for k in sides}
    try:
        for _ in range(args.rounds):
            for name, proc in sides.items():
                got = measure(proc, args.n)
                for path, us in got.items():
                    results[name][path].append(us)
    finally:
        for proc in sides.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(30)
    rows = []
    for path in ("lane", "server"):
        this = statistics.median(results["this"][path])
        base = statistics.median(results["base"][path])
        rows.append([f"eval via {path}", f"{base:,.0f}", f"{this:,.0f}", f"{this / base:.2f}x"])
    print(table(rows, ["case", "base (us)", "this checkout (us)", "this / base"]))


if __name__ == "__main__":
    main()
