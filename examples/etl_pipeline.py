"""A small ETL job: extract orders, convert them to EUR, load a daily revenue report.

The job has a realistic bug: the exchange-rate table has no rate for CHF, so Swiss
orders would be dropped from the report. Instead of crashing (or silently losing money),
it pauses with ``bridge.set_trace()`` and waits for you to fix the rates from a notebook:

    $ python examples/etl_pipeline.py            # pauses, prints its pid
    >>> from client import attach
    >>> s = attach()                              # the one paused process
    >>> s.locals()                                # rows, rates, unknown, ...
    >>> s.exec("rates['CHF'] = 1.05")             # fix the live frame
    >>> s.cont()                                  # the job goes on with the fix

``BRIDGE_WAIT_TIMEOUT=SECONDS`` (or ``--wait-timeout``) makes the pause give up after that
long without a client, so the job never hangs unattended.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections import defaultdict
from typing import Dict, List

try:
    import bridge
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import bridge

# The "source system" export; a real job would read this from S3 or a database.
ORDERS_CSV = """\
order_id,day,amount,currency
1001,2024-03-01,120.00,EUR
1002,2024-03-01,80.50,USD
1003,2024-03-01,200.00,CHF
1004,2024-03-02,45.25,EUR
1005,2024-03-02,300.00,GBP
1006,2024-03-02,150.00,CHF
1007,2024-03-03,99.99,USD
1008,2024-03-03,10.00,EUR
"""

# EUR per unit of currency. CHF is missing: that is the bug the demo fixes.
RATES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}


def extract(text: str) -> List[Dict[str, object]]:
    """Parse the export into rows with typed fields."""
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        rows.append({"order_id": int(rec["order_id"]), "day": rec["day"],
                     "amount": float(rec["amount"]), "currency": rec["currency"]})
    return rows


def transform(rows: List[Dict[str, object]], rates: Dict[str, float]) -> Dict[str, float]:
    """Revenue in EUR per day. Pauses for a fix if a currency has no rate."""
    unknown = sorted({str(r["currency"]) for r in rows if r["currency"] not in rates})
    if unknown:
        print(f"transform: no exchange rate for {', '.join(unknown)}; "
              f"pausing for a fix (pid {os.getpid()})", flush=True)
        bridge.set_trace()  # fix `rates` from a notebook, then continue
    revenue: Dict[str, float] = defaultdict(float)
    skipped = 0
    for r in rows:
        rate = rates.get(str(r["currency"]))
        if rate is None:
            skipped += 1
            continue
        revenue[str(r["day"])] += float(r["amount"]) * rate  # type: ignore[arg-type]
    if skipped:
        print(f"transform: skipped {skipped} orders without an exchange rate")
    return dict(revenue)


def load(revenue: Dict[str, float]) -> None:
    """'Load' the report: print it (a real job would write a table)."""
    print("day         revenue (EUR)")
    for day in sorted(revenue):
        print(f"{day}  {revenue[day]:>12.2f}")
    print(f"total       {sum(revenue.values()):>12.2f}")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait-timeout", type=float, default=None,
                        help="give up waiting for a client after this many seconds")
    args = parser.parse_args(argv)
    if args.wait_timeout is not None:
        os.environ["BRIDGE_WAIT_TIMEOUT"] = str(args.wait_timeout)
    rows = extract(ORDERS_CSV)
    print(f"extract: {len(rows)} orders", flush=True)
    load(transform(rows, dict(RATES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
