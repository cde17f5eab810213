"""The hub: how soon a paused worker is a paused member, and what a request through the hub costs.

Run (one command; every number comes from the same run)::

    python tests/bench/bench_hub.py [--members 16] [--reps 20] [--mib 64]

Cases:

* ``pause -> member``: ``--members`` targets started with ``Hub.target_env()``, each
  printing ``time.time()`` just before ``bridge.set_trace()``; the time from that to the
  moment the hub's group knows the member is paused (a ``g.subscribe`` callback, same
  host, same clock), split at the target's announcement (its ``announced`` time): before
  it, the first pause's start-up in the target (the server, the tracing engine), which a
  target without a hub pays too; after it, the hub's part. Median and max.
* ``g.eval`` through the hub against ``g.eval`` of ``attach_all`` (which dials the same
  targets' own sockets), interleaved, medians of ``--reps``.
* a ``--mib`` MiB ``bytes`` value (``eval``) through the hub (inside the CURVE messages)
  against the same through a direct session (the shared-memory bulk path on this host).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SRC, private_dirs, table  # noqa: E402
from bench_groups import kill, timed  # noqa: E402

TARGET = ("import bridge, sys, time\nx = int(sys.argv[1])\nbig = None\n"
          "print('pausing', repr(time.time()), flush=True)\nbridge.set_trace()\n")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args(argv)
    private_dirs()
    import client
    from bridge import keys

    keys.load_client_keypair()
    hub = client.Hub()
    g = hub.group()
    paused_at: Dict[str, float] = {}
    lock = threading.Lock()

    def on_event(event: str, name: str, body: dict) -> None:
        if event in ("joined", "paused"):
            member = g[name] if name in g else None
            if member is not None and member.paused:
                with lock:
                    paused_at.setdefault(name, time.time())

    g.subscribe(on_event)
    script = os.path.join(tempfile.mkdtemp(prefix="framebridge-bench-hub-"), "member.py")
    with open(script, "w") as f:
        f.write(TARGET)
    env = dict(os.environ, **hub.target_env(), PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, script, str(i)], env=env, start_new_session=True, stdout=subprocess.PIPE,
                              text=True) for i in range(args.members)]
    rows = []
    try:
        started = {p.pid: float(p.stdout.readline().split()[1]) for p in procs}  # type: ignore[union-attr]
        g.wait(args.members, timeout=120)
        for s in g:  # a member paused at once is "joined" already paused: take that moment
            with lock:
                paused_at.setdefault(s.name, time.time())
        lat = sorted(paused_at[s.name] - started[s.pid] for s in g)
        startup = sorted(float(s.info["announced"]) - started[s.pid] for s in g)
        hub_part = sorted(paused_at[s.name] - float(s.info["announced"]) for s in g)
        rows.append([f"pause -> paused member ({args.members} targets)", f"median {statistics.median(lat) * 1000:,.0f} ms",
                     f"max {lat[-1] * 1000:,.0f} ms", "set_trace() called to the group knowing"])
        rows.append(["  of which: target start-up", f"median {statistics.median(startup) * 1000:,.0f} ms",
                     f"max {startup[-1] * 1000:,.0f} ms", "set_trace() to its announcement (a first pause's cost)"])
        rows.append(["  of which: the hub", f"median {statistics.median(hub_part) * 1000:,.1f} ms",
                     f"max {hub_part[-1] * 1000:,.1f} ms", "announcement to paused member"])

        direct = client.attach_all(pids=[p.pid for p in procs])
        direct.wait(timeout=60)
        for _ in range(5):
            direct.eval("x"), g.eval("x")  # lanes connect beside the first requests
        via_hub, dialed = [], []
        for _ in range(args.reps):
            via_hub.append(timed(lambda: g.eval("x")))
            dialed.append(timed(lambda: direct.eval("x")))
        h, d = statistics.median(via_hub) * 1000, statistics.median(dialed) * 1000
        rows.append([f"g.eval across {args.members}", f"hub {h:,.1f} ms", f"attach_all {d:,.1f} ms", f"ratio {h / d:.2f}"])

        name = g.names()[0]
        member = g[name]
        own = client.attach(member.pid)
        own.wait(10)
        member.exec(f"big = bytes({args.mib} << 20)")
        hub_t, own_t = [], []
        for _ in range(3):
            hub_t.append(timed(lambda: member.eval("big")))
            own_t.append(timed(lambda: own.eval("big")))
        ht, ot = statistics.median(hub_t), statistics.median(own_t)
        rows.append([f"eval of {args.mib} MiB bytes", f"hub (CURVE) {ht * 1000:,.0f} ms ({args.mib / ht:,.0f} MiB/s)",
                     f"direct ({own.bulk_mode}) {ot * 1000:,.0f} ms ({args.mib / ot:,.0f} MiB/s)", f"ratio {ht / ot:.1f}"])
        own.close()
        direct.close()
        g.cont()
    finally:
        hub.close()
        kill(procs)
    print(table(rows, ["case", "result", "", "note"]))


if __name__ == "__main__":
    main()
