"""Child processes attachable too: ``bridge.listen(children=True)``, ``python -m bridge --children``.

Two ways a child of an attachable process starts, two mechanisms:

* a **forked** child (``multiprocessing``'s fork start method, ``os.fork()``) has the
  parent's memory but none of its threads, so the parent's server is dead there. An
  ``os.register_at_fork`` hook starts a server of its own in the child (a new key pair,
  a new port, its own connection file) before ``fork()`` returns;
* a child that **starts a new interpreter** (spawn and forkserver start methods,
  ``concurrent.futures.ProcessPoolExecutor`` with them, ``subprocess`` running Python)
  inherits ``BRIDGE_CHILDREN=1`` from the environment, and the ``framebridge-children.pth``
  file that installing framebridge puts in site-packages calls :func:`autostart` at
  interpreter start-up, which starts the server. Without the variable the ``.pth`` line
  does nothing but read it.

multiprocessing's helper processes (the resource tracker, the forkserver itself) are
left alone; the forkserver's children are forked, so they start their own servers.
Forks that framebridge makes itself (the playground, checkpoints) are not children in
this sense: a fork from the server thread or from a paused thread starts nothing.
``attach_all(tree=pid)`` on the client finds pid and all of these.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Optional

# bridge.server (and zmq) are imported only once a child is to be made attachable: the
# .pth line imports this module at every interpreter start-up where the variable is set.

#: The environment variable that makes a new interpreter attachable at start-up.
ENV_VAR = "BRIDGE_CHILDREN"

#: multiprocessing's helper processes, as their command line names them: (module, role).
_HELPERS = (
    ("multiprocessing.resource_tracker", "helper"),
    ("multiprocessing.semaphore_tracker", "helper"),
    ("multiprocessing.forkserver", "forkserver"),
)

_hooked = False
_hook_lock = threading.Lock()
_fork_from_framebridge = False


def enable() -> None:
    """Make this process's future children attachable (idempotent)."""
    os.environ[ENV_VAR] = "1"
    install_fork_hook()


def enabled() -> bool:
    """Whether children of this process become attachable."""
    return os.environ.get(ENV_VAR) == "1"


def install_fork_hook() -> None:
    """Restart the server in every forked child while :func:`enabled` (once per process)."""
    global _hooked
    with _hook_lock:
        if _hooked or not hasattr(os, "register_at_fork"):
            return
        _hooked = True
    # bridge.server's own hook (it forgets the parent's server in the child) is registered
    # when it is imported, here first: hooks after a fork run in registration order.
    import importlib

    importlib.import_module(f"{__package__}.server")
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


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
            install_fork_hook()  # its children are forked: each starts its own server
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


def _before_fork() -> None:
    global _fork_from_framebridge
    from . import server

    srv = server.current_server()
    ident = threading.get_ident()
    _fork_from_framebridge = srv is not None and (ident == srv.thread.ident or ident in srv.pauses)


def _after_fork_in_child() -> None:
    if _fork_from_framebridge or not enabled():
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
