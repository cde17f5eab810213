"""The hub: the notebook listens, targets dial in (client/hub.py, bridge/hub_dial.py).

Real target processes given ``Hub.target_env()`` dial a real hub over CURVE; the hub's
live group drives them. Then the failures: a hostile peer, a target with a wrong hub key
or a refused key, a hub that cannot be reached: the job always runs on unharmed.
"""

from __future__ import annotations

import logging
import socket
from typing import Iterator

import pytest
import zmq

from bridge import keys
from rawclient import RawClient, stranger_keypair
from waiting import wait_for

import client
from client import Hub

@pytest.fixture
def hub() -> Iterator[Hub]:
    h = Hub()
    try:
        yield h
    finally:
        h.close()


def hub_lines(output: str) -> list:
    """The lines a target printed about its hub."""
    return [line for line in output.splitlines() if line.startswith("bridge:") and "hub" in line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def states(g: client.Group) -> dict:
    return {m.name: m.state for m in g.states()}


def test_targets_dial_in_and_the_group_drives_them(hub, target):
    g = hub.group()
    workers = [target.script("hub_worker", str(i), env={**hub.target_env(), "RANK": str(i)}) for i in range(3)]
    paused = g.wait(3, timeout=30)
    assert len(paused) == 3
    host = socket.gethostname()
    by_pid = {t.pid: t for t in workers}
    assert sorted(g.names()) == sorted(f"{host}:{t.pid}" for t in workers)
    for s in g:
        assert "endpoint" not in s.info and s.info["hub"]  # never dialed: everything went through the hub
        assert s.info["rank"] == workers.index(by_pid[s.pid])

    r = g.eval("x")
    assert r.ok, r.errors
    assert r.values() == {f"{host}:{t.pid}": 41 + i for i, t in enumerate(workers)}
    report = g.where()
    assert len(report.classes) == 1 and len(report.classes[0].members) == 3
    assert report.classes[0].frames[0].function == "work"

    first = g[workers[0].pid]
    first.set(x=100)                                  # one member, through the hub
    assert first.eval("x") == 100
    result = g.cont()
    assert result.ok and set(result.values().values()) == {1}, result.errors
    assert [t.wait_exit() for t in workers] == [0, 0, 0]
    assert "result 200" in workers[0].output()
    assert "result 84" in workers[1].output() and "result 86" in workers[2].output()
    assert not any(hub_lines(t.output()) for t in workers)

    # Members whose processes ended are marked lost, not dropped.
    wait_for(lambda: set(states(g).values()) == {"lost"}, 15, "the members to be marked lost",
             details=lambda: str(g.states()))
    assert len(g) == 3


def test_a_target_dials_at_listen_and_pauses_on_demand(hub, target):
    g = hub.group()
    t = target.script("hub_worker", "1", "--listen", env=hub.target_env())
    t.wait_output("listening")
    member = wait_for(lambda: g.members(), 15, "the listening target to dial in")[0]
    assert states(g) == {member.name: "running"}
    member.pause()
    member.wait(15)
    assert member.eval("x") > 0
    member.set(spinning=False)                         # ends spin()'s loop
    member.cont()
    wait_for(lambda: member.paused and member.current_pause().function == "work", 15, "the pause in work()")
    assert member.eval("x") == 42
    member.cont()
    assert t.wait_exit() == 0 and "result 84" in t.output()


def test_a_target_whose_hub_is_unreachable_runs_on_unharmed(target, attach_to):
    public, secret = zmq.curve_keypair()
    env = {"BRIDGE_HUB": f"tcp://127.0.0.1:{free_port()}", "BRIDGE_HUB_KEY": public.decode(),
           "BRIDGE_HUB_SECRET": secret.decode()}
    t = target.script("hub_worker", env=env)
    t.wait_output("cannot reach the hub", timeout=20)
    s = attach_to(t)                                   # its own socket works as before
    assert s.eval("x") == 41
    s.cont()
    assert t.wait_exit() == 0 and "result 82" in t.output()
    assert len(hub_lines(t.output())) == 1, t.output()


def test_a_target_given_a_wrong_hub_key_refuses_that_hub(hub, target, attach_to):
    impostor_key = zmq.curve_keypair()[0].decode()
    env = {**hub.target_env(), "BRIDGE_HUB_KEY": impostor_key}  # it trusts another key than the hub's
    t = target.script("hub_worker", env=env)
    t.wait_output("not the hub", timeout=20)
    s = attach_to(t)
    assert s.eval("x") == 41
    s.cont()
    assert t.wait_exit() == 0 and "result 82" in t.output()
    assert len(hub_lines(t.output())) == 1, t.output()
    assert len(hub.group()) == 0
    assert hub.refused >= 1  # the hub saw a handshake that did not decrypt


def test_a_target_whose_key_the_hub_does_not_authorize_is_refused(target, attach_to):
    with Hub(own_key=False) as hub:                    # admits only the key pair it made
        t = target.script("hub_worker", env=hub.target_env(own_key=True))  # the user's own key instead
        t.wait_output("refused this process's key", timeout=20)
        line, = hub_lines(t.output())
        assert keys.fingerprint(keys.load_client_keypair().public) in line
        s = attach_to(t)
        s.cont()
        assert t.wait_exit() == 0 and "result 82" in t.output()
        assert len(hub.group()) == 0 and hub.refused >= 1


def test_a_hostile_peer_gets_nothing_and_learns_nothing(hub, caplog):
    from bridge import protocol

    g = hub.group()
    stranger = stranger_keypair()
    caplog.set_level(logging.WARNING, logger="client.hub")
    announce = protocol.event_message("announce", {"pid": 4242, "host": "evil", "name": "evil:4242", "argv": []})
    with RawClient(hub.endpoint, hub.public_key, keypair=stranger, monitor=zmq.EVENT_HANDSHAKE_FAILED_AUTH) as peer:
        peer.send(announce)                            # knows the hub's public key, even
        peer.send_request("hello")
        event = peer.wait_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        assert event["value"] == 400
        peer.expect_nothing(0.5)                       # no hello, no events, no error text
    with RawClient(hub.endpoint, plaintext=True) as plain:
        plain.send(announce)
        plain.expect_nothing(0.5)
    assert len(g) == 0 and not g.attach_errors
    refusals = [r.getMessage() for r in caplog.records if r.name == "client.hub"]
    assert any(keys.fingerprint(stranger.public) in line for line in refusals), refusals
    assert hub.refused >= 2


def test_the_secret_stays_out_of_reprs_output_and_files(hub, target, bridge_dirs):
    env = hub.target_env()
    secret = env["BRIDGE_HUB_SECRET"]
    assert secret not in repr(env) and secret not in str(env) and secret not in repr(hub)
    t = target.script("hub_worker", env=env)
    member = hub.group().wait(1, timeout=30)[0]
    connection_file = t.connection_file().read_text()
    assert secret not in connection_file
    assert secret not in repr(member.hello) and secret not in repr(member.info)
    hub.group().cont()
    assert t.wait_exit() == 0
    assert secret not in t.output()


def test_a_revoked_key_is_dropped_at_once(target):
    worker_keys = keys.KeyPair(*(k.decode() for k in zmq.curve_keypair()))
    with Hub(own_key=False, authorized_keys=[worker_keys.public]) as hub:
        env = {**hub.target_env(), "BRIDGE_HUB_SECRET": worker_keys.secret}
        t = target.script("hub_worker", env=env)
        member = hub.group().wait(1, timeout=30)[0]
        assert member.eval("x") == 41
        hub.revoke(worker_keys.public)
        wait_for(lambda: states(hub.group()) == {member.name: "lost"}, 10, "the member to be marked lost")
        with pytest.raises(client.SessionLost):
            member.eval("x")
    t.kill()
