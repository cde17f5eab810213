"""Dask and Ray workers as a live group: ``attach_dask(client)``, ``attach_ray()``.

Both make a :class:`~client.hub.Hub` (unless given one) and put its environment into
every worker the cluster has or will have: for Dask through a worker plugin
(bridge/dask_worker.py), for Ray through the job's ``runtime_env`` (``env_vars`` and a
``worker_process_setup_hook``: bridge/ray_worker.py). Each worker's bridge server dials
the hub, so workers need no inbound port, and each becomes a member of the hub's live
group, named by its address (docs/howto-cluster.md).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Dict, Optional

from bridge import protocol

from .hub import Hub, HubGroup
from .session import DEFAULT_TIMEOUT

#: The module path of the Ray worker setup hook (Ray imports it in each worker).
RAY_SETUP_HOOK = "bridge.ray_worker.setup"
#: How long attach_dask waits for the workers present now to dial in.
JOIN_WAIT_S = 15.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "")


def local_address_towards(host: str) -> str:
    """This host's address on the route to ``host`` (where workers that reach ``host``
    can reach us too); loopback for a loopback ``host``. Nothing is sent: a UDP socket's
    ``connect`` only picks the route."""
    if host in _LOOPBACK or host.startswith("127."):
        return "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return socket.getfqdn()


def _hub_for(scheduler_host: str, hub: Optional[Hub], bind: Optional[str], advertise: Optional[str],
             timeout: float) -> "tuple[Hub, bool]":
    if hub is not None:
        return hub, False
    if bind is None:
        bind = protocol.tcp_endpoint(local_address_towards(scheduler_host), 0)
    return Hub(bind=bind, advertise=advertise, timeout=timeout), True


def attach_dask(dask_client: Any, *, hub: Optional[Hub] = None, bind: Optional[str] = None,
                advertise: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                wait: float = JOIN_WAIT_S) -> HubGroup:
    """Every worker of ``dask_client``'s cluster, present and future, as a live group
    keyed by worker address (``Session.name``). A task that calls ``bridge.set_trace()``
    pauses on its own thread and shows as a paused member.

    The hub listens on this host's address towards the scheduler (loopback for a local
    cluster) unless ``hub`` or ``bind`` (and ``advertise``) say otherwise. Waits up to
    ``wait`` seconds for the workers present now to dial in. Closing the group
    unregisters the plugin and closes a hub made here.
    """
    from bridge.dask_worker import PLUGIN_NAME, BridgeWorkerPlugin

    scheduler = str(dask_client.scheduler.address)
    host = protocol.endpoint_host(scheduler) if "://" in scheduler and not scheduler.startswith("inproc") else ""
    hub, made = _hub_for(host, hub, bind, advertise, timeout)
    try:
        dask_client.register_plugin(BridgeWorkerPlugin(dict(hub.target_env())), name=PLUGIN_NAME)
    except BaseException:
        if made:
            hub.close()
        raise
    group = hub.group()

    def detach() -> None:
        try:
            dask_client.unregister_worker_plugin(PLUGIN_NAME)
        except Exception:
            pass  # the cluster is gone already
        if made:
            hub.close()

    group.on_close(detach)
    try:
        workers = list(dask_client.scheduler_info(n_workers=-1)["workers"])
    except TypeError:  # older distributed: no n_workers argument
        workers = list(dask_client.scheduler_info()["workers"])
    _wait_for_names(group, workers, wait)
    return group


def _wait_for_names(group: HubGroup, names: Any, timeout: float) -> None:
    """Until every name in ``names`` is a member, or ``timeout`` (a slow worker joins later)."""
    deadline = time.monotonic() + timeout
    missing = set(names)
    while missing - set(group.names()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with group.changed:
            group.changed.wait(min(left, 0.5))


def ray_runtime_env(hub: Hub, base: Optional[Dict[str, Any]] = None, *, setup_hook: bool = True) -> Dict[str, Any]:
    """A Ray ``runtime_env`` that makes workers dial ``hub``: ``base`` (yours) with the
    hub's environment in ``env_vars`` and framebridge's ``worker_process_setup_hook``
    (which Ray allows in the job's runtime_env only: ``ray.init(runtime_env=...)``;
    ``setup_hook=False`` for a task's or actor's ``.options(runtime_env=...)``, where a
    ``bridge.set_trace()`` dials the hub at the pause)."""
    env = dict(base or {})
    env["env_vars"] = {**dict(env.get("env_vars") or {}), **dict(hub.target_env())}
    if setup_hook:
        if env.get("worker_process_setup_hook") not in (None, RAY_SETUP_HOOK):
            raise ValueError("the runtime_env has a worker_process_setup_hook of its own; call "
                             f"{RAY_SETUP_HOOK}() from it, or pass setup_hook=False")
        env["worker_process_setup_hook"] = RAY_SETUP_HOOK
    return env



def attach_ray(*, hub: Optional[Hub] = None, bind: Optional[str] = None, advertise: Optional[str] = None,
               timeout: float = DEFAULT_TIMEOUT, runtime_env: Optional[Dict[str, Any]] = None,
               **init_kwargs: Any) -> HubGroup:
    """Ray workers (tasks and actors) of this job as a live group: members appear as
    workers start (each dials the hub from Ray's worker setup hook), named
    ``node-address:pid``; a task or actor method that calls ``bridge.set_trace()``
    shows as a paused member, with its task (and actor) id in the pause.

    Starts Ray (``ray.init(runtime_env=..., **init_kwargs)``) with the hub's environment
    in the job's runtime_env. Ray fixes a job's runtime_env at ``ray.init``: if Ray is
    initialized already, pass ``ray_runtime_env(hub, setup_hook=False)`` to the
    ``.options(runtime_env=...)`` of the tasks and actors to debug instead (this raises,
    saying so). Closing the group closes a hub made here; Ray keeps running.
    """
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is initialized already, and a job's runtime_env is fixed at ray.init(): call "
                           "attach_ray() before ray.init() (it starts Ray), or make a Hub and pass "
                           "client.ray_runtime_env(hub, setup_hook=False) to .options(runtime_env=...) of the "
                           "tasks and actors to debug")
    address = str(init_kwargs.get("address") or "")
    host = address.split("://")[-1].rsplit(":", 1)[0] if address and address != "auto" else ""
    hub, made = _hub_for(host, hub, bind, advertise, timeout)
    try:
        ray.init(runtime_env=ray_runtime_env(hub, runtime_env), **init_kwargs)
    except BaseException:
        if made:
            hub.close()
        raise
    group = hub.group()
    if made:
        group.on_close(hub.close)
    return group


__all__ = ["attach_dask", "attach_ray", "ray_runtime_env", "local_address_towards"]
