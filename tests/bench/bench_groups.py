"""Groups: attaching to many paused processes, a request to all of them, what holding them costs.

Run (one command; every number comes from the same run)::

    python tests/bench/bench_groups.py [--members 64] [--hold 256] [--rounds 5] [--reps 20]

Cases:

* ``attach_all``: ``client.attach_all(pids=...)`` to ``--members`` paused processes, until
  every member's pause is known (``g.wait()``). Goal: under 1 s for 64.
* ``g.eval`` against ``loop of Session.eval``: one ``g.eval("x")`` across the members (N
  sends on the I/O thread, one gather) against a loop of N ``Session.eval("x")`` calls
  on sessions from ``client.attach()`` (each over its pause's lane: the fastest single
  path), interleaved, medians of ``--reps``. Goal: the group at most half the loop.
* ``hold``: ``attach_all`` to ``--hold`` paused processes (0: skip); this process's
  threads, open descriptors and resident memory before and after, and one ``g.eval``
  across all of them. Goal: at most 8 client threads.

Targets are real processes started here (each ~30 MB resident) and killed at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SRC, private_dirs, status_kib, table  # noqa: E402

TARGET = "import bridge, sys\nx = int(sys.argv[1])\nbridge.set_trace()\n"


def start_targets(n: int, offset: int = 0) -> List[subprocess.Popen]:
    """``n`` paused targets; returns once every one has recorded its pause."""
    from bridge import keys

    keys.load_client_keypair()  # before the targets: they read it at start-up
    script = os.path.join(tempfile.mkdtemp(prefix="framebridge-bench-group-"), "member.py")
    with open(script, "w") as f:
        f.write(TARGET)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen([sys.executable, script, str(offset + i)], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL))
    deadline = time.monotonic() + 60 + n
    for p in procs:
        path = keys.connection_path(p.pid)
        while True:
            try:
                if keys.read_connection_file(path).get("paused"):
                    break
            except (OSError, ValueError):
                pass  # not written yet, or being replaced
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"target {p.pid} did not pause")
            time.sleep(0.02)  # the connection file has no notification to wait on
    return procs


def kill(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def own_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--hold", type=int, default=256, help="members for the cost of holding a group (0: skip)")
    parser.add_argument("--rounds", type=int, default=5, help="attach_all rounds")
    parser.add_argument("--reps", type=int, default=20, help="eval repetitions per case")
    args = parser.parse_args(argv)
    private_dirs()

    import client

    n = args.members
    procs = start_targets(n)
    rows = []
    try:
        pids = [p.pid for p in procs]
        times = []
        for _ in range(args.rounds):
            g = None

            def attach() -> None:
                nonlocal g
                g = client.attach_all(pids=pids)
                g.wait(timeout=60)

            times.append(timed(attach))
            assert g is not None and len(g) == n and not g.attach_errors, g
            g.close()
            gc.collect()
        rows.append([f"attach_all to {n} paused (median of {args.rounds})", f"{statistics.median(times) * 1000:,.0f} ms",
                     f"max {max(times) * 1000:,.0f} ms", "goal < 1000 ms"])

        g = client.attach_all(pids=pids)
        g.wait(timeout=60)
        sessions = [client.attach(pid) for pid in pids]
        for s in sessions:
            s.wait(30)
            for _ in range(20):  # each pause's lane connects beside the first requests
                s.eval("x")
        assert sorted(g.eval("x").values().values()) == list(range(n))
        group, loop = [], []
        for _ in range(args.reps):
            group.append(timed(lambda: g.eval("x")))
            loop.append(timed(lambda: [s.eval("x") for s in sessions]))
        g_ms, l_ms = statistics.median(group) * 1000, statistics.median(loop) * 1000
        rows.append([f"g.eval across {n}", f"{g_ms:,.1f} ms", f"loop of {n} Session.eval: {l_ms:,.1f} ms",
                     f"ratio {g_ms / l_ms:.2f} (goal <= 0.5)"])
        for s in sessions:
            s.close()
        g.close()
    finally:
        kill(procs)

    if args.hold:
        gc.collect()
        threads0, fds0, rss0 = own_threads(), own_fds(), status_kib(os.getpid(), "VmRSS")
        procs = start_targets(args.hold)
        try:
            g = client.attach_all(pids=[p.pid for p in procs])
            g.wait(timeout=120)
            threads1, fds1, rss1 = own_threads(), own_fds(), status_kib(os.getpid(), "VmRSS")
            first = timed(lambda: g.eval("x"))  # opens each pause's lane beside the requests
            steady = statistics.median(timed(lambda: g.eval("x")) for _ in range(5))
            r = g.eval("x")
            assert r.ok and len(r) == args.hold, r
            threads2, fds2, rss2 = own_threads(), own_fds(), status_kib(os.getpid(), "VmRSS")
            rows.append([f"hold {args.hold} paused members", f"{threads1} threads (was {threads0})",
                         f"{fds1 - fds0} more fds, +{(rss1 - rss0) / 1024:,.1f} MiB RSS ({rss1 / 1024:,.0f} MiB)",
                         "goal <= 8 threads"])
            rows.append([f"g.eval across {args.hold}", f"first {first * 1000:,.0f} ms, then {steady * 1000:,.0f} ms",
                         f"with lanes: {threads2} threads, {fds2 - fds0} more fds, +{(rss2 - rss0) / 1024:,.1f} MiB",
                         ""])
            g.close()
        finally:
            kill(procs)
    print(table(rows, ["case", "result", "", "note"]))


if __name__ == "__main__":
    main()
