"""Shared fixtures: isolated key/runtime dirs and real target subprocesses.

Every test gets its own BRIDGE_CONFIG_DIR and BRIDGE_RUNTIME_DIR (so keys and connection
files never leak between tests or into the user's real ones), and `target` starts real
Python processes that run framebridge, then kills exactly those processes by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

SRC = str(Path(__file__).resolve().parent.parent / "src")


def line_of(source: str, name: str) -> int:
    """Line number of the ``# @name`` marker in ``source`` (as written to the file)."""
    for n, text in enumerate(textwrap.dedent(source).splitlines(), 1):
        if text.rstrip().endswith(f"# @{name}"):
            return n
    raise KeyError(name)


def file_markers(path: str) -> Dict[str, int]:
    """``{name: line}`` of the ``# @name`` markers in the file at ``path``."""
    marks = {}
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if "# @" in text:
                marks[text.split("# @", 1)[1].split()[0]] = n
    return marks


def wait_until(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> None:
    """Poll ``predicate`` until true; AssertionError after ``timeout``.

    For state with nothing to wait on (files in /dev/shm, state a listener thread sets).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def bridge_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, Path]:
    """Private config and runtime dirs for this test, exported to the environment."""
    config = tmp_path / "config"
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("BRIDGE_CONFIG_DIR", str(config))
    monkeypatch.setenv("BRIDGE_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("BRIDGE_WAIT_TIMEOUT", raising=False)
    monkeypatch.delenv("BRIDGE_HOST", raising=False)
    monkeypatch.delenv("BRIDGE_PORT", raising=False)
    return {"config": config, "runtime": runtime}


class Target:
    """A real target process running a script; its output is collected in a file."""

    def __init__(self, script: Path, proc: subprocess.Popen, out_path: Path) -> None:
        self.script = script
        self.proc = proc
        self.pid = proc.pid
        self.out_path = out_path

    def output(self) -> str:
        """Everything the target printed so far (stdout and stderr)."""
        return self.out_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the target to exit; return its exit code."""
        return self.proc.wait(timeout)

    def wait_output(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` appears in the output; return the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            # Only complete lines count: the target may be half-way through writing one.
            if text in out[: out.rfind("\n") + 1]:
                return out
            if self.proc.poll() is not None:
                out = self.output()
                if text in out:
                    return out
                raise AssertionError(f"target exited ({self.proc.returncode}) without printing {text!r}:\n{out}")
            time.sleep(0.02)  # polling a file for output: the file has no notification to wait on
        raise AssertionError(f"timed out waiting for {text!r} in target output:\n{self.output()}")

    def connection_file(self) -> Path:
        """Path of this target's connection file."""
        return Path(os.environ["BRIDGE_RUNTIME_DIR"]) / f"bridge-{self.pid}.json"

    def wait_attachable(self, timeout: float = 20.0) -> Path:
        """Wait until the connection file exists."""
        path = self.connection_file()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return path
            if self.proc.poll() is not None:
                raise AssertionError(f"target exited ({self.proc.returncode}) before listening:\n{self.output()}")
            time.sleep(0.02)  # the connection file has no notification to wait on
        raise AssertionError(f"target {self.pid} never became attachable:\n{self.output()}")

    def wait_paused_in_file(self, timeout: float = 20.0) -> Path:
        """Wait until the connection file records a pause (the target's last rewrite of it)."""
        import json

        path = self.wait_attachable(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if json.loads(path.read_text()).get("paused"):
                    return path
            except ValueError:
                pass  # replaced under us: read again
            time.sleep(0.02)  # the connection file has no notification to wait on
        raise AssertionError(f"target {self.pid} never recorded a pause:\n{self.output()}")

    def kill(self) -> None:
        """Kill the target (by its pid, which we started) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def target(tmp_path: Path) -> Iterator:
    """Factory: ``target(source, *args, env=None, python=None)`` starts a real target process.

    ``source`` is Python code (dedented) written to a file and run with ``python file args``.
    Every process started is killed at the end of the test.
    """
    started: List[Target] = []

    def start(source: str, *args: str, env: Optional[Dict[str, str]] = None,
              python: Optional[str] = None, module_args: Optional[List[str]] = None,
              name: str = "target.py") -> Target:
        script = tmp_path / name
        script.write_text(textwrap.dedent(source))
        out_path = tmp_path / f"{name}.{len(started)}.out"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        argv = [python or sys.executable]
        argv += module_args if module_args is not None else [str(script)]
        argv += list(args)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                    cwd=str(tmp_path), start_new_session=True)
        t = Target(script, proc, out_path)
        started.append(t)
        return t

    yield start
    for t in started:
        t.kill()


@pytest.fixture
def attach_to():
    """Factory: ``attach_to(target)`` attaches to a started target and waits for a pause.

    Sessions are closed at the end of the test.
    """
    import client

    sessions = []

    def attach(t: Target, *, wait_pause: bool = True, timeout: float = 20.0):
        t.wait_attachable(timeout)
        s = client.attach(t.pid)
        sessions.append(s)
        if wait_pause:
            s.wait(timeout)
        return s

    yield attach
    for s in sessions:
        try:
            s.close()
        except Exception:
            pass
