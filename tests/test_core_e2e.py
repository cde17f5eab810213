"""End-to-end: real target processes, real CURVE sockets, real keys."""

from __future__ import annotations

import json
import stat
import sys
import time

import pytest

import client
from bridge import protocol
from rawclient import stranger_keypair


def test_attach_inspect_fix_continue(target, attach_to):
    t = target.script("etl_like")
    s = attach_to(t)
    pause = s.wait(5)
    assert pause.function == "transform" and pause.reason == "set_trace"
    assert pause.line == t.line("pause")
    assert s.paused

    stack = s.stack()
    assert [f.function for f in stack][:3] == ["transform", "main", "<module>"]
    assert stack[0].selected

    summary = s.locals()
    assert summary["rows"].type == "list" and summary["rows"].repr == "[2, 4, 6]"
    assert summary["threshold"].repr == "3"

    rows = s.eval("rows")
    assert rows == [2, 4, 6] and isinstance(rows, list)
    assert s.get("threshold") == 3 and s["factor"] == 10

    s.set(threshold=1)
    out = s.exec("print('factor is', factor); factor = 100")
    assert out == "factor is 10\n"
    s.cont()
    text = t.wait_output("done")
    # threshold rewritten (all rows kept); factor is a cell var: the closure sees 100
    assert "kept [200, 400, 600] threshold 1" in text
    assert t.wait_exit(10) == 0


def test_select_up_down_work_on_caller_frames(target, attach_to):
    t = target.script("etl_like")
    s = attach_to(t)
    s.up()
    assert s.eval("label") == "outer"
    s.exec("label = 'changed'")
    assert s.eval("label") == "changed"
    assert s.stack()[1].selected
    s.down()
    assert s.eval("threshold") == 3
    with pytest.raises(IndexError):
        s.down()
    with pytest.raises(IndexError):
        s.select(50)
    s.cont()
    assert t.wait_exit(10) == 0


def test_eval_returns_real_objects_and_remote_errors(target, attach_to):
    t = target("""
        import bridge, collections
        def f():
            data = {"a": [1, 2], "b": (3, 4)}
            counts = collections.Counter("hello")
            blob = bytes(range(256)) * 1024
            bridge.set_trace()
        f()
    """)
    s = attach_to(t)
    assert s.eval("data") == {"a": [1, 2], "b": (3, 4)}
    counts = s.eval("counts")
    assert type(counts).__name__ == "Counter" and counts["l"] == 2
    assert s.eval("blob") == bytes(range(256)) * 1024
    with pytest.raises(client.RemoteError) as err:
        s.eval("data['missing']")
    assert err.value.remote_type == "KeyError"
    assert "data['missing']" in err.value.remote_traceback or "KeyError" in err.value.remote_traceback
    with pytest.raises(client.RemoteError) as err:
        s.eval("def broken(:")
    assert err.value.remote_type == "SyntaxError"
    # the target survived both errors
    assert s.eval("1 + 1") == 2
    s.cont()
    assert t.wait_exit(10) == 0


def test_eval_returns_scalars_exactly_whichever_way_they_travel(target, attach_to):
    t = target("""
        import bridge, http
        class Tag(str):
            pass
        bridge.set_trace()
    """)
    s = attach_to(t)
    cases = {  # expression -> (value, whether it fits the JSON header)
        "41 + 1": (42, True),
        "-2**63": (-2**63, True),
        "2**63": (2**63, False),  # past 64 bits: pickled
        "10**5000": (10**5000, False),  # more digits than Python turns into text by default
        "0.1 + 0.2": (0.1 + 0.2, True),
        "-0.0": (-0.0, True),
        "float('inf')": (float("inf"), True),
        "True": (True, True),
        "None": (None, True),
        "'h\\u00e9llo \\ud800'": ("h\u00e9llo \ud800", True),  # a lone surrogate survives JSON
        "'x' * 257": ("x" * 257, False),
        "http.HTTPStatus.OK": (200, False),  # subclasses keep their type: pickled
        "Tag('t')": ("t", False),
    }
    for expr, (expected, in_header) in cases.items():
        result, frames = s.frame_request("eval", {"expr": expr})
        assert ("value" in result) is in_header and (frames == []) is in_header, expr
        value = s.eval(expr)
        assert value == expected, expr
        if in_header:  # what JSON carried comes back as exactly the same builtin
            assert type(value) is type(expected) and repr(value) == repr(expected), expr
    assert type(s.eval("http.HTTPStatus.OK")).__name__ == "HTTPStatus"
    nan = s.eval("float('nan')")
    assert nan != nan
    assert s.frame_request("eval", {"expr": "'abc'", "size_limit": 10})[0]["live"]  # a limit still applies
    s.cont()
    assert t.wait_exit(10) == 0


def test_set_is_all_or_nothing(target, attach_to):
    t = target("""
        import bridge
        def f():
            a = 1
            b = 2
            bridge.set_trace()
            print("a", a, "b", b, flush=True)
        f()
    """)
    s = attach_to(t)
    with pytest.raises(client.RemoteError) as err:
        s.frame_request("set", {"delete": ["no_such_name"]}, value={"a": 10})
    assert err.value.remote_type == "FrameWriteError"
    assert s.eval("(a, b)") == (1, 2)
    s.set(a=10, b=20)
    s.cont()
    assert "a 10 b 20" in t.wait_output("b 20")


def test_breakpoint_builtin_and_many_pauses_in_a_loop(target, attach_to):
    t = target("""
        total = 0
        for i in range(3):
            breakpoint()
            total += i
        print("total", total, flush=True)
    """, env={"PYTHONBREAKPOINT": "bridge.set_trace"})
    s = attach_to(t)
    seen = []
    for expected in range(3):
        pause = s.wait(10)
        seen.append(s.eval("i"))
        assert pause.function == "<module>"
        if expected == 1:
            s.set(total=100)  # module frame: a globals write
        s.cont()
    assert seen == [0, 1, 2]
    assert "total 103" in t.wait_output("total")  # 100 (set at i=1) + 1 + 2


def test_set_trace_timeout_resumes_without_client(target):
    t = target("""
        import bridge
        bridge.set_trace(timeout=0.5)
        print("went on", flush=True)
    """)
    out = t.wait_output("went on", timeout=20)
    assert "no client continued" in out
    assert t.wait_exit(10) == 0


def test_connection_file_is_private_and_removed_at_exit(target, attach_to, bridge_dirs):
    t = target("""
        import bridge
        bridge.set_trace()
    """)
    path = t.wait_attachable()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(bridge_dirs["runtime"].stat().st_mode) == 0o700
    info = json.loads(path.read_text())
    assert {"endpoint", "server_key", "pid", "argv", "python", "paused"} <= set(info)
    assert info["endpoint"].startswith("tcp://127.0.0.1:")
    assert "secret" not in path.read_text()
    key_file = bridge_dirs["config"] / "client.key"
    s = attach_to(t)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(bridge_dirs["config"].stat().st_mode) == 0o700
    assert [p.pid for p in client.sessions()] == [t.pid]
    assert client.sessions()[0].is_paused
    s.cont()
    assert t.wait_exit(10) == 0
    assert not path.exists()


def test_sessions_drops_dead_processes(target, bridge_dirs):
    t = target.script("listening")
    t.wait_output("listening")
    path = t.connection_file()
    assert [s.pid for s in client.sessions()] == [t.pid]
    t.kill()
    assert path.exists()  # SIGKILL: no chance to clean up
    assert client.sessions() == []
    assert not path.exists()


def test_attach_with_no_target_says_so():
    with pytest.raises(client.NoSession, match="no attachable process"):
        client.attach()
    with pytest.raises(client.NoSession, match="pid 999999"):
        client.attach(999999)


def test_unauthorized_key_is_refused_fast_and_target_keeps_serving(target, attach_to):
    t = target.script("paused_local")
    good = attach_to(t)
    start = time.monotonic()
    with pytest.raises(client.AuthenticationError, match="refused our client key"):
        client.Session(t.connection_info(), keypair=stranger_keypair())
    assert time.monotonic() - start < 2.0
    assert "refused a client with an unauthorized key" in t.wait_output("unauthorized key")
    good.set(x=42)
    good.cont()
    assert "x 42" in t.wait_output("x 42")


def test_dead_target_gives_session_lost(target, attach_to):
    t = target("""
        import bridge, os, threading
        def f():
            bridge.set_trace()
        f()
    """)
    s = attach_to(t)
    t.kill()
    start = time.monotonic()
    with pytest.raises(client.SessionLost):
        s.eval("1")
    assert time.monotonic() - start < 5.0


def test_malformed_and_mismatched_messages_get_error_replies(target, attach_to, raw_client):
    t = target.script("paused_local")
    s = attach_to(t)
    raw = raw_client(t)  # the user's own key: authorized, so every message gets a reply
    V = protocol.PROTOCOL_VERSION

    err = raw.ask({"v": 99, "id": 1, "op": "hello"}).error
    assert err["type"] == "ProtocolError" and "version 99" in err["message"]
    err = raw.ask([b"\xff\xfe not json"]).error
    assert err["type"] == "ProtocolError" and "JSON" in err["message"]
    assert raw.ask({"v": V, "id": 2, "op": "no_such_op"}).error_type == "UnknownOp"
    err = raw.ask({"v": V, "id": 3, "op": "eval", "args": {"expr": 5}}).error
    assert err["type"] == "BadRequest" and "expr" in err["message"]
    raw.send_header({"v": V, "id": 4, "op": "set", "nbuf": 1}, b"garbage")
    assert raw.receive().error_type in ("UnpicklingError", "BadRequest", "ValueError", "EOFError")
    assert s.eval("x") == 41  # the target is unharmed
    s.cont()
    assert "x 41" in t.wait_output("x 41")


def test_threads_lists_paused_and_running(target, attach_to):
    t = target("""
        import bridge, threading
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait, args=(60,), name="worker")
        worker.start()
        def f():
            bridge.set_trace()
        f()
        stop.set()
    """)
    s = attach_to(t)
    threads = {th["name"]: th for th in s.threads()}
    assert threads["MainThread"]["state"] == "paused"
    assert threads["worker"]["state"] == "running"
    assert not any(name.startswith("bridge") for name in threads)
    s.cont()
    assert t.wait_exit(10) == 0


def test_post_mortem_frame_can_be_inspected(target, attach_to):
    t = target("""
        import bridge
        def fail(n):
            local_state = {"n": n}
            raise ValueError("bad n")
        try:
            fail(7)
        except ValueError:
            bridge.post_mortem()
        print("after", flush=True)
    """)
    s = attach_to(t)
    pause = s.wait(5)
    assert pause.reason == "post_mortem" and pause.function == "fail"
    assert "bad n" in pause.extra["exception"]
    assert s.eval("local_state") == {"n": 7}
    s.cont()
    assert t.wait_exit(10) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_exec_output_does_not_capture_other_threads(target, attach_to):
    t = target("""
        import bridge, threading, time, sys
        stop = threading.Event()
        def chatter():
            while not stop.is_set():
                print("tick", flush=True)
                stop.wait(0.01)
        th = threading.Thread(target=chatter); th.start()
        def f():
            bridge.set_trace()
        f()
        stop.set(); th.join()
    """)
    s = attach_to(t)
    outputs = [s.exec("print('mine')") for _ in range(20)]
    assert all(o == "mine\n" for o in outputs)
    s.cont()
    assert t.wait_exit(10) == 0
    assert "tick" in t.output() and t.output().count("mine") == 0


def test_a_session_subscribes_once_and_keeps_its_pause_objects(target, attach_to):
    # The subscription's handshake event may be read after its reply; counting it late
    # must not look like a reconnect (a re-subscribe would replace every PauseInfo).
    t = target.script("paused_module")
    s = attach_to(t)
    pause = s.wait(20)
    seen = "__import__('bridge.server').server.current_server().clients_seen"
    deadline = time.monotonic() + 1.0  # five of the listener's 0.2 s receive slices
    while time.monotonic() < deadline:
        assert s.wait(1) is pause
        assert s.eval("x") == 41
    assert s.eval(seen) == 2  # one hello, one subscribe
