"""Groups end to end: many real target processes driven as one (client.attach_all, Group)."""

from __future__ import annotations

import os
import time
from typing import Any, List

import pytest

import client
from bridge import keys
from client import Group, NoSession, RemoteError, RequestTimeout
from client.values import FrameRef
from conftest import wait_for

#: Worker i pauses with rows = [0, 1, ... i-1]; even workers pause in `check`, odd ones in
#: `audit` (two stacks); worker 5's `slow()` sleeps past the test's deadline.
WORKER = """
    import sys, time
    import bridge

    i = int(sys.argv[1])

    def slow():
        time.sleep(4)
        return "late"

    def check(rows):
        total = sum(rows)
        bridge.set_trace()
        return total

    def audit(rows):
        total = sum(rows)
        bridge.set_trace()
        return total

    rows = list(range(i))
    result = (check if i % 2 == 0 else audit)(rows)
    print("result", i, result, flush=True)
"""


def start_workers(target: Any, n: int, source: str = WORKER) -> List[Any]:
    # The user's key exists before the workers start, as it does after a first use: N
    # processes creating it at once race (the keys' own issue, not the groups').
    keys.load_client_keypair()
    first = target(source, "0", name="worker.py")
    # Every worker runs the same file, so that equal stacks are equal frame for frame.
    workers = [first] + [target(source, str(i), name=f"unused{i}.py", module_args=[str(first.script)])
                         for i in range(1, n)]
    for w in workers:
        w.wait_paused_in_file()
    return workers


def test_a_group_of_eight_with_one_failing_and_one_slow_member(target):
    workers = start_workers(target, 8)
    g = client.attach_all(pids=[w.pid for w in workers])
    try:
        assert len(g) == 8 and not g.attach_errors
        assert sorted(s.pid for s in g) == sorted(w.pid for w in workers)
        assert len(g.wait(timeout=20)) == 8

        by_pid = {s.pid: s.name for s in g}
        bad, slow = by_pid[workers[3].pid], by_pid[workers[5].pid]
        started = time.monotonic()
        r = g.eval("slow() if i == 5 else rows[3]", timeout=1.5)
        elapsed = time.monotonic() - started
        assert elapsed < 3.5, f"the slow member held the group for {elapsed:.1f}s"
        assert set(r.errors) == {by_pid[workers[i].pid] for i in (0, 1, 2, 3, 5)}
        assert isinstance(r.errors[slow], RequestTimeout)
        assert isinstance(r.errors[bad], RemoteError) and r.errors[bad].remote_type == "IndexError"
        assert r.values() == {by_pid[workers[i].pid]: 3 for i in (4, 6, 7)}
        with pytest.raises(RemoteError):
            r[bad]
        assert r[by_pid[workers[7].pid]] == 3 and len(r) == 8 and not r.ok

        # The slow member answers this one once its sleep is over; the others at once.
        r = g.eval("len(rows)")
        assert r.ok and r.values() == {by_pid[w.pid]: i for i, w in enumerate(workers)}

        report = g.where()
        assert report.summary() == "2 stacks across 8 processes"
        names = {frozenset(c.members): [f.function for f in c.frames] for c in report}
        assert names == {frozenset(by_pid[workers[i].pid] for i in (0, 2, 4, 6)): ["check", "<module>"],
                         frozenset(by_pid[workers[i].pid] for i in (1, 3, 5, 7)): ["audit", "<module>"]}
        assert "2 stacks across 8 processes" in repr(report) and "<table" in report._repr_html_()

        out = g.exec("print('rows', len(rows)); total = -1 if i == 3 else total")
        assert out.ok and out[bad] == "rows 3\n"
        assert g.set(total=100).ok is True
        r = g.cont()
        # A worker that exits at once may do so before its answer leaves: "exited" then.
        assert r.ok and set(r.values().values()) <= {1, "exited"} and not g.paused()
        for i, w in enumerate(workers):
            assert f"result {i} 100" in w.wait_output(f"result {i} ")
            assert w.wait_exit(10) == 0
    finally:
        g.close()


def test_members_by_name_and_pid_and_a_pid_that_is_not_attachable(target):
    workers = start_workers(target, 3)
    not_attachable = target("import time; time.sleep(60)\n", name="plain.py")
    g = client.attach_all(pids=[w.pid for w in workers] + [not_attachable.pid])
    try:
        assert len(g) == 3 and list(g.attach_errors) == [f"{os.uname().nodename}:{not_attachable.pid}"]
        assert isinstance(next(iter(g.attach_errors.values())), NoSession)
        first = g.members()[0]
        assert g[first.name] is first and g[first.pid] is first and first.name == f"{os.uname().nodename}:{first.pid}"
        assert first.name in g and [s.name for s in g] == g.names()
        with pytest.raises(KeyError, match="no member"):
            g["nobody:1"]
        # A member is a Session of its own: its first request of its own opens its direct channel.
        assert first.eval("i") in (0, 1, 2)
        assert "could not be attached" in repr(g) and "<table" in g._repr_html_()
        states = g.states()
        assert [s.state for s in states] == ["paused"] * 3 and states[0].pause.function in ("check", "audit")
    finally:
        g.close()
    # Closing the group leaves the targets paused for another client.
    with client.attach(workers[0].pid) as again:
        assert again.wait(10).function == "check"
        again.cont()


def test_a_live_group_grows_as_processes_appear_and_reports_members_that_exit(target, tmp_path):
    first = start_workers(target, 1)[0]
    g = client.attach_all(pids=[first.pid])
    events: List[Any] = []
    g.subscribe(lambda event, name, body: events.append((event, name)))
    try:
        assert len(g) == 1
        # A group made by hand grows by add(); one made by a scan grows by refresh()/wait().
        late = start_workers(target, 1, WORKER.replace("int(sys.argv[1])", "int(sys.argv[1]) + 1"))[0]
        g.source.pids.add(late.pid)  # type: ignore[union-attr]
        assert len(g.wait(n=2, timeout=20)) == 2 and len(g) == 2
        assert ("joined", f"{os.uname().nodename}:{late.pid}") in events
        plain = Group()
        plain.add(g[late.pid])
        assert len(plain) == 1 and plain.paused() == [g[late.pid]]
        g[late.pid].cont()
        late.wait_exit(10)
        deadline = time.monotonic() + 10
        while [s.state for s in g.states()].count("lost") != 1:
            assert time.monotonic() < deadline, g.states()
            time.sleep(0.05)  # the member's loss comes from the I/O thread's liveness check
        r = g.eval("i")
        assert r.values() == {g[first.pid].name: 0} and r.skipped == [f"{os.uname().nodename}:{late.pid}"]
    finally:
        g.close()


def test_a_dropped_group_is_collected_and_closes_its_members(target):
    import gc
    import weakref

    workers = start_workers(target, 2)
    g = client.attach_all(pids=[w.pid for w in workers])
    refs = [weakref.ref(g)] + [weakref.ref(s) for s in g]
    del g
    gc.collect()
    assert all(r() is None for r in refs)
    with client.attach(workers[1].pid) as s:  # the targets stay paused for the next client
        assert s.wait(10).function == "audit"


class RelayedPort:
    """A Port of the test's own (docs/groups.md, "A member's connection"): the session has
    no endpoint to dial; this port reaches the target, as a hub's would, and the session,
    the group and recovery work through it alone."""

    def __init__(self, endpoint_info: dict) -> None:
        from client.io_loop import shared_context
        from client.transport import new_routing_id, open_dealer

        self.where = f"relayed {endpoint_info['endpoint']}"
        self.local_pid = None  # as for a target on another host: no liveness check here
        self.routing_id = new_routing_id()
        self.socket, self.monitor = open_dealer(shared_context(), endpoint_info, keys.load_client_keypair(),
                                                self.routing_id)
        self.loop = self.sink = None
        self.sent = 0

    def start(self, loop, sink) -> None:
        self.loop, self.sink = loop, sink
        loop.add(self)

    def send(self, frames) -> None:
        self.sent += 1
        self.socket.send_multipart(frames)

    def close(self) -> None:
        self.sink = None
        self.loop.remove(self)

    def poll_items(self):
        return (self.socket, self.monitor)

    def on_readable(self, item) -> None:
        import zmq
        from zmq.utils.monitor import parse_monitor_message

        if item is self.monitor:
            while self.sink is not None and self.monitor.get(zmq.EVENTS) & zmq.POLLIN:
                if parse_monitor_message(self.monitor.recv_multipart())["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.sink.on_connected()
            return
        while self.sink is not None and self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            self.sink.on_message(self.socket.recv_multipart())

    def on_tick(self, now) -> None:
        if self.sink is not None:
            self.sink.on_tick(now)

    def on_removed(self) -> None:
        from client.transport import close_monitored

        close_monitored(self.socket, self.monitor)


def test_a_member_reached_through_a_port_of_another_kind(target):
    from client.session import open_sessions

    worker = start_workers(target, 1)[0]
    info = keys.read_connection_file(worker.connection_file())
    port = RelayedPort(info)
    # What a hub would know of a target that dialed it: no endpoint, a name of its own.
    [member] = open_sessions([{"pid": worker.pid, "argv": info["argv"], "name": "rank-0"}], ports=[port])
    g = Group([member])
    try:
        assert g.wait(timeout=20) == [member] and g.names() == ["rank-0"]
        assert g.eval("len(rows)").values() == {"rank-0": 0}
        assert member.eval("i") == 0 and member.bulk_mode == "curve"  # no direct channel: the port serves
        member.set(total=5)
        assert g.where().summary() == "1 stack across 1 process"
        assert g.cont().values() in ({"rank-0": 1}, {"rank-0": "exited"})
        assert "result 0 5" in worker.wait_output("result")
        assert port.sent >= 7  # hello, subscribe, group eval, eval, set, stack, cont: all through it
    finally:
        g.close()


STEPPER = """
    import bridge

    total = 0
    bridge.set_trace()
    for i in range(1000):
        total += i
    print("total", total, flush=True)
"""


def test_a_member_that_steps_keeps_its_lane_from_one_stop_to_the_next(target):
    """The target keeps a stepping thread's lane for its next stop (bridge/pause.py), and
    so does the member's link (client/link_lanes.py): after the first stop, every stop's
    frame requests go through that same lane, with no new connection or handshake."""
    worker = target(STEPPER)
    worker.wait_paused_in_file()
    g = client.attach_all(pids=[worker.pid])
    try:
        [member] = g.wait(timeout=20)
        lanes_used = []
        for _ in range(4):
            pause = member.current_pause()

            def through_a_lane() -> Any:  # the first requests of a pause may take the server socket
                reply = member.submit("eval", {"expr": "total"}, frame=True)
                reply.result()
                return reply.pending.via if reply.pending.via is not member._link.port else None

            lanes_used.append(wait_for(through_a_lane, 20, "a frame request through the pause's lane"))
            answer, _ = member.submit("next", {"frame": 0}, at=FrameRef(pause.thread, 0)).result()
            member.pause_state.retire(int(answer["thread"]), int(answer["pause_id"]), reset_frame=True)
            wait_for(lambda: member.paused and member.current_pause().pause_id != pause.pause_id, 20,
                     "the next stop")
        assert all(lane is lanes_used[0] for lane in lanes_used), lanes_used
        assert lanes_used[0].routing_id and not lanes_used[0]._closed
        assert g.cont().ok
    finally:
        g.close()
