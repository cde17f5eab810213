"""Session: the notebook's handle on one attached target process.

Two connections per session: the *request* channel, used by whichever thread calls a
method (one request at a time, under a lock), and the *event* channel, owned by a
listener thread (client/events.py) that keeps :attr:`Session.pause_state` current and
wakes :meth:`Session.wait` and subscribers such as the DebugPanel. Keeping them apart
means no ZeroMQ socket is ever touched by two threads.

The request interface other client modules build on (docs/protocol.md names the ops):

* :meth:`Session.request` sends a *server op* (breakpoints, status, threads, pause);
* :meth:`Session.frame_request` sends a *frame op* to a paused thread's frame: the
  selected one, or the :class:`FrameRef` given. It may take that pause's lane;
* :attr:`Session.selected`, :meth:`Session.current_pause` and :attr:`Session.pause_state`
  say what is paused and selected; :attr:`Session.refs` holds the live references.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

import zmq

from bridge import bulk, keys, wire

from . import proxy
from .code_methods import CodeEditing
from .control import DebugControl
from .errors import (
    AuthenticationError,
    BridgeError,
    NoSuchFrame,
    NotPaused,
    PauseTimeout,
    ProtocolError,
    SessionLost,
    TransferError,
)
from .events import EventCallback, EventListener
from .lanes import Lanes, lanes_allowed
from .pause_state import PauseState
from .transport import Channel, handshake
from .values import FrameInfo, FrameRef, Output, PauseInfo, Stack, Variables, VarSummary

__all__ = ["Session", "DEFAULT_TIMEOUT", "DEFAULT_WAIT_TIMEOUT", "NO_VALUE",
           # the value types, importable from here as before
           "PauseInfo", "FrameInfo", "FrameRef", "Stack", "VarSummary", "Variables", "Output"]

DEFAULT_TIMEOUT = 30.0
#: `value` argument default meaning "this request carries no value" (None is a value).
NO_VALUE: Any = object()
DEFAULT_WAIT_TIMEOUT = 300.0

#: What a request returns: the reply's JSON ``result`` and its value frames.
Reply = Tuple[Any, List[Any]]


class Session(DebugControl, CodeEditing):
    """An attached target process. Create with :func:`client.attach`."""

    def __init__(self, info: Dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                 keypair: Optional[keys.KeyPair] = None) -> None:
        self.info = info
        self.pid: int = int(info["pid"])
        self.timeout = timeout
        self.wait_timeout = DEFAULT_WAIT_TIMEOUT
        #: What is paused, and the selected thread and frame (kept current by the events).
        self.pause_state = PauseState()
        #: The live references this session holds (client/proxy.py).
        self.refs = proxy.RefRegistry(self)
        self._keypair = keypair or keys.load_client_keypair()
        self._context = zmq.Context()
        self._lock = threading.RLock()  # one request at a time on the channels below
        self._closed = False
        self._events: Optional[EventListener] = None
        self._channel = Channel(self._context, info, self._keypair)
        self._lanes = Lanes(self.pause_state, self._channel, self._context)
        try:
            self.hello = handshake(self._channel, timeout=min(timeout, 10.0))
            self._lanes.enabled = lanes_allowed(self._channel, self.hello)
            self._events = EventListener(self._context, info, self._keypair, self.pause_state)
            self._events.start_and_subscribe(timeout=min(timeout, 10.0))
        except BaseException:
            self._teardown()
            raise

    # --- state -----------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether a thread of the target is paused now (as last reported by the target)."""
        return self.pause_state.any()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a closed session cannot be used again)."""
        return self._closed

    @property
    def selected(self) -> Optional[FrameRef]:
        """The selected frame (thread, frame index, pause id) that ``eval``, ``exec``,
        ``locals``, ``get``, ``set`` and ``jump_context`` use; None while nothing is paused."""
        return self.pause_state.selection()

    @property
    def bulk_mode(self) -> str:
        """How big values travel: ``"shm"`` (shared memory), ``"aes"`` (the data port) or
        ``"curve"`` (inside the CURVE messages: no bulk path)."""
        peer = self._channel.bulk
        return "curve" if peer is None else peer.mode

    def current_pause(self, thread: Optional[int] = None) -> Optional[PauseInfo]:
        """The pause of ``thread`` (NotPaused if it is not paused), else the selected
        thread's; None if no thread is paused."""
        return self.pause_state.current(thread)

    def pauses(self) -> List[PauseInfo]:
        """Every paused thread, oldest pause first."""
        return self.pause_state.all()

    def wait(self, timeout: Optional[float] = None) -> PauseInfo:
        """Block until a thread is paused and return that pause (at once if one is).

        ``timeout`` defaults to :attr:`wait_timeout` (300 s); past it PauseTimeout (a
        TimeoutError). Ctrl-C cancels the wait and leaves the session usable; a target
        that exits raises SessionLost.
        """
        limit = self.wait_timeout if timeout is None else timeout
        state = self.pause_state

        def landed() -> Optional[PauseInfo]:
            pauses = state.all()
            return (state.selected_pause() or pauses[0]) if pauses else None

        pause = state.wait_for(landed, time.monotonic() + limit)
        if pause is None:
            raise PauseTimeout(f"pid {self.pid} did not pause within {limit:g}s")
        return pause

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event, body)`` (on the listener thread) for every event; returns an unsubscribe function."""
        if self._events is None:  # only while __init__ runs (it fails without a listener)
            raise SessionLost(f"pid {self.pid}: no event subscription")
        return self._events.subscribe(callback)

    # --- requests ----------------------------------------------------------------------

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, *, frames: Optional[List[Any]] = None,
                value: Any = NO_VALUE, timeout: Optional[float] = None) -> Reply:
        """Send server op ``op`` and wait for its reply: (result, value frames).

        ``value`` (pickled as :func:`client.proxy.dump` does) or ``frames`` (already
        encoded) travel with it. ``timeout`` defaults to the session's :attr:`timeout`.
        Errors the target answers with raise (client/errors.py).
        """
        if value is not NO_VALUE:
            frames = self._dump(value)
        return self._send(op, args, frames, timeout)

    def frame_request(self, op: str, args: Optional[Dict[str, Any]] = None, *, at: Optional[FrameRef] = None,
                      frames: Optional[List[Any]] = None, value: Any = NO_VALUE, timeout: Optional[float] = None,
                      release: Optional[List[List[int]]] = None) -> Reply:
        """Send frame op ``op`` to a paused frame and wait for its reply: (result, value frames).

        ``at``: the frame to run in; by default the selected frame of the selected thread,
        in whatever pause that thread is in. With ``at`` the thread and frame are fixed,
        and a ``pause_id`` there makes the target refuse (NotPaused) once that pause is
        over. ``release``: live-reference handles given back with it (``[[ref, count]]``).
        The rest is as for :meth:`request`.
        """
        state = self.pause_state
        if at is None:
            pause = state.current()
            full: Dict[str, Any] = {"frame": state.selected_frame(pause)}
            if pause is not None:
                full["thread"] = pause.thread
            pause_id = None
        else:
            pause = state.get(at.thread)
            full = {"frame": at.frame, "thread": at.thread}
            pause_id = at.pause_id
        if args:
            full.update(args)
        if value is not NO_VALUE:
            frames = self._dump(value)
        return self._send(op, full, frames, timeout, pause=pause, pause_id=pause_id, release=release)

    def _send(self, op: str, args: Optional[Dict[str, Any]], frames: Optional[List[Any]], timeout: Optional[float],
              *, pause: Optional[PauseInfo] = None, pause_id: Optional[int] = None,
              release: Optional[List[List[int]]] = None) -> Reply:
        """The one place a request meets a channel: ``pause``'s lane when it has a
        connected one (client/lanes.py), else the server socket."""
        if self._closed:
            raise SessionLost("this session is closed; attach again")
        revoked = self._revoked()
        if revoked is not None:
            raise revoked
        wait = self.timeout if timeout is None else timeout
        with self._lock:
            channel, still_valid = self._channel, None
            if pause is not None:
                lane = self._lanes.channel(pause)
                if lane is not None:
                    channel, still_valid = lane, self._lanes.alive(pause)
                    if pause_id is None:
                        pause_id = pause.pause_id  # a lane serves its own pause only
            try:
                return channel.request(op, args, frames, timeout=wait, pause_id=pause_id, release=release or None,
                                       still_valid=still_valid)
            except NotPaused:
                revoked = self._revoked()  # a lane wait ended by the event listener's failure
                if revoked is not None:
                    raise revoked from None
                raise
            except BridgeError:
                raise
            except (bulk.BulkError, OSError) as exc:  # OSError: only the bulk path uses plain sockets
                raise TransferError("BulkError", f"pid {self.pid}: {type(exc).__name__}: {exc}") from exc
            except wire.ProtocolError as exc:
                raise ProtocolError("ProtocolError", f"pid {self.pid} sent a reply we cannot read: {exc}") from exc
            except zmq.ZMQError as exc:
                raise SessionLost(f"pid {self.pid}: the connection failed ({exc})") from exc

    def _revoked(self) -> Optional[AuthenticationError]:
        """The target's refusal of our key, if its last event said so (docs/security.md)."""
        failure = self.pause_state.failure
        return failure if isinstance(failure, AuthenticationError) else None

    # --- frames ------------------------------------------------------------------------

    def stack(self) -> Stack:
        """Frames of the selected paused thread, innermost first (the selected one marked)."""
        selected = self.selected
        result, _ = self.frame_request("stack")
        index = selected.frame if selected is not None else 0
        return Stack(FrameInfo.from_json(f, selected=f["index"] == index) for f in result["frames"])

    def select(self, i: int = 0, *, thread: Optional[int] = None) -> FrameInfo:
        """Select frame ``i`` (0 = innermost) of the selected thread, or of paused ``thread``."""
        pause = self.current_pause(thread)
        if pause is None:
            raise NotPaused(f"no thread of pid {self.pid} is paused")
        result, _ = self.frame_request("stack", at=FrameRef(pause.thread, 0))
        frames = result["frames"]
        if not 0 <= i < len(frames):
            raise NoSuchFrame(f"frame {i} does not exist: the stack has {len(frames)} frames (0 is innermost)")
        self.pause_state.select(pause.thread, i, result.get("pause_id", pause.pause_id))
        return FrameInfo.from_json(dict(frames[i], index=i), selected=True)

    def up(self) -> FrameInfo:
        """Select the caller of the selected frame."""
        return self.select(self._selected_index() + 1)

    def down(self) -> FrameInfo:
        """Select the frame the selected frame called."""
        current = self._selected_index()
        if current == 0:
            raise NoSuchFrame("already at the innermost frame")
        return self.select(current - 1)

    def _selected_index(self) -> int:
        selected = self.selected
        return 0 if selected is None else selected.frame

    def locals(self) -> Variables:
        """The selected frame's variables: name -> summary (type, short repr, size), no values sent."""
        result, _ = self.frame_request("locals")
        out = Variables()
        for name, s in result.items():
            out[name] = VarSummary(name=name, type=s["type"], repr=s["repr"], size=s.get("size"),
                                   shape=s.get("shape"), length=s.get("len"))
        return out

    def eval(self, expr: str, *, timeout: Optional[float] = None, stdout: Optional[TextIO] = None) -> Any:
        """Evaluate ``expr`` in the selected frame and return the value itself.

        ``timeout`` (seconds) defaults to the session's :attr:`timeout`. What the
        expression printed in the target is written to ``stdout`` (default: sys.stdout).
        """
        result, frames = self.frame_request("eval", {"expr": expr}, timeout=timeout or self.timeout)
        if result:
            if "output" in result:
                (stdout or sys.stdout).write(result["output"])
            if "value" in result:  # a scalar the target sent in the header (JSON)
                return result["value"]
            if result.get("plain") and len(frames) == 1:
                # A builtin scalar (the target says so): nothing for the checking unpickler to do.
                frame = frames[0]
                return pickle.loads(frame.buffer if hasattr(frame, "buffer") else frame)
        return self._load(frames)

    def exec(self, code: str, *, timeout: Optional[float] = None) -> Output:
        """Execute ``code`` in the selected frame; return what it printed. Assignments change the frame.

        ``timeout`` (seconds) defaults to the session's :attr:`timeout`.
        """
        result, _ = self.frame_request("exec", {"code": code}, timeout=timeout or self.timeout)
        return Output(result.get("output", ""))

    def get(self, name: str) -> Any:
        """The value of variable ``name`` of the selected frame."""
        _, frames = self.frame_request("get", {"names": [name]})
        return self._load(frames)[name]

    def set(self, **values: Any) -> None:
        """Bind variables of the selected frame, all or nothing."""
        if not values:
            return
        self.frame_request("set", value=values)

    def delete(self, *names: str) -> None:
        """Unbind variables of the selected frame (not possible for locals on 3.13+)."""
        self.frame_request("set", {"delete": list(names)})

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(**{name: value})

    def _load(self, frames: List[Any]) -> Any:
        """Decode a value from the target; what could not be copied arrives as a live reference."""
        return proxy.load(self.refs, frames)

    def _dump(self, value: Any) -> List[Any]:
        """Encode a value for the target: live references go back as themselves, notebook
        functions and classes by value (cloudpickle)."""
        return proxy.dump(value)

    # --- execution control -----------------------------------------------------------

    def cont(self, *, thread: Optional[int] = None) -> None:
        """Resume every paused thread (or only ``thread``)."""
        if thread is not None:
            targets = [thread]
        else:
            result, _ = self.request("status")
            targets = [p["thread"] for p in result["paused"]]
            if not targets:
                raise NotPaused(f"no thread of pid {self.pid} is paused")
        for t in targets:
            self._resume("cont", t)

    def step(self) -> None:
        """Step into: stop at the next line, entering calls."""
        self._resume("step")

    def next(self) -> None:
        """Step over: stop at the next line of this frame; once it has returned, at the
        next line run anywhere (pdb's ``next``; docs/stepping.md)."""
        self._resume("next")

    def step_out(self) -> None:
        """Run until the selected frame returns, then stop at the next line run: in its
        caller, or in the next call on the caller's line (pdb's ``return``, then ``step``;
        docs/stepping.md)."""
        self._resume("step_out")

    def _resume(self, op: str, thread: Optional[int] = None) -> None:
        at = None if thread is None else FrameRef(thread, 0)
        result, _ = self.frame_request(op, {"frame": 0}, at=at)
        self.pause_state.retire(int(result["thread"]), int(result["pause_id"]), reset_frame=True)

    def threads(self) -> List[Dict[str, Any]]:
        """Every thread of the target: id, name, paused or running, where."""
        result, _ = self.request("threads")
        return result

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Detach. The target keeps running, or stays paused for another client."""
        if self._closed:
            return
        if self.paused:
            try:
                self.refs.release_all()  # otherwise the target keeps those objects alive until it exits
            except Exception:
                pass  # the target is gone or resumed: nothing left to release there
        self._closed = True
        try:
            with self._lock:
                if self._channel.failure is None and not self._channel.closed:
                    self._channel.send("unsubscribe")
        except Exception:
            pass
        self._teardown()

    def _teardown(self) -> None:
        if self._events is not None:
            self._events.stop()
        with self._lock:
            self._lanes.close_all()
        self._channel.close()
        self._context.term()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running"
        argv = " ".join(self.info.get("argv") or [])
        return f"<Session pid={self.pid} {state} {argv!r} at {self.info.get('endpoint')}>"

    def _repr_html_(self) -> str:
        from .display import session_html

        return session_html(self)

