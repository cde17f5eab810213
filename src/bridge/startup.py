"""Why framebridge cannot serve in this environment, said in one line, and the settings it reads at start.

A job that calls ``set_trace()`` on a machine with a broken setup (a key file others can
read, a busy ``BRIDGE_PORT``, ``BRIDGE_WAIT_TIMEOUT=1s``) must go on as if the call were
not there: the debugger never raises into the job (docs/security.md, "When the setup is
broken"). The server's start-up raises :class:`StartError` with a message that says what
is wrong and how to fix it; ``set_trace`` and ``post_mortem`` print it as one line and
return, ``listen()`` raises it (the caller asked to be attachable, and is told why not).
"""

from __future__ import annotations

import errno
import math
import os
import sys
from typing import Optional

import zmq

from .keys import KeyFileError


class StartError(RuntimeError):
    """framebridge cannot serve here; the message says what is wrong and how to fix it."""


def port_from_env() -> int:
    """``BRIDGE_PORT`` as a port number (0, a free port, when unset)."""
    text = os.environ.get("BRIDGE_PORT", "").strip()
    if not text:
        return 0
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise StartError(f"BRIDGE_PORT={text!r} is not a port number; set it to one from 1 to 65535, "
                         f"or unset it to listen on a free port")
    return port


def wait_timeout(timeout: Optional[float]) -> Optional[float]:
    """The pause's wait timeout: ``timeout`` if given, else ``BRIDGE_WAIT_TIMEOUT`` (None: no limit)."""
    if timeout is not None:
        return float(timeout)
    text = os.environ.get("BRIDGE_WAIT_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # also refuses nan
        # Not pausing is the safe reading: the variable was set to bound the wait, and a
        # job that cannot tell how long to wait must not wait for ever.
        raise StartError(f"BRIDGE_WAIT_TIMEOUT={text!r} is not a number of seconds; set it to one "
                         f"such as 30, or unset it to wait for a client without a limit")
    return seconds


def explain(exc: BaseException, host: str, port: int) -> StartError:
    """The StartError for a server start-up that failed with ``exc``, in one line."""
    if isinstance(exc, StartError):
        return exc
    from_env = " (BRIDGE_PORT)" if port and str(port) == os.environ.get("BRIDGE_PORT", "").strip() else ""
    if isinstance(exc, zmq.ZMQError):
        if exc.errno == errno.EADDRINUSE:
            text = (f"port {port}{from_env} on {host} is in use by another process; choose a free port, "
                    f"or unset BRIDGE_PORT to listen on one chosen for you")
        elif exc.errno == errno.EACCES:
            text = f"no permission to listen on port {port}{from_env} on {host}; choose a port above 1023"
        elif exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.EINVAL):
            text = f"cannot listen on {host!r} ({exc.strerror}); set BRIDGE_HOST to an address of this machine"
        else:
            text = f"cannot listen on {host}:{port} ({exc.strerror})"
    elif isinstance(exc, (OSError, KeyFileError)):
        text = str(exc)  # key and runtime dir problems: their messages carry the fix
    else:
        text = f"{type(exc).__name__}: {exc}"
    return StartError(" ".join(text.split()))  # one line, whatever the message held


def report(exc: StartError, consequence: str = "not pausing") -> None:
    """Print ``exc`` and what the job does instead, as one line on the process's stderr."""
    stream = sys.__stderr__
    if stream is None:  # no stderr at all (pythonw): nowhere to say it
        return
    try:
        print(f"bridge: {consequence} (pid {os.getpid()}): {exc}", file=stream, flush=True)
    except (OSError, ValueError):  # a closed or broken stderr must not stop the job either
        pass
