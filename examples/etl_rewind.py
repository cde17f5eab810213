"""An ETL job you can take back in time: checkpoint before a stage, find its bug, rewind, fix, finish.

The job extracts orders, converts them to EUR and checks the result against the control
total the source system sends along, before it loads the report. The conversion has a
bug (it divides by the exchange rate instead of multiplying), which only the check
finds, after the stage has run. A long job would have to start over; with a checkpoint
taken before the stage, you go back to it instead, fix the code, and run the stage again:

    $ python examples/etl_rewind.py              # pauses before the transform stage
    >>> from client import attach
    >>> s = attach()                              # the one paused process
    >>> cp = s.checkpoint()                       # keep the process as it is here
    >>> s.cont()                                  # transform runs; the check fails and pauses
    >>> s.eval("(round(total, 2), control_total)")   # (961.18, 1059.8): the totals differ
    >>> s.rewind(cp)                              # back before transform, every variable as it was
    >>> s.patch("to_eur", "def to_eur(amount, rate):\\n    return amount * rate\\n")
    >>> s.cont()                                  # transform runs again with the fix; the check passes

The job's pid stays the same for its shell throughout, and its exit code is the one of
the timeline that finished (docs/howto-rewind.md). Patch *after* the rewind: a rewind
takes back everything in memory, code included. ``--wait-timeout SECONDS`` makes each
pause give up after that long without a client.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

try:
    import bridge
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import bridge

# The "source system" export, with its control total (EUR) in the last line.
EXPORT = """\
order_id,day,amount,currency
1001,2024-03-01,120.00,EUR
1002,2024-03-01,80.50,USD
1003,2024-03-01,200.00,CHF
1004,2024-03-02,45.25,EUR
1005,2024-03-02,300.00,GBP
1006,2024-03-02,150.00,CHF
1007,2024-03-03,99.99,USD
1008,2024-03-03,10.00,EUR
control,,1059.80,EUR
"""

# EUR per unit of each currency.
RATES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.05}


def extract(text: str) -> Tuple[List[Dict[str, object]], float]:
    """Parse the export: the orders, and the control total."""
    rows, control = [], 0.0
    for rec in csv.DictReader(io.StringIO(text)):
        if rec["order_id"] == "control":
            control = float(rec["amount"])
            continue
        rows.append({"order_id": int(rec["order_id"]), "day": rec["day"],
                     "amount": float(rec["amount"]), "currency": rec["currency"]})
    return rows, control


def to_eur(amount: float, rate: float) -> float:
    """One amount in EUR. The bug: RATES are EUR per unit, so this should multiply."""
    return amount / rate


def transform(rows: List[Dict[str, object]]) -> Dict[str, float]:
    """Revenue in EUR per day."""
    revenue: Dict[str, float] = defaultdict(float)
    for r in rows:
        revenue[str(r["day"])] += to_eur(float(r["amount"]), RATES[str(r["currency"])])  # type: ignore[arg-type]
    return dict(revenue)


def validate(revenue: Dict[str, float], control_total: float) -> None:
    """Check the converted total against the source's control total; pause if it is off."""
    total = sum(revenue.values())
    if abs(total - control_total) > 0.005:
        print(f"validate: total {total:.2f} EUR, the source says {control_total:.2f}: pausing "
              f"(pid {os.getpid()})", flush=True)
        bridge.set_trace()  # look around; rewind to a checkpoint taken before transform
        raise SystemExit("validate: the totals still differ; not loading")
    print(f"validate: total {total:.2f} EUR matches the control total", flush=True)


def load(revenue: Dict[str, float]) -> None:
    """'Load' the report: print it (a real job would write a table)."""
    print("day         revenue (EUR)")
    for day in sorted(revenue):
        print(f"{day}  {revenue[day]:>12.2f}")
    print(f"total       {sum(revenue.values()):>12.2f}", flush=True)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait-timeout", type=float, default=None,
                        help="give up waiting for a client after this many seconds")
    args = parser.parse_args(argv)
    if args.wait_timeout is not None:
        os.environ["BRIDGE_WAIT_TIMEOUT"] = str(args.wait_timeout)
    rows, control_total = extract(EXPORT)
    print(f"extract: {len(rows)} orders; pausing before transform (pid {os.getpid()})", flush=True)
    bridge.set_trace()  # a good place for a checkpoint: everything after it can be run again
    revenue = transform(rows)
    validate(revenue, control_total)
    load(revenue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
