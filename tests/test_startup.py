"""A broken setup never breaks the job: set_trace() says what is wrong in one line and goes on.

Each case is a real target process on a machine set up wrong (a key file others can read,
a busy or non-numeric BRIDGE_PORT, a BRIDGE_HOST that is no address, BRIDGE_WAIT_TIMEOUT=1s).
Its set_trace() calls must print one line that names the problem and its fix, raise
nothing into the job, and leave no thread or file descriptor behind; once the job fixes
the problem, the next set_trace() pauses and a notebook attaches to it.
"""

from __future__ import annotations

import os
import socket
from typing import Callable, Dict, Iterator

import pytest

from bridge import keys

ATTEMPTS = 3

JOB = """
import os, sys, threading
import zmq, bridge, bridge.server, bridge.pause  # imported before counting: imports are not leaks

def resources():
    return threading.active_count(), len(os.listdir("/proc/self/fd"))

before = resources()
for attempt in range({attempts}):
    bridge.set_trace()
    print("went on", attempt, flush=True)
print("resources", before, resources(), flush=True)
{fix}
x = 42
bridge.set_trace()
print("done", flush=True)
"""


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def _own_key_then(change: Callable[[Dict], None]) -> Callable[[Dict], None]:
    def setup(dirs: Dict) -> None:
        keys.load_client_keypair()
        change(dirs)
    return setup


def _loose_authorized_keys(dirs: Dict) -> None:
    os.chmod(dirs["config"] / keys.AUTHORIZED_KEYS_FILE, 0o644)


def _loose_client_key(dirs: Dict) -> None:
    (dirs["config"] / keys.AUTHORIZED_KEYS_FILE).unlink()  # the target needs the key itself
    os.chmod(dirs["config"] / keys.CLIENT_KEY_FILE, 0o640)


def _damaged_client_key(dirs: Dict) -> None:
    (dirs["config"] / keys.AUTHORIZED_KEYS_FILE).unlink()
    keys.write_private_file(dirs["config"] / keys.CLIENT_KEY_FILE, b"{not json")


CHMOD_600 = "import pathlib; pathlib.Path({path!r}).chmod(0o600)"

#: id -> (setup in the test, environment, text the line must hold, the job's fix)
CASES = {
    "authorized_keys 0644": (_own_key_then(_loose_authorized_keys), {}, "chmod 600",
                             CHMOD_600.format(path="{config}/authorized_keys")),
    "client key 0640": (_own_key_then(_loose_client_key), {}, "chmod 600",
                        CHMOD_600.format(path="{config}/client.key")),
    "damaged client key": (_own_key_then(_damaged_client_key), {}, "run `framebridge keys`",
                           "os.remove({config!r} + '/client.key')"),
    "BRIDGE_PORT busy": (None, {"BRIDGE_PORT": "{busy_port}"}, "is in use by another process",
                         "del os.environ['BRIDGE_PORT']"),
    "BRIDGE_PORT not a number": (None, {"BRIDGE_PORT": "http"}, "BRIDGE_PORT='http' is not a port number",
                                 "del os.environ['BRIDGE_PORT']"),
    "BRIDGE_HOST not an address": (None, {"BRIDGE_HOST": "not-an-address"}, "set BRIDGE_HOST to an address",
                                   "del os.environ['BRIDGE_HOST']"),
    "BRIDGE_WAIT_TIMEOUT=1s": (None, {"BRIDGE_WAIT_TIMEOUT": "1s"}, "BRIDGE_WAIT_TIMEOUT='1s' is not a number",
                               "os.environ['BRIDGE_WAIT_TIMEOUT'] = '120'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_setup_prints_one_line_leaks_nothing_and_a_fixed_one_pauses(case, target, attach_to,
                                                                             bridge_dirs, busy_port):
    setup, env, expected, fix = CASES[case]
    if setup is not None:
        setup(bridge_dirs)
    values = {"config": str(bridge_dirs["config"]), "busy_port": busy_port}
    env = {name: value.format(**values) for name, value in env.items()}
    t = target(JOB.format(attempts=ATTEMPTS, fix=fix.format(**values)), env=env)

    out = t.wait_output("resources")
    lines = [line for line in out.splitlines() if line.startswith("bridge:")]
    assert len(lines) == ATTEMPTS, out  # one line per attempt, nothing else
    assert all(expected in line and "not pausing" in line for line in lines), out
    assert "Traceback" not in out
    assert [f"went on {i}" in out for i in range(ATTEMPTS)] == [True] * ATTEMPTS
    before, after = out.split("resources ", 1)[1].splitlines()[0].split(") (")
    assert before + ")" == "(" + after, f"threads and fds before and after {ATTEMPTS} failed starts: {out}"

    s = attach_to(t)  # the job fixed it: this set_trace pauses
    assert s.eval("x") == 42
    s.cont()
    t.wait_output("done")
    assert t.wait_exit() == 0


def test_an_empty_client_key_is_made_again_and_the_job_pauses(target, attach_to, bridge_dirs):
    # An empty key (left by a process killed while it wrote one) holds nothing anyone
    # authorized: set_trace makes a new one instead of failing on it for ever.
    keys.load_client_keypair()
    (bridge_dirs["config"] / keys.AUTHORIZED_KEYS_FILE).unlink()
    keys.write_private_file(bridge_dirs["config"] / keys.CLIENT_KEY_FILE, b"")
    t = target("import bridge\nx = 7\nbridge.set_trace()\n")
    s = attach_to(t)
    assert s.eval("x") == 7
    s.cont()
    assert t.wait_exit() == 0


def test_listen_raises_one_clear_error_and_python_m_bridge_runs_the_program_anyway(target, tmp_path):
    t = target("""
        import bridge
        from bridge.startup import StartError
        try:
            bridge.listen()
        except StartError as exc:
            print("listen:", exc, flush=True)
    """, env={"BRIDGE_PORT": "99999"})
    assert t.wait_exit() == 0
    assert "listen: BRIDGE_PORT='99999' is not a port number" in t.output()

    script = tmp_path / "program.py"
    script.write_text("print('the program ran', flush=True)\n")
    t = target("", str(script), module_args=["-m", "bridge"], env={"BRIDGE_PORT": "99999"})
    assert t.wait_exit() == 0
    out = t.output()
    assert "the program ran" in out
    assert "bridge: running the program unattachable" in out and "BRIDGE_PORT='99999'" in out
