"""An ETL over partitions on a Dask cluster; one partition has bad data.

The job cleans six partitions of order rows on a Dask cluster (a local one of two worker
processes, or ``--scheduler ADDRESS``) and prints what each partition and all of them
add up to. A row whose amount does not parse stops its task, on its own worker thread,
at ``bridge.set_trace()`` with the rows it could not read in ``bad``; the other tasks
and the worker's heartbeats go on. From a notebook (docs/howto-cluster.md walks through it):

    >>> from dask.distributed import Client
    >>> from client import attach_dask
    >>> dask_client = Client("tcp://127.0.0.1:8786")   # the address the job printed
    >>> g = attach_dask(dask_client)                   # every worker, present and future
    >>> g.wait(1)                                      # the task with the bad partition
    >>> g.where()                                      # 1 stack across 1 process: clean_partition
    >>> g.eval("partition_id"), g.eval("bad")          # 3, [{'id': 31, 'amount': '12,50'}]
    >>> w = g.paused()[0]
    >>> w.set(bad=[{"id": 31, "amount": "12.50"}])     # the fix
    >>> g.cont()                                       # the task parses `bad` again, and returns

``--wait-timeout SECONDS`` bounds each pause: rows still bad then are skipped and reported.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

try:
    import bridge
except ImportError:  # running from a checkout without `pip install -e .`
    _SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    sys.path.insert(0, _SRC)
    os.environ["PYTHONPATH"] = os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")])  # for the workers
    import bridge

Row = Dict[str, Any]

PARTITIONS: List[List[Row]] = [
    [{"id": 1, "amount": "10.00"}, {"id": 2, "amount": "5.25"}],
    [{"id": 11, "amount": "100.00"}, {"id": 12, "amount": "0.75"}],
    [{"id": 21, "amount": "42.00"}],
    [{"id": 31, "amount": "12,50"}, {"id": 32, "amount": "7.50"}],  # a decimal comma from upstream
    [{"id": 41, "amount": "3.00"}, {"id": 42, "amount": "4.00"}],
    [{"id": 51, "amount": "20.00"}],
]


def parse_rows(rows: List[Row]) -> Tuple[List[Row], List[Row]]:
    """(rows with a float amount, rows whose amount does not parse)."""
    good, bad = [], []
    for row in rows:
        try:
            good.append(dict(row, amount=float(row["amount"])))
        except (TypeError, ValueError):
            bad.append(row)
    return good, bad


def clean_partition(partition_id: int, rows: List[Row], wait_timeout: Optional[float]) -> Tuple[int, float, int, List[Row]]:
    """One task: (partition, total, rows kept, rows skipped). Pauses on rows that do not parse."""
    good, bad = parse_rows(rows)
    if bad:
        # A notebook fixes `bad` (attach_dask, then set or exec), then continues.
        bridge.set_trace(timeout=wait_timeout)
        fixed, bad = parse_rows(bad)
        good += fixed
    return partition_id, round(sum(r["amount"] for r in good), 2), len(good), bad


def run(dask_client: Any, wait_timeout: Optional[float]) -> int:
    futures = [dask_client.submit(clean_partition, i, rows, wait_timeout, pure=False)
               for i, rows in enumerate(PARTITIONS)]
    results = sorted(dask_client.gather(futures))
    skipped = 0
    for partition_id, total, kept, bad in results:
        note = f"  skipped {len(bad)}: {bad}" if bad else ""
        print(f"partition {partition_id}: {kept} rows, {total:8.2f}{note}", flush=True)
        skipped += len(bad)
    print(f"total {sum(r[1] for r in results):.2f}" + (f" ({skipped} rows skipped)" if skipped else ""), flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="a running Dask scheduler (default: a local cluster of 2 workers)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
    parser.add_argument("--wait-timeout", type=float, default=None, help="seconds a pause waits for a notebook")
    args = parser.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as dask_client:
            return run(dask_client, args.wait_timeout)
    with LocalCluster(n_workers=args.workers, threads_per_worker=2, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as dask_client:
        print(f"scheduler {cluster.scheduler_address}", flush=True)
        return run(dask_client, args.wait_timeout)


if __name__ == "__main__":  # workers start new interpreters: only the job runs this
    sys.exit(main())
