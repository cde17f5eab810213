"""Checkpoint and rewind of a process holding 1 GiB, against a bare fork of the same process.

Run (one command)::

    python tests/bench/bench_checkpoint.py [--gib 1] [--rounds 5]

For each kind of memory -- a ``bytearray`` touched page by page (4 KiB pages) and a numpy
array (which asks for transparent huge pages) -- one job process allocates it and then,
``--rounds`` times, interleaved:

* **baseline**: a bare ``os.fork()`` whose child ``_exit``s: the time ``fork()`` takes in
  the parent, and the time until the child runs (what a checkpoint cannot beat);
* **take**: ``checkpoints.take()``, from the call to its return in the live process, and
  the keeper's reported memory cost right after (``private``, smaps_rollup), and again
  after the live process wrote 64 MiB (copy-on-write: the cost follows the writes);
* **rewind**: ``checkpoints.rewind()``, from the call in the live process to the new live
  process running (``take()`` returned there); then ``drop()`` frees that checkpoint.

CLOCK_MONOTONIC (``time.perf_counter``) is one clock for all processes of a host, so a
start time written to a file by one process and read by another gives the latency.
Results survive rewinds by going to a file, not to memory.

Goals (issue "checkpoints"): take under 50 ms, rewind to running again under 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SRC, table  # noqa: E402

JOB = """
import json, os, sys, time
from bridge import checkpoints

kind, gib, rounds, results, stamp = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
MIB = 1 << 20
size = int(gib * 1024) * MIB
if kind == "numpy":
    import numpy
    data = numpy.ones(size // 8)
else:
    data = bytearray(size)
    for i in range(0, size, 4096):
        data[i] = 1

def record(**values):
    fd = os.open(results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (json.dumps(values) + "\\n").encode())
    os.close(fd)

def bare_fork():
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(w, repr(time.perf_counter() - t0).encode())
        os._exit(0)
    parent = time.perf_counter() - t0
    os.close(w)
    child = float(os.read(r, 100))
    os.close(r)
    os.waitpid(pid, 0)
    return parent, child

for n in range(rounds):
    parent, child = bare_fork()
    record(what="fork", parent=parent, child=child)
    t0 = time.perf_counter()
    cp = checkpoints.take({"round": n})
    took = time.perf_counter() - t0
    if not cp.resumed:
        fresh = checkpoints.list_checkpoints()[-1].memory["private"]
        if kind == "numpy":
            data[: 64 * MIB // 8] = 2.0
        else:
            for i in range(0, 64 * MIB, 4096):
                data[i] = 2
        written = checkpoints.list_checkpoints()[-1].memory["private"]
        record(what="take", took=took, fresh=fresh, written=written)
        with open(stamp, "w") as f:
            f.write(repr(time.perf_counter()))
        checkpoints.rewind(cp)
    with open(stamp) as f:
        record(what="rewind", latency=time.perf_counter() - float(f.read()))
    checkpoints.drop(cp)
"""


def run(kind: str, gib: float, rounds: int) -> Dict[str, List[float]]:
    workdir = tempfile.mkdtemp(prefix="framebridge-bench-checkpoint-")
    script = os.path.join(workdir, "job.py")
    results = os.path.join(workdir, "results.jsonl")
    with open(script, "w") as f:
        f.write(textwrap.dedent(JOB))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, script, kind, str(gib), str(rounds), results,
                             os.path.join(workdir, "stamp")], env=env, start_new_session=True)
    try:
        rc = proc.wait(600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    if rc != 0:
        raise RuntimeError(f"the {kind} job exited with {rc}")
    out: Dict[str, List[float]] = {}
    with open(results) as f:
        for line in f:
            item = json.loads(line)
            for key, value in item.items():
                if key != "what":
                    out.setdefault(f"{item['what']}.{key}", []).append(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for kind in ("bytearray", "numpy"):
        r = run(kind, args.gib, args.rounds)
        med = {k: statistics.median(v) for k, v in r.items()}
        ms = lambda key: f"{med[key] * 1000:.1f}"  # noqa: E731
        mib = lambda key: f"{med[key] / (1 << 20):.1f}"  # noqa: E731
        rows.append([kind, ms("fork.parent"), ms("fork.child"), ms("take.took"),
                     f"{med['take.took'] / med['fork.child']:.2f}x", mib("take.fresh"), mib("take.written"),
                     ms("rewind.latency"), f"{med['rewind.latency'] / med['fork.child']:.2f}x"])
    print(f"{args.gib:g} GiB, median of {args.rounds} rounds (python {sys.version.split()[0]})")
    print(table(rows, ["memory", "fork() ms", "fork->child ms", "take ms", "take/fork",
                       "cost after take MiB", "cost after 64 MiB written", "rewind ms", "rewind/fork"]))


if __name__ == "__main__":
    main()
