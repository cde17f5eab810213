""""Another host" for real: a worker in a network namespace of its own dials the hub.

The test makes a network namespace and a veth pair with a private /30 between it and
this host (and removes both, whatever happens), binds a hub on the host's end, and runs
a worker inside the namespace with ``ip netns exec``. The worker's own server listens on
loopback inside its namespace, so nothing on this host can connect to it: the hub is its
only way out, and the group still evaluates, sets and continues it.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import socket
import subprocess
from typing import Iterator, List, Tuple

import pytest

from bridge import protocol

from client import Hub


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.251.0.0/16 that no interface of this host uses."""
    used = _ip("-o", "-4", "addr", "show").stdout
    for _ in range(100):
        net = ipaddress.ip_network(f"10.251.{random.randrange(256)}.{4 * random.randrange(64)}/30")
        if not any(str(host) in used for host in net):
            return net
    pytest.skip("no free /30 in 10.251.0.0/16 for the test's veth pair")


@pytest.fixture
def netns() -> Iterator[Tuple[str, str, str]]:
    """(namespace name, the host's address, the namespace's address), removed at the end."""
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    if os.geteuid() != 0:
        pytest.skip("making a network namespace needs root (CAP_SYS_ADMIN)")
    tag = f"{os.getpid() % 10000:04d}{random.randrange(16 ** 3):03x}"
    name, host_if, ns_if = f"fbhub{tag}", f"fbh{tag}a", f"fbh{tag}b"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        pytest.skip(f"the kernel refuses network namespaces here: {made.stderr.strip()}")
    host_ip = ns_ip = ""
    try:
        net = _free_subnet()
        host_ip, ns_ip = (str(h) for h in net.hosts())
        steps: List[List[str]] = [
            ["link", "add", host_if, "type", "veth", "peer", "name", ns_if],
            ["link", "set", ns_if, "netns", name],
            ["addr", "add", f"{host_ip}/30", "dev", host_if],
            ["link", "set", host_if, "up"],
            ["netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if],
            ["netns", "exec", name, "ip", "link", "set", ns_if, "up"],
            ["netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = _ip(*step, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot set up the veth pair (ip {' '.join(step)}): {done.stderr.strip()}")
        yield name, host_ip, ns_ip
    finally:
        _ip("link", "del", host_if, check=False)  # takes its peer in the namespace with it
        _ip("netns", "del", name, check=False)
        assert name not in _ip("netns", "list", check=False).stdout


def _refused(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is refused (nothing listens there)."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return True


def test_a_worker_in_its_own_network_namespace_is_reached_only_through_the_hub(netns, target):
    name, host_ip, ns_ip = netns
    with Hub(bind=f"tcp://{host_ip}:0") as hub:
        env = hub.target_env()
        assert env["BRIDGE_HUB"].startswith(f"tcp://{host_ip}:")
        t = target.script("hub_worker", "5", env=env, prefix=["ip", "netns", "exec", name])
        g = hub.group()
        member = g.wait(1, timeout=30)[0]
        assert ns_ip in repr(member)  # the hub saw the connection come from the namespace

        # The worker's own server (and its pause's lane) listen on loopback inside its
        # namespace: from this host, nothing can connect into it.
        own = member.hello["endpoint"]
        assert protocol.endpoint_host(own) == "127.0.0.1"
        ports = [int(own.rsplit(":", 1)[1])]
        lane = member.current_pause().extra.get("lane")
        if lane:
            ports.append(int(lane))
        for port in ports:
            assert _refused(ns_ip, port), f"{ns_ip}:{port} accepted a connection from the host"

        r = g.eval("x")
        assert r.values() == {member.name: 46}, r.errors
        assert g.set(x=1).ok
        assert g.eval("x * 10").values() == {member.name: 10}
        assert g.cont().ok
        assert t.wait_exit() == 0
        assert "result 2" in t.output()
