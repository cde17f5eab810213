"""The bulk path (bridge/bulk/): big values leave the CURVE channel, safely.

End-to-end against real targets: the path is chosen and used, the write direction works,
the bytes on the wire are ciphertext (a recording TCP relay sits between client and
target), shared-memory segments are owner-only and vanish even when a client dies, and an
interrupted transfer leaves the session usable and nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from bridge import bulk
from client.session import Session
from conftest import wait_until

MARKER = b"FRAMEBRIDGE-PLAINTEXT-MARKER-0123456789"
BIG_MIB = 4

TARGET = f"""
import numpy as np
import bridge
MARKER = {MARKER!r}
big = np.frombuffer(MARKER * ({BIG_MIB} * 2**20 // len(MARKER) + 1), dtype=np.uint8).copy()
small = 7
bridge.set_trace()
print("resumed", int(big.sum()), float(globals().get("up", np.zeros(1)).sum()), flush=True)
"""


def expected_big() -> np.ndarray:
    return np.frombuffer(MARKER * (BIG_MIB * 2**20 // len(MARKER) + 1), dtype=np.uint8)


def our_segments(pid: int) -> List[str]:
    prefix = bulk.segment_prefix(pid)
    return [n for n in os.listdir(bulk.shm_dir()) if n.startswith(prefix)]



class Relay:
    """A TCP relay on 127.0.0.1 that forwards to ``target_port`` and records every byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self.conns: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [down, up]
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                with self.lock:
                    self.recorded += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


def attach_via_relay(target, monkeypatch, mode: str) -> Tuple[Session, Relay]:
    path = target.wait_attachable()
    from bridge import keys

    info = keys.read_connection_file(path)
    port = int(info["endpoint"].rsplit(":", 1)[1])
    relay = Relay(port)
    monkeypatch.setenv("BRIDGE_BULK", mode)
    # The relay forwards the main port only; a pause's lane (test_lanes.py) would connect
    # straight to the target and bypass it, so lanes are off: every byte crosses the relay.
    monkeypatch.setenv("BRIDGE_LANES", "0")
    s = Session(dict(info, endpoint=f"tcp://127.0.0.1:{relay.port}"))
    s.wait(20)
    return s, relay


# --- end to end ------------------------------------------------------------------------------


def test_same_host_pull_uses_shared_memory(target, attach_to):
    t = target(TARGET)
    s = attach_to(t)
    assert s._channel.bulk is not None and s._channel.bulk.mode == "shm"
    value = s.eval("big")
    assert np.array_equal(value, expected_big())
    assert value.flags.writeable
    value[0] = 1  # the mapping is ours: writable without touching the target
    assert s._channel.bulk.stats["shm"] == 1
    assert s._channel.bulk.stats["bytes"] == value.nbytes
    assert s.eval("small") == 7  # small values stay on CURVE
    assert s._channel.bulk.stats["shm"] == 1
    assert our_segments(t.pid) == []  # mapped and unlinked at once


@pytest.mark.parametrize("mode", ["shm", "aes"])
def test_set_big_array_goes_through_the_bulk_path(target, attach_to, monkeypatch, mode):
    monkeypatch.setenv("BRIDGE_BULK", mode)
    t = target(TARGET)
    s = attach_to(t)
    assert s._channel.bulk.mode == mode
    up = np.full(3 * 2**20 // 8, 2.0)
    s.set(up=up)
    assert s._channel.bulk.stats["uploads"] == 1
    assert s._channel.bulk.stats[mode] == 1
    assert s.eval("float(up.sum())") == float(up.sum())
    pulled = s.eval("big")
    assert s._channel.bulk.stats[mode] == 2
    assert np.array_equal(pulled, expected_big())
    s.cont()
    assert f"resumed {int(expected_big().sum())} {float(up.sum())}" in t.wait_output("resumed")
    assert our_segments(os.getpid()) == []


@pytest.mark.parametrize("mode", ["curve", "aes", "shm"])
def test_bytes_on_the_wire_are_encrypted(target, monkeypatch, mode):
    t = target(TARGET)
    s, relay = attach_via_relay(t, monkeypatch, mode)
    data_relay = None
    try:
        if mode == "curve":
            assert s._channel.bulk is None
        else:
            assert s._channel.bulk is not None and s._channel.bulk.mode == mode
            data_relay = Relay(s._channel.bulk.data_address[1])
            s._channel.bulk.data_address = ("127.0.0.1", data_relay.port)
        value = s.eval("big")
        assert np.array_equal(value, expected_big())
        up = np.frombuffer(MARKER * (2 * 2**20 // len(MARKER)), dtype=np.uint8)
        s.set(up=up)  # the write direction crosses the wire too
        assert s.eval("int(up.nbytes)") == up.nbytes
    finally:
        s.close()
        relay.close()
        if data_relay is not None:
            data_relay.close()
    wire = bytes(relay.recorded) + (bytes(data_relay.recorded) if data_relay else b"")
    assert MARKER not in wire
    assert MARKER[:16] not in wire
    if mode == "curve":
        assert len(wire) > value.nbytes + up.nbytes  # the values really crossed the relay
    elif mode == "aes":
        assert len(data_relay.recorded) > value.nbytes + up.nbytes  # ... the big ones on the data port
        assert len(relay.recorded) < 2**20  # ... and not through CURVE
    else:
        # Shared memory: the data port carries two one-shot tokens and one signal byte per
        # chunk each way, nothing of the values; CURVE carries the small rest.
        signals = bytes(data_relay.recorded)
        for verb in (b"GET ", b"PUT "):
            at = signals.index(verb)
            signals = signals[:at] + signals[at + 4 + bulk.TOKEN_BYTES:]
        assert signals and not signals.strip(b"FA")
        assert len(signals) <= 2 * (value.nbytes + up.nbytes) // (1 << 20)
        assert len(relay.recorded) < 2**20
        assert s._channel.bulk.stats["shm"] == 2  # ... yet both values took the bulk path


def test_segments_are_owner_only_and_removed_when_the_client_dies(target, attach_to, tmp_path):
    t = target(TARGET, env={"BRIDGE_BULK_TIMEOUT": "2"})
    t.wait_attachable()
    # A client in its own process asks for the big array and then hangs without mapping it.
    dying = tmp_path / "dying_client.py"
    dying.write_text(textwrap.dedent(f"""
        import json, sys
        import client
        from bridge import protocol
        s = client.attach({t.pid})
        s.wait(20)
        ch = s._channel
        assert ch.bulk.mode == "shm", ch.bulk
        rid = ch.send("eval", dict(thread=s.selected.thread, frame=0, expr="big"), bulk="shm")
        header, _ = protocol.split_message(ch.socket.recv_multipart(copy=False))  # raw: nothing mapped
        print(json.dumps(header["bulk"]), flush=True)
        sys.stdin.read()  # hang until killed
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
    proc = subprocess.Popen([sys.executable, str(dying)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, "the dying client printed nothing"
        import json

        descriptor = json.loads(line)
        path = descriptor["ring"]
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert st.st_size == descriptor["ring_bytes"]
        assert descriptor["bufs"][0]["n"] == expected_big().nbytes
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    wait_until(lambda: not os.path.exists(path), 15, f"{path} to be removed by the target")
    wait_until(lambda: our_segments(t.pid) == [], 15, "every segment of the target to be removed")
    # The target did not notice: another client works as before.
    s = attach_to(t)
    assert np.array_equal(s.eval("big"), expected_big())


@pytest.mark.parametrize("mode", ["shm", "aes"])
def test_interrupted_transfer_leaves_the_session_usable(target, attach_to, monkeypatch, mode):
    monkeypatch.setenv("BRIDGE_BULK", mode)
    t = target(TARGET)
    s = attach_to(t)
    import client.progress as progress

    def ctrl_c(self, done):  # what a Ctrl-C in the middle of the transfer raises
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(progress.Progress, "__call__", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            s.eval("big")
    assert our_segments(t.pid) == []
    assert s.eval("small") == 7
    assert np.array_equal(s.eval("big"), expected_big())


# --- units --------------------------------------------------------------------------------------


def test_tampered_chunk_fails_authentication():
    from bridge.bulk import aes

    data = memoryview(bytearray(os.urandom(3 * 1024 + 5)))
    key = os.urandom(32)
    a, b = socket.socketpair()
    try:
        aes.send_stream(a, key, [data], 1024)
        a.shutdown(socket.SHUT_WR)
        raw = bytearray()
        while True:
            piece = b.recv(65536)
            if not piece:
                break
            raw += piece
    finally:
        a.close()
        b.close()
    assert bytes(data[:64]) not in raw

    def receive(stream: bytes):
        x, y = socket.socketpair()
        try:
            x.sendall(stream)
            x.shutdown(socket.SHUT_WR)
            return aes.recv_stream(y, key, [data.nbytes], 1024)
        finally:
            x.close()
            y.close()

    (good,) = receive(bytes(raw))
    assert bytes(good) == bytes(data)
    raw[1500] ^= 1
    with pytest.raises(bulk.BulkError, match="authentication"):
        receive(bytes(raw))


def _ring_pair(buffers, slot: int, slots: int, monkeypatch):
    """Send ``buffers`` through a real owner-only ring between two threads, through the shm
    mode's transfer interface (export, send, check, receive); what arrived."""
    from bridge.bulk import shm

    monkeypatch.setattr(shm, "RING_SLOT_BYTES", slot)
    monkeypatch.setattr(shm, "RING_SLOTS", slots)
    mode = bulk.TRANSFER_MODES["shm"]
    sizes = [memoryview(b).nbytes for b in buffers]
    fields, transfer = mode.export([memoryview(b) for b in buffers], b"t" * 16)
    chunk, count = transfer.chunk, fields["ring_bytes"] // transfer.chunk
    path = fields["ring"]
    checked = mode.check(dict(fields, chunk=chunk))
    a, b = socket.socketpair()
    errors = []

    def send():
        try:
            bulk.send_transfer(a, transfer)  # by the transfer's mode, from the table
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        received = mode.receive(b, checked, sizes, chunk)
    finally:
        sender.join(10)
        a.close()
        b.close()
    assert not errors and not sender.is_alive()
    assert transfer.ring is None  # the sender unmapped its side
    assert not os.path.exists(path)  # the receiver unlinked it before the first byte
    return received, chunk, count


def test_ring_moves_many_buffers_through_few_slots(monkeypatch):
    writable = np.arange(300_001, dtype=np.int64)  # not a multiple of the slot
    read_only = os.urandom(70_000)  # bytes: no address to memmove from, copied by slice
    tiny = bytearray(b"z" * 3)
    received, chunk, count = _ring_pair([writable, read_only, tiny], slot=64 << 10, slots=3, monkeypatch=monkeypatch)
    assert (chunk, count) == (64 << 10, 3)  # ~39 chunks went round a 3-slot ring
    assert np.array_equal(np.frombuffer(received[0], dtype=np.int64), writable)
    assert bytes(received[1]) == read_only
    assert bytes(received[2]) == bytes(tiny)


def test_ring_of_a_small_transfer_is_no_bigger_than_its_value(monkeypatch):
    (received,), chunk, count = _ring_pair([bytearray(b"q" * 5000)], slot=4 << 20, slots=4, monkeypatch=monkeypatch)
    assert (chunk, count) == (5000, 1)
    assert bytes(received) == b"q" * 5000


def test_ring_receiver_fails_cleanly_when_the_sender_breaks_the_protocol():
    mode = bulk.TRANSFER_MODES["shm"]
    for stream, message in ((b"", "closed"), (b"X", "unexpected")):
        path, mapping = bulk.create_segment(4096)
        mapping.close()
        x, y = socket.socketpair()
        try:
            x.sendall(stream)
            x.shutdown(socket.SHUT_WR)
            with pytest.raises(bulk.BulkError, match=message):
                mode.receive(y, (path, 4096), [10_000], 4096)
        finally:
            x.close()
            y.close()
        assert not os.path.exists(path)


def test_map_segment_refuses_a_segment_open_to_others():
    path, mapping = bulk.create_segment(4096)
    mapping.close()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        os.chmod(path, 0o644)
        with pytest.raises(bulk.BulkError, match="owner-only"):
            bulk.map_segment(path, 4096)
        assert not os.path.exists(path)  # refused and still unlinked
    finally:
        bulk.outbox().drop_segment(path)


def test_progress_bar_appears_only_for_slow_transfers():
    from client.progress import Progress

    drawn = []

    class Bar:
        def __init__(self, total, label):
            drawn.append(("new", total))

        def draw(self, done, rate):
            drawn.append(("draw", done))

        def close(self, done, ok):
            drawn.append(("close", ok))

    quick = Progress(100, show_after=60, bar_factory=Bar)
    quick(50)
    quick.close(True)
    assert drawn == [] and not quick.shown
    slow = Progress(100, show_after=0, bar_factory=Bar)
    slow(50)
    slow.close(False)
    assert drawn == [("new", 100), ("draw", 50), ("close", False)]
