"""A reply lost while the connection was down is delivered, or the client says at once what
became of the request (bridge/outcomes.py, docs/protocol.md "Lost replies")."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Dict, List

import pytest

import client
from bridge import keys
from client import ReplyLost
from client.transport import Channel

PAUSED = """
    import bridge
    n = 0
    bridge.set_trace()
    print("n", n, flush=True)
"""

#: Past the heartbeat timeout (bridge/protocol.py: 5 s): both sides drop the connection.
STOPPED_S = 8.0


def stop_for(pids: List[int], after: float, seconds: float) -> threading.Thread:
    """SIGSTOP ``pids`` ``after`` seconds from now, SIGCONT them ``seconds`` later."""
    def run() -> None:
        time.sleep(after)  # the requests below are on their way by then: timing is the test
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_replies_lost_to_a_sigstop_are_delivered_after_sigcont(target):
    keys.load_client_keypair()
    one, two = target(PAUSED, name="one.py"), target(PAUSED, name="two.py")
    one.wait_attachable()
    two.wait_attachable()
    s = client.attach(one.pid)
    late = client.attach(one.pid)
    g = client.attach_all(pids=[two.pid])
    try:
        s.wait(20)
        late.wait(20)
        g.wait(timeout=20)
        assert s.eval("n") == 0 and late.eval("n") == 0  # each has its pause's lane by now
        code = "import time; time.sleep(1); n += 100; print('ran', n)"
        got: Dict[str, Any] = {}

        def in_thread(name: str, fn: Any) -> threading.Thread:
            def run() -> None:
                started = time.monotonic()
                try:
                    got[name] = fn()
                except Exception as exc:  # recorded: the assertions below say what was wrong
                    got[name] = exc
                got[name + " took"] = time.monotonic() - started

            thread = threading.Thread(target=run)
            thread.start()
            return thread

        stopper = stop_for([one.pid, two.pid], after=0.3, seconds=STOPPED_S)
        threads = [in_thread("session", lambda: s.exec(code, timeout=40)),       # over its lane
                   in_thread("group", lambda: g.exec(code, timeout=40))]         # over the I/O thread
        time.sleep(1.5)  # sent while the target is stopped: it arrives, or never did
        threads.append(in_thread("sent while stopped", lambda: late.eval("n", timeout=40)))
        for thread in threads + [stopper]:
            thread.join(60)

        assert got["session"] == "ran 100\n", got
        assert got["session took"] < STOPPED_S + 6, got  # not the 40 s timeout
        result = got["group"]
        assert result.ok and list(result.values().values()) == ["ran 100\n"], got
        assert got["group took"] < STOPPED_S + 6, got
        # Queued while the target was stopped: its answer, or at once what became of it.
        assert got["sent while stopped took"] < STOPPED_S + 6, got
        answer = got["sent while stopped"]
        assert answer in (0, 100) or (isinstance(answer, ReplyLost) and answer.ran is not True), got

        after = g.eval("n")
        assert s.eval("n") == 100 and after.values() == {g.names()[0]: 100}, after  # ran once each
        s.cont()
        g.cont()
        assert "n 100" in one.wait_output("n ") and "n 100" in two.wait_output("n ")
    finally:
        for c in (s, late, g):
            c.close()


def test_the_target_keeps_each_connections_replies_for_it_alone(target, attach_to):
    t = target(PAUSED)
    s = attach_to(t)
    pause = s.wait(10)
    info = keys.read_connection_file(t.connection_file())
    mine = Channel(s._context, info, keys.load_client_keypair())
    other = Channel(s._context, info, keys.load_client_keypair())
    try:
        rid = mine.send("eval", {"expr": "n + 1", "thread": pause.thread, "frame": 0})
        header, _ = mine.receive(10, want_id=rid)
        assert header["result"]["value"] == 1
        state, reply = mine._outcome(rid, time.monotonic() + 10)
        assert state == "done" and reply is not None and reply[0] == header  # the reply, kept
        assert mine._outcome(rid + 10**9, time.monotonic() + 10) == ("unseen", None)  # never sent
        state, reply = other._outcome(rid, time.monotonic() + 10)  # another connection's request
        assert state != "done" and reply is None
        lost = client.transport.lost_reply("unseen", rid, t.pid)
        assert isinstance(lost, ReplyLost) and lost.ran is False and "nothing ran" in str(lost)
    finally:
        mine.close()
        other.close()


def test_a_reply_whose_bulk_descriptor_spilled_is_remembered_as_ran_not_kept():
    """A reply whose buffers went by the bulk path cannot be sent again; when its header
    was too big, the descriptor travels in the spill frame (bridge/protocol.py), and the
    reply cache must see it there too."""
    from bridge import outcomes, protocol

    cache = outcomes.ReplyCache()
    descriptor = {"mode": "shm", "bufs": [{"i": 1, "n": 1 << 20}], "token": "00" * 16}
    big_result = "x" * (protocol.MAX_HEADER_BYTES + 1)  # makes the header spill
    for request_id, frames in [
        (1, protocol.encode_reply(1, big_result, [b""], bulk=descriptor)),  # spilled, with bulk
        (2, protocol.encode_reply(2, big_result, [b"v"])),                   # spilled, no bulk
        (3, protocol.encode_reply(3, "small", [b""], bulk=descriptor)),      # bulk in the header
    ]:
        cache.started(b"client", request_id)
        cache.finished(b"client", request_id, frames)
    assert protocol.split_message(protocol.encode_reply(1, big_result, [b""], bulk=descriptor))[0]["bulk"] == descriptor
    assert cache.outcome(b"client", 1) == ("ran", None)
    state, kept = cache.outcome(b"client", 2)
    assert state == "done" and protocol.split_message(kept)[0]["result"] == big_result
    assert cache.outcome(b"client", 3) == ("ran", None)
