"""Groups: many attached processes driven as one (``client.attach_all()``, docs/groups.md).

A :class:`Group` holds member :class:`~client.session.Session` objects by name
(``host:pid``). A group request (``eval``, ``exec``, ``get``, ``set``, ``cont``,
``where``) goes to every paused member at once: one send per member on the process's
I/O thread (``Session.submit``), then one gather, each member with a deadline of its own.
The answer is a :class:`GroupResult`: each member's value, or its error in ``errors``;
one member's failure or timeout never fails the group.

A group can grow while it lives: :meth:`Group.add` takes a session from anywhere (a
hub that targets dial, a cluster's plugin), and a group made with a *source* (what
``attach_all`` makes: a scan of connection files) attaches the processes that appeared
since, at :meth:`Group.refresh` and while :meth:`Group.wait` waits.

For a user interface (the DebugPanel's group view): :meth:`Group.states` lists the
members with their state, and :meth:`Group.subscribe` reports joins, leaves, pauses and
resumes as they happen.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from bridge import keys
from bridge.protocol import endpoint_host

from . import proxy
from .errors import BridgeError, PauseTimeout, SessionLost
from .io_loop import io_loop
from .link import gather
from .member_reply import MemberReply
from .session import DEFAULT_TIMEOUT, DEFAULT_WAIT_TIMEOUT, NO_VALUE, Session, open_sessions
from .stacks import StackReport, group_stacks
from .values import FrameRef, Output, PauseInfo

__all__ = ["Group", "GroupResult", "MemberState", "MemberSource", "GroupCallback"]

#: How often a waiting group with a source looks for new processes.
REFRESH_S = 0.5

#: ``callback(event, member name, body)``: ``joined``, ``left``, and each member's own
#: events (``paused``, ``resumed``, ``lost``...). Runs on the I/O thread: keep it quick.
GroupCallback = Callable[[str, str, Dict[str, Any]], None]


class MemberSource(Protocol):
    """Where a group finds its members: the connection infos of the processes that
    belong in it now (client/discovery.py's ``ProcessScan`` is one)."""

    def scan(self) -> List[Dict[str, Any]]:
        """Connection infos (as connection files hold them) of the members to have now."""


@dataclass
class MemberState:
    """One member as a user interface shows it."""

    name: str
    pid: int
    #: "paused", "running", "lost" (its process is gone) or "closed"
    state: str
    #: the selected paused thread's pause, when paused
    pause: Optional[PauseInfo] = None


class GroupResult:
    """Each member's answer to a group request.

    ``values()`` is ``{member name: value}`` for the members that answered, ``errors``
    ``{member name: exception}`` for those that failed or timed out, ``output``
    ``{member name: text}`` what the code printed in each, and ``skipped`` the members
    that were not paused (a frame request goes to paused members only). ``r[name]`` is
    one member's value (its error raises); iterating gives the names that answered or failed.
    """

    def __init__(self, op: str) -> None:
        self.op = op
        self._values: Dict[str, Any] = {}
        self.errors: Dict[str, BaseException] = {}
        self.output: Dict[str, str] = {}
        self.skipped: List[str] = []
        self._order: List[str] = []

    def values(self) -> Dict[str, Any]:
        """``{member name: value}`` of every member that answered."""
        return dict(self._values)

    def items(self) -> List[Tuple[str, Any]]:
        """(member name, value) of every member that answered."""
        return list(self._values.items())

    @property
    def ok(self) -> bool:
        """Whether no member failed."""
        return not self.errors

    def __getitem__(self, name: str) -> Any:
        if name in self.errors:
            raise self.errors[name]
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self.errors

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def _answer(self, name: str, value: Any) -> None:
        self._values[name] = value
        self._order.append(name)

    def _fail(self, name: str, error: BaseException) -> None:
        self.errors[name] = error
        self._order.append(name)

    def __repr__(self) -> str:
        from .group_display import result_text

        return result_text(self)

    def _repr_html_(self) -> str:
        from .group_display import result_html

        return result_html(self)


class Group:
    """Many attached processes driven as one; see the module docstring. Create with
    :func:`client.attach_all` (or ``Group()`` and :meth:`add`)."""

    def __init__(self, sessions: Sequence[Session] = (), *, source: Optional[MemberSource] = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        #: Where :meth:`refresh` finds new members (None: only :meth:`add` adds).
        self.source = source
        #: Default deadline of each member's answer to a group request (seconds).
        self.timeout = timeout
        #: Processes that could not be attached: name -> the exception.
        self.attach_errors: Dict[str, BaseException] = {}
        self._members: Dict[str, Session] = {}
        self._unsubscribe: Dict[str, Callable[[], None]] = {}
        self._lock = threading.RLock()
        #: Notified whenever a member joins, leaves, pauses or resumes.
        self.changed = threading.Condition()
        self._callbacks: List[GroupCallback] = []
        self._closed = False
        for session in sessions:
            self.add(session)

    # --- members ---------------------------------------------------------------------------

    def add(self, session: Session) -> Session:
        """Make ``session`` a member (a session already there by that name is kept)."""
        name = session.name
        with self._lock:
            if self._closed:
                raise BridgeError("this group is closed")
            existing = self._members.get(name)
            if existing is not None and not existing.closed:
                return existing
            self._members[name] = session
            self.attach_errors.pop(name, None)
            # The callback holds the condition and the callback list, never the group: a
            # dropped group (and its sessions) can be collected.
            self._unsubscribe[name] = session.on_event(_member_callback(name, self.changed, self._callbacks))
        self._notify("joined", name, {"pid": session.pid})
        return session

    def discard(self, name: str, *, close: bool = True) -> None:
        """Remove member ``name`` (closing its session unless ``close=False``)."""
        with self._lock:
            session = self._members.pop(name, None)
            unsubscribe = self._unsubscribe.pop(name, None)
        if unsubscribe is not None:
            unsubscribe()
        if session is not None:
            if close:
                session.close()
            self._notify("left", name, {"pid": session.pid})

    def refresh(self) -> List[Session]:
        """Attach the processes the group's source lists that are not members yet; the new members."""
        if self.source is None:
            return []
        with self._lock:
            known = {s.pid for s in self._members.values() if not s.closed}
            known |= {s.job for s in self._members.values() if not s.closed}  # a member follows its job
        infos = [info for info in self.source.scan()
                 if int(info["pid"]) not in known and int(info.get("job") or info["pid"]) not in known]
        return self._attach(infos)

    def _attach(self, infos: Sequence[Dict[str, Any]]) -> List[Session]:
        added = []
        for info, opened in zip(infos, open_sessions(infos, timeout=self.timeout)):
            if isinstance(opened, Session):
                added.append(self.add(opened))
            else:
                self.attach_errors[member_name(info)] = opened
        return added

    def names(self) -> List[str]:
        """Member names, in the order they joined."""
        with self._lock:
            return list(self._members)

    def members(self) -> List[Session]:
        """Member sessions, in the order they joined."""
        with self._lock:
            return list(self._members.values())

    def paused(self) -> List[Session]:
        """The members paused now."""
        return [s for s in self.members() if s.paused]

    def states(self) -> List[MemberState]:
        """Every member with its state (for a user interface)."""
        out = []
        for s in self.members():
            if s.closed:
                state = "closed"
            elif s.pause_state.failure is not None:
                state = "lost"
            else:
                state = "paused" if s.paused else "running"
            out.append(MemberState(s.name, s.pid, state, s.current_pause() if state == "paused" else None))
        return out

    def subscribe(self, callback: GroupCallback) -> Callable[[], None]:
        """Call ``callback(event, member name, body)`` for joins, leaves and every member
        event (on the I/O thread: keep it quick); returns an unsubscribe function."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _notify(self, event: str, name: str, body: Dict[str, Any]) -> None:
        _member_callback(name, self.changed, self._callbacks)(event, body)

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Session]:
        return iter(self.members())

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __getitem__(self, key: Union[str, int]) -> Session:
        """A member by name (``host:pid``), or by pid."""
        with self._lock:
            if isinstance(key, str) and key in self._members:
                return self._members[key]
            if isinstance(key, int) and not isinstance(key, bool):
                for session in self._members.values():
                    if session.pid == key:
                        return session
            names = ", ".join(self._members) or "none"
        raise KeyError(f"no member {key!r} (members: {names})")

    # --- waiting -----------------------------------------------------------------------------

    def wait(self, n: Optional[int] = None, timeout: Optional[float] = None) -> List[Session]:
        """Block until ``n`` members (default: every member whose process lives) are
        paused; return the paused members. PauseTimeout after ``timeout`` (default 300 s).
        A group with a source attaches new processes meanwhile."""
        limit = DEFAULT_WAIT_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + limit
        next_refresh = 0.0
        while True:
            now = time.monotonic()
            if self.source is not None and now >= next_refresh:
                self.refresh()
                next_refresh = time.monotonic() + REFRESH_S
            live = [s for s in self.members() if not s.closed and s.pause_state.failure is None]
            paused = [s for s in live if s.paused]
            want = len(live) if n is None else n
            if want and len(paused) >= want:
                return paused
            left = deadline - time.monotonic()
            if left <= 0:
                raise PauseTimeout(f"{len(paused)} of {len(live)} members paused within {limit:g}s "
                                   f"(waited for {want if want else 'at least one'})")
            with self.changed:
                self.changed.wait(min(left, REFRESH_S if self.source is not None else left))

    # --- group requests ---------------------------------------------------------------------

    def eval(self, expr: str, *, timeout: Optional[float] = None) -> GroupResult:
        """Evaluate ``expr`` in the selected frame of every paused member; what each printed
        is in ``output``."""
        def decode(session: Session, reply: Tuple[Any, List[Any]]) -> Any:
            return session.eval_result(*reply)

        return self.request("eval", {"expr": expr}, frame=True, timeout=timeout, decode=decode)

    def exec(self, code: str, *, timeout: Optional[float] = None) -> GroupResult:
        """Execute ``code`` in the selected frame of every paused member; each value is what it printed."""
        return self.request("exec", {"code": code}, frame=True, timeout=timeout,
                            decode=lambda session, reply: Output((reply[0] or {}).get("output", "")))

    def get(self, name: str, *, timeout: Optional[float] = None) -> GroupResult:
        """Variable ``name`` of every paused member's selected frame."""
        return self.request("get", {"names": [name]}, frame=True, timeout=timeout,
                            decode=lambda session, reply: proxy.load(session.refs, reply[1])[name])

    def set(self, *, timeout: Optional[float] = None, **values: Any) -> GroupResult:
        """Bind variables in every paused member's selected frame (all or nothing in each)."""
        return self.request("set", value=values, frame=True, timeout=timeout)

    def cont(self, *, timeout: Optional[float] = None) -> GroupResult:
        """Resume every paused thread of every paused member; each value is the number
        resumed, or ``"exited"`` for a member whose process ended before its answer came
        (a job that finishes right after it is continued can exit before the answer leaves)."""
        members = self.paused()
        result = GroupResult("cont")
        result.skipped = [s.name for s in self.members() if s not in members]
        started: List[Tuple[Session, PauseInfo, MemberReply]] = []
        for session in members:
            for pause in session.pauses():
                try:
                    started.append((session, pause, session.submit("cont", {"frame": 0}, at=FrameRef(pause.thread, 0),
                                                                   timeout=timeout or self.timeout)))
                except BridgeError as exc:
                    result._fail(session.name, exc)
        gather([reply.pending for _, _, reply in started])
        counts: Dict[str, Any] = {}
        for session, pause, reply in started:
            try:
                answer, _ = reply.result()
                session.pause_state.retire(int(answer["thread"]), int(answer["pause_id"]), reset_frame=True)
                counts[session.name] = counts.get(session.name, 0) + 1
            except SessionLost as exc:
                if keys.process_alive(session.pid):
                    result._fail(session.name, exc)
                else:
                    counts.setdefault(session.name, "exited")  # type: ignore[arg-type]
            except BridgeError as exc:
                if session.name not in result.errors:
                    result._fail(session.name, exc)
        for name, count in counts.items():
            if name not in result.errors:
                result._answer(name, count)
        return result

    def where(self, *, timeout: Optional[float] = None) -> StackReport:
        """Paused members grouped by identical stack ("3 stacks across 64 processes")."""
        stacks = self.request("stack", frame=True, timeout=timeout,
                              decode=lambda session, reply: (reply[0] or {}).get("frames", []))
        return group_stacks(stacks.values(), stacks.errors, stacks.skipped)

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, *, frame: bool = True,
                value: Any = NO_VALUE, timeout: Optional[float] = None, members: Optional[Sequence[Session]] = None,
                decode: Optional[Callable[[Session, Tuple[Any, List[Any]]], Any]] = None) -> GroupResult:
        """Send ``op`` to every member (``frame``: every paused one, to its selected frame)
        at once; gather the answers, each member with its own deadline (``timeout``,
        default :attr:`timeout`). ``decode(session, (result, frames))`` makes each value
        (default: the JSON result); ``value`` travels with each request."""
        pool = self.members() if members is None else list(members)
        result = GroupResult(op)
        if frame:
            result.skipped = [s.name for s in pool if not s.paused]
            pool = [s for s in pool if s.paused]
        wait = self.timeout if timeout is None else timeout
        started: List[Tuple[Session, MemberReply]] = []
        with io_loop().batch():  # the sends go out together, in one turn of the I/O thread
            for session in pool:
                try:
                    started.append((session, session.submit(op, args, frame=frame, timeout=wait, value=value)))
                except BridgeError as exc:
                    result._fail(session.name, exc)
        gather([reply.pending for _, reply in started])
        for session, reply in started:
            try:
                answer = reply.result()
                if isinstance(answer[0], dict) and isinstance(answer[0].get("output"), str):
                    result.output[session.name] = answer[0]["output"]
                result._answer(session.name, decode(session, answer) if decode is not None else answer[0])
            except BridgeError as exc:
                result._fail(session.name, exc)
            except Exception as exc:  # a value that cannot be rebuilt here is that member's error
                result._fail(session.name, exc)
        return result

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every member (each target keeps running, or stays paused for another client)."""
        with self._lock:
            self._closed = True
            names = list(self._members)
        for name in names:
            self.discard(name)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        from .group_display import group_text

        return group_text(self)

    def _repr_html_(self) -> str:
        from .group_display import group_html

        return group_html(self)


def _member_callback(name: str, changed: threading.Condition,
                     callbacks: List[GroupCallback]) -> Callable[[str, Dict[str, Any]], None]:
    def on_event(event: str, body: Dict[str, Any]) -> None:
        with changed:
            changed.notify_all()
        for callback in list(callbacks):
            try:
                callback(event, name, body)
            except Exception:
                pass  # a broken subscriber must not stop the others

    return on_event


def member_name(info: Dict[str, Any]) -> str:
    """The name a process will have as a member (Session.name), before it is one."""
    if info.get("name"):
        return str(info["name"])
    host = endpoint_host(str(info.get("endpoint", "")))
    if host in ("127.0.0.1", "::1", "localhost") or host.startswith("127."):
        host = socket.gethostname()
    return f"{host}:{info.get('job') or info.get('pid')}"  # Session.name: a job keeps its name across checkpoints
