"""Errors: every exception `client` exports is a BridgeError, and each error kind the
target sends becomes the exception docs/errors.md says, driven against real targets."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

import client
from bridge import keys, wire
from client import errors
from client.playground import run_playground
from client.transport import Channel

ROOT = Path(__file__).resolve().parent.parent

PAUSED = """
import sys, threading, time, bridge
sys.path.insert(0, {extra!r})
import onlythere                      # a module the notebook cannot import
sealed = onlythere.Sealed()           # cannot be pickled (and not __main__'s: no automatic live ref)
x = 1
stop = threading.Event()
worker = threading.Thread(target=stop.wait, name="worker", daemon=True)
worker.start()
bridge.set_trace()
"""

RUNNING = """
import threading, bridge
bridge.listen()
print("listening", flush=True)
threading.Event().wait()
"""


def _documented_kinds() -> "dict[str, str]":
    """docs/errors.md's first table: kind -> the exception raised in the notebook."""
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text.split("## What the target's error kinds become", 1)[1].split("Kinds whose meaning", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| `(\w+)` \|$", section, re.M)
    assert len(rows) >= 10, "the kind table of docs/errors.md did not parse"
    return dict(rows)


def test_every_exception_client_exports_is_a_bridge_error():
    exported = [getattr(client, name) for name in client.__all__]
    classes = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert len(classes) >= 25
    for cls in classes:
        assert issubclass(cls, client.BridgeError), cls
    # every exception class errors.py defines is exported
    defined = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__}
    assert defined <= set(classes), defined - set(classes)


def test_old_builtin_bases_still_catch():
    assert issubclass(client.MountStateError, RuntimeError)
    assert issubclass(client.WriteBackTooLarge, ValueError)
    assert issubclass(client.WriteBackUnpicklable, TypeError)
    assert issubclass(client.Unmountable, client.RemoteError)
    assert issubclass(client.BreakpointError, ValueError) and issubclass(client.BreakpointError, client.RemoteError)
    assert issubclass(client.NoSuchFrame, IndexError)
    assert issubclass(client.PauseTimeout, TimeoutError)
    from bridge import remote_attach

    assert issubclass(client.RemoteAttachError, remote_attach.RemoteAttachError)
    assert issubclass(client.PausePending, UserWarning)


def test_each_documented_kind_maps_to_its_own_exception():
    documented = _documented_kinds()
    seen = set()
    for kind, name in documented.items():
        exc = errors.error_from_reply({"type": kind, "message": "m", "traceback": "tb", "names": ["a"]})
        assert type(exc) is getattr(client, name), kind
        seen.add(type(exc))
        if isinstance(exc, client.RemoteError):
            assert exc.remote_type == kind and exc.remote_traceback == "tb"
    assert len(seen) == len(documented)  # each kind its own class
    user = errors.error_from_reply({"type": "KeyError", "message": "'k'", "traceback": "Traceback..."})
    assert type(user) is client.RemoteError and user.remote_type == "KeyError"


def test_every_kind_the_target_sends_is_documented():
    """Scan the target side for the kinds it sends on purpose: none may go unmapped."""
    sent = set()
    for path in (ROOT / "src" / "bridge").rglob("*.py"):
        source = path.read_text()
        sent.update(re.findall(r'OpError\(\s*"(\w+)"', source))
        sent.update(re.findall(r'encode_error\([^()]*?,\s*"(\w+)"', source))
        sent.update(re.findall(r'"type":\s*"(\w+)"', source))
    assert {"NotPaused", "BadRequest", "UnknownOp", "ProtocolError"} <= sent, "the scan found too little"
    docs = (ROOT / "docs" / "errors.md").read_text()
    undocumented = {kind for kind in sent if f"`{kind}`" not in docs}
    assert not undocumented, f"error kinds the target sends that docs/errors.md does not map: {undocumented}"


@pytest.fixture
def paused(target, attach_to, tmp_path):
    extra = tmp_path / "only_in_target"
    extra.mkdir()
    (extra / "onlythere.py").write_text(
        "class Thing:\n"
        "    pass\n"
        "class Sealed:\n"
        "    def __reduce__(self):\n"
        "        raise TypeError('Sealed objects cannot be pickled')\n")
    t = target(PAUSED.format(extra=str(extra)))
    return attach_to(t)


def test_refusals_from_a_real_target(paused):
    s = paused
    with pytest.raises(client.BadRequest, match="does not exist"):
        s.frame_request("eval", {"expr": "x", "frame": 99})
    with pytest.raises(client.UnknownOp):
        s.request("no_such_op")
    with pytest.raises(client.FrameWriteError):
        s.frame_request("set", {"delete": ["no_such_name"]}, value={"x": 10})
    with pytest.raises(client.StaleReference):
        s.frame_request("ref", {"action": "getattr", "ref": 987654321, "name": "real"})
    with pytest.raises(client.Unpicklable, match="sealed cannot be copied"):
        s.frame_request("mount_snapshot", {"names": ["sealed"], "copy": ["sealed"]})
    with pytest.raises(client.WriteBackConflict) as conflict:
        s.frame_request("mount_write", {"base": {"x": "not-its-version"}, "delete": []})
    assert conflict.value.names == ["x"]
    # the target's BulkError: a request whose bulk descriptor it cannot use
    with pytest.raises(client.TransferError, match="malformed bulk descriptor") as bulk_err:
        ch = s._channel  # bulk_in is a header field the session fills in itself: send one raw
        pause = s.wait()
        ch.receive(10, want_id=ch.send("set", {"thread": pause.thread, "frame": 0}, wire.dump_value({"x": 2}),
                                       pause_id=pause.pause_id, bulk_in={"mode": "nope"}))
    assert bulk_err.value.remote_type == "BulkError"
    assert s.eval("x") == 1  # nothing of it harmed the frame


def test_op_specific_kinds_and_user_errors(paused):
    s = paused
    with pytest.raises(client.BreakpointError, match="no such file"):
        s.break_at("no_such_file.py", 1)
    server_thread = s.eval("__import__('bridge.server').server.current_server().thread.ident")
    with pytest.raises(client.BadRequest, match="cannot be paused") as refused:
        s.pause(thread=server_thread)
    assert refused.value.remote_type == "ValueError"
    with pytest.raises(client.RemoteError) as name_error:
        s.get("no_such_name")
    assert type(name_error.value) is client.RemoteError and name_error.value.remote_type == "NameError"
    with pytest.raises(client.RemoteError) as user:
        s.eval("1 / 0")
    assert type(user.value) is client.RemoteError and user.value.remote_type == "ZeroDivisionError"
    assert "ZeroDivisionError" in user.value.remote_traceback
    with pytest.raises(client.RemoteError) as syntax:
        run_playground(s, "(", timeout=5)
    assert type(syntax.value) is client.RemoteError and syntax.value.remote_type == "SyntaxError"


@pytest.mark.skipif(sys.platform == "win32", reason="the playground needs fork()")
def test_playground_timeout(paused):
    started = time.monotonic()
    with pytest.raises(client.PlaygroundTimeout, match="killed"):
        run_playground(paused, "import time\ntime.sleep(60)", timeout=0.5)
    assert time.monotonic() - started < 20
    assert paused.eval("x") == 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="from 3.12 any thread can be paused")
def test_pausing_a_worker_thread_before_312_is_unsupported(paused):
    worker = next(t for t in paused.threads() if t["name"] == "worker")
    with pytest.raises(client.Unsupported, match="only the main thread"):
        paused.pause(thread=worker["thread"])


def test_a_malformed_message_is_a_protocol_error(paused):
    ctx = zmq.Context()
    ch = Channel(ctx, paused.info, keys.load_client_keypair())
    try:
        ch.socket.send(b"{not json")
        with pytest.raises(client.ProtocolError) as bad:
            ch.receive(10)
        assert bad.value.remote_type == "ProtocolError"
    finally:
        ch.close()
        ctx.term()


def test_errors_raised_in_the_notebook(paused):
    s = paused
    with pytest.raises(client.NoSuchFrame):
        s.select(99)
    with pytest.raises(client.ValueLoadError, match="onlythere"):
        s.eval("onlythere.Thing()")
    with pytest.raises(client.ValueDumpError):
        s.set(lock=threading.Lock())
    m = client.jump_context(s, namespace={})
    with pytest.raises(client.MountStateError):
        m.commit()
    assert s.eval("x") == 1


def test_a_failed_upload_is_a_transfer_error_caused_by_the_bulk_error(target, attach_to, monkeypatch):
    monkeypatch.setenv("BRIDGE_BULK", "aes")
    t = target("import bridge\nx = 1\nbridge.set_trace()\n")
    s = attach_to(t)
    assert s.bulk_mode == "aes"
    s._channel.bulk.data_address = None  # as if the target had offered no data port
    with pytest.raises(client.TransferError) as failed:
        s.set(big=np.zeros(3 * 2**20 // 8))
    from bridge import bulk

    assert isinstance(failed.value.__cause__, bulk.BulkError)
    assert s.eval("x") == 1


def test_wait_and_frame_ops_on_a_running_target(target, attach_to):
    t = target(RUNNING)
    s = attach_to(t, wait_pause=False)
    t.wait_output("listening")
    with pytest.raises(client.PauseTimeout):
        s.wait(0.2)
    with pytest.raises(client.NotPaused):
        s.eval("1")


def test_inject_into_a_process_that_is_gone_is_a_remote_attach_error():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    with pytest.raises(client.RemoteAttachError) as failed:
        client.inject(proc.pid)
    assert isinstance(failed.value, RuntimeError)
