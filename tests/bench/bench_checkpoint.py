"""Checkpoint and rewind of a process holding 1 GiB, against a bare fork of the same process.

Run (one command)::

    python tests/bench/bench_checkpoint.py [--gib 1] [--rounds 5] [--only core|client]

Two parts. **core**: ``checkpoints.take``/``rewind`` inside the job (below). **client**:
end to end through a real ``Session`` on the same job, paused:

* **fork** (baseline): a ``%%playground`` run's ``fork_ms``, the bare ``fork()`` of the
  paused process, measured by the target in the same round;
* **round trip** (baseline): ``s.eval("1")``;
* **checkpoint()**: from the call to its return, the session serving the job's new
  live process, its pause seen; then the snapshot's memory cost (``s.checkpoints()``);
* **rewind()**: from the call to its return, the new pause seen by the client; then
  ``drop()`` frees the checkpoint.

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

Goals: take under 50 ms, rewind to running again under 200 ms.
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
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SRC, TargetProcess, private_dirs, table  # noqa: E402

# The job's memory: ``gib`` GiB of ``kind`` (both parts' jobs start with it).
ALLOCATE = """
MIB = 1 << 20
size = int(gib * 1024) * MIB
if kind == "numpy":
    import numpy
    data = numpy.ones(size // 8)
else:
    data = bytearray(size)
    for i in range(0, size, 4096):
        data[i] = 1
"""

JOB = """
import json, os, sys, time
from bridge import checkpoints

kind, gib, rounds, results, stamp = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
""" + ALLOCATE + """

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


CLIENT_JOB = """
import sys
import bridge
kind, gib = sys.argv[1], float(sys.argv[2])
""" + ALLOCATE + """
while True:
    bridge.set_trace()
"""


def run_client(kind: str, gib: float, rounds: int) -> Dict[str, List[float]]:
    """The client part: one paused job holding ``gib`` GiB, ``rounds`` interleaved rounds."""
    import client
    from client.playground import run_playground

    private_dirs()
    target = TargetProcess(CLIENT_JOB, argv=[sys.executable, "-c", CLIENT_JOB, kind, str(gib)])
    out: Dict[str, List[float]] = {}
    try:
        target.wait_attachable(120)
        s = client.attach(target.pid, timeout=120)
        s.wait(120)
        for _ in range(rounds):
            out.setdefault("fork", []).append(run_playground(s, "1").fork_ms / 1000)
            t0 = time.perf_counter()
            s.eval("1")
            out.setdefault("round_trip", []).append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cp = s.checkpoint()
            out.setdefault("checkpoint", []).append(time.perf_counter() - t0)
            out.setdefault("cost", []).append(s.checkpoints().get(cp.id).memory["private"])
            s.cont()
            s.wait(60)
            t0 = time.perf_counter()
            s.rewind(cp)
            out.setdefault("rewind", []).append(time.perf_counter() - t0)
            s.drop(cp)
        s.close()
    finally:
        target.close()
    return out


def client_rows(gib: float, rounds: int) -> List[List[str]]:
    rows = []
    for kind in ("bytearray", "numpy"):
        med = {k: statistics.median(v) for k, v in run_client(kind, gib, rounds).items()}
        ms = lambda key: f"{med[key] * 1000:.1f}"  # noqa: E731
        rows.append([kind, ms("fork"), ms("round_trip"), ms("checkpoint"), f"{med['checkpoint'] / med['fork']:.2f}x",
                     f"{med['cost'] / (1 << 20):.1f}", ms("rewind"), f"{med['rewind'] / med['fork']:.2f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("core", "client"), default=None)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if args.only != "core":
        print(f"client, end to end: {args.gib:g} GiB, median of {args.rounds} rounds (python "
              f"{sys.version.split()[0]}, load {load:.1f})")
        print(table(client_rows(args.gib, args.rounds),
                    ["memory", "fork() ms", "round trip ms", "checkpoint() ms", "checkpoint/fork",
                     "cost after checkpoint MiB", "rewind() ms", "rewind/fork"]))
    if args.only == "client":
        return
    rows = []
    for kind in ("bytearray", "numpy"):
        r = run(kind, args.gib, args.rounds)
        med = {k: statistics.median(v) for k, v in r.items()}
        ms = lambda key: f"{med[key] * 1000:.1f}"  # noqa: E731
        mib = lambda key: f"{med[key] / (1 << 20):.1f}"  # noqa: E731
        rows.append([kind, ms("fork.parent"), ms("fork.child"), ms("take.took"),
                     f"{med['take.took'] / med['fork.child']:.2f}x", mib("take.fresh"), mib("take.written"),
                     ms("rewind.latency"), f"{med['rewind.latency'] / med['fork.child']:.2f}x"])
    print(f"core, in the job: {args.gib:g} GiB, median of {args.rounds} rounds (python {sys.version.split()[0]})")
    print(table(rows, ["memory", "fork() ms", "fork->child ms", "take ms", "take/fork",
                       "cost after take MiB", "cost after 64 MiB written", "rewind ms", "rewind/fork"]))


if __name__ == "__main__":
    main()
