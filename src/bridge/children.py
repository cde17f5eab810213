"""Child processes attachable too: ``bridge.listen(children=True)``, ``python -m bridge --children``.

Two ways a child of an attachable process starts, two mechanisms:

* a **forked** child (``multiprocessing``'s fork start method, ``os.fork()``) has the
  parent's memory but none of its threads, so the parent's server is dead there. The
  at-fork mechanism (bridge/forks.py) forgets the parent's state and then calls
  :func:`restart_in_child`, which starts a server of its own in the child (a new key
  pair, a new port, its own connection file) before ``fork()`` returns;
* a child that **starts a new interpreter** (spawn and forkserver start methods,
  ``concurrent.futures.ProcessPoolExecutor`` with them, ``subprocess`` running Python)
  inherits ``BRIDGE_CHILDREN=1`` from the environment, and the ``framebridge-children.pth``
  file that installing framebridge puts in site-packages calls :func:`autostart` at
  interpreter start-up, which starts the server. Without the variable the ``.pth`` line
  does nothing but read it.

multiprocessing's helper processes (the resource tracker, the forkserver itself) are
left alone; the forkserver's children are forked, so they start their own servers.
Forks that framebridge makes itself (the playground) are not children in this sense: a
fork from the server thread or from a paused thread starts nothing.
``attach_all(tree=pid)`` on the client finds pid and all of these.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

from . import forks

# bridge.server (and zmq) are imported only once a child is to be made attachable: the
# .pth line imports this module at every interpreter start-up where the variable is set.
# Importing this module imports the bridge package, which registers the at-fork hook.

#: The environment variable that makes a new interpreter attachable at start-up.
ENV_VAR = "BRIDGE_CHILDREN"

#: multiprocessing's helper processes, as their command line names them: (module, role).
_HELPERS = (
    ("multiprocessing.resource_tracker", "helper"),
    ("multiprocessing.semaphore_tracker", "helper"),
    ("multiprocessing.forkserver", "forkserver"),
)


def enable() -> None:
    """Make this process's future children attachable (idempotent)."""
    os.environ[ENV_VAR] = "1"
    _preload()


def enabled() -> bool:
    """Whether children of this process become attachable."""
    return os.environ.get(ENV_VAR) == "1"


def _preload() -> None:
    # What restart_in_child runs, imported now: the at-fork hook must import nothing (an
    # import lock another thread held at the fork would never be released in the child),
    # and the restart step is registered after these imports' own at-fork hooks (forks.py).
    for name in ("server", "tracing_hook", "capture"):
        importlib.import_module(f"{__package__}.{name}")
    importlib.import_module(f"{__package__}.ops").load_all()  # what a server start imports
    forks.keep_children_attachable()


def autostart() -> None:
    """Called at interpreter start-up by ``framebridge-children.pth``: with ``BRIDGE_CHILDREN=1``,
    make this process attachable (and its own children). Never raises."""
    if not enabled():
        return
    try:
        from . import server

        if server.current_server() is not None:
            return  # site may process the .pth twice (lib and lib64): the first start counts
        role = _helper_role()
        if role == "helper":
            return
        if role == "forkserver":
            _preload()  # its children are forked: each starts its own server (restart_in_child)
            return
        start()
    except Exception as exc:  # the job starts as it would have without framebridge
        _say(f"bridge: child {os.getpid()} could not become attachable: {exc}")


def start() -> None:
    """Start this process's server on a port of its own and keep its children attachable."""
    from . import server, tracing_hook

    enable()
    # Port 0 whatever BRIDGE_PORT says: the parent holds that port.
    server.get_server(None, 0)
    tracing_hook.enable_pause_on_demand()


def restart_in_child(forked_by_framebridge: bool) -> None:
    """In a forked child, called by the at-fork hook (bridge/forks.py) once the parent's
    state is forgotten: start this child's own server while :func:`enabled`, unless
    framebridge itself forked (``forked_by_framebridge``). Never raises."""
    if forked_by_framebridge or not enabled():
        return
    try:
        start()
    except Exception as exc:  # the child runs on, not attachable
        _say(f"bridge: forked child {os.getpid()} could not become attachable: {exc}")


def _helper_role() -> Optional[str]:
    """"helper" or "forkserver" when this interpreter is one of multiprocessing's helpers."""
    command = " ".join(getattr(sys, "orig_argv", None) or _proc_cmdline())
    for module, role in _HELPERS:
        if module in command:
            return role
    return None


def _proc_cmdline() -> list:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return [part.decode("utf-8", "replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return list(sys.argv)


def _say(line: str) -> None:
    try:
        print(line, file=sys.__stderr__ or sys.stderr, flush=True)
    except Exception:
        pass
