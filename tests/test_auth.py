"""Authentication: who a target serves, and how a refusal looks on both sides.

Every refusal must be quick (under 2 s), clear (AuthenticationError on the client, a log
line in the target) and final (no retry storm: the target counts failed handshakes on its
ROUTER's monitor, and we read that counter from a properly authenticated session).
"""

from __future__ import annotations

import json
import os
import time

import pytest
import zmq

import client
from bridge import keys, protocol
from client.errors import AuthenticationError
from client.session import Session
from client.transport import Channel, handshake

from conftest import wait_until

PAUSED = """
import bridge
x = 41
bridge.set_trace()
"""

REFUSAL_BUDGET_S = 2.0
#: How long we watch for retries after a refusal (a storm reconnects every ~100 ms).
STORM_WINDOW_S = 1.0


def handshake_failures(session: Session) -> int:
    """The target's own count of failed handshakes (read from its paused frame)."""
    return session.eval("__import__('bridge.server').server.current_server().handshake_failures")


def wait_for_line(target, text: str, timeout: float = 5.0) -> str:
    return target.wait_output(text, timeout=timeout)


def settle_then_count(good: Session, expected: int) -> None:
    """After a refusal, watch the target for a while: the count must stay at ``expected``."""
    deadline = time.monotonic() + STORM_WINDOW_S
    while time.monotonic() < deadline:
        assert handshake_failures(good) <= expected, "the refused peer is retrying"
        time.sleep(0.1)  # sampling a counter over a fixed window: absence of retries
    assert handshake_failures(good) == expected


def test_own_key_is_served(target, attach_to):
    t = target(PAUSED)
    s = attach_to(t)
    assert s.eval("x") == 41
    assert handshake_failures(s) == 0


def test_unknown_client_key_is_refused_quickly_and_logged(target, attach_to):
    t = target(PAUSED)
    good = attach_to(t)
    info = keys.read_connection_file(t.connection_file())
    stranger = keys.KeyPair(*(k.decode("ascii") for k in zmq.curve_keypair()))

    ctx = zmq.Context()
    try:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="refused our client key"):
            Session(info, keypair=stranger, timeout=10)
        elapsed = time.monotonic() - started
    finally:
        ctx.term()
    assert elapsed < REFUSAL_BUDGET_S, f"refusal took {elapsed:.2f}s"
    out = wait_for_line(t, "unauthorized key " + keys.fingerprint(stranger.public))
    assert stranger.secret not in out
    settle_then_count(good, 1)
    assert good.eval("x") == 41  # the target keeps serving its own user


def test_tampered_connection_file_wrong_server_key(target, attach_to):
    t = target(PAUSED)
    good = attach_to(t)
    path = t.connection_file()
    info = json.loads(path.read_text())
    info["server_key"] = zmq.curve_keypair()[0].decode("ascii")  # someone else's server key
    keys.write_private_file(path, json.dumps(info).encode())

    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="did not prove it holds the server key"):
        client.attach(path, timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < REFUSAL_BUDGET_S, f"refusal took {elapsed:.2f}s"
    wait_for_line(t, "wrong server key")
    # Our client closes its socket at the first failure; libzmq alone would retry every 100 ms.
    settle_then_count(good, 1)


def test_plaintext_client_is_refused_and_logged(target, attach_to):
    t = target(PAUSED)
    good = attach_to(t)
    info = keys.read_connection_file(t.connection_file())
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # no CURVE: the NULL mechanism
    sock.linger = 0
    # Which failure the plaintext side sees is a race (mechanism mismatch, or the target's
    # hang-up first); either way it must never succeed nor get an answer.
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                      | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        started = time.monotonic()
        sock.connect(info["endpoint"])
        try:
            # Non-blocking: once the target has hung up, a DEALER with no peer would block.
            sock.send_multipart(protocol.request_message(1, "hello"), zmq.NOBLOCK)
        except zmq.Again:
            pass  # refused before the message could even be queued
        assert monitor.poll(int(REFUSAL_BUDGET_S * 1000)), "no handshake outcome"
        from zmq.utils.monitor import parse_monitor_message

        event = parse_monitor_message(monitor.recv_multipart())
        assert event["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert time.monotonic() - started < REFUSAL_BUDGET_S
        assert not sock.poll(200), "a plaintext client got an answer"
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()
    wait_for_line(t, "bridge: refused a connection")
    assert handshake_failures(good) >= 1


def test_client_refuses_a_plaintext_impostor(tmp_path):
    """Our client against a peer that answers without CURVE: AuthenticationError, not a hang."""
    ctx = zmq.Context()
    impostor = ctx.socket(zmq.ROUTER)
    impostor.linger = 0
    try:
        port = impostor.bind_to_random_port("tcp://127.0.0.1")
        info = {"endpoint": f"tcp://127.0.0.1:{port}", "server_key": zmq.curve_keypair()[0].decode(),
                "pid": os.getpid()}
        channel = Channel(ctx, info, keys.load_client_keypair())
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="plaintext peer"):
            handshake(channel, timeout=10)
        assert time.monotonic() - started < REFUSAL_BUDGET_S
        assert channel.closed  # no reconnect loop left behind
        assert not impostor.poll(200), "the impostor received a request"
    finally:
        impostor.close(0)
        ctx.term()


def test_default_bind_is_loopback(target, attach_to):
    t = target(PAUSED)
    s = attach_to(t)
    assert s.info["endpoint"].startswith("tcp://127.0.0.1:")


def test_non_loopback_bind_needs_explicit_host_and_still_requires_keys(target, attach_to):
    t = target(PAUSED, env={"BRIDGE_HOST": "0.0.0.0"})
    t.wait_attachable()
    info = keys.read_connection_file(t.connection_file())
    assert info["endpoint"].startswith("tcp://0.0.0.0:")
    # Bound on every interface, but we connect only over loopback.
    info["endpoint"] = "tcp://127.0.0.1:" + info["endpoint"].rsplit(":", 1)[1]

    stranger = keys.KeyPair(*(k.decode("ascii") for k in zmq.curve_keypair()))
    with pytest.raises(AuthenticationError):
        Session(info, keypair=stranger, timeout=10)

    s = Session(info, timeout=10)
    try:
        s.wait(10)
        assert s.eval("x") == 41
        assert handshake_failures(s) == 1
    finally:
        s.close()
    wait_for_line(t, "unauthorized key")


# --- revoking a key ----------------------------------------------------------------------------------

REVOKED = "no longer serves client key"

TWO_PAUSES = """
import bridge
for round in range(2):
    x = round
    bridge.set_trace()
print("done", flush=True)
"""


def refused_within(call, budget: float = 5.0) -> AuthenticationError:
    """Call ``call`` until it raises AuthenticationError (revocations apply within ~1 s)."""
    deadline = time.monotonic() + budget
    while True:
        try:
            call()
        except AuthenticationError as exc:
            return exc
        assert time.monotonic() < deadline, "a revoked key is still served"
        time.sleep(0.05)  # polling the target: the revocation has no event of its own


def test_revoking_a_key_cuts_its_open_sessions_on_every_path(target, attach_to, bridge_dirs):
    kept = keys.KeyPair(*(k.decode("ascii") for k in zmq.curve_keypair()))
    assert keys.authorize_key(kept.public, comment="a colleague who stays")
    revoked = keys.load_client_keypair()
    t = target(TWO_PAUSES)
    s = attach_to(t)  # the key to be revoked
    pause = s.wait(20)
    deadline = time.monotonic() + 10
    while s._lanes.channel(pause) is None:  # its lane connects beside the first requests
        assert time.monotonic() < deadline, "the lane never connected"
        assert s.eval("x") == 0
    other = Session(s.info, keypair=kept, timeout=10)
    try:
        other.wait(20)

        path = bridge_dirs["config"] / keys.AUTHORIZED_KEYS_FILE
        keys.write_private_file(path, f"{kept.public}  # only the colleague now\n".encode())

        # The open session is refused on its lane, then on the server socket, its events stop.
        assert REVOKED in str(refused_within(lambda: s.eval("x")))
        with pytest.raises(AuthenticationError, match=REVOKED):
            s.request("status")
        with pytest.raises(AuthenticationError, match="refused our client key"):
            client.attach(t.pid, timeout=10)
        assert other.eval("x") == 0  # the colleague is served throughout

        other.cont()
        second = other.wait(20)
        assert second.pause_id != pause.pause_id
        # A new pause: its lane refuses the revoked key at the handshake, and the server
        # socket, which the session falls back to, refuses its requests.
        with pytest.raises(AuthenticationError, match=REVOKED):
            s.eval("x")
        assert other.eval("x") == 1
        # Its event subscription was told once, at the first event after the revocation,
        # and dropped: it heard of neither the resume nor the new pause.
        wait_until(lambda: isinstance(s.pause_state.failure, AuthenticationError), what="the refusal event")
        assert REVOKED in str(s.pause_state.failure)
        assert second.pause_id not in [p.pause_id for p in s.pauses()], "a revoked session still gets events"
        other.cont()
    finally:
        other.close()
    t.wait_output("done")
    assert t.wait_exit() == 0
    assert f"refused a request from client key {keys.fingerprint(revoked.public)}" in t.output()
