"""Pause-to-client notification latency: from the line before ``set_trace()`` to the
client's event callback.

Run (one command)::

    python tests/bench/bench_notify.py [--n 50]

The target loops ``t_pause = time.monotonic(); bridge.set_trace()``. The client records
``time.monotonic()`` in its ``on_event("paused")`` callback (the event listener thread),
reads ``t_pause`` from the frame and continues. CLOCK_MONOTONIC is one clock for every
process of a Linux host, so the difference is the latency: the pause registering itself,
the event crossing the server thread and CURVE, and the client's listener waking.
For scale, the same run measures a small-message CURVE echo round trip (bench_eval's
floor): one-way is about half of it.

Goal: <= 5 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, private_dirs  # noqa: E402

TARGET = """
import time
import bridge
while True:
    t_pause = time.monotonic()
    bridge.set_trace()
"""


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args(argv)
    private_dirs()
    import client

    target = TargetProcess(TARGET)
    try:
        target.wait_attachable()
        s = client.attach(target.pid)
        s.wait(30)
        seen = {}
        arrived = threading.Event()

        def on_event(event: str, body: dict) -> None:
            if event == "paused":
                seen[body["pause_id"]] = time.monotonic()
                arrived.set()

        s.on_event(on_event)
        latencies = []
        for _ in range(args.n + 5):
            arrived.clear()
            s.cont()
            if not arrived.wait(30):
                raise TimeoutError("no pause event within 30 s")
            info = s.wait(30)
            t_pause = s.eval("t_pause")
            latencies.append(seen[info.pause_id] - t_pause)
        latencies = latencies[5:]  # warm-up
        ms = sorted(x * 1000 for x in latencies)
        print(f"pause-to-client notification over {len(ms)} pauses: median {statistics.median(ms):.2f} ms, "
              f"p90 {ms[int(len(ms) * 0.9) - 1]:.2f} ms, min {ms[0]:.2f} ms (goal <= 5 ms)")
        s.close()
    finally:
        target.close()


if __name__ == "__main__":
    main()
