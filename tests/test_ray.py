"""Ray tasks and actors as a live group: ``attach_ray`` with a real local ``ray.init()``.

One Ray instance for the module (two CPUs, no dashboard): starting one takes seconds.
Workers import the task functions from tests/targets/cluster_tasks.py.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray", reason="ray (the `cluster` extra) is not installed for this Python")

from target_process import TARGETS_DIR, cluster_worker_env, environment  # noqa: E402

from client import attach_ray  # noqa: E402

sys.path.insert(0, str(TARGETS_DIR))
import cluster_tasks  # noqa: E402


@pytest.fixture(scope="module")
def ray_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    dirs = tmp_path_factory.mktemp("ray-bridge")
    ray_dir = tempfile.mkdtemp(prefix="fbray-")
    # What Ray's worker processes inherit: the worktree's code, the task module, private dirs.
    with environment(**cluster_worker_env(dirs)):
        # A short temp dir: Ray's unix sockets live under it (108 bytes at most).
        try:
            group = attach_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
        except Exception as exc:
            # Ray gives its raylet a fixed 30 s to register; a machine loaded by other test
            # runs can miss that once. Once more, then it is a failure.
            if "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
            group = attach_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
    try:
        yield group
    finally:
        group.close()
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_a_ray_task_and_an_actor_pause_and_are_fixed_through_the_group(ray_group):
    g = ray_group
    task = ray.remote(cluster_tasks.scaled).remote(5)
    member = g.wait(1, timeout=90)[0]
    pause = member.current_pause()
    assert pause.function.endswith("scaled") and pause.extra.get("task")
    host, _, pid = member.name.rpartition(":")
    assert int(pid) == member.pid and host                  # node address:pid
    assert member.eval("factor") == 0
    member.set(factor=4)
    member.cont()
    assert ray.get(task, timeout=60) == 20

    counter = ray.remote(cluster_tasks.Counter).remote()
    added = counter.add.remote(3)
    actor_member = g.wait(1, timeout=90)[0]
    pause = actor_member.current_pause()
    assert pause.function.endswith("add") and pause.extra.get("actor")
    assert g.eval("n").values() == {actor_member.name: 3}
    assert g.set(step=2).ok
    assert g.cont().ok
    assert ray.get(added, timeout=60) == 6
