"""Helpers shared by the benchmark scripts (not collected by pytest: no test_ names).

Every benchmark runs its floors and its subject in the same process and the same run,
interleaved, and reports medians and ratios: the machines are shared and noisy.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


def private_dirs() -> str:
    """Point BRIDGE_CONFIG_DIR / BRIDGE_RUNTIME_DIR at a fresh temp dir (the user's stay untouched)."""
    root = tempfile.mkdtemp(prefix="framebridge-bench-")
    os.environ["BRIDGE_CONFIG_DIR"] = os.path.join(root, "config")
    os.environ["BRIDGE_RUNTIME_DIR"] = os.path.join(root, "runtime")
    return root


class TargetProcess:
    """A target subprocess running ``source``; killed (by its pid) on close."""

    def __init__(self, source: str, env: Optional[Dict[str, str]] = None, argv: Optional[List[str]] = None) -> None:
        root = os.environ.get("BRIDGE_RUNTIME_DIR") or private_dirs()
        self.script = Path(tempfile.mkdtemp(prefix="framebridge-bench-target-")) / "target.py"
        self.script.write_text(textwrap.dedent(source))
        full = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        full.update(env or {})
        self.proc = subprocess.Popen(argv or [sys.executable, str(self.script)], env=full, start_new_session=True)
        self.pid = self.proc.pid
        self.runtime = root

    def connection_file(self) -> Path:
        return Path(os.environ["BRIDGE_RUNTIME_DIR"]) / f"bridge-{self.pid}.json"

    def wait_attachable(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.connection_file().exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"target exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("target never became attachable")
            time.sleep(0.02)  # a file has no notification to wait on

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def median_us(fn: Callable[[], None], n: int) -> float:
    """Median wall time of ``fn`` over ``n`` calls, in microseconds (after 20 warm-up calls)."""
    for _ in range(min(20, n)):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def interleave(cases: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, float]:
    """Run each case ``rounds`` times, interleaved; median of each case's results."""
    results: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            results[name].append(fn())
    return {name: statistics.median(vals) for name, vals in results.items()}


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain aligned text table (also valid-looking markdown)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *[line(r) for r in rows]])


def peak_rss_reset(pid: int) -> None:
    """Reset VmHWM of ``pid`` (Linux: write 5 to clear_refs) so the next peak is the transfer's."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in KiB (VmHWM = peak RSS, VmRSS, RssShmem ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
