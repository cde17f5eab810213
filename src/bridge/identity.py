"""Who this process is, for a notebook's hub: host, pid, argv, rank, and the task a thread runs.

A target that dials a hub (hub_dial.py) announces itself with :func:`describe_process`;
each pause carries :func:`task_labels` of the paused thread (read on that thread), so a
notebook that holds forty workers sees which rank, which Dask task or which Ray task
stopped. Nothing here imports a cluster framework: a label is read only from a module
the process has already imported.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Dict, Optional

#: The member name the hub gives this process (a Dask worker's address), if set.
NAME_VAR = "BRIDGE_HUB_NAME"

#: Environment variables that give a process's rank, in the order they are believed:
#: torch.distributed / torchrun, Open MPI, MPICH and Intel MPI (PMI), Slurm.
RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")


def _int_env(names: tuple) -> Optional[int]:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def describe_process(started: float, paused: list) -> Dict[str, Any]:
    """The announce body: enough for a notebook to name and show this process, and
    nothing it could use to dial it (workers behind a hub need no inbound port)."""
    host = socket.gethostname()
    info: Dict[str, Any] = {
        "pid": os.getpid(),
        "host": host,
        "name": os.environ.get(NAME_VAR) or f"{host}:{os.getpid()}",
        "argv": list(sys.argv),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "cwd": _cwd(),
        "started": started,
        "announced": time.time(),
        "paused": paused,
    }
    rank = _int_env(RANK_VARS)
    if rank is not None:
        info["rank"] = rank
    local_rank = _int_env(LOCAL_RANK_VARS)
    if local_rank is not None:
        info["local_rank"] = local_rank
    return info


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # removed under us
        return ""


def task_labels() -> Dict[str, Any]:
    """What the calling thread runs for a cluster framework: a Dask task's key, a Ray
    task's or actor's id. Empty outside one. Called on the paused thread at every pause,
    so it costs two dictionary look-ups where no framework is loaded."""
    labels: Dict[str, Any] = {}
    modules = sys.modules
    if "distributed" in modules:
        _dask_labels(labels)
    if "ray" in modules:
        _ray_labels(labels)
    return labels


def _dask_labels(labels: Dict[str, Any]) -> None:
    try:
        from distributed.worker import thread_state

        key = getattr(thread_state, "key", None)
        if key is not None:
            labels["task"] = str(key)
    except Exception:  # another version's layout: the pause goes on without the label
        pass


def _ray_labels(labels: Dict[str, Any]) -> None:
    try:
        import ray

        if not ray.is_initialized():
            return
        context = ray.get_runtime_context()
        task = context.get_task_id()
        if task:
            labels["task"] = str(task)
        actor = context.get_actor_id()
        if actor:
            labels["actor"] = str(actor)
    except Exception:
        pass
