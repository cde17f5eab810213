"""Benchmark: jump_context mount / write-back, copied and live (not collected by pytest).

    python tests/bench/bench_jump_context.py [--repeat 5] [--gib 1]

(tests/bench/bench_mount.py measures the same two cases against its floors; this one adds
the live-reference mount of the big array.) Starts real target processes with private
key and runtime dirs, attaches a real Session (bulk path as negotiated: shm on one host):

* 100 small variables (dicts of 10 ints): mount, and write-back of all 100 changed;
* one float64 array of ``--gib`` GiB: mount by copy (``size_limit=None``), write-back
  after changing one element (only its block goes back), and mount as a live reference
  (default size limit).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
sys.path.insert(0, SRC)


def start_target(source: str, tmp: Path) -> subprocess.Popen:
    script = tmp / "target.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def attach(proc: subprocess.Popen, runtime: Path):
    import client

    deadline = time.monotonic() + 60
    path = runtime / f"bridge-{proc.pid}.json"
    while not path.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("target never became attachable")
        time.sleep(0.05)  # the connection file has no notification to wait on
    s = client.attach(proc.pid)
    s.wait(120)
    return s


def small(tmp: Path, runtime: Path, repeat: int) -> None:
    from client import jump_context

    assigns = "\n".join(f"    v{i} = {{'i': {i}, 'items': list(range(10))}}" for i in range(100))
    proc = start_target(f"import bridge\ndef work():\n{assigns}\n    bridge.set_trace()\nwork()\n", tmp)
    try:
        s = attach(proc, runtime)
        mounts, writes = [], []
        for r in range(repeat):
            ns: dict = {}
            t0 = time.perf_counter()
            m = jump_context(s, namespace=ns).__enter__()
            mounts.append(time.perf_counter() - t0)
            for i in range(100):
                ns[f"v{i}"]["i"] = -r
            t0 = time.perf_counter()
            m.__exit__(None, None, None)
            writes.append(time.perf_counter() - t0)
        assert s.eval("v42['i']") == -(repeat - 1)
        print(f"100 small variables: mount median {statistics.median(mounts) * 1e3:.1f} ms "
              f"(min {min(mounts) * 1e3:.1f}), write-back of 100 changed median "
              f"{statistics.median(writes) * 1e3:.1f} ms (min {min(writes) * 1e3:.1f})  [n={repeat}]")
        s.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def big(tmp: Path, runtime: Path, gib: float) -> None:
    from client import jump_context

    n = int(gib * (1 << 30) // 8)
    proc = start_target(f"""
        import numpy as np, bridge
        def work():
            arr = np.ones({n})
            bridge.set_trace()
        work()
    """, tmp)
    try:
        s = attach(proc, runtime)
        mode = s.bulk_mode
        ns: dict = {}
        t0 = time.perf_counter()
        m = jump_context(s, namespace=ns, size_limit=None, timeout=300).__enter__()
        mount_s = time.perf_counter() - t0
        ns["arr"][0] = -1.0
        t0 = time.perf_counter()
        m.__exit__(None, None, None)
        write_s = time.perf_counter() - t0
        assert s.eval("float(arr[0])") == -1.0
        ns = {}
        t0 = time.perf_counter()
        with jump_context(s, namespace=ns) as live:
            live_s = time.perf_counter() - t0
            assert live.live == ["arr"]
        print(f"{gib:g} GiB array (bulk path: {mode}): mount by copy {mount_s:.2f} s, write-back {write_s:.2f} s "
              f"(sent {m.sent_bytes / 2**20:.2f} MiB); mount as a live reference {live_s * 1e3:.1f} ms")
        s.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gib", type=float, default=1.0, help="size of the big array (0 skips it)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["BRIDGE_CONFIG_DIR"] = str(tmp / "config")
        os.environ["BRIDGE_RUNTIME_DIR"] = str(tmp / "runtime")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        small(tmp, tmp / "runtime", a.repeat)
        if a.gib:
            big(tmp, tmp / "runtime", a.gib)


if __name__ == "__main__":
    main()
