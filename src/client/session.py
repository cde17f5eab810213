"""Session: the notebook's handle on one attached target process.

Two connections per session (docs/architecture.md, "Connections"):

* its *link* (client/link.py), served by the process's one I/O thread (client/io_loop.py):
  the target's events keep :attr:`Session.pause_state` current and wake :meth:`Session.wait`
  and subscribers such as the DebugPanel; groups send their requests through it, many
  members at once;
* its *direct channel* (client/transport.py), used by whichever thread calls a method (one
  request at a time, under a lock), with a lane per pause (client/lanes.py): the fastest
  path for one request. ``attach()`` opens it at once; a group member opens it at its
  first request of its own; a target that cannot be dialed goes without, over its link.

Both share the process's one ZeroMQ context, and no socket is touched by two threads. A
session nobody holds is collected; its finalizer closes its sockets without waiting, so
a dropped session never hangs the interpreter, whatever state its target is in.

The request interface other client modules build on (docs/protocol.md names the ops):

* :meth:`Session.request` sends a *server op* (breakpoints, status, threads, pause);
* :meth:`Session.frame_request` sends a *frame op* to a paused thread's frame: the
  selected one, or the :class:`FrameRef` given. It may take that pause's lane;
* :meth:`Session.submit` sends either kind through the link and returns at once (a
  :class:`MemberReply` to wait for): what a group does for each member;
* :attr:`Session.selected`, :meth:`Session.current_pause` and :attr:`Session.pause_state`
  say what is paused and selected; :attr:`Session.refs` holds the live references.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from bridge import bulk, keys, protocol

from . import proxy
from .bulk_path import choose_bulk, finish_reply
from .checkpoint_methods import CheckpointMethods
from .code_methods import CodeEditing
from .control import DebugControl
from .errors import (
    AuthenticationError,
    BridgeError,
    NotPaused,
    PauseTimeout,
    RemoteError,
    RequestTimeout,
    ResourceLimit,
    SessionLost,
)
from .events import EventCallback, EventFeed
from .frame_methods import FrameMethods
from .io_loop import shared_context
from .lanes import Lanes, lanes_allowed
from .link import Link, PendingReply
from .member_reply import MemberReply, Reply, as_bridge_error
from .ports import DirectPort, Port
from .pause_state import PauseState
from .transport import Channel
from .values import FrameInfo, FrameRef, Output, PauseInfo, Stack, Variables, VarSummary

__all__ = ["Session", "MemberReply", "open_sessions", "DEFAULT_TIMEOUT", "DEFAULT_WAIT_TIMEOUT", "NO_VALUE",
           # the value types, importable from here as before
           "PauseInfo", "FrameInfo", "FrameRef", "Stack", "VarSummary", "Variables", "Output"]

DEFAULT_TIMEOUT = 30.0
#: `value` argument default meaning "this request carries no value" (None is a value).
NO_VALUE: Any = object()
DEFAULT_WAIT_TIMEOUT = 300.0
#: How long a step waits for the thread's next stop before it returns (the stop is
#: announced on the lane the step went out on, docs/protocol.md): a quick step returns
#: with its new pause known; a long one (a ``next`` over a long call) returns this late.
STEP_STOP_WAIT_S = 0.25
_STEPPING = ("step", "next", "step_out")

#: What a request returns: the reply's JSON ``result`` and its value frames.


class _Sockets:
    """What a session holds on the calling thread's side: its direct channel and lanes.
    Apart from the Session so that its finalizer can close them without the Session."""

    def __init__(self) -> None:
        self.channel: Optional[Channel] = None
        self.lanes: Optional[Lanes] = None
        #: The lane the last request went out on (None: not a lane).
        self.last_lane: Optional[Channel] = None

    def close(self) -> None:
        if self.lanes is not None:
            self.lanes.close_all()
        if self.channel is not None:
            self.channel.close()


def _release(link: Link, sockets: _Sockets) -> None:
    """A session's finalizer (close() or garbage collection, on any thread): closes its
    sockets with linger 0 and hands the link back to the I/O loop. Never blocks, and
    never terminates the shared context."""
    try:
        sockets.close()
    finally:
        link.close()


class Session(FrameMethods, DebugControl, CodeEditing, CheckpointMethods):
    """An attached target process. Create with :func:`client.attach` (or a group's members)."""

    def __init__(self, info: Dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                 keypair: Optional[keys.KeyPair] = None) -> None:
        self._begin(info, keypair or keys.load_client_keypair(), timeout, direct=True)
        self._complete()

    def _begin(self, info: Dict[str, Any], keypair: keys.KeyPair, timeout: float, *, direct: bool,
               port: Optional[Port] = None) -> None:
        """Open the link and send the opening requests (hello, bulk offer, events) without
        waiting; with ``direct``, :meth:`_complete` opens the direct channel too."""
        self.timeout = timeout
        self.wait_timeout = DEFAULT_WAIT_TIMEOUT
        #: What is paused, and the selected thread and frame (kept current by the events).
        self.pause_state = PauseState()
        self._name: Optional[str] = info.get("name") or None
        self._keypair = keypair
        self._context = shared_context()
        self._lock = threading.RLock()  # one request at a time on the direct channel
        self._closed = False
        self._feed = EventFeed(self.pause_state, int(info["pid"]))
        self._connect(info, port, direct)

    def _connect(self, info: Dict[str, Any], port: Optional[Port], direct: bool) -> None:
        """The part of :meth:`_begin` that belongs to one process: done again when the
        session follows its job to another one (:meth:`_move_to`)."""
        self.info = info
        self.pid: int = int(info["pid"])
        #: The live references this session holds (client/proxy.py).
        self.refs = proxy.RefRegistry(self)
        self.hello: Dict[str, Any] = {}
        self._bulk: Optional[bulk.BulkPeer] = None
        self._dialable = bool(info.get("endpoint")) and bool(info.get("server_key"))
        self._sockets = _Sockets()
        self._feed.pid = self.pid
        keypair, timeout = self._keypair, self.timeout
        link = Link(port or DirectPort(info, keypair, self._context), self._feed, self.pid)
        self._link = link
        self._finalizer = weakref.finalize(self, _release, link, self._sockets)
        try:
            link.open()
            limit = min(timeout, 10.0)
            want_bulk = self._dialable and os.environ.get("BRIDGE_BULK") != "curve"
            self._opening = (link.submit("hello", {"client_pid": os.getpid()}, timeout=limit),
                             link.submit("bulk_hello", timeout=limit) if want_bulk else None,
                             link.subscribe(timeout=limit))
            self._direct_at_once = direct
        except BaseException:
            self._finalizer()
            raise

    def _complete(self) -> None:
        """Wait for the opening requests; on any failure close everything and raise."""
        hello, offer, subscription = self._opening
        del self._opening
        try:
            self.hello = self._opening_result(hello)
            if self._direct_at_once and self._dialable:
                # Only once the key proved good: a refused key costs one refusal, not two.
                self._sockets.channel = Channel(self._context, self.info, self._keypair)
            bulk_offer = None
            if offer is not None:
                try:
                    bulk_offer = self._opening_result(offer)
                except RemoteError:  # an older target: everything over CURVE
                    bulk_offer = None
            self._opening_result(subscription)
            port = self._link.port
            if isinstance(port, DirectPort) and lanes_allowed(port, self.hello):
                self._link.lanes.enable(self.info, self._keypair, self._context)
            if bulk_offer is not None:
                self._bulk = choose_bulk(bulk_offer, self.info["endpoint"], self._link.port.local_pid is not None)
            channel = self._sockets.channel
            if channel is not None:
                self._use_channel(channel)
                channel.wait_connected(min(self.timeout, 10.0))  # the first request pays no handshake
        except BaseException:
            self._finalizer()
            raise

    def _opening_result(self, pending: PendingReply) -> Any:
        try:
            header, values = pending.raw()
        except RequestTimeout:
            raise SessionLost(f"pid {self.pid} at {self._link.port.where} did not answer within "
                              f"{pending.timeout:g}s") from None
        header, _ = finish_reply(header, values, None, self.pid)
        return header.get("result")

    def _use_channel(self, channel: Channel) -> None:
        """Make ``channel`` the session's direct channel, with its lanes."""
        channel.bulk = self._bulk
        lanes = Lanes(self.pause_state, channel, self._context)
        lanes.enabled = lanes_allowed(channel, self.hello)
        self._sockets.lanes = lanes

    def _direct(self) -> Optional[Channel]:
        """The direct channel, opened now if the session has none yet (None: the link
        serves, for a target that cannot be dialed or a process out of descriptors)."""
        channel = self._sockets.channel
        if channel is None and self._dialable:
            try:
                channel = Channel(self._context, self.info, self._keypair)
            except ResourceLimit:
                self._dialable = False  # the link serves this session from now on
                return None
            self._sockets.channel = channel
            self._use_channel(channel)
        return channel

    @property
    def _channel(self) -> Optional[Channel]:
        """The direct channel (opened if it was not yet): tests and diagnostics look at it."""
        with self._lock:
            return self._direct()

    @property
    def _lanes(self) -> Optional[Lanes]:
        return self._sockets.lanes

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
    def name(self) -> str:
        """The member name: ``host:pid`` (the target's host name), or the name the source
        gave it (a worker's address under Dask or Ray)."""
        if self._name is None:
            host = (self.hello.get("host") or {}).get("hostname") or protocol.endpoint_host(str(self.info.get("endpoint", "")))
            return f"{host}:{self.job}"
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def job(self) -> int:
        """The job's pid: the process its supervisor started, the same across checkpoints
        and rewinds (docs/howto-rewind.md). :attr:`pid` is the process served now (the
        job's live process); they are the same for a job without checkpoints."""
        return int(self.info.get("job") or self.pid)

    @property
    def bulk_mode(self) -> str:
        """How big values travel: ``"shm"`` (shared memory), ``"aes"`` (the data port) or
        ``"curve"`` (inside the CURVE messages: no bulk path)."""
        peer = self._bulk
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
        """Call ``callback(event, body)`` for every event; returns an unsubscribe function.

        It runs on the process's I/O thread, which serves every session: it must be quick.
        """
        return self._feed.subscribe(callback)

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
        full, pause, pause_id = self._frame_args(args, at)
        if value is not NO_VALUE:
            frames = self._dump(value)
        return self._send(op, full, frames, timeout, pause=pause, pause_id=pause_id, release=release)

    def _frame_args(self, args: Optional[Dict[str, Any]],
                    at: Optional[FrameRef]) -> Tuple[Dict[str, Any], Optional[PauseInfo], Optional[int]]:
        """A frame op's arguments (thread, frame), its pause and the pause id it must hit."""
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
        return full, pause, pause_id

    def submit(self, op: str, args: Optional[Dict[str, Any]] = None, *, frame: bool = False,
               at: Optional[FrameRef] = None, value: Any = NO_VALUE, frames: Optional[List[Any]] = None,
               timeout: Optional[float] = None) -> "MemberReply":
        """Send ``op`` through the session's link and return at once; the reply's
        :meth:`MemberReply.result` waits for it. ``frame=True`` (or ``at``) makes it a
        frame op, as :meth:`frame_request` would send it. Many sessions' requests are in
        flight together this way (what a group does): N sends on the I/O thread, and each
        waits for its own deadline (``timeout``, default the session's).
        """
        if self._closed:
            raise SessionLost("this session is closed; attach again")
        pause_id = None
        if frame or at is not None:
            args, pause, pause_id = self._frame_args(args, at)
            if pause_id is None and pause is not None:
                pause_id = pause.pause_id  # meant for the pause seen; and its lane may carry it
        if value is not NO_VALUE:
            frames = self._dump(value)
        return MemberReply(self._link, self._bulk, self.pid, op, args, frames,
                           self.timeout if timeout is None else timeout, pause_id)


    def _send(self, op: str, args: Optional[Dict[str, Any]], frames: Optional[List[Any]], timeout: Optional[float],
              *, pause: Optional[PauseInfo] = None, pause_id: Optional[int] = None,
              release: Optional[List[List[int]]] = None) -> Reply:
        """The one place a request meets a connection: ``pause``'s lane when it has a
        connected one (client/lanes.py), else the direct channel, else the link."""
        if self._closed:
            raise SessionLost("this session is closed; attach again")
        revoked = self._revoked()
        if revoked is not None:
            raise revoked
        wait = self.timeout if timeout is None else timeout
        with self._lock:
            try:
                channel = self._direct()
                if channel is None:
                    return MemberReply(self._link, self._bulk, self.pid, op, args, frames, wait, pause_id,
                                       release).result()
                still_valid = None
                sockets = self._sockets
                lanes = sockets.lanes
                sockets.last_lane = None
                if pause is not None and lanes is not None:
                    lane = lanes.channel(pause)
                    if lane is not None:
                        channel, still_valid = lane, lanes.alive(pause)
                        sockets.last_lane = lane
                        if pause_id is None:
                            pause_id = pause.pause_id  # a lane serves its own pause only
                return channel.request(op, args, frames, timeout=wait, pause_id=pause_id, release=release or None,
                                       still_valid=still_valid)
            except NotPaused:
                revoked = self._revoked()  # a lane wait ended by the link's failure
                if revoked is not None:
                    raise revoked from None
                raise
            except BridgeError:
                raise
            except Exception as exc:
                raise as_bridge_error(exc, self.pid) from exc

    def _revoked(self) -> Optional[AuthenticationError]:
        """The target's refusal of our key, if it said so (its events, or a link reply; docs/security.md)."""
        failure = self.pause_state.failure
        return failure if isinstance(failure, AuthenticationError) else None

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
        with self._lock:
            result, _ = self.frame_request(op, {"frame": 0}, at=at)
            thread, pause_id = int(result["thread"]), int(result["pause_id"])
            self.pause_state.retire(thread, pause_id, reset_frame=True)
            lane, lanes = self._sockets.last_lane, self._sockets.lanes
            if op in _STEPPING and lane is not None and lanes is not None and self.hello.get("stops_on_lane"):
                # The thread's next stop comes on the lane the step went out on: wait for
                # it here, on this thread (no hand-off), so that a quick step returns with
                # its pause known (docs/benchmarks.md, step round trip).
                try:
                    lanes.await_stop(lane, thread, pause_id, STEP_STOP_WAIT_S)
                except BridgeError:  # the lane or the target went away: the events say the rest
                    pass

    def threads(self) -> List[Dict[str, Any]]:
        """Every thread of the target: id, name, paused or running, where."""
        result, _ = self.request("threads")
        return result

    # --- following the job to another process (client/checkpoint_methods.py) ------------------

    def _quiet_link(self) -> Callable[[], None]:
        """The link's events stop reaching this session (its process is about to end or
        hide: its end is not the session's); returns what undoes it."""
        return self._link.mute()

    def _move_to(self, info: Dict[str, Any]) -> None:
        """Serve the process ``info`` names from now on (the job's new live process): the
        same session -- name, subscribers, selected thread -- over new connections. The
        old process's pauses, references and lanes are dropped; subscribers hear a
        ``moved`` event, then ``paused`` for each pause the new process has already."""
        with self._lock:
            self._finalizer()
            self.pause_state.restart()
            self._connect(info, None, True)
            try:
                self._complete()
            except BaseException as exc:
                self.pause_state.lost(exc if isinstance(exc, BridgeError) else SessionLost(str(exc)))
                raise
        self._feed.announce("moved", {"job": self.job, "pid": self.pid, "generation": info.get("generation", 0)})
        for pause in self.pause_state.all():
            self._feed.announce("paused", pause.as_event())

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
        if self._link.failure is None:
            self._link.submit("unsubscribe", timeout=1.0)  # sent before the link closes
        with self._lock:
            self._finalizer()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "paused" if self.paused else "running"
        argv = " ".join(self.info.get("argv") or [])
        return f"<Session pid={self.pid} {state} {argv!r} at {self._link.port.where}>"

    def _repr_html_(self) -> str:
        from .display import session_html

        return session_html(self)


def open_sessions(infos: Sequence[Dict[str, Any]], *, keypair: Optional[keys.KeyPair] = None,
                  timeout: float = DEFAULT_TIMEOUT, direct: bool = False,
                  ports: Optional[Sequence[Optional[Port]]] = None) -> List[Union[Session, Exception]]:
    """Attach to many targets at once: every opening request is in flight together, and
    each target answers within its own deadline. One entry per info, in order: the
    Session, or what attaching to it raised. ``direct``: open the direct channels now
    (otherwise each opens at its session's first request of its own). ``ports``: a
    :class:`~client.ports.Port` per info for targets reached some other way than by
    dialing (a hub; docs/groups.md, "A member's connection"), None where dialing."""
    keypair = keypair or keys.load_client_keypair()
    begun: List[Union[Session, Exception]] = []
    for i, info in enumerate(infos):
        session = Session.__new__(Session)
        try:
            session._begin(info, keypair, timeout, direct=direct, port=ports[i] if ports else None)
            begun.append(session)
        except Exception as exc:
            begun.append(exc)
    out: List[Union[Session, Exception]] = []
    for item in begun:
        if isinstance(item, Session):
            try:
                item._complete()
            except Exception as exc:
                item = exc
        out.append(item)
    return out
