"""The Ray worker setup hook that ``client.attach_ray`` puts in the job's runtime_env.

Ray runs ``setup()`` in every worker process of the job before it runs a task or an
actor (``worker_process_setup_hook``, docs/howto-cluster.md "Ray"). The hub's
environment is there already (the runtime_env's ``env_vars``); the hook names the
worker ``node-address:pid`` and starts its bridge server, which dials the hub. It never
fails the worker: a problem is one line on stderr.
"""

from __future__ import annotations

import os
import sys

from .identity import NAME_VAR


def setup() -> None:
    """Make this Ray worker attachable through its job's hub."""
    try:
        import ray

        os.environ[NAME_VAR] = f"{ray.util.get_node_ip_address()}:{os.getpid()}"
        import bridge

        bridge.listen()
    except Exception as exc:  # the worker runs on, not attachable
        print(f"bridge: Ray worker {os.getpid()} could not become attachable: {exc}",
              file=sys.__stderr__ or sys.stderr, flush=True)
