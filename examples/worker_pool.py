"""A worker pool debugged as one group: which partition has the bad data?

Three worker processes (``multiprocessing``, spawn start method) each price one
partition of order lines. The job makes its children attachable
(``bridge.listen(children=True)``; ``python -m bridge --children`` does the same for any
script), so the job and every worker show up together in
``client.attach_all(tree=<the job's pid>)``. A worker whose partition has a line that does
not parse pauses there; with ``--check``, every worker pauses once it has checked its
partition, so the whole pool can be looked at side by side:

    >>> g = client.attach_all(tree=4242)       # the job and its workers
    >>> g.wait(n=3)                             # the three workers, paused
    >>> g.eval("len(bad)")                      # {'host:4244': 1, 'host:4243': 0, 'host:4245': 0}
    >>> g.where()                               # 1 stack across 3 processes
    >>> w = g["host:4244"]; w.eval("bad")       # [{'sku': 'B-7', 'qty': '3x', 'price': 4.5}]
    >>> w.exec("bad[0]['qty'] = '3'")           # fixed in place: `lines` holds the same dict
    >>> g.cont()                                # every worker goes on

docs/howto-worker-pool.md walks through it. ``BRIDGE_WAIT_TIMEOUT=SECONDS`` (or
``--wait-timeout``) bounds each pause: a line still bad then is skipped and reported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from typing import Dict, List, Optional, Tuple

try:
    import bridge
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import bridge

PARTITIONS: List[List[Dict[str, object]]] = [
    [{"sku": "A-1", "qty": "2", "price": 10.0}, {"sku": "A-2", "qty": "1", "price": 25.0}],
    [{"sku": "B-5", "qty": "4", "price": 2.5}, {"sku": "B-7", "qty": "3x", "price": 4.5}],  # a typo upstream
    [{"sku": "C-3", "qty": "10", "price": 1.0}, {"sku": "C-9", "qty": "1", "price": 99.0}],
]


def start_worker() -> None:
    """Pool initializer. With framebridge installed the worker is attachable already
    (``listen(children=True)`` in the job); from a bare checkout this makes it so."""
    bridge.listen()
    print(f"worker {os.getpid()} attachable", flush=True)


def parses(qty: object) -> bool:
    try:
        int(str(qty))
        return True
    except ValueError:
        return False


def price_partition(task: Tuple[int, List[Dict[str, object]], bool]) -> Tuple[int, int, float, List[str]]:
    """Total value of one partition; pauses when a line does not parse (or always, with check)."""
    number, lines, check = task
    bad = [line for line in lines if not parses(line["qty"])]
    if bad:
        print(f"worker {os.getpid()}: partition {number}: bad quantity {bad[0]['qty']!r} in {bad[0]['sku']}; "
              f"pausing", flush=True)
    if bad or check:
        bridge.set_trace()  # look at `lines` and `bad`; fix them, then continue
    total = 0.0
    skipped: List[str] = []
    for line in lines:
        if not parses(line["qty"]):
            skipped.append(str(line["sku"]))
            continue
        total += int(str(line["qty"])) * float(line["price"])  # type: ignore[arg-type]
    return os.getpid(), number, total, skipped


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="every worker pauses after checking its partition")
    parser.add_argument("--wait-timeout", type=float, default=None,
                        help="give up waiting for a client after this many seconds")
    args = parser.parse_args(argv)
    if args.wait_timeout is not None:
        os.environ["BRIDGE_WAIT_TIMEOUT"] = str(args.wait_timeout)  # inherited by the workers
    print(f"job {os.getpid()}: attach with client.attach_all(tree={os.getpid()})", flush=True)
    bridge.listen(children=True)  # the job, and every worker it starts, attachable
    # spawn: workers start clean instead of inheriting a copy of this process's threads.
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(len(PARTITIONS), initializer=start_worker)
    try:
        results = pool.map(price_partition, [(i, p, args.check) for i, p in enumerate(PARTITIONS)], chunksize=1)
    finally:
        pool.close()  # let workers exit normally, so they remove their connection files
        pool.join()
    grand = 0.0
    for pid, number, total, skipped in results:
        note = f" (skipped {', '.join(skipped)})" if skipped else ""
        print(f"partition {number} (worker {pid}): {total:.2f}{note}")
        grand += total
    print(f"grand total {grand:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
