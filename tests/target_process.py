"""Real target processes for the end-to-end tests: start them, wait on them, kill them.

A target runs either inline source (``target(source, ...)``) or one of the named scripts
in ``tests/targets/`` (``target.script("etl_like", ...)``), the latter for a job several
tests share. Every process is started in a session of its own and killed by its pid
(process group) when the test ends; its output (stdout and stderr) goes to a file the
test can read and wait on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from bridge import keys

from waiting import wait_for

SRC = str(Path(__file__).resolve().parent.parent / "src")
#: The named target scripts (``tests/targets/NAME.py``).
TARGETS_DIR = Path(__file__).resolve().parent / "targets"


def line_of(source: str, name: str) -> int:
    """Line number of the ``# @name`` marker in ``source`` (as written to the file, dedented)."""
    for n, text in enumerate(textwrap.dedent(source).splitlines(), 1):
        if text.rstrip().endswith(f"# @{name}"):
            return n
    raise KeyError(name)


def file_markers(path: str) -> Dict[str, int]:
    """``{name: line}`` of the ``# @name`` markers in the file at ``path`` (anywhere on a line)."""
    marks = {}
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if "# @" in text:
                marks[text.split("# @", 1)[1].split()[0]] = n
    return marks


def script_path(name: str) -> Path:
    """The named target script ``tests/targets/<name>.py`` (KeyError naming those there)."""
    path = TARGETS_DIR / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in TARGETS_DIR.glob("*.py"))
        raise KeyError(f"no target script {name!r} in {TARGETS_DIR} (there are: {', '.join(known)})")
    return path


class Target:
    """A real target process running a script; its output is collected in a file."""

    def __init__(self, script: Path, proc: subprocess.Popen, out_path: Path, runtime_dir: Path) -> None:
        self.script = script
        self.proc = proc
        self.pid = proc.pid
        self.out_path = out_path
        self.runtime_dir = runtime_dir

    def output(self) -> str:
        """Everything the target printed so far (stdout and stderr)."""
        return self.out_path.read_text(errors="replace")

    def line(self, name: str) -> int:
        """Line number of the ``# @name`` marker in this target's script."""
        return line_of(self.script.read_text(), name)

    def _exited(self, waiting_for: str) -> None:
        """Raise (ending a wait early) if the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"target {self.pid} exited ({self.proc.returncode}) {waiting_for}:\n{self.output()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the target to exit; return its exit code."""
        return self.proc.wait(timeout)

    def wait_output(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` appears in the output (in a complete line); return the output."""

        def printed() -> Optional[str]:
            out = self.output()
            # Only complete lines count: the target may be half-way through writing one.
            if text in out[: out.rfind("\n") + 1]:
                return out
            if self.proc.poll() is not None:
                out = self.output()
                if text in out:
                    return out
                self._exited(f"without printing {text!r}")
            return None

        return wait_for(printed, timeout, f"{text!r} in the output of target {self.pid}",
                        details=lambda: f"its output:\n{self.output()}")

    def connection_file(self) -> Path:
        """Path of this target's connection file."""
        return self.runtime_dir / f"{keys.CONNECTION_PREFIX}{self.pid}.json"

    def wait_attachable(self, timeout: float = 20.0) -> Path:
        """Wait until the connection file exists; return its path."""
        path = self.connection_file()

        def written() -> bool:
            if path.exists():
                return True
            self._exited("before listening")
            return False

        wait_for(written, timeout, f"target {self.pid} to become attachable",
                 details=lambda: f"its output:\n{self.output()}")
        return path

    def connection_info(self, *, paused: bool = False, timeout: float = 20.0) -> Dict[str, Any]:
        """The connection file, read and checked (``keys.read_connection_file``); with
        ``paused``, once it records a pause (the target's last rewrite of it)."""
        path = self.wait_attachable(timeout)

        def read() -> Optional[Dict[str, Any]]:
            try:
                info = keys.read_connection_file(path)
            except (OSError, ValueError):
                info = None  # replaced under us, or gone with an exiting target
            if info is not None and (info.get("paused") or not paused):
                return info
            self._exited("before recording a pause" if paused else "before writing its connection file")
            return None

        return wait_for(read, timeout, f"target {self.pid} to record a pause" if paused else
                        f"the connection file of target {self.pid}", details=lambda: f"its output:\n{self.output()}")

    def wait_paused_in_file(self, timeout: float = 20.0) -> Path:
        """Wait until the connection file records a pause; return its path."""
        self.connection_info(paused=True, timeout=timeout)
        return self.connection_file()

    def kill(self) -> None:
        """Kill the target (by its pid, which we started: its process group) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for what starts inside the block (a cluster's worker
    processes inherit them), then put every one back as it was."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cluster_worker_env(dirs: Path) -> Dict[str, str]:
    """What a cluster's worker processes (Dask, Ray) must inherit: the worktree's code and
    tests/targets (their task functions) on the path, and private bridge dirs under ``dirs``."""
    return {"PYTHONPATH": os.pathsep.join([SRC, str(TARGETS_DIR), os.environ.get("PYTHONPATH", "")]),
            "BRIDGE_CONFIG_DIR": str(dirs / "config"), "BRIDGE_RUNTIME_DIR": str(dirs / "runtime")}


class Launcher:
    """Starts target processes in ``workdir`` and kills every one of them at :meth:`close`.

    The environment is this process's at each start (so a test's monkeypatched BRIDGE_*
    dirs apply), with ``env`` on top (a value of None unsets the variable), the worktree's
    ``src`` first on PYTHONPATH (unless ``env`` sets PYTHONPATH: then exactly that, for a
    test of an installed framebridge) and unbuffered output.
    """

    def __init__(self, workdir: Path, env: Optional[Mapping[str, Optional[str]]] = None) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.started: List[Target] = []

    def __call__(self, source: str, *args: str, env: Optional[Mapping[str, Optional[str]]] = None,
                 python: Optional[str] = None, module_args: Optional[List[str]] = None,
                 name: str = "target.py") -> Target:
        """Start ``python file args`` where the file holds ``source`` (dedented); with
        ``module_args``, ``python *module_args args`` instead (the file is still written)."""
        script = self.workdir / name
        script.write_text(textwrap.dedent(source))
        argv = list(module_args) if module_args is not None else [str(script)]
        return self._start(script, argv + list(args), env, python)

    def script(self, name: str, *args: str, env: Optional[Mapping[str, Optional[str]]] = None,
               python: Optional[str] = None, prefix: Sequence[str] = ()) -> Target:
        """Start the named script ``tests/targets/<name>.py`` with ``args`` (run in place:
        tracebacks and ``Target.line`` name the real file). ``prefix``: a command that
        execs the interpreter in place (``ip netns exec NAME``): the pid stays the target's."""
        path = script_path(name)
        return self._start(path, [str(path), *args], env, python, prefix)

    def _start(self, script: Path, argv: List[str], env: Optional[Mapping[str, Optional[str]]],
               python: Optional[str], prefix: Sequence[str] = ()) -> Target:
        full_env = dict(os.environ)
        chosen = {**self.env, **(env or {})}
        for name, value in chosen.items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        if "PYTHONPATH" not in chosen:
            full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        out_path = self.workdir / f"{script.name}.{len(self.started)}.out"
        runtime = Path(full_env.get("BRIDGE_RUNTIME_DIR") or keys.runtime_dir())
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([*prefix, python or sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    env=full_env, cwd=str(self.workdir), start_new_session=True)
        t = Target(script, proc, out_path, runtime)
        self.started.append(t)
        return t

    def close(self) -> None:
        """Kill every target started here (by pid) and reap it."""
        for t in self.started:
            t.kill()
