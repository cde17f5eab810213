"""Secrets and files: permissions, hostile directories, nothing secret shown, cleanup at exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import zmq

import client
from bridge import keys
from client.errors import AuthenticationError
from client.session import Session

NOBODY = 65534

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user (nobody) needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    """Run ``argv`` as the user nobody (really another uid: the kernel checks its rights)."""
    return subprocess.run(list(argv), user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def reachable_dir() -> Path:
    """A fresh directory that other users can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="framebridge-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- permissions -----------------------------------------------------------------------------------


def test_key_files_and_config_dir_are_owner_only(bridge_dirs):
    os.umask(0o022)  # a typical, permissive umask must not leak into our files
    kp = keys.load_client_keypair()
    config = bridge_dirs["config"]
    assert mode(config) == 0o700
    assert mode(config / keys.CLIENT_KEY_FILE) == 0o600
    assert mode(config / keys.AUTHORIZED_KEYS_FILE) == 0o600
    assert keys.authorize_key(zmq.curve_keypair()[0].decode(), comment="a colleague")
    assert mode(config / keys.AUTHORIZED_KEYS_FILE) == 0o600
    assert kp.secret in (config / keys.CLIENT_KEY_FILE).read_text()


def test_connection_file_and_runtime_dir_are_owner_only(target, bridge_dirs):
    t = target("import bridge\nbridge.set_trace()\n")
    path = t.wait_attachable()
    assert mode(bridge_dirs["runtime"]) == 0o700
    assert mode(path) == 0o600


def test_loose_runtime_dir_of_ours_is_tightened(bridge_dirs):
    runtime = bridge_dirs["runtime"]
    runtime.mkdir(mode=0o777)
    os.chmod(runtime, 0o777)
    assert keys.runtime_dir() == runtime
    assert mode(runtime) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_foreign_runtime_dir_is_refused(bridge_dirs, target):
    runtime = bridge_dirs["runtime"]
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    with pytest.raises(keys.InsecurePathError, match="owned by uid"):
        keys.runtime_dir()
    with pytest.raises(keys.InsecurePathError):
        client.sessions()  # the notebook refuses to trust files in it, loudly
    # A target that meets such a dir is not harmed: it logs and goes on without a connection file.
    t = target("import bridge\nbridge.set_trace(timeout=0.5)\nprint('went on', flush=True)\n")
    assert t.wait_exit(20) == 0
    out = t.output()
    assert "cannot write connection file" in out and "went on" in out
    assert not any(runtime.iterdir())


def test_symlinked_runtime_dir_is_refused(bridge_dirs, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    bridge_dirs["runtime"].symlink_to(real)
    with pytest.raises(keys.InsecurePathError, match="not a plain directory"):
        keys.runtime_dir()


@as_root
def test_a_squatted_default_runtime_dir_falls_back_to_a_private_one(reachable_dir, monkeypatch, target):
    # With no XDG_RUNTIME_DIR (cron, containers, ssh without systemd) the runtime dir is
    # <tmp>/framebridge-<uid>, a name anyone can take first in a world-writable tmp.
    tmp = reachable_dir / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    home = reachable_dir / "home"
    home.mkdir(mode=0o700)
    squatted = tmp / f"framebridge-{os.getuid()}"
    made = as_nobody("mkdir", "-m", "777", str(squatted))  # the other user, first
    assert made.returncode == 0, made.stderr
    for name in ("BRIDGE_RUNTIME_DIR", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert tempfile.gettempdir() == str(tmp)

    t = target("import bridge\nx = 5\nbridge.set_trace()\n")
    deadline = time.monotonic() + 20
    while not [s for s in client.sessions() if s.pid == t.pid]:  # the notebook finds it
        assert t.proc.poll() is None and time.monotonic() < deadline, t.output()
        time.sleep(0.05)  # the connection file has no notification to wait on
    fallback = keys.runtime_dir()
    assert fallback.parent == home / ".cache" / "framebridge" and mode(fallback) == 0o700
    assert keys.connection_path(t.pid).exists()
    s = client.attach(t.pid)
    try:
        s.wait(20)
        assert s.eval("x") == 5
        s.cont()
    finally:
        s.close()
    assert t.wait_exit() == 0
    out = t.output()
    assert "another user may have made it first" in out and f"using {fallback} instead" in out
    assert "cannot write connection file" not in out
    # Nothing of ours went into the other user's directory, and they cannot make ours.
    assert squatted.stat().st_uid == NOBODY and not any(squatted.iterdir())
    assert as_nobody("mkdir", "-p", str(home / ".cache" / "elsewhere")).returncode != 0


@as_root
@pytest.mark.parametrize("setting, shared_mode", [("BRIDGE_RUNTIME_DIR", 0o1777), ("BRIDGE_CONFIG_DIR", 0o2775)],
                         ids=["runtime-dir-1777", "config-dir-2775"])
def test_a_shared_directory_is_refused_and_left_open_to_those_who_share_it(setting, shared_mode, reachable_dir,
                                                                          monkeypatch, target):
    # /tmp-like (sticky, 1777) or a team's directory (set-group-ID, 2775), owned by us: a
    # chmod 700 would lock every other user out of it (as root with /tmp: the whole machine).
    shared = reachable_dir / "shared"
    shared.mkdir()
    os.chown(shared, os.getuid(), NOBODY)  # the team's group: nobody is in it
    shared.chmod(shared_mode)
    monkeypatch.setenv(setting, str(shared))
    locate = keys.runtime_dir if setting == "BRIDGE_RUNTIME_DIR" else keys.config_dir
    with pytest.raises(keys.InsecurePathError, match=f"shared directory .*set {setting} to a directory of your own"):
        locate()
    t = target("import bridge\nbridge.set_trace()\nprint('went on', flush=True)\n")
    assert t.wait_exit(20) == 0
    out = t.output()
    assert "not pausing" in out and "shared directory" in out and "went on" in out
    assert mode(shared) == shared_mode
    made = as_nobody("touch", str(shared / "theirs"))
    assert made.returncode == 0, made.stderr  # the others can still use it


def test_readable_key_file_is_refused_with_a_fix(bridge_dirs):
    keys.load_client_keypair()
    path = bridge_dirs["config"] / keys.CLIENT_KEY_FILE
    os.chmod(path, 0o644)
    with pytest.raises(keys.InsecurePathError, match="chmod 600"):
        keys.load_client_keypair()


def test_connection_file_others_can_write_is_ignored(target, bridge_dirs):
    t = target("import bridge\nbridge.set_trace()\n")
    path = t.wait_paused_in_file()  # after this the target does not rewrite it while paused
    os.chmod(path, 0o666)  # anyone could have swapped the server key in it
    assert [s.pid for s in client.sessions()] == []
    with pytest.raises(keys.InsecurePathError):
        client.attach(t.pid)


# --- nothing secret shown ---------------------------------------------------------------------------


def test_no_secret_in_reprs_files_or_logs(target, attach_to, bridge_dirs):
    t = target("import bridge\nx = 1\nbridge.set_trace()\n")
    s = attach_to(t)
    kp = keys.load_client_keypair()
    # The target's server secret key lives only inside its socket (libzmq will not even read it
    # back): no attribute of the server holds it.
    held = s.eval("[k for k in vars(__import__('bridge.server').server.current_server()) if 'secret' in k.lower()]")
    assert held == []

    # A refused stranger, so that the target has logged something about keys.
    stranger = keys.KeyPair(*(k.decode("ascii") for k in zmq.curve_keypair()))
    with pytest.raises(AuthenticationError) as refused:
        Session(s.info, keypair=stranger, timeout=5)
    t.wait_output("unauthorized key")

    conn_text = t.connection_file().read_text()
    conn = json.loads(conn_text)
    assert not [k for k in conn if "secret" in k.lower()]
    assert conn["server_key"] == s.info["server_key"]
    shown = [repr(kp), str(kp), repr(s), str(s.info), repr(s.hello), str(refused.value), conn_text,
             t.output(), repr(client.sessions())]
    for text in shown:
        for secret in (kp.secret, stranger.secret):
            assert secret not in text, text


# --- connection files at exit, and stale ones -----------------------------------------------------------

LISTEN_THEN = """
import os, sys, bridge
from bridge import keys
bridge.listen()
print("file exists:", keys.connection_path(os.getpid()).exists(), flush=True)
{exit}
"""


@pytest.mark.parametrize("how, code", [
    ("pass", 0),                                   # normal end of the script
    ("sys.exit(3)", 3),
    ("raise RuntimeError('boom')", 1),             # unhandled exception
])
def test_connection_file_removed_at_exit(target, how, code):
    t = target(LISTEN_THEN.format(exit=how))
    assert t.wait_exit(20) == code
    assert "file exists: True" in t.output()
    assert not t.connection_file().exists()


def test_sigterm_leaves_a_stale_file_that_sessions_drop(target):
    # We install no SIGTERM handler (the job's signal handling is its own): the file stays,
    # and the next sessions() recognises the dead pid and removes it.
    t = target(LISTEN_THEN.format(exit="import time\nwhile True: time.sleep(0.05)"))
    t.wait_output("file exists: True")
    os.kill(t.pid, signal.SIGTERM)
    assert t.wait_exit(20) == -signal.SIGTERM
    assert t.connection_file().exists()
    assert t.pid not in [s.pid for s in client.sessions()]
    assert not t.connection_file().exists()


def test_reused_pid_is_recognised_by_start_time(target, bridge_dirs):
    t = target("import bridge\nbridge.set_trace()\n")
    real = t.wait_attachable()
    info = json.loads(real.read_text())
    assert isinstance(info["start_time"], int) and info["start_time"] == keys.process_start_time(t.pid)

    # A file claiming a live pid (ours) but another start time: a dead process's pid reused.
    fake = keys.connection_path(os.getpid())
    keys.write_private_file(fake, json.dumps(dict(info, pid=os.getpid(), start_time=1)).encode())
    listed = [s.pid for s in client.sessions()]
    assert os.getpid() not in listed and t.pid in listed
    assert not fake.exists() and real.exists()
