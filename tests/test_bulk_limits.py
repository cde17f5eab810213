"""The bulk path under hostile or exhausted conditions (docs/security.md, "The data port").

* A full /dev/shm: uploads (``set``, write-back) and pulls fall back to the AES data port,
  say so once, and lose nothing. The test mounts a real, small tmpfs and points
  ``BRIDGE_SHM_DIR`` of both processes at it (root only: CI runs as root).
* Any local user can connect to the data port: hundreds of idle or lying connections leave
  the target's threads and fds bounded, its own file opens working, and a big ``eval``
  working within its timeout; EMFILE in ``accept`` does not end the accept loop.
* A data port that stops answering ends a client's wait within the request's timeout,
  with a BulkError that says so.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from bridge import bulk
from bridge.bulk import dataport
from client import jump_context
from conftest import wait_until

BIG = """
import numpy as np
import bridge
big = np.arange(4 * 2**20 // 8, dtype=np.float64)
bridge.set_trace()
print("resumed", float(globals().get("up", np.zeros(1)).sum()), flush=True)
"""


def big_expected() -> np.ndarray:
    return np.arange(4 * 2**20 // 8, dtype=np.float64)


# --- a full /dev/shm ----------------------------------------------------------------------------


@pytest.fixture
def full_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real 1 MiB tmpfs, filled but for a few pages, as this session's shared-memory dir."""
    where = tmp_path / "shm"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "fb-test-shm", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this root cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        st = os.statvfs(where)
        with open(where / "filler", "wb") as f:  # what another user's job left there
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - (64 << 10))
        monkeypatch.setenv("BRIDGE_SHM_DIR", str(where))
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_shm_falls_back_to_the_data_port_and_says_so_once(target, attach_to, full_tmpfs):
    t = target(BIG, env={"BRIDGE_SHM_DIR": str(full_tmpfs)})
    s = attach_to(t)
    peer = s._channel.bulk
    assert peer.mode == "shm"  # the probe page fitted: the session chose shared memory
    up = np.full(3 * 2**20 // 8, 2.0)
    with pytest.warns(bulk.BulkFallbackWarning, match="No space left on device") as caught:
        s.set(up=up)  # the client's 3 MiB ring does not fit
    assert str(full_tmpfs) in str(caught[0].message)  # the warning names the place
    assert peer.stats["uploads"] == 1 and peer.stats["aes"] == 1
    assert s.eval("float(up.sum())") == float(up.sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error", bulk.BulkFallbackWarning)  # said once: never again
        pulled = s.eval("big")  # the target's ring does not fit either: it falls back too
        assert np.array_equal(pulled, big_expected())
        assert peer.stats["aes"] == 2
        ns: Dict[str, object] = {}
        with jump_context(s, names=["big"], namespace=ns):  # a write-back is an upload
            ns["big"] = ns["big"] * 2
        assert s.eval("float(big[-1])") == float(big_expected()[-1] * 2)
    assert peer.stats["uploads"] == 2
    assert sorted(os.listdir(full_tmpfs)) == ["filler"]  # no ring left behind on either side
    s.cont()
    assert f"resumed {float(up.sum())}" in t.wait_output("resumed")


# --- a hostile local peer on the data port ------------------------------------------------------


def proc_counts(pid: int) -> Dict[str, int]:
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def open_idle(port: int, n: int, heads: List[bytes]) -> List[socket.socket]:
    """``n`` connections to ``port`` that say ``heads[i % len]`` (or less) and then nothing.

    Non-blocking connects: a full accept queue must not stall the attacker (nor the test).
    """
    socks = []
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    sel = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_WRITE, heads[i % len(heads)])
    left, deadline = len(socks), time.monotonic() + 20
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            sel.unregister(key.fileobj)
            left -= 1
            if key.data:
                try:
                    key.fileobj.send(key.data)
                except OSError:
                    pass  # refused already: fine, it was an attack
    sel.close()
    return socks


FLOOD_TARGET = """
import resource, threading, time
import numpy as np
import bridge
# The issue's conditions: a job with a modest fd limit.
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
big = np.arange(4 * 2**20 // 8, dtype=np.float64)
opens, open_failures = [0], []

def job():  # the job's own work goes on beside the pause, opening files as it does
    while True:
        try:
            with open(__file__, "rb") as f:
                f.read(1)
            opens[0] += 1
        except OSError as exc:
            open_failures.append(repr(exc))
        time.sleep(0.002)

threading.Thread(target=job, daemon=True).start()
bridge.set_trace()
"""


def test_hundreds_of_idle_connections_leave_the_target_bounded_and_serving(target, attach_to):
    t = target(FLOOD_TARGET)
    s = attach_to(t)
    assert np.array_equal(s.eval("big"), big_expected())  # the data port is up (shm or aes)
    before = proc_counts(t.pid)
    port = s._channel.bulk.data_address[1]
    heads = [b"", b"GE", b"PUT " + os.urandom(16), b"GET " + os.urandom(16), b"PUT " + os.urandom(8)]
    attackers = open_idle(port, 400, heads)
    try:
        # Sample the target for longer than a connection may wait for its token.
        peak = dict(before)
        end = time.monotonic() + dataport.TOKEN_DEADLINE_S + 2
        while time.monotonic() < end:
            now = proc_counts(t.pid)
            peak = {k: max(peak[k], now[k]) for k in peak}
            time.sleep(0.05)  # sampling interval of a measurement, not a synchronisation
        assert peak["threads"] <= before["threads"] + 1, (before, peak)  # no thread per connection
        assert peak["fds"] <= before["fds"] + dataport.MAX_PENDING + 4, (before, peak)
        # The attackers still hold their sockets; a real client is served as usual.
        assert np.array_equal(s.eval("big", timeout=20), big_expected())
        s.exec("opens_before = opens[0]")
        wait_until(lambda: s.eval("opens[0] - opens_before") > 50, 10, "the job to open more files")
        assert s.eval("open_failures") == []
        stats = s.eval("dict(__import__('bridge.bulk', fromlist=['x']).data_server('127.0.0.1').stats)")
        dropped = stats.get("refused", 0) + stats.get("timed_out", 0) + stats.get("evicted", 0)
        assert dropped >= 400 * 0.9, stats  # (a few may still sit in the accept queue)
        assert stats.get("uploads", 0) == 0, stats  # no stranger's PUT was parked
    finally:
        for sock in attackers:
            sock.close()


EMFILE_TARGET = """
import os, resource
import numpy as np
import bridge
big = np.arange(4 * 2**20 // 8, dtype=np.float64)
hog = []

def exhaust():  # the job uses every file descriptor it may have (its own doing)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8,
                                                resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    while True:
        try:
            hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return len(hog)

def release():
    while hog:
        os.close(hog.pop())

bridge.set_trace()
"""


def test_emfile_in_accept_does_not_end_the_accept_loop(target, attach_to):
    t = target(EMFILE_TARGET)
    s = attach_to(t)
    assert np.array_equal(s.eval("big"), big_expected())
    port = s._channel.bulk.data_address[1]
    stats = "dict(__import__('bridge.bulk', fromlist=['x']).data_server('127.0.0.1').stats)"
    assert s.eval("exhaust()") > 0
    knocking = open_idle(port, 8, [b""])
    try:
        wait_until(lambda: s.eval(stats).get("accept_errors", 0) > 0, 15, "accept() to fail with EMFILE")
        s.exec("release()")
    finally:
        for sock in knocking:
            sock.close()
    assert "bridge-bulk-data" in s.eval("[th.name for th in __import__('threading').enumerate()]")
    assert np.array_equal(s.eval("big", timeout=20), big_expected())


# --- the client's waits on the data port ------------------------------------------------------


def test_a_stalled_data_port_fails_within_the_request_timeout(target, attach_to, monkeypatch):
    monkeypatch.setenv("BRIDGE_BULK", "aes")
    t = target(BIG)
    s = attach_to(t)
    silent = socket.create_server(("127.0.0.1", 0), backlog=8)  # accepts in the kernel, never answers
    real = s._channel.bulk.data_address
    try:
        s._channel.bulk.data_address = ("127.0.0.1", silent.getsockname()[1])
        start = time.monotonic()
        with pytest.raises(Exception, match="stalled") as caught:
            s.eval("big", timeout=2)
        assert time.monotonic() - start < 2 * 2 + 3  # the reply's wait plus one wait, not 60 s
        # The BulkError itself, or the client's framebridge error made from it (its cause).
        assert bulk.BulkError in (type(caught.value), type(caught.value.__cause__))
    finally:
        silent.close()
    s._channel.bulk.data_address = real
    assert np.array_equal(s.eval("big"), big_expected())  # the session goes on


def test_upload_tokens_are_checked_before_anything_is_parked():
    key = os.urandom(32)
    token = dataport.upload_token(key)
    assert len(token) == bulk.TOKEN_BYTES
    assert dataport.upload_token_valid(key, token)
    assert not dataport.upload_token_valid(os.urandom(32), token)
    forged = bytearray(token)
    forged[-1] ^= 1
    assert not dataport.upload_token_valid(key, bytes(forged))


def test_the_data_port_serves_on_while_strangers_wait():
    """In process: connections that never send their head are dropped after the deadline,
    the oldest first when too many wait, and a real transfer still goes through."""
    server = dataport.DataServer("127.0.0.1")
    idle: List[socket.socket] = []
    try:
        idle = open_idle(server.port, dataport.MAX_PENDING + 10, [b""])
        wait_until(lambda: server.stats["evicted"] >= 10, 10, "the oldest idle connections to be dropped")
        data = np.arange(3 * 2**20 // 8, dtype=np.float64)
        frames, descriptor, transfer = bulk.export_frames([b"", data], "aes")
        bulk.outbox().add_transfer(transfer)
        got = bulk.import_frames(descriptor, frames,
                                 connect=lambda token: dataport.open_download(("127.0.0.1", server.port), token, 5))
        assert np.array_equal(np.frombuffer(got[1], dtype=np.float64), data)
        wait_until(lambda: server.stats["evicted"] + server.stats["timed_out"] == len(idle),
                   dataport.TOKEN_DEADLINE_S + 5, "every idle connection to be dropped")
        assert server.stats["timed_out"] > 0 and server.stats["downloads"] == 1
    finally:
        for sock in idle:
            sock.close()
        server.close()
    wait_until(lambda: not server.thread.is_alive(), 5, "the data port's thread to end")
