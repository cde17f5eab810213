"""Shared fixtures: isolated key/runtime dirs, real target processes, the in-process harness.

Every test gets its own BRIDGE_CONFIG_DIR and BRIDGE_RUNTIME_DIR (so keys and connection
files never leak between tests or into the user's real ones); ``target`` starts real
Python processes that run framebridge (inline source, or a named script of
``tests/targets/``) and kills exactly those processes by pid; ``inproc`` runs bridge's
server in the test process itself (tests/harness.py); ``raw_client`` opens hand-made
protocol connections (tests/rawclient.py). tests/README.md says how to use each.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

# The helpers live in modules of their own; their names stay importable from here.
from target_process import SRC, Launcher, Target, file_markers, line_of  # noqa: F401
from waiting import wait_for, wait_until  # noqa: F401

#: Interpreters of other CPython versions with framebridge installed, by version:
#: ``FRAMEBRIDGE_TEST_PYTHONS="3.9=/path/bin/python 3.14=/path/bin/python"``. `.ci/run`
#: builds a venv per supported version before any test runs and sets it, so that the
#: cross-version tests (a target on one version, the client on another) run on CI.
OTHER_PYTHONS_VAR = "FRAMEBRIDGE_TEST_PYTHONS"


def other_python(version: str) -> str:
    """The interpreter of CPython ``version`` that `.ci/run` built; skip (saying how to get
    one) where it was not set up, as on a machine that only ran README's test command."""
    found = {}
    for item in os.environ.get(OTHER_PYTHONS_VAR, "").split():
        ver, _, path = item.partition("=")
        found[ver] = path
    path = found.get(version)
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"no CPython {version} with framebridge: {OTHER_PYTHONS_VAR} (set by .ci/run) "
                    f"does not name one")
    return path


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


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Launcher]:
    """Starts real target processes: ``target(source, *args, env=None, python=None)`` runs
    Python ``source`` (dedented, written to a file); ``target.script("etl_like", *args)``
    runs the named script ``tests/targets/etl_like.py``. Both return a
    :class:`~target_process.Target`. Every process started is killed at the end of the test.
    """
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture
def raw_client() -> Iterator[Any]:
    """Factory: ``raw_client(where, lane=None, keypair=None, plaintext=False, monitor=0)``
    opens a :class:`~rawclient.RawClient` (``where``: a Target, a Session, a connection-info
    dict); every one is closed at the end of the test."""
    from rawclient import RawClient

    opened: List[RawClient] = []

    def open_client(where: Any, **kwargs: Any) -> RawClient:
        client = RawClient.to(where, **kwargs)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def inproc(bridge_dirs: Dict[str, Path]) -> Iterator[Any]:
    """bridge's real server in the test process (tests/harness.py): ``inproc.run_paused(job)``
    pauses a worker thread, ``inproc.attach()`` is a real Session on it, ``inproc.raw()`` a
    raw client. Teardown resumes and stops everything and fails the test on any leak."""
    from harness import InProcessBridge

    bridge = InProcessBridge()
    try:
        yield bridge
    finally:
        bridge.close()


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


@pytest.fixture
def frontend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A real kernel (inheriting this test's BRIDGE_* dirs) and a widget frontend on it
    (tests/widget_frontend.py), for the kernel-level panel tests."""
    from bridge.keys import process_alive
    from jupyter_client import KernelManager

    from widget_frontend import WidgetFrontend

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    # IPC sockets, not TCP: jupyter_client picks free ports before the kernel binds them,
    # a race that other processes on a busy machine sometimes win ("Address already in use").
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    km.kernel_spec.argv[0] = sys.executable  # the kernel runs this interpreter, src/ first
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    km.start_kernel(cwd=str(tmp_path), env=env)
    pid = km.provisioner.process.pid
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        fe = WidgetFrontend(kc)
        while fe.pump(0.05):
            pass
        yield fe
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        if process_alive(pid):  # last resort, the pid we started
            os.kill(pid, signal.SIGKILL)
