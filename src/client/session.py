"""Session: the notebook's handle on one attached target process.

Two connections per session: the *request* channel, used by whichever thread calls a
method (one request at a time, under a lock), and the *event* channel, owned by a
listener thread that keeps :attr:`Session.paused` current and wakes :meth:`Session.wait`
and subscribers such as the DebugPanel. Keeping them apart means no ZeroMQ socket is ever
touched by two threads.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import zmq

from bridge import keys

from .control import DebugControl
from .errors import NotPaused, SessionLost
from .lanes import Lanes, lanes_allowed
from .transport import Channel, handshake

DEFAULT_TIMEOUT = 30.0
#: `value` argument default meaning "this request carries no value" (None is a value).
NO_VALUE: Any = object()
DEFAULT_WAIT_TIMEOUT = 300.0


@dataclass
class PauseInfo:
    """Where and why a thread is paused."""

    thread: int
    name: str
    file: str
    line: int
    function: str
    reason: str
    pause_id: int
    module: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, body: Dict[str, Any]) -> "PauseInfo":
        known = {"thread", "name", "file", "line", "function", "reason", "pause_id", "module"}
        return cls(
            thread=int(body["thread"]), name=str(body.get("name", "")), file=str(body.get("file", "")),
            line=int(body.get("line", 0)), function=str(body.get("function", "")),
            reason=str(body.get("reason", "")), pause_id=int(body.get("pause_id", 0)),
            module=str(body.get("module", "")),
            extra={k: v for k, v in body.items() if k not in known and k not in ("event", "time")},
        )

    def __str__(self) -> str:
        text = f"thread {self.name} ({self.thread}) paused ({self.reason}) at {self.file}:{self.line} in {self.function}"
        if "exception" in self.extra:
            text += f"\n  exception: {self.extra['exception']}"
        for expr, value in (self.extra.get("watches") or {}).items():
            text += f"\n  watch {expr} = {value}"
        return text

    def _repr_html_(self) -> str:
        from .display import pause_html

        return pause_html(self)


@dataclass
class FrameInfo:
    """One frame of a paused thread's stack."""

    index: int
    file: str
    line: int
    function: str
    module: str = ""
    selected: bool = False

    def __str__(self) -> str:
        mark = ">" if self.selected else " "
        return f"{mark} [{self.index}] {self.function} at {self.file}:{self.line}"


class Stack(list):
    """A list of FrameInfo, innermost first, that prints like pdb's `where`."""

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        from .display import stack_html

        return stack_html(self)


@dataclass
class VarSummary:
    """A variable described without transferring it: type, short repr, size."""

    name: str
    type: str
    repr: str
    size: Optional[int] = None
    shape: Optional[List[int]] = None
    length: Optional[int] = None

    def __str__(self) -> str:
        return f"{self.name}: {self.type} = {self.repr}"


class Variables(dict):
    """name -> VarSummary, shown as a table."""

    def __repr__(self) -> str:
        return "\n".join(str(v) for v in self.values()) or "(no variables)"

    def _repr_html_(self) -> str:
        from .display import variables_html

        return variables_html(self)


class Output(str):
    """Text a remote ``exec`` printed; shows as itself, not as a quoted string."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Session(DebugControl):
    """An attached target process. Create with :func:`client.attach`."""

    def __init__(self, info: Dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                 keypair: Optional[keys.KeyPair] = None) -> None:
        self.info = info
        self.pid: int = int(info["pid"])
        self.timeout = timeout
        self.wait_timeout = DEFAULT_WAIT_TIMEOUT
        self._keypair = keypair or keys.load_client_keypair()
        self._context = zmq.Context()
        self._lock = threading.RLock()
        self._state = threading.Condition()
        self._pauses: Dict[int, PauseInfo] = {}
        self._retired: set = set()
        self._listeners: List[Callable[[str, Dict[str, Any]], None]] = []
        self._thread: Optional[int] = None
        self._frame = 0
        self._frame_pause_id = 0
        self._closed = False
        self._channel = Channel(self._context, info, self._keypair)
        self._lanes = Lanes(self)
        try:
            self.hello = handshake(self._channel, timeout=min(timeout, 10.0))
            self._lanes.enabled = lanes_allowed(self._channel, self.hello)
            self._events = _EventListener(self)
            self._events.start_and_subscribe(timeout=min(timeout, 10.0))
        except BaseException:
            self._teardown()
            raise

    # --- state -----------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether a thread of the target is paused now (as last reported by the target)."""
        with self._state:
            return bool(self._pauses)

    def pauses(self) -> List[PauseInfo]:
        """Every paused thread, oldest pause first."""
        with self._state:
            return sorted(self._pauses.values(), key=lambda p: p.pause_id)

    def wait(self, timeout: Optional[float] = None) -> PauseInfo:
        """Block until a thread is paused and return that pause (at once if one is).

        ``timeout`` defaults to :attr:`wait_timeout` (300 s). Ctrl-C cancels the wait and
        leaves the session usable; a target that exits raises SessionLost.
        """
        limit = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._state:
            while True:
                if self._pauses:
                    return self._selected_pause() or self.pauses()[0]
                if self._events.failure is not None:
                    raise self._events.failure
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pid {self.pid} did not pause within {limit:g}s")
                self._state.wait(min(left, 0.25))

    def on_event(self, callback: Callable[[str, Dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event, body)`` (on the listener thread) for every event; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _selected_pause(self) -> Optional[PauseInfo]:
        with self._state:
            if self._thread is not None and self._thread in self._pauses:
                return self._pauses[self._thread]
            return None

    def _apply_event(self, event: str, body: Dict[str, Any]) -> None:
        with self._state:
            if event == "paused":
                info = PauseInfo.from_event(body)
                if info.pause_id not in self._retired:
                    self._pauses[info.thread] = info
            elif event == "resumed":
                self._retire(int(body.get("thread", 0)), int(body.get("pause_id", 0)))
            elif event == "lane":  # the pause's own socket is open (lanes.py)
                current = self._pauses.get(int(body.get("thread", 0)))
                if current is not None and current.pause_id == body.get("pause_id"):
                    current.extra.update(lane=body.get("lane"), lane_key=body.get("lane_key"))
            self._state.notify_all()
        for callback in list(self._listeners):
            try:
                callback(event, body)
            except Exception as exc:  # a broken callback must not kill the listener
                print(f"framebridge: event callback failed: {exc!r}", file=sys.stderr)

    def _retire(self, thread: int, pause_id: int) -> None:
        self._retired.add(pause_id)
        current = self._pauses.get(thread)
        if current is not None and current.pause_id <= pause_id:
            del self._pauses[thread]

    # --- requests ----------------------------------------------------------------------

    def _request(self, op: str, args: Optional[Dict[str, Any]] = None, value: Any = NO_VALUE,
                 frames: Optional[List[Any]] = None, timeout: Optional[float] = ..., *,
                 frame_op: bool = False) -> Any:
        """Send one request and return (result, value frames).

        ``frame_op``: the op runs on the paused thread ``args["thread"]``, so it may take
        that pause's lane (straight to the thread) instead of the server socket.
        """
        if self._closed:
            raise SessionLost("this session is closed; attach again")
        if value is not NO_VALUE:
            frames = self._dump(value)
        wait = self.timeout if timeout is ... else timeout
        with self._lock:
            pause = self._pauses.get(args.get("thread")) if frame_op and args else None  # type: ignore[arg-type]
            lane = self._lanes.channel(pause) if pause is not None else None
            if lane is None:
                return self._channel.request(op, args, frames, timeout=wait)
            if args.get("pause_id") is None:  # type: ignore[union-attr]
                args = dict(args, pause_id=pause.pause_id)  # type: ignore[union-attr]
            return lane.request(op, args, frames, timeout=wait, still_valid=self._lanes.alive(pause))

    def _frame_args(self, frame: Optional[int] = None, thread: Optional[int] = None) -> Dict[str, Any]:
        pause = self._current_pause(thread)
        if frame is None:
            frame = self._frame if pause is None or pause.pause_id == self._frame_pause_id else 0
        args: Dict[str, Any] = {"frame": frame}
        if pause is not None:
            args["thread"] = pause.thread
        return args

    def _current_pause(self, thread: Optional[int] = None) -> Optional[PauseInfo]:
        if thread is None and self._thread is not None:
            # The common case, without the lock (issue 6): single dict reads are atomic.
            selected = self._pauses.get(self._thread)
            if selected is not None:
                return selected
        with self._state:
            if thread is not None:
                if thread not in self._pauses:
                    raise NotPaused(f"thread {thread} is not paused")
                return self._pauses[thread]
            selected = self._selected_pause()
            if selected is not None:
                return selected
            pauses = self.pauses()
            if not pauses:
                return None
            self._thread = pauses[0].thread
            return pauses[0]

    def frame_op(self, op: str, args: Optional[Dict[str, Any]] = None, value: Any = NO_VALUE,
                 timeout: Optional[float] = ...) -> Any:
        """Run a frame op against the selected frame; returns (result, value frames)."""
        full = self._frame_args()
        full.update(args or {})
        return self._request(op, full, value=value, timeout=timeout, frame_op=True)

    # --- frames ------------------------------------------------------------------------

    def stack(self) -> Stack:
        """Frames of the selected paused thread, innermost first (the selected one marked)."""
        args = self._frame_args()
        result, _ = self._request("stack", args, frame_op=True)
        selected = args["frame"]
        return Stack(
            FrameInfo(index=f["index"], file=f["file"], line=f["line"], function=f["function"],
                      module=f.get("module", ""), selected=f["index"] == selected)
            for f in result["frames"]
        )

    def select(self, i: int = 0, *, thread: Optional[int] = None) -> FrameInfo:
        """Select frame ``i`` (0 = innermost) of the selected thread, or of paused ``thread``."""
        pause = self._current_pause(thread)
        if pause is None:
            raise NotPaused(f"no thread of pid {self.pid} is paused")
        result, _ = self._request("stack", {"thread": pause.thread, "frame": 0}, frame_op=True)
        frames = result["frames"]
        if not 0 <= i < len(frames):
            raise IndexError(f"frame {i} does not exist: the stack has {len(frames)} frames (0 is innermost)")
        with self._state:
            self._thread = pause.thread
            self._frame = i
            self._frame_pause_id = result.get("pause_id", pause.pause_id)
        f = frames[i]
        return FrameInfo(index=i, file=f["file"], line=f["line"], function=f["function"],
                         module=f.get("module", ""), selected=True)

    def up(self) -> FrameInfo:
        """Select the caller of the selected frame."""
        return self.select(self._frame_args()["frame"] + 1)

    def down(self) -> FrameInfo:
        """Select the frame the selected frame called."""
        current = self._frame_args()["frame"]
        if current == 0:
            raise IndexError("already at the innermost frame")
        return self.select(current - 1)

    def locals(self) -> Variables:
        """The selected frame's variables: name -> summary (type, short repr, size), no values sent."""
        result, _ = self.frame_op("locals")
        out = Variables()
        for name, s in result.items():
            out[name] = VarSummary(name=name, type=s["type"], repr=s["repr"], size=s.get("size"),
                                   shape=s.get("shape"), length=s.get("len"))
        return out

    def eval(self, expr: str, *, timeout: Optional[float] = None) -> Any:
        """Evaluate ``expr`` in the selected frame and return the value itself.

        ``timeout`` (seconds) defaults to the session's :attr:`timeout`.
        """
        result, frames = self.frame_op("eval", {"expr": expr}, timeout=timeout or self.timeout)
        if result and "output" in result:
            sys.stdout.write(result["output"])
        return self._eval_value(result, frames)

    def _eval_value(self, result: Optional[Dict[str, Any]], frames: List[Any]) -> Any:
        """The value an ``eval`` reply carries, wherever the target put it."""
        if result:
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
        result, _ = self.frame_op("exec", {"code": code}, timeout=timeout or self.timeout)
        return Output(result.get("output", ""))

    def get(self, name: str) -> Any:
        """The value of variable ``name`` of the selected frame."""
        _, frames = self.frame_op("get", {"names": [name]})
        return self._load(frames)[name]

    def set(self, **values: Any) -> None:
        """Bind variables of the selected frame, all or nothing."""
        if not values:
            return
        self.frame_op("set", value=values)

    def delete(self, *names: str) -> None:
        """Unbind variables of the selected frame (not possible for locals on 3.13+)."""
        self.frame_op("set", {"delete": list(names)})

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(**{name: value})

    def _load(self, frames: List[Any]) -> Any:
        """Decode a value from the target; what could not be copied arrives as a live reference."""
        from .proxy import load

        return load(self, frames)

    def _dump(self, value: Any) -> List[Any]:
        """Encode a value for the target: live references go back as themselves, notebook
        functions and classes by value (cloudpickle)."""
        from .proxy import dump

        return dump(value)

    # --- execution control -----------------------------------------------------------

    def cont(self, *, thread: Optional[int] = None) -> None:
        """Resume every paused thread (or only ``thread``)."""
        if thread is not None:
            targets = [thread]
        else:
            result, _ = self._request("status")
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
        args = {"thread": thread, "frame": 0} if thread is not None else self._frame_args()
        args["frame"] = 0
        result, _ = self._request(op, args, frame_op=True)
        with self._state:
            self._retire(int(result["thread"]), int(result["pause_id"]))
            self._frame = 0

    def threads(self) -> List[Dict[str, Any]]:
        """Every thread of the target: id, name, paused or running, where."""
        result, _ = self._request("threads")
        return result

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Detach. The target keeps running, or stays paused for another client."""
        if self._closed:
            return
        refs = self.__dict__.get("_fb_refs")
        if refs is not None and self.paused:
            try:
                refs.release_all()  # otherwise the target keeps those objects alive until it exits
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
        events = getattr(self, "_events", None)
        if events is not None:
            events.stop()
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


class _EventListener:
    """The listener thread: owns the event channel, feeds Session._apply_event."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.channel = Channel(session._context, session.info, session._keypair)
        self.failure: Optional[BaseException] = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"framebridge-events-{session.pid}", daemon=True)

    def start_and_subscribe(self, timeout: float) -> None:
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            if self.failure is not None:
                raise self.failure
            raise SessionLost(f"pid {self.session.pid} did not accept an event subscription within {timeout:g}s")
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)
        self.channel.close()

    def _subscribe(self) -> None:
        request_id = self.channel.send("subscribe")
        while not self._stop.is_set():
            try:
                header, _ = self.channel.receive(0.5, want_id=request_id, on_other=self._deliver)
            except TimeoutError:
                continue
            with self.session._state:
                self.session._pauses = {}
                for body in header["result"]["paused"]:
                    info = PauseInfo.from_event(body)
                    if info.pause_id not in self.session._retired:
                        self.session._pauses[info.thread] = info
                self.session._state.notify_all()
            self._subscribed.set()
            return

    def _deliver(self, header: Dict[str, Any], values: List[Any]) -> None:
        event = header.get("event")
        if isinstance(event, str):
            self.session._apply_event(event, header)

    def _run(self) -> None:
        try:
            self._subscribe()
            # The subscription's reply proves one handshake, whether or not its monitor
            # event has been read yet: counting it late must not look like a reconnect
            # (a spurious re-subscribe replaces every PauseInfo object).
            handshakes = max(self.channel.handshakes, 1)
            while not self._stop.is_set():
                try:
                    header, values = self.channel.receive(0.2)
                except TimeoutError:
                    pass
                else:
                    self._deliver(header, values)
                if self.channel.handshakes > handshakes:
                    # Reconnected (the target dropped us after a network hiccup): re-subscribe.
                    self._subscribe()
                    handshakes = max(self.channel.handshakes, handshakes + 1)
        except BaseException as exc:
            if not self._stop.is_set():
                self.failure = exc if isinstance(exc, Exception) else SessionLost(str(exc))
                with self.session._state:
                    self.session._state.notify_all()
                for callback in list(self.session._listeners):
                    try:
                        callback("lost", {"error": str(exc)})
                    except Exception:
                        pass
