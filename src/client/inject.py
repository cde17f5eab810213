"""``inject(pid)``: attach to a process that never imported bridge (Python 3.14+).

Explicit on purpose: it runs code inside another process (through ``sys.remote_exec``),
so ``attach(pid)`` never does it behind the user's back.
"""

from __future__ import annotations

from bridge import remote_attach

from .discovery import attach
from .errors import RemoteAttachError
from .session import DEFAULT_TIMEOUT, Session

__all__ = ["inject", "RemoteAttachError"]


def inject(pid: int, *, timeout: float = DEFAULT_TIMEOUT) -> Session:
    """Make process ``pid`` attachable (``bridge.listen()`` run inside it through
    ``sys.remote_exec``) and attach to it.

    Needs CPython 3.14+ in the target, ``bridge`` importable in the target's environment,
    the same user and ptrace permission. Raises :class:`RemoteAttachError` saying what to
    do otherwise (call ``bridge.listen()`` in the program, or run it with
    ``python -m bridge``). The target keeps running; use ``pause()`` or ``break_at()``.
    """
    try:
        path = remote_attach.make_attachable(pid, timeout=min(timeout, 30.0))
    except remote_attach.RemoteAttachError as exc:
        raise RemoteAttachError(str(exc)) from exc
    return attach(path, timeout=timeout)
