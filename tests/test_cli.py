"""The ``framebridge`` command line, run as a real subprocess against real targets."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")

PAUSED_JOB = """
import bridge

def job():
    x = 21
    items = ["a", "b"]
    bridge.set_trace()
    print("after", x, items, flush=True)

def main():
    job()

main()
"""


def framebridge(*args: str, stdin: str = "", timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run the CLI (the installed console script when there is one) with this test's env."""
    script = Path(sys.executable).with_name("framebridge")
    argv: List[str] = [str(script)] if script.exists() else [sys.executable, "-m", "client.cli"]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(argv + list(args), input=stdin, capture_output=True, text=True, env=env,
                          timeout=timeout)


def _wait_paused(t: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json.loads(t.wait_attachable().read_text()).get("paused"):
                return
        except ValueError:
            pass  # caught mid-rewrite
        assert time.monotonic() < deadline, "target never reported its pause"
        time.sleep(0.02)  # the connection file has no change notification


def test_list_shows_paused_and_running_targets(target: Any) -> None:
    assert "no attachable processes" in framebridge("list").stdout
    paused = target(PAUSED_JOB, name="paused_job.py")
    running = target("import bridge, time\nbridge.listen()\nprint('up', flush=True)\ntime.sleep(120)\n",
                     name="running_job.py")
    _wait_paused(paused)
    running.wait_output("up")
    out = framebridge("list")
    assert out.returncode == 0, out.stderr
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines()}
    assert "paused at paused_job.py:7 in job" in lines[f"pid {paused.pid}"]
    assert "running_job.py" in lines[f"pid {running.pid}"] and "running" in lines[f"pid {running.pid}"]
    listed = json.loads(framebridge("list", "--json").stdout)
    assert {e["pid"] for e in listed} == {paused.pid, running.pid}


def test_keys_shows_creates_and_authorizes(bridge_dirs: Dict[str, Path]) -> None:
    out = framebridge("keys")
    assert out.returncode == 0, out.stderr
    key_file = bridge_dirs["config"] / "client.key"
    public = json.loads(key_file.read_text())["public"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"public key:   {public}" in out.stdout
    assert "fingerprint:  SHA256:" in out.stdout
    assert framebridge("keys").stdout == out.stdout  # shown again, not re-created

    import zmq

    # A key that starts with '-' (z85 allows it): argparse must not take it for an option.
    other = next(k for k in (zmq.curve_keypair()[0].decode("ascii") for _ in range(100000)) if k.startswith("-"))
    out = framebridge("keys", "--authorize", other, "--comment", "laptop")
    assert out.returncode == 0 and "authorized" in out.stdout, out.stderr
    assert other in (bridge_dirs["config"] / "authorized_keys").read_text()
    assert "already authorized" in framebridge("keys", "--authorize", other).stdout
    assert "authorized keys (2)" in framebridge("keys").stdout

    bad = framebridge("keys", "--authorize", "not-a-key")
    assert bad.returncode == 1 and "not a 40-character z85 CURVE public key" in bad.stderr


def test_demo_runs_the_etl_job_and_shows_the_corrected_report() -> None:
    started = time.monotonic()
    out = framebridge("demo", timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "no exchange rate for CHF" in text
    assert "[0] transform at" in text and "rates: dict" in text
    assert "'CHF': 1.05" in text
    assert "job | total            1059.80" in text  # with the CHF orders
    assert "skipped" not in text
    assert time.monotonic() - started < 30
    leftovers = [p for p in Path(os.environ["BRIDGE_RUNTIME_DIR"]).glob("*")] if Path(
        os.environ["BRIDGE_RUNTIME_DIR"]).exists() else []
    assert leftovers == []  # the demo used (and removed) a runtime dir of its own


@pytest.mark.parametrize("console", ["plain", "ipython"])
def test_attach_console_with_piped_input(target: Any, console: str) -> None:
    if console == "ipython" and shutil.which("ipython", path=str(Path(sys.executable).parent)) is None:
        pytest.importorskip("IPython")
    t = target(PAUSED_JOB)
    _wait_paused(t)
    commands = "\n".join([
        "where",
        "x = x * 2",
        "print('hello from the frame', x)",
        "x + 1",
        "up",
        "where",
        "down",
        "items.append('c')",
        "undefined_name",
        "!next = 3",       # `!` runs a command word as code
        "next * 2",        # a command word followed by more is code
        "cont",
    ]) + "\n"
    out = framebridge("attach", str(t.pid), "--console", console, stdin=commands)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "> [0] job at" in text and "  [1] main at" in text
    assert "hello from the frame 42" in text
    assert re.search(r"(^|\s)43\n", text)
    assert "> [1] main at" in text  # after `up`, the caller is selected
    assert "NameError" in text and "undefined_name" in text
    assert re.search(r"(^|\s)6\n", text)
    assert f"process {t.pid} exited" in text
    assert "after 42 ['a', 'b', 'c']" in t.wait_output("after")


def test_attach_to_a_missing_pid_is_a_clear_error() -> None:
    out = framebridge("attach", "999999")
    assert out.returncode == 1
    assert "no attachable process with pid 999999" in out.stderr
