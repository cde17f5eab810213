"""Pulling big values into the client, against memcpy measured in the same run.

Run (one command)::

    python tests/bench/bench_pull.py [--rounds 3] [--skip-1g] [--curve-1g]

One target holds a 256 MiB and a 1 GiB float64 array and a 400 MB DataFrame (4 float64
columns and 1 int64 column, 10 M rows). Three sessions pull them:

* ``shm``: the automatic choice on one host (a ring of owner-only shared memory);
* ``aes``: ``BRIDGE_BULK=aes``, the path used across hosts (AES-GCM over the data port);
* ``curve``: ``BRIDGE_BULK=curve``, everything inside the CURVE channel (256 MiB only,
  unless ``--curve-1g``: it runs at ~0.2 GB/s).

Floors, same run: ``memcpy`` = ``np.copyto`` into a fresh ``np.empty`` (a receiver needs
fresh memory too: page faults included) and ``memcpy (warm)`` into an already-touched
destination. "pull+touch" also reads one byte of every page of the received array: a
path that handed over memory still to be faulted in would show it there.

Peak RSS: VmHWM of the client and of the target, reset before each pull
(``/proc/<pid>/clear_refs``), minus the RSS before it: what the transfer itself cost.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, peak_rss_reset, private_dirs, status_kib, table  # noqa: E402

TARGET = """
import numpy as np, pandas as pd
import bridge
a256 = np.random.default_rng(0).random(256 * 2**20 // 8)
a1g = np.random.default_rng(1).random(2**30 // 8) if {big} else None
n = 10_000_000
df = pd.DataFrame({{"a": np.random.default_rng(2).random(n), "b": np.arange(n, dtype=np.float64),
                    "c": np.ones(n), "d": np.zeros(n), "id": np.arange(n, dtype=np.int64)}})
bridge.set_trace()
"""

MiB = 2**20


def touch(value) -> None:
    """Read one byte per page of an array or of every column of a DataFrame."""
    import numpy as np

    arrays = [value] if isinstance(value, np.ndarray) else [value[c].to_numpy() for c in value.columns]
    for arr in arrays:
        int(arr.view(np.uint8)[::4096].sum())


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-1g", action="store_true", help="leave out the 1 GiB array (low memory)")
    parser.add_argument("--curve-1g", action="store_true", help="also pull 1 GiB over CURVE (slow)")
    args = parser.parse_args(argv)
    private_dirs()
    import numpy as np

    import client

    target = TargetProcess(TARGET.format(big=not args.skip_1g))
    sessions: Dict[str, object] = {}
    try:
        target.wait_attachable(120)
        for mode in ("shm", "aes", "curve"):
            os.environ["BRIDGE_BULK"] = mode
            s = client.attach(target.pid, timeout=120)
            s.wait(120)
            chosen = s.bulk_mode
            assert chosen == mode, f"asked for {mode}, got {chosen}"
            sessions[mode] = s
        os.environ.pop("BRIDGE_BULK")

        values = [("256 MiB array", "a256", 256 * MiB)]
        if not args.skip_1g:
            values.append(("1 GiB array", "a1g", 1024 * MiB))
        values.append(("400 MB DataFrame", "df", 400_000_000))

        rows: List[List[str]] = []
        summary: Dict[str, float] = {}
        for label, name, nbytes in values:
            src = np.random.default_rng(3).random(nbytes // 8)
            warm = np.empty_like(src)
            warm[:] = 0

            def memcpy_fresh() -> float:
                t0 = time.perf_counter()
                dst = np.empty_like(src)
                np.copyto(dst, src)
                dt = time.perf_counter() - t0
                del dst
                return dt

            def memcpy_warm() -> float:
                t0 = time.perf_counter()
                np.copyto(warm, src)
                return time.perf_counter() - t0

            cases: Dict[str, Callable[[], float]] = {"memcpy": memcpy_fresh, "memcpy (warm)": memcpy_warm}
            rss: Dict[str, List[int]] = {}
            touched: Dict[str, List[float]] = {}
            for mode, s in sessions.items():
                if mode == "curve" and nbytes > 256 * MiB and not args.curve_1g:
                    continue

                def pull(s=s, mode=mode) -> float:
                    gc.collect()
                    me = os.getpid()
                    base_client, base_target = status_kib(me, "VmRSS"), status_kib(target.pid, "VmRSS")
                    peak_rss_reset(me)
                    peak_rss_reset(target.pid)
                    t0 = time.perf_counter()
                    value = s.eval(name, timeout=600)
                    dt = time.perf_counter() - t0
                    touch(value)
                    touched.setdefault(mode, []).append(time.perf_counter() - t0)
                    rss.setdefault(mode, []).append(status_kib(me, "VmHWM") - base_client)
                    rss.setdefault(mode + "/target", []).append(status_kib(target.pid, "VmHWM") - base_target)
                    del value
                    gc.collect()
                    return dt

                cases[mode] = pull
            times: Dict[str, List[float]] = {c: [] for c in cases}
            for _ in range(args.rounds):
                for c, fn in cases.items():
                    times[c].append(fn())
            med = {c: statistics.median(v) for c, v in times.items()}
            floor = med["memcpy"]
            for c in cases:
                gbps = nbytes / med[c] / 1e9
                extra = ["", "", "", ""]
                if c in sessions:
                    t_touch = statistics.median(touched[c])
                    extra = [f"{nbytes / t_touch / 1e9:.2f}",
                             f"{floor / t_touch * 100:.0f}%",
                             f"{statistics.median(rss[c]) / 1024:,.0f}",
                             f"{statistics.median(rss[c + '/target']) / 1024:,.0f}"]
                rows.append([label, c, f"{med[c] * 1000:,.0f}", f"{gbps:.2f}", f"{floor / med[c] * 100:.0f}%", *extra])
                summary[f"{label}/{c}"] = gbps
            del src, warm
            gc.collect()
        print(table(rows, ["value", "path", "median ms", "GB/s", "vs memcpy", "pull+touch GB/s",
                           "pull+touch vs memcpy", "client peak MiB", "target peak MiB"]))
        print()
        # CURVE's rate does not depend on the size (it is the cipher's), so bigger values
        # are compared with the 256 MiB CURVE pull of the same run unless --curve-1g.
        curve_rate = summary.get("256 MiB array/curve")
        for label, _, _ in values:
            shm, aes, curve = (summary.get(f"{label}/{m}") for m in ("shm", "aes", "curve"))
            line = f"{label}: shm {shm / summary[f'{label}/memcpy'] * 100:.0f}% of memcpy; aes {aes:.2f} GB/s"
            if curve:
                line += f" = {aes / curve:.1f}x CURVE ({curve:.2f} GB/s)"
            elif curve_rate:
                line += f" = {aes / curve_rate:.1f}x CURVE (its 256 MiB rate, {curve_rate:.2f} GB/s)"
            print(line)
        print("goals: 1 GiB same host >= 50% of memcpy; aes >= 1 GB/s and >= 5x CURVE")
        for s in sessions.values():
            s.close()
    finally:
        target.close()


if __name__ == "__main__":
    main()
