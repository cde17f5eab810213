"""``framebridge demo``: the first thing a newcomer runs; needs no configuration.

It starts ``examples/etl_pipeline.py`` as a real target process (with a private,
temporary runtime dir, so it never meets the user's other jobs), attaches to it when it
pauses, shows the stack and the variables, fixes the missing exchange rate in the live
frame, continues, and shows the job's corrected report. It ends by itself in seconds and
removes everything it made (the user's key, created on first use, stays: it is theirs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, List, Optional

#: Upper bound for each step; the whole demo takes about a second.
STEP_TIMEOUT = 30.0
FIX = "rates['CHF'] = 1.05"


def example_path() -> Path:
    """Where examples/etl_pipeline.py is (next to src/ in a checkout or editable install)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        candidate = base / "examples" / "etl_pipeline.py"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("examples/etl_pipeline.py not found: run the demo from a framebridge checkout "
                            "(pip install -e .)")


def run_demo(out: IO[str] = sys.stdout) -> int:
    """Run the demo; return 0 if the job finished with the corrected report."""
    import client

    script = example_path()
    runtime = Path(tempfile.mkdtemp(prefix="framebridge-demo-"))
    os.chmod(runtime, 0o700)
    env = dict(os.environ, BRIDGE_RUNTIME_DIR=str(runtime), PYTHONUNBUFFERED="1",
               BRIDGE_WAIT_TIMEOUT=str(STEP_TIMEOUT))  # the job never waits for us forever
    src = str(Path(client.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    old_runtime = os.environ.get("BRIDGE_RUNTIME_DIR")
    os.environ["BRIDGE_RUNTIME_DIR"] = str(runtime)  # so attach() looks where the job writes
    say = _Printer(out)
    proc: Optional[subprocess.Popen] = None
    session = None
    job_lines: List[str] = []
    try:
        say.step(f"starting the job: {sys.executable} {script}")
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, text=True, bufsize=1)
        reader = threading.Thread(target=_pump, args=(proc.stdout, job_lines, say), daemon=True)
        reader.start()
        _wait_for_file(runtime / f"bridge-{proc.pid}.json", proc)

        say.step(f"attaching:  s = client.attach({proc.pid})")
        session = client.attach(proc.pid)
        pause = session.wait(STEP_TIMEOUT)
        say.text(str(pause))

        say.step("the paused stack:  s.stack()")
        say.text(str(session.stack()))
        say.step("its variables:  s.locals()")
        say.text(repr(session.locals()))
        say.step("what is wrong:  s.eval('unknown'), s.eval('rates')")
        say.text(f"unknown = {session.eval('unknown')!r}\nrates   = {session.eval('rates')!r}")

        say.step(f"fixing the live frame:  s.exec({FIX!r})")
        session.exec(FIX)
        say.text(f"rates   = {session.eval('rates')!r}")

        say.step("continuing:  s.cont()  (the job goes on with the fixed rates)")
        session.cont()
        code = proc.wait(STEP_TIMEOUT)
        reader.join(STEP_TIMEOUT)
        report = "".join(job_lines)
        fixed = code == 0 and "skipped" not in report.split("pausing for a fix", 1)[-1] and "total" in report
        say.step(f"the job exited with status {code}; " + (
            "its report includes the CHF orders it would have dropped." if fixed else "something went wrong."))
        if fixed:
            say.text("Next: open examples/demo.ipynb, or read docs/quickstart.md.")
        return 0 if fixed else 1
    finally:
        if session is not None:
            session.close()
        if proc is not None and proc.poll() is None:
            proc.kill()  # only if something above failed: the job is ours
            proc.wait(10)
        if old_runtime is None:
            os.environ.pop("BRIDGE_RUNTIME_DIR", None)
        else:
            os.environ["BRIDGE_RUNTIME_DIR"] = old_runtime
        shutil.rmtree(runtime, ignore_errors=True)


def _wait_for_file(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the job exited ({proc.returncode}) before it paused")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the job did not become attachable within {STEP_TIMEOUT:g}s")
        time.sleep(0.02)  # a file appearing has no notification to wait on


def _pump(stream: IO[str], lines: List[str], say: "_Printer") -> None:
    for line in stream:
        lines.append(line)
        say.job(line)


class _Printer:
    """Demo narration and the job's own output, interleaved without tearing lines."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def step(self, text: str) -> None:
        self._emit(f"\n>>> {text}\n")

    def text(self, text: str) -> None:
        self._emit("".join(f"    {line}\n" for line in text.splitlines()))

    def job(self, line: str) -> None:
        self._emit(f"  job | {line.rstrip()}\n")

    def _emit(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()
