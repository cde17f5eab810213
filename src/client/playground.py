"""Run code against a throw-away copy of the paused process (a ``fork()`` of it).

    from client import attach
    from client.playground import run_playground
    s = attach()
    r = run_playground(s, "rows.clear(); len(rows)")
    r.value          # 0 -- in the copy; the target's `rows` is untouched

The target forks from the paused thread; the child runs the code in its copy of the
selected frame, sends back what it printed and the value of the last expression, and
exits. A child that does not finish within ``timeout`` seconds is SIGKILLed. Open files
and sockets are shared with the copy: writing to them is visible outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from bridge import wire

from .display import esc
from .errors import error_from_reply

#: Default wall-clock limit of a playground run (seconds).
DEFAULT_TIMEOUT = 30.0
#: Extra time the request waits beyond the playground's own limit (fork, kill, transfer).
_REQUEST_MARGIN = 15.0

_NOTHING = object()


@dataclass
class PlaygroundResult:
    """What a playground run printed and returned. ``value`` is the last expression's value."""

    output: str
    value: Any
    value_repr: Optional[str]
    error: Optional[Dict[str, str]]
    pid: int
    elapsed: float
    fork_ms: float
    note: str = ""

    @property
    def has_value(self) -> bool:
        """Whether the code ended with an expression whose value is not None."""
        return self.value is not _NOTHING

    def check(self) -> "PlaygroundResult":
        """Raise RemoteError (with the copy's traceback) if the code raised; else return self."""
        if self.error:
            raise error_from_reply(self.error)
        return self

    def __str__(self) -> str:
        parts = [self.output.rstrip("\n")] if self.output else []
        if self.error:
            parts.append(self.error.get("traceback") or self.error["message"])
        elif self.has_value:
            parts.append(self.value_repr or repr(self.value))
        if self.note:
            parts.append(f"({self.note})")
        parts.append(f"[playground: pid {self.pid}, {self.elapsed * 1000:.0f} ms, discarded]")
        return "\n".join(p for p in parts if p)

    def _repr_html_(self) -> str:
        body = esc(str(self))
        return f"<pre style='border-left:3px solid #8a6d3b;padding-left:6px'>{body}</pre>"


def run_playground(session: Any, code: str, *, timeout: float = DEFAULT_TIMEOUT) -> PlaygroundResult:
    """Run ``code`` in a fork of ``session``'s paused process, in the selected frame.

    Nothing the code does survives. Returns its output and the value of its last
    expression; raises RemoteError if the target cannot fork (non-POSIX), if the copy
    hangs past ``timeout`` (it is killed) or dies. Errors raised *by the code* are in
    ``result.error`` (``result.check()`` raises them).
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    result, frames = session.frame_request("playground", {"code": code, "timeout": float(timeout)},
                                           timeout=timeout + _REQUEST_MARGIN)
    value: Any = _NOTHING
    note = ""
    if result.get("has_value"):
        if frames:
            try:
                value = wire.load_value(frames)
            except Exception as exc:  # e.g. a class the notebook cannot import: show the repr
                note = f"value not loadable here ({type(exc).__name__}: {exc}); showing its repr"
                value = _Repr(result.get("value_repr") or "")
        else:
            note = f"value could not be sent ({result.get('value_error')}); showing its repr"
            value = _Repr(result.get("value_repr") or "")
    return PlaygroundResult(output=result.get("output", ""), value=value, value_repr=result.get("value_repr"),
                            error=result.get("error"), pid=int(result.get("pid", 0)),
                            elapsed=float(result.get("elapsed", 0.0)), fork_ms=float(result.get("fork_ms", 0.0)),
                            note=note)


class _Repr(str):
    """A value's repr standing in for a value that could not travel; displays bare."""

    def __repr__(self) -> str:
        return str(self)
