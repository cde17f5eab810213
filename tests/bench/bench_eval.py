"""Eval round trip in a paused frame, against its floors and against debugpy.

Run (one command; every case is measured in the same run, interleaved)::

    python tests/bench/bench_eval.py [--n 2000] [--rounds 5] [--no-debugpy]

Cases (each is a round trip from this process to another process on loopback):

* ``curve echo``: a bare CURVE DEALER -> ROUTER echo (server answers on its own thread).
* ``inproc hand-off``: the same, but the server thread hands each request to a second
  thread (queue.SimpleQueue) which replies through an inproc PUSH socket that the server
  thread forwards: the shape of a paused thread serving its frame, with no work done.
* ``framebridge eval``: ``Session.eval("x")`` against a thread paused in ``set_trace()``
  (over the pause's lane: straight to the paused thread, see docs/protocol.md).
* ``framebridge eval, no lane``: the same through the server socket (``BRIDGE_LANES=0``):
  the two thread hand-offs the ``inproc hand-off`` floor measures, plus our work.
* ``debugpy evaluate``: DAP ``evaluate`` (context "repl") against a thread stopped at
  ``debugpy.breakpoint()``, driven by a minimal DAP client over debugpy's socket.

Goals: eval <= 1.3x the inproc hand-off floor; >= 100x faster than debugpy.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any, Dict, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import TargetProcess, interleave, median_us, private_dirs, table  # noqa: E402

FLOOR_SERVER = r'''
import os, queue, sys, threading, zmq
ctx = zmq.Context()
pub, sec = zmq.curve_keypair()

def router():
    s = ctx.socket(zmq.ROUTER)
    s.curve_server = True; s.curve_publickey = pub; s.curve_secretkey = sec
    return s, s.bind_to_random_port("tcp://127.0.0.1")

echo, echo_port = router()
hand, hand_port = router()

def echo_loop():
    while True:
        echo.send_multipart(echo.recv_multipart(copy=False), copy=False)

inbox = queue.SimpleQueue()
pull = ctx.socket(zmq.PULL); pull.bind("inproc://replies")

def paused_thread():
    push = ctx.socket(zmq.PUSH); push.connect("inproc://replies")
    while True:
        identity, msg = inbox.get()
        push.send_multipart([identity, *msg], copy=False)

def server_thread():
    poller = zmq.Poller(); poller.register(hand, zmq.POLLIN); poller.register(pull, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if hand in ready:
            identity, *msg = hand.recv_multipart(copy=False)
            inbox.put((identity, msg))
        if pull in ready:
            hand.send_multipart(pull.recv_multipart(copy=False), copy=False)

for fn in (echo_loop, paused_thread, server_thread):
    threading.Thread(target=fn, daemon=True).start()
with open(os.environ["FLOOR_PORTS"] + ".tmp", "w") as f:
    f.write(f"{echo_port} {hand_port} {pub.decode()}")
os.rename(os.environ["FLOOR_PORTS"] + ".tmp", os.environ["FLOOR_PORTS"])
threading.Event().wait()
'''

EVAL_TARGET = """
import bridge
x = 1
bridge.set_trace()
"""

DEBUGPY_TARGET = """
import debugpy
x = 1
debugpy.breakpoint()
y = 2
"""


class DAPClient:
    """The smallest Debug Adapter Protocol client: Content-Length framed JSON over TCP."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # debugpy is still starting: nothing to wait on but the port
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.seq = 0
        self.events: list = []

    def send(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def _read(self) -> Dict[str, Any]:
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(self.buf) < length:
            self.buf += self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return json.loads(body)

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("debugpy closed the connection")
        return data

    def response(self, seq: int) -> Dict[str, Any]:
        while True:
            msg = self._read()
            if msg.get("type") == "response" and msg.get("request_seq") == seq:
                if not msg.get("success", False):
                    raise RuntimeError(f"DAP {msg.get('command')} failed: {msg.get('message')}")
                return msg
            if msg.get("type") == "event":
                self.events.append(msg)

    def request(self, command: str, **arguments: Any) -> Dict[str, Any]:
        return self.response(self.send(command, **arguments))

    def wait_event(self, name: str, timeout: float = 30.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("event") == name:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} event")
            msg = self._read()
            if msg.get("type") == "event":
                self.events.append(msg)


def debugpy_session() -> "tuple[TargetProcess, Any]":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = os.path.join(os.environ["BRIDGE_RUNTIME_DIR"] + "-debugpy-target.py")
    with open(script, "w") as f:
        f.write(DEBUGPY_TARGET)
    t = TargetProcess(DEBUGPY_TARGET, argv=[sys.executable, "-m", "debugpy", "--listen", f"127.0.0.1:{port}",
                                            "--wait-for-client", script])
    dap = DAPClient(port)
    dap.request("initialize", adapterID="bench", clientID="bench", linesStartAt1=True, columnsStartAt1=True)
    attach_seq = dap.send("attach", justMyCode=False)
    dap.wait_event("initialized")
    dap.request("configurationDone")
    dap.response(attach_seq)
    stopped = dap.wait_event("stopped", 60)
    thread_id = stopped["body"]["threadId"]
    frames = dap.request("stackTrace", threadId=thread_id)["body"]["stackFrames"]
    frame_id = frames[0]["id"]

    def evaluate() -> None:
        result = dap.request("evaluate", expression="x", frameId=frame_id, context="repl")
        assert result["body"]["result"] == "1", result

    return t, evaluate


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per case per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--debugpy-n", type=int, default=40, help="debugpy evaluates per round (slow)")
    parser.add_argument("--no-debugpy", action="store_true")
    args = parser.parse_args(argv)
    root = private_dirs()

    import zmq

    import client

    ports_file = os.path.join(root, "floor-ports")
    floor = TargetProcess(FLOOR_SERVER, env={"FLOOR_PORTS": ports_file})
    target = TargetProcess(EVAL_TARGET)
    extra = None
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(ports_file):
            if time.monotonic() > deadline:
                raise TimeoutError("floor server did not start")
            time.sleep(0.02)
        echo_port, hand_port, server_key = open(ports_file).read().split()
        ctx = zmq.Context()
        cpub, csec = zmq.curve_keypair()

        def dealer(port: str) -> zmq.Socket:
            d = ctx.socket(zmq.DEALER)
            d.curve_serverkey = server_key.encode()
            d.curve_publickey = cpub
            d.curve_secretkey = csec
            d.connect(f"tcp://127.0.0.1:{port}")
            return d

        echo, hand = dealer(echo_port), dealer(hand_port)
        payload = json.dumps({"v": 1, "id": 1, "op": "eval", "args": {"expr": "x", "frame": 0}}).encode()

        def rt(sock: zmq.Socket) -> None:
            sock.send(payload)
            sock.recv_multipart()

        target.wait_attachable()
        s = client.attach(target.pid)
        s.wait(30)
        assert s.eval("x") == 1
        for _ in range(200):  # the lane connects beside the first requests (a few ms)
            s.eval("x")
        # The same eval through the server socket (two thread hand-offs), for comparison.
        os.environ["BRIDGE_LANES"] = "0"
        via_server = client.attach(target.pid)
        del os.environ["BRIDGE_LANES"]
        via_server.wait(30)
        assert via_server.eval("x") == 1

        cases = {
            "curve echo": lambda: median_us(lambda: rt(echo), args.n),
            "inproc hand-off": lambda: median_us(lambda: rt(hand), args.n),
            "framebridge eval": lambda: median_us(lambda: s.eval("x"), args.n),
            "framebridge eval, no lane": lambda: median_us(lambda: via_server.eval("x"), args.n),
        }
        if not args.no_debugpy:
            extra, evaluate = debugpy_session()
            cases["debugpy evaluate"] = lambda: median_us(evaluate, args.debugpy_n)
        med = interleave(cases, args.rounds)
        floor_us = med["inproc hand-off"]
        rows = [[name, f"{us:,.0f}", f"{us / floor_us:.2f}x"] for name, us in med.items()]
        print(table(rows, ["case", "median round trip (us)", "vs inproc hand-off"]))
        print()
        print(f"eval / inproc hand-off = {med['framebridge eval'] / floor_us:.2f}x (goal <= 1.3x)")
        print(f"eval / curve echo      = {med['framebridge eval'] / med['curve echo']:.2f}x")
        if "debugpy evaluate" in med:
            print(f"debugpy / eval         = {med['debugpy evaluate'] / med['framebridge eval']:.0f}x faster (goal >= 100x)")
        s.close()
        via_server.close()
        echo.close(0)
        hand.close(0)
        ctx.term()
    finally:
        for proc in (floor, target, extra):
            if proc is not None:
                proc.close()


if __name__ == "__main__":
    main()
