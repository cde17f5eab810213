"""bench_pull's shm and aes pulls from two source trees, interleaved round by round.

Run (one command; TREE is a checkout or ``git archive`` of another commit, with its
``src`` and ``tests/bench``)::

    python tests/bench/bench_pull_ab.py --a TREE_A --b TREE_B [--rounds 15]

On a shared, noisy machine two runs of bench_pull.py minutes apart differ by more than
most changes do. Here each tree gets its own worker process (its own target and shm/aes
sessions, its own ``bridge`` and ``client``), and every round pulls each value through
both trees back to back, in alternating order, after one fresh-destination memcpy of the
same size (the floor, as in bench_pull.py). Reported per value and mode: each tree's
median time and median % of the same round's memcpy, and the paired ratio A time / B
time (median and quartiles over the rounds): above 1, B is faster. Run it with the same
tree as A and B to see the machine's own noise.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

MiB = 2**20
VALUES = [("256 MiB array", "a256", 256 * MiB), ("1 GiB array", "a1g", 1024 * MiB),
          ("400 MB DataFrame", "df", 400_000_000)]


def worker(root: str) -> None:
    """Serve pulls from ``root``'s code: a line ``MODE NAME`` in, the seconds it took out."""
    sys.path.insert(0, os.path.join(root, "tests", "bench"))
    from _common import TargetProcess, private_dirs  # puts ROOT/src first on sys.path

    private_dirs()
    import bench_pull

    import client

    target = TargetProcess(bench_pull.TARGET.format(big=True))
    try:
        target.wait_attachable(120)
        sessions = {}
        for mode in ("shm", "aes"):
            os.environ["BRIDGE_BULK"] = mode
            s = client.attach(target.pid, timeout=120)
            s.wait(120)
            sessions[mode] = s
        print("ready", flush=True)
        for line in sys.stdin:
            mode, name = line.split()
            gc.collect()
            t0 = time.perf_counter()
            value = sessions[mode].eval(name, timeout=600)
            dt = time.perf_counter() - t0
            bench_pull.touch(value)
            del value
            gc.collect()
            print(dt, flush=True)
    finally:
        target.close()


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="source tree A (the baseline)")
    parser.add_argument("--b", required=True, help="source tree B")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    import numpy as np

    trees = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    procs = {k: subprocess.Popen([sys.executable, os.path.abspath(__file__), "--a", "-", "--b", "-", "--worker", root],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
             for k, root in trees.items()}
    results: Dict[Tuple[str, str, str], List[Tuple[float, float]]] = {}
    try:
        for p in procs.values():
            if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise SystemExit("a worker did not start")
        for label, name, nbytes in VALUES:
            src = np.random.default_rng(3).random(nbytes // 8)
            for r in range(args.rounds):
                t0 = time.perf_counter()
                dst = np.empty_like(src)
                np.copyto(dst, src)
                floor = time.perf_counter() - t0
                del dst
                gc.collect()
                for mode in ("shm", "aes"):
                    for which in ("A", "B") if r % 2 == 0 else ("B", "A"):
                        p = procs[which]
                        p.stdin.write(f"{mode} {name}\n")  # type: ignore[union-attr]
                        p.stdin.flush()  # type: ignore[union-attr]
                        results.setdefault((label, mode, which), []).append(
                            (float(p.stdout.readline()), floor))  # type: ignore[union-attr]
            del src
            gc.collect()
    finally:
        for p in procs.values():
            p.stdin.close()  # type: ignore[union-attr]
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    print(f"A = {trees['A']}\nB = {trees['B']}\n{args.rounds} rounds\n")
    print("| value | path | A median ms | A vs memcpy | B median ms | B vs memcpy | A time / B time: median [quartiles] |")
    print("|---|---|---|---|---|---|---|")
    for label, _, _ in VALUES:
        for mode in ("shm", "aes"):
            a, b = results[(label, mode, "A")], results[(label, mode, "B")]
            paired = [ta / tb for (ta, _), (tb, _) in zip(a, b)]
            q = statistics.quantiles(paired, n=4)
            cells = []
            for xs in (a, b):
                cells += [f"{statistics.median(t for t, _ in xs) * 1000:,.0f}",
                          f"{statistics.median(f / t for t, f in xs) * 100:.0f} %"]
            print(f"| {label} | {mode} | {' | '.join(cells)} | {statistics.median(paired):.2f} "
                  f"[{q[0]:.2f}, {q[2]:.2f}] |")


if __name__ == "__main__":
    main()
