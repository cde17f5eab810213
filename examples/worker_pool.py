"""A worker pool where every worker process is attachable, and a bad record pauses one.

Three worker processes (``multiprocessing``, spawn start method) each price a shard of
order lines. Every worker calls ``bridge.listen()`` when it starts, so each one shows up
in ``framebridge list`` / ``client.sessions()`` and can be paused on demand. The worker
that meets a malformed line pauses with ``bridge.set_trace()``; the others finish their
shards. Attach to the paused one, fix the record, continue:

    >>> client.sessions()                      # 3 workers, one of them paused
    >>> s = client.attach()                    # the paused one
    >>> s.eval("line")                          # {'sku': 'B-7', 'qty': '3x', 'price': 4.5}
    >>> s.exec("line['qty'] = '3'")
    >>> s.cont()

``BRIDGE_WAIT_TIMEOUT=SECONDS`` (or ``--wait-timeout``) bounds the pause: the line is
then skipped and reported.
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

SHARDS: List[List[Dict[str, object]]] = [
    [{"sku": "A-1", "qty": "2", "price": 10.0}, {"sku": "A-2", "qty": "1", "price": 25.0}],
    [{"sku": "B-5", "qty": "4", "price": 2.5}, {"sku": "B-7", "qty": "3x", "price": 4.5}],  # a typo upstream
    [{"sku": "C-3", "qty": "10", "price": 1.0}, {"sku": "C-9", "qty": "1", "price": 99.0}],
]


def start_worker() -> None:
    """Pool initializer: make this worker attachable (it keeps running)."""
    bridge.listen()
    print(f"worker {os.getpid()} attachable", flush=True)


def price_shard(shard: List[Dict[str, object]]) -> Tuple[int, float, List[str]]:
    """Total value of one shard; pauses on a line whose quantity does not parse."""
    total = 0.0
    skipped: List[str] = []
    for line in shard:
        try:
            qty = int(str(line["qty"]))
        except ValueError:
            print(f"worker {os.getpid()}: bad quantity {line['qty']!r} in {line['sku']}; pausing", flush=True)
            bridge.set_trace()  # fix `line`, then continue
            try:
                qty = int(str(line["qty"]))
            except ValueError:
                skipped.append(str(line["sku"]))
                continue
        total += qty * float(line["price"])  # type: ignore[arg-type]
    return os.getpid(), total, skipped


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait-timeout", type=float, default=None,
                        help="give up waiting for a client after this many seconds")
    args = parser.parse_args(argv)
    if args.wait_timeout is not None:
        os.environ["BRIDGE_WAIT_TIMEOUT"] = str(args.wait_timeout)  # inherited by the workers
    # spawn: workers start clean instead of inheriting a copy of this process's threads.
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(len(SHARDS), initializer=start_worker)
    try:
        results = pool.map(price_shard, SHARDS, chunksize=1)
    finally:
        pool.close()  # let workers exit normally, so they remove their connection files
        pool.join()
    grand = 0.0
    for i, (pid, total, skipped) in enumerate(results):
        note = f" (skipped {', '.join(skipped)})" if skipped else ""
        print(f"shard {i} (worker {pid}): {total:.2f}{note}")
        grand += total
    print(f"grand total {grand:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
