"""framebridge's target side: pause a running Python process and serve its frames.

    import bridge
    bridge.set_trace()      # or breakpoint() with PYTHONBREAKPOINT=bridge.set_trace

Light on purpose (pyzmq + cryptography, no IPython): it goes into production jobs.
Configuration by environment: BRIDGE_HOST, BRIDGE_PORT, BRIDGE_RUNTIME_DIR,
BRIDGE_CONFIG_DIR, BRIDGE_WAIT_TIMEOUT; BRIDGE_CHILDREN=1 makes a new interpreter
attachable at start-up (set by ``listen(children=True)`` for the children).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, List, Optional

from . import forks  # noqa: F401  # a forked child forgets the parent's server (forks.py)
from . import stack_room

__all__ = ["set_trace", "listen", "post_mortem", "install_excepthook", "checkpoint", "__version__"]
__version__ = "0.1.0"

_NO_ROOM = ("bridge: cannot pause here: no room left below the recursion limit "
            "(sys.setrecursionlimit); the job goes on")
#: Pauses that found no room even to print _NO_ROOM (the last frame the limit allows, up
#: to 3.11, where a call to print counts too); said at the next pause or at exit.
_unreported = 0


def _serve(frames: List[FrameType], reason: str, timeout: Optional[float], info: Optional[dict] = None) -> str:
    """Pause at ``frames`` (pause.serve); where framebridge cannot serve (a broken setup),
    print why in one line and return "continue": the job goes on (startup.py)."""
    from . import pause, startup

    try:
        return pause.serve(frames, reason, timeout=startup.wait_timeout(timeout), info=info)
    except startup.StartError as exc:
        startup.report(exc)
        return "continue"


def set_trace(frame: Optional[FrameType] = None, *, timeout: Optional[float] = None) -> None:
    """Pause the calling thread at its caller's frame (or ``frame``) until a client resumes it.

    Starts the server on first use. With ``timeout`` (seconds; default BRIDGE_WAIT_TIMEOUT):
    if no client request arrives for that long, print one line to stderr and go on. Where
    the server cannot start (a key file others can read, a busy BRIDGE_PORT...), print one
    line saying what is wrong and how to fix it, and go on without pausing.
    Never raises into the job from deep in a recursion: framebridge's own frames get room
    below the recursion limit (stack_room.py); where not even that fits, one line says so.
    """
    global _unreported
    try:  # first, before any call that needs room
        room = stack_room.open_room()
    except RecursionError:
        try:  # a method call, not print(): one call deep, where every call counts
            sys.__stderr__.write(_NO_ROOM + "\n")
        except Exception:  # no room even for that: said later (_say_unreported)
            _unreported += 1
        return
    try:
        if frame is None:
            frame = sys._getframe(1)
        _pause_at(frame, timeout)
    except RecursionError:  # our own code needed more than the room (a pathological stack)
        _say(_NO_ROOM)
    finally:
        room.close()


def _pause_at(frame: FrameType, timeout: Optional[float]) -> None:
    from . import own_code, tracing_hook

    _say_unreported()
    frames = own_code.user_frames(frame)
    action = _serve(frames, "set_trace", timeout)
    tracing_hook.after_pause(frames[0] if frames else frame, action)


def _say(line: str) -> None:
    try:
        print(line, file=sys.__stderr__)
    except Exception:  # a closed stderr must not break the job
        pass


def _say_unreported() -> None:
    global _unreported
    if _unreported:
        count, _unreported = _unreported, 0
        _say(f"bridge: {count} earlier pause{'s' if count > 1 else ''} could not pause: no room left "
             "below the recursion limit (sys.setrecursionlimit)")


atexit.register(_say_unreported)


def checkpoint(*, force: bool = False) -> Any:
    """Keep a copy-on-write snapshot of this process here and return its ``Checkpoint``
    (docs/howto-rewind.md): ``bridge.checkpoints.take()`` labelled with the caller's line.

    Returns here in the process that carries the job on, and again after each rewind to
    it, with ``cp.resumed`` true. A process that serves clients keeps serving (a new
    server: attached sessions follow with ``Session.follow()``). Raises
    ``bridge.checkpoints.ThreadsRunning`` when other Python threads run, unless ``force``.
    """
    from .checkpoint_ops import take_here

    return take_here(sys._getframe(1), force=force)


def listen(host: str = "127.0.0.1", port: int = 0, *, children: bool = False) -> str:
    """Make this process attachable without pausing; return the endpoint. Idempotent.

    ``children=True``: the processes it starts from now on become attachable too
    (``multiprocessing`` with any start method, ``concurrent.futures``, ``subprocess``
    running Python with framebridge installed; see bridge/children.py).

    Raises ``bridge.startup.StartError`` (a RuntimeError whose one-line message says what
    is wrong and how to fix it) when the server cannot start.
    """
    room = stack_room.open_room()  # the first call imports ZeroMQ: never half-way (stack_room.py)
    try:
        from . import server, tracing_hook

        srv = server.get_server(host if host != "127.0.0.1" else None, port or None)
        tracing_hook.enable_pause_on_demand()
        if children:
            from . import children as child_processes

            child_processes.enable()
        return srv.endpoint
    finally:
        room.close()


def post_mortem(tb: Optional[TracebackType] = None, *, timeout: Optional[float] = None) -> None:
    """Pause at the frame where ``tb`` (default: the exception being handled) was raised."""
    exc: Optional[BaseException] = None
    if tb is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("post_mortem() needs a traceback or an exception being handled")
        tb = exc.__traceback__
    if tb is None:
        raise ValueError("the exception has no traceback")
    _post_mortem_exc(exc, tb, timeout=timeout, announce=False)


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


def _post_mortem_exc(exc: Optional[BaseException], tb: TracebackType, *, timeout: Optional[float] = None,
                     announce: bool = True) -> None:
    try:  # first, before any call that needs room (a RecursionError's post-mortem is deep)
        room = stack_room.open_room()
    except RecursionError:
        _say(_NO_ROOM)
        return
    try:
        from . import own_code, summaries

        if announce:
            _say(f"bridge: pausing post-mortem (pid {os.getpid()}); attach to inspect, continue to exit")
        info = {"exception": summaries.safe_repr(exc, 300)} if exc is not None else {}
        _serve(own_code.traceback_frames(tb), "post_mortem", timeout, info)
    except RecursionError:
        _say(_NO_ROOM)
    finally:
        room.close()
