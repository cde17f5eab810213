"""The Dask worker plugin that ``client.attach_dask`` installs (docs/howto-cluster.md, "Dask").

Imported only in Dask's processes (it needs ``distributed``): the notebook registers a
:class:`BridgeWorkerPlugin` with the scheduler, which runs :meth:`~BridgeWorkerPlugin.setup`
in every worker present and every worker that joins later. Setup puts the hub's
environment into the worker process, names the worker by its address, and starts the
worker's bridge server (``bridge.listen()``), which dials the hub. A task that calls
``bridge.set_trace()`` then pauses on its own thread (a thread of the worker's executor);
the worker's event loop, its heartbeats to the scheduler and its other tasks run on.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

from distributed.diagnostics.plugin import WorkerPlugin

from .identity import NAME_VAR

#: The name the plugin is registered under (registering again replaces it).
PLUGIN_NAME = "framebridge"


class BridgeWorkerPlugin(WorkerPlugin):
    """Make each worker attachable through a notebook's hub. ``env``: ``Hub.target_env()``."""

    name = PLUGIN_NAME

    def __init__(self, env: Dict[str, str]) -> None:
        self.env = dict(env)

    def __repr__(self) -> str:  # Dask logs plugins: never the secret
        return f"BridgeWorkerPlugin(hub={self.env.get('BRIDGE_HUB')!r})"

    def setup(self, worker: Any) -> None:
        """Runs on the worker's event loop: quick, and never an error for the worker."""
        os.environ.update(self.env)
        os.environ[NAME_VAR] = str(worker.address)
        try:
            import bridge

            bridge.listen()
        except Exception as exc:  # the worker runs on, not attachable
            print(f"bridge: worker {worker.address} could not become attachable: {exc}",
                  file=sys.__stderr__ or sys.stderr, flush=True)

    def teardown(self, worker: Any) -> None:
        """The plugin was removed (the notebook's group closed): pauses from now on do not
        dial that hub (its connection ends when the hub closes)."""
        for name in (*self.env, NAME_VAR):
            os.environ.pop(name, None)
