"""Make a running process that never imported bridge attachable (Python 3.14+).

Python 3.14's ``sys.remote_exec(pid, script)`` (PEP 768) asks another CPython 3.14
process to run a script file at its next safe point. We run a tiny script there that
imports ``bridge`` (it must be importable in *that* process's environment), calls
``bridge.listen()``, and reports the connection file it wrote (or the error) into a
status file the client reads.

``sys.remote_exec`` must run in an interpreter of the target's own version, so the
request is made by the target's own executable (``/proc/<pid>/exe``), whatever Python
the client runs. It needs the same user and ptrace permission (Linux: Yama
``ptrace_scope`` 0, or CAP_SYS_PTRACE), and the target must not have remote debugging
disabled (``PYTHON_DISABLE_REMOTE_DEBUG``, ``-X disable-remote-debug``).

Client entry: :func:`client.inject` (``client/inject.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

__all__ = ["RemoteAttachError", "make_attachable"]

#: Runs inside the target. Never raises: the job must not be harmed; errors go to the status file.
_SCRIPT = """\
def _framebridge_remote_attach(status_path):
    import json, os
    try:
        import bridge
        bridge.listen()
        from bridge.server import current_server
        server = current_server()
        status = {{"ok": True, "connection_file": str(server.connection_file) if server and server.connection_file else None}}
    except BaseException as exc:
        status = {{"ok": False, "error": f"{{type(exc).__name__}}: {{exc}}"}}
    try:
        tmp = status_path + ".tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(status, f)
        os.replace(tmp, status_path)
    except OSError:
        pass  # the client gave up and removed its directory

_framebridge_remote_attach({status!r})
del _framebridge_remote_attach
"""

#: Runs in a helper process of the target's own interpreter.
_HELPER = """\
import sys
if not hasattr(sys, "remote_exec"):
    sys.stderr.write(f"Python {sys.version.split()[0]} has no sys.remote_exec (it needs 3.14+)")
    sys.exit(3)
sys.remote_exec(int(sys.argv[1]), sys.argv[2])
"""


class RemoteAttachError(RuntimeError):
    """The process could not be made attachable; the message says what to do instead."""


_FALLBACK = ("make it attachable from inside instead: call bridge.listen() (or bridge.set_trace()) "
             "in the program, or start it with `python -m bridge script.py`")


def target_executable(pid: int) -> str:
    """The interpreter binary of process ``pid`` (Linux /proc)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        raise RemoteAttachError(f"no process with pid {pid}") from None
    except OSError as exc:
        raise RemoteAttachError(f"cannot inspect pid {pid} ({exc.strerror}); {_FALLBACK}") from None


def make_attachable(pid: int, *, timeout: float = 10.0, python: Optional[str] = None) -> Path:
    """Make process ``pid`` attachable without it having imported bridge; return the
    path of the connection file it wrote.

    ``python``: the interpreter to request ``sys.remote_exec`` with (default: the
    target's own executable). The target runs the script at its next safe point, so a
    thread busy in a long C call delays it; ``timeout`` bounds the wait. Raises
    RemoteAttachError with what to do when this Python or platform cannot.
    """
    exe = python or target_executable(pid)
    workdir = tempfile.mkdtemp(prefix="framebridge-inject-")  # 0700: only we can read it
    status = os.path.join(workdir, "status.json")
    script = os.path.join(workdir, "attach.py")
    fd = os.open(script, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_SCRIPT.format(status=status))
    # the target (same user) must read the script; the directory stays owner-only
    try:
        try:
            helper = subprocess.run([exe, "-c", _HELPER, str(pid), script], capture_output=True,
                                    text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RemoteAttachError(f"cannot run {exe} to request sys.remote_exec: {exc}; {_FALLBACK}") from None
        if helper.returncode != 0:
            why = (helper.stderr.strip().splitlines() or ["unknown error"])[-1]
            hint = ""
            if "ermission" in why or "ptrace" in why.lower():
                hint = " (it needs the same user and ptrace permission: Yama ptrace_scope 0 or CAP_SYS_PTRACE)"
            raise RemoteAttachError(f"cannot make pid {pid} attachable with sys.remote_exec: {why}{hint}; {_FALLBACK}")
        deadline = time.monotonic() + timeout
        while not os.path.exists(status):
            if time.monotonic() > deadline:
                raise RemoteAttachError(
                    f"pid {pid} did not run the attach script within {timeout:g}s (it runs at the "
                    "process's next Python bytecode: a thread stuck in a long C call delays it)")
            time.sleep(0.02)  # the target writes a file; there is nothing to wait on
        with open(status) as f:
            result = json.load(f)
        if not result.get("ok"):
            raise RemoteAttachError(
                f"pid {pid} could not start bridge: {result.get('error')} (is framebridge installed in "
                f"that process's environment? `{exe} -m pip install framebridge`)")
        if not result.get("connection_file"):
            raise RemoteAttachError(f"pid {pid} listens but wrote no connection file (see its stderr)")
        return Path(result["connection_file"])
    finally:
        for path in (status, script):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.rmdir(workdir)
