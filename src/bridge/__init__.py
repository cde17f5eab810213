"""framebridge's target side: pause a running Python process and serve its frames.

    import bridge
    bridge.set_trace()      # or breakpoint() with PYTHONBREAKPOINT=bridge.set_trace

Light on purpose (pyzmq + cryptography, no IPython): it goes into production jobs.
Configuration by environment: BRIDGE_HOST, BRIDGE_PORT, BRIDGE_RUNTIME_DIR,
BRIDGE_CONFIG_DIR, BRIDGE_WAIT_TIMEOUT.
"""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

from . import forks  # noqa: F401  # a forked child forgets the parent's server (forks.py)

__all__ = ["set_trace", "listen", "post_mortem", "install_excepthook", "__version__"]
__version__ = "0.1.0"


def _wait_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is not None:
        return float(timeout)
    env = os.environ.get("BRIDGE_WAIT_TIMEOUT")
    return float(env) if env else None


def set_trace(frame: Optional[FrameType] = None, *, timeout: Optional[float] = None) -> None:
    """Pause the calling thread at its caller's frame (or ``frame``) until a client resumes it.

    Starts the server on first use. With ``timeout`` (seconds; default BRIDGE_WAIT_TIMEOUT):
    if no client request arrives for that long, print one line to stderr and go on.
    """
    from . import own_code, pause, tracing_hook

    if frame is None:
        frame = sys._getframe(1)
    frames = own_code.user_frames(frame)
    action = pause.serve(frames, "set_trace", timeout=_wait_timeout(timeout))
    tracing_hook.after_pause(frames[0] if frames else frame, action)


def listen(host: str = "127.0.0.1", port: int = 0) -> str:
    """Make this process attachable without pausing; return the endpoint. Idempotent."""
    from . import server, tracing_hook

    srv = server.get_server(host if host != "127.0.0.1" else None, port or None)
    tracing_hook.enable_pause_on_demand()
    return srv.endpoint


def post_mortem(tb: Optional[TracebackType] = None, *, timeout: Optional[float] = None) -> None:
    """Pause at the frame where ``tb`` (default: the exception being handled) was raised."""
    from . import own_code, pause, summaries

    exc: Optional[BaseException] = None
    if tb is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("post_mortem() needs a traceback or an exception being handled")
        tb = exc.__traceback__
    if tb is None:
        raise ValueError("the exception has no traceback")
    frames = own_code.traceback_frames(tb)
    info: dict = {}
    if exc is not None:
        info["exception"] = summaries.safe_repr(exc, 300)
    pause.serve(frames, "post_mortem", timeout=_wait_timeout(timeout), info=info)


def install_excepthook() -> None:
    """Unhandled exceptions (main thread and threading threads) pause post-mortem first."""
    previous = sys.excepthook
    previous_thread = threading.excepthook

    def excepthook(kind: type, exc: BaseException, tb: Optional[TracebackType]) -> None:
        previous(kind, exc, tb)
        if tb is not None and not issubclass(kind, (KeyboardInterrupt, SystemExit)):
            _post_mortem_exc(exc, tb)

    def thread_excepthook(args: Any) -> None:
        previous_thread(args)
        if args.exc_traceback is not None and not issubclass(args.exc_type, SystemExit):
            _post_mortem_exc(args.exc_value, args.exc_traceback)

    excepthook.bridge_post_mortem = True  # type: ignore[attr-defined]  # python -m bridge checks
    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def _post_mortem_exc(exc: Optional[BaseException], tb: TracebackType) -> None:
    from . import own_code, pause, summaries

    print(f"bridge: pausing post-mortem (pid {os.getpid()}); attach to inspect, continue to exit",
          file=sys.__stderr__)
    info = {"exception": summaries.safe_repr(exc, 300)} if exc is not None else {}
    pause.serve(own_code.traceback_frames(tb), "post_mortem", timeout=_wait_timeout(None), info=info)
