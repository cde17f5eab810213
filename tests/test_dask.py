"""Dask workers as a live group: ``attach_dask`` with a real ``LocalCluster(processes=True)``.

One cluster for the module (starting one costs seconds): two worker processes of two
threads each, with a short ``worker-ttl`` so that a pause visibly outlasts it. Workers
import the task functions from tests/targets/cluster_tasks.py.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterator, Tuple

import pytest

distributed = pytest.importorskip("distributed", reason="distributed (the `cluster` extra) is not installed")

from target_process import TARGETS_DIR, cluster_worker_env, environment  # noqa: E402
from waiting import wait_for  # noqa: E402

from client import attach_dask  # noqa: E402

sys.path.insert(0, str(TARGETS_DIR))
import cluster_tasks  # noqa: E402

#: The scheduler's worker-ttl here: a pause longer than this would get a stalled worker restarted.
WORKER_TTL = "5s"


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Any]]:
    import dask

    dirs = tmp_path_factory.mktemp("dask-bridge")
    # What the worker processes inherit: the worktree's code, the task module, private dirs.
    with environment(**cluster_worker_env(dirs)):
        with dask.config.set({"distributed.scheduler.worker-ttl": WORKER_TTL}):
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                               dashboard_address=None, silence_logs=40)
        dask_client = distributed.Client(cluster)
    try:
        yield cluster, dask_client
    finally:
        dask_client.close()
        cluster.close()


def test_a_dask_task_pauses_on_its_thread_is_fixed_and_continued(dask_cluster):
    from distributed.scheduler import heartbeat_interval

    cluster, dask_client = dask_cluster
    scheduler = cluster.scheduler
    g = attach_dask(dask_client)
    try:
        workers = set(scheduler.workers)
        assert set(g.names()) == workers                    # keyed by worker address
        assert {m.state for m in g.states()} == {"running"}

        future = dask_client.submit(cluster_tasks.scaled, 7, pure=False)
        member = g.wait(1, timeout=60)[0]
        paused_at = time.time()
        assert member.name in workers
        pause = member.current_pause()
        assert pause.function == "scaled" and pause.extra.get("task") == str(future.key)
        assert pause.name != "MainThread"                   # the task's own executor thread

        # The worker goes on: another task on it runs and returns meanwhile...
        other = dask_client.submit(cluster_tasks.where_am_i, workers=[member.name], pure=False)
        pid, thread = other.result(timeout=30)
        assert pid == member.pid and thread != pause.name

        # ...and it keeps heartbeating past the scheduler's ttl, so it is not declared dead.
        ttl = max(scheduler.worker_ttl, 10 * heartbeat_interval(len(workers)))
        worker_state = scheduler.workers[member.name]
        wait_for(lambda: time.time() - paused_at > ttl + 1 and worker_state.last_seen > paused_at + ttl,
                 ttl + 20, f"the pause to outlast the worker ttl ({ttl:g}s) with heartbeats coming",
                 details=lambda: f"last seen {time.time() - worker_state.last_seen:.1f}s ago")
        assert scheduler.workers.get(member.name) is worker_state
        assert member.paused

        assert member.eval("factor") == 0
        member.set(factor=3)                                # the fix, through the hub
        member.cont()
        assert future.result(timeout=30) == 21
    finally:
        g.close()


def test_workers_that_join_later_become_members(dask_cluster):
    cluster, dask_client = dask_cluster
    g = attach_dask(dask_client)
    try:
        before = set(g.names())
        cluster.scale(3)
        new = wait_for(lambda: set(cluster.scheduler.workers) - before, 60, "a third worker")
        wait_for(lambda: new <= set(g.names()), 30, "the new worker to dial in", details=lambda: str(g.names()))
        assert {m.state for m in g.states()} == {"running"}
    finally:
        g.close()
        cluster.scale(2)
