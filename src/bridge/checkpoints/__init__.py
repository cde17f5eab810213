"""Checkpoints: keep copy-on-write snapshots of the job's process and go back to them.

    from bridge import checkpoints

    cp = checkpoints.take({"file": f, "line": n, "function": name})
    # Returns twice and more: here, in the live process that carries on (cp.rewinds == 0),
    # and again after every rewind, in a new live process (cp.rewinds == 1, 2, ...).
    checkpoints.rewind(cp)          # never returns: the job goes on from take() above
    checkpoints.drop(cp)            # free the snapshot's memory
    checkpoints.list_checkpoints()  # what each holds, and what it cannot rewind
    checkpoints.job_id()            # the pid the supervisor knows, constant for the job

``take()`` forks. The original process -- the pid the job's supervisor (shell, cron,
Airflow) waits on -- becomes the *keeper* of the snapshot and never runs the job's code
again; the child carries on as the *live* process. Nested checkpoints make a chain of
keepers. The keeper relays the live process's exit status as its own and passes signals
on, so the supervisor keeps seeing one process. Model, rules and the integration plan:
docs/design-checkpoints.md.

Standard library only (this runs in keepers and relays too). Linux only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, NoReturn, Optional, Union

from . import inventory, sysapi
from .errors import CheckpointError, ThreadsRunning, Unsupported
from .keeper import KILL_WAIT_S, Keeper, fork_quietly, keep
from .registry import Registry, entry
from .registry import lineage as _lineage_of
from .signals import FORWARDED, Witness, save_handlers

__all__ = [
    "Checkpoint", "CheckpointInfo", "CheckpointError", "ThreadsRunning", "Unsupported",
    "available", "take", "rewind", "drop", "list_checkpoints", "rewindable", "job_id", "lineage", "generation",
    "identity",
]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint, as ``take()`` returns it in each live process it starts.

    ``rewinds`` is 0 in the process that carried on from ``take()`` and n in the process
    forked by the n-th rewind to this checkpoint; ``cannot_rewind`` is what the process had
    at the checkpoint that a rewind does not bring back (see :func:`list_checkpoints`).
    """

    id: int
    job: int
    keeper: int
    depth: int
    label: Dict[str, Any]
    taken: float
    rewinds: int
    cannot_rewind: Dict[str, Any] = field(repr=False)

    @property
    def resumed(self) -> bool:
        """True in a live process that a rewind started (the job went back to here)."""
        return self.rewinds > 0


@dataclass(frozen=True)
class CheckpointInfo:
    """One entry of :func:`list_checkpoints`.

    ``state`` is "kept" or "dropped". ``memory`` is the keeper's, from smaps_rollup, in
    bytes: ``private`` (what keeping the snapshot costs: the pages only it still maps),
    with ``pss``, ``rss`` and ``swap`` for context; None if the keeper is gone.
    ``cannot_rewind``: ``descriptors`` (files with path and offset, sockets with
    addresses and peer, pipes...), ``children`` (the job's child processes: they stay the
    keeper's), ``python_threads`` and ``native_threads`` (not in any live process after
    the checkpoint), ``gpu`` (GPU libraries mapped: their state does not survive fork) and
    ``alarm_in`` (an alarm() timer: it stays with the keeper, which passes its SIGALRM on).
    """

    id: int
    keeper: int
    depth: int
    label: Dict[str, Any]
    taken: float
    rewinds: int
    state: str
    memory: Optional[Dict[str, int]]
    cannot_rewind: Dict[str, Any]

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready copy (what the integration sends to a client)."""
        return asdict(self)


def available() -> Optional[str]:
    """None where checkpoints work, else the reason they do not (platform, interpreter)."""
    return sysapi.available()


# --- this process's place in its job's chain -----------------------------------------------


class _Chain:
    """What this process knows of its job's chain: the shared record and one sender
    socket per checkpoint (to that checkpoint's keeper)."""

    def __init__(self, registry: Registry, job: int) -> None:
        self.registry = registry
        self.job = job
        self.senders: Dict[int, int] = {}
        self.witness: Optional[Witness] = None  # only in the root keeper-to-be

    def fds(self) -> List[int]:
        return [self.registry.fd, *self.senders.values(), *(self.witness.fds() if self.witness else [])]

    def forget(self) -> None:
        """Let go of a chain this process only inherited (a fork the job made)."""
        for fd in self.fds():
            _close(fd)


_chain: Optional[_Chain] = None


def _chain_here(*, for_take: bool = False) -> Optional[_Chain]:
    """This process's chain: it is the live process, or (not ``for_take``) runs below it.
    A process that merely inherited a chain (a child the job forked) has none of its own."""
    global _chain
    if _chain is None:
        return None
    live = _chain.registry.read().get("live")
    me = os.getpid()
    if live == me or (not for_take and live is not None and sysapi.is_descendant(me, live)):
        return _chain
    _chain.forget()
    _chain = None
    return None


def _require_chain() -> _Chain:
    chain = _chain_here()
    if chain is None:
        raise CheckpointError(f"process {os.getpid()} has no checkpoints (take() makes one)")
    return chain


# --- take ------------------------------------------------------------------------------------


def take(label: Optional[Mapping[str, Any]] = None, *, force: bool = False,
         on_keeper: Optional[Callable[[Checkpoint, int], None]] = None,
         exclude_fds: Iterable[int] = ()) -> Checkpoint:
    """Checkpoint this process here; return in the live process that carries on.

    Call it on the thread that should carry on (the paused thread). ``label`` (JSON-able:
    file, line, function...) is shown by :func:`list_checkpoints`. Other Python threads
    raise :class:`ThreadsRunning` naming them unless ``force`` (they are then absent from
    every live process, and frozen in the keeper). framebridge's own threads (``bridge-*``,
    the ZAP authenticator) do not count; they do not exist in the live process either.

    ``on_keeper(checkpoint, live_pid)`` runs in the keeper, once, before it starts keeping
    (the integration answers the client's request there, still on the original server,
    then stops that server); its errors are printed, not raised. The keeper then never
    returns here -- except in a new live process forked by a rewind, where this returns
    again with ``rewinds`` > 0. ``exclude_fds``: descriptors left out of ``cannot_rewind``
    (the debugger's own: they are not the job's).
    """
    global _chain
    reason = available()
    if reason is not None:
        raise Unsupported(reason)
    label_dict = _checked_label(label)
    others = _other_python_threads()
    if others and not force:
        raise ThreadsRunning(others)
    chain = _chain_here(for_take=True)
    started = chain is None
    if chain is None:
        chain = _Chain(Registry.create(job=os.getpid()), os.getpid())
        chain.witness = Witness.spawn()
        _chain = chain
    try:
        saved = save_handlers()
        random_state = _random_state()
        cannot = _cannot_rewind(chain, others, exclude_fds)
        keeper_end, child_end = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    except BaseException:
        if started:  # leave no half-made chain behind
            _drop_chain(chain)
        raise
    taken = time.time()

    def add(doc: Dict[str, Any]) -> Any:
        depth, cp_id = len(doc["checkpoints"]), doc["next_id"]
        doc["next_id"] += 1
        doc["checkpoints"].append({"id": cp_id, "keeper": os.getpid(), "depth": depth, "label": label_dict,
                                   "taken": taken, "rewinds": 0, "state": "kept", "cannot_rewind": cannot})
        return cp_id, depth

    cp_id, depth = chain.registry.update(add)
    chain.senders[cp_id] = child_end
    sigchld_ignored = saved.get(signal.SIGCHLD) is signal.SIG_IGN
    if sigchld_ignored:  # before the fork: an ignored SIGCHLD would reap the child behind the keeper's back
        _set_handler(signal.SIGCHLD, signal.SIG_DFL)
    keeper_pid = os.getpid()
    _flush_output()
    # Signals wait (blocked) across the fork: the keeper must not run the job's handlers
    # before its own are in place, and the live process takes what came meanwhile once
    # it is ready. One sent to the group during the fork reaches both (the kernel sees to it).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = fork_quietly()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _undo_take(chain, cp_id, [keeper_end, child_end], sigchld_ignored)
        raise CheckpointError(f"cannot checkpoint: fork() failed: {exc}") from None
    made = dict(cp_id=cp_id, depth=depth, label=label_dict, taken=taken, cannot=cannot, random_state=random_state,
                mask=mask)
    if pid == 0:
        _close(keeper_end)
        if chain.witness is not None:  # the root's, not ours
            for fd in chain.witness.fds():
                _close(fd)
            chain.witness = None
        if sigchld_ignored:
            _set_handler(signal.SIGCHLD, signal.SIG_IGN)
        return _become_live(chain, keeper_pid, rewinds=0, **made)
    # This process is now the keeper of the checkpoint.
    if on_keeper is not None:
        try:
            on_keeper(Checkpoint(id=cp_id, job=chain.job, keeper=keeper_pid, depth=depth, label=label_dict,
                                 taken=taken, rewinds=0, cannot_rewind=cannot), pid)
        except BaseException as exc:  # the keeper must keep, whatever the hook did
            print(f"framebridge: the keeper hook failed: {exc!r}", file=sys.__stderr__, flush=True)
    keeper = Keeper(checkpoint_id=cp_id, depth=depth, child=pid, control=keeper_end, registry=chain.registry,
                    witness=chain.witness if depth == 0 else None, saved=saved, can_rewind=True)
    rewinds = keep(keeper)
    chain.witness = None  # a new live process, forked by a rewind
    return _become_live(chain, keeper_pid, rewinds=rewinds, **made)


def _become_live(chain: _Chain, keeper_pid: int, *, cp_id: int, depth: int, label: Dict[str, Any], taken: float,
                 rewinds: int, cannot: Dict[str, Any], random_state: Any, mask: Any) -> Checkpoint:
    """First steps of a new live process (after take()'s fork or a rewind's); its signals
    are blocked until the last one, which gives back the job's own mask."""
    # Die with the keeper: a live process must never outlive the chain that relays it.
    sysapi.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != keeper_pid:  # the keeper died before the line above
        os.kill(os.getpid(), signal.SIGKILL)
    if random_state is not None:
        # random's own fork handler reseeds it; a checkpoint means "as it was", so the
        # rewound timeline draws the same numbers as the first one.
        import random

        random.setstate(random_state)
    me = os.getpid()

    def register(doc: Dict[str, Any]) -> int:
        doc["live"] = me
        doc["generation"] += 1
        return doc["checkpoints"][0]["id"]

    root_id = chain.registry.update(register)
    try:
        _send(chain.senders[root_id], {"op": "live", "pid": me})
    except CheckpointError:
        pass  # the root is gone: this process goes with it (parent-death signals down the chain)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what came meanwhile is delivered here, to the job
    return Checkpoint(id=cp_id, job=chain.job, keeper=keeper_pid, depth=depth, label=label, taken=taken,
                      rewinds=rewinds, cannot_rewind=cannot)


def _undo_take(chain: _Chain, cp_id: int, fds: List[int], sigchld_ignored: bool) -> None:
    for fd in fds:
        _close(fd)
    chain.senders.pop(cp_id, None)
    if sigchld_ignored:
        _set_handler(signal.SIGCHLD, signal.SIG_IGN)

    def remove(doc: Dict[str, Any]) -> bool:
        doc["checkpoints"] = [c for c in doc["checkpoints"] if c["id"] != cp_id]
        return not doc["checkpoints"]

    if chain.registry.update(remove):  # that was the first checkpoint: no chain after all
        _drop_chain(chain)


def _drop_chain(chain: _Chain) -> None:
    global _chain
    if chain.witness is not None:
        chain.witness.close()
        chain.witness = None
    chain.forget()
    _chain = None


# --- rewind, drop, list ------------------------------------------------------------------------


def rewind(cp: Union[Checkpoint, int], *, timeout: float = KILL_WAIT_S + 5.0) -> NoReturn:
    """Go back to ``cp``: this process (and every keeper below ``cp``) is killed and
    ``cp``'s keeper forks a new live process, in which ``take()`` returns again.

    Call it in the live process (or a process below it). Never returns; raises
    CheckpointError (and nothing changed) if ``cp`` is unknown, dropped or its keeper
    gone, or if the keeper did not act within ``timeout``. What was written on stdout and
    stderr so far is flushed first; nothing of this timeline is written after.
    """
    chain = _require_chain()
    cp_id = _id_of(cp)
    doc = chain.registry.read()
    item = _kept_entry(doc, cp_id)
    me, live = os.getpid(), doc["live"]
    victims = [c["keeper"] for c in doc["checkpoints"] if c["depth"] > item["depth"]] + [live, me]
    victims = sorted({p for p in victims if p is not None})
    _flush_output()
    # This timeline must run nothing more: hold its signals back until the keeper's SIGKILL.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED + [signal.SIGCHLD])
    try:
        _send(chain.senders[cp_id], {"op": "rewind", "kill": victims, "by": me})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)  # waiting to be killed: there is nothing to wait on
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    raise CheckpointError(f"the keeper of checkpoint {cp_id} (pid {item['keeper']}) did not rewind "
                          f"within {timeout:g}s")


def drop(cp: Union[Checkpoint, int]) -> None:
    """Free ``cp``'s snapshot. Its keeper cannot just end (it relays the chain below it and
    may be the job's pid), so it becomes a small relay process: same pid, no snapshot.
    Dropping a dropped checkpoint does nothing."""
    chain = _require_chain()
    cp_id = _id_of(cp)
    doc = chain.registry.read()
    item = entry(doc, cp_id)
    if item is not None and item["state"] == "dropped":
        return
    _kept_entry(doc, cp_id)

    def mark(doc: Dict[str, Any]) -> None:
        found = entry(doc, cp_id)
        if found is not None:
            found["state"] = "dropped"

    chain.registry.update(mark)
    _send(chain.senders[cp_id], {"op": "drop"})


def list_checkpoints() -> List[CheckpointInfo]:
    """The job's checkpoints on this timeline, outermost first, with each keeper's memory now."""
    chain = _chain_here()
    if chain is None:
        return []
    return [_info(item) for item in chain.registry.read()["checkpoints"]]


def rewindable(cp: Union[Checkpoint, int]) -> CheckpointInfo:
    """What :func:`rewind` would go back to (its ``cannot_rewind`` included); raises
    CheckpointError, as rewind() would, for an unknown, dropped or orphaned checkpoint.
    Lets a caller check, and say what cannot be rewound, before it commits to the rewind."""
    chain = _require_chain()
    return _info(_kept_entry(chain.registry.read(), _id_of(cp)))


def _info(item: Dict[str, Any]) -> CheckpointInfo:
    return CheckpointInfo(
        id=item["id"], keeper=item["keeper"], depth=item["depth"], label=item["label"], taken=item["taken"],
        rewinds=item["rewinds"], state=item["state"], memory=inventory.memory(item["keeper"]),
        cannot_rewind=item["cannot_rewind"],
    )


def job_id() -> int:
    """The job's pid for its supervisor and for clients: the root keeper's once a checkpoint
    exists (constant across checkpoints and rewinds), this process's before."""
    chain = _chain_here()
    return chain.job if chain is not None else os.getpid()


def generation() -> int:
    """How many live processes the job has had (bumped at every take and rewind): the
    newest connection file of a job is the one with the highest generation. 0 before any."""
    chain = _chain_here()
    return chain.registry.read()["generation"] if chain is not None else 0


def identity() -> Dict[str, Any]:
    """``{"job", "lineage", "generation"}`` in the live process of a job that has
    checkpoints (what its connection file carries, so that a client follows the job from
    one live process to the next), else {}. One read of the shared record."""
    chain = _chain
    if chain is None:
        return {}
    doc = chain.registry.read()
    if doc.get("live") != os.getpid():
        return {}  # a keeper, or a process below the live one: not the job's face
    return {"job": chain.job, "lineage": _lineage_of(doc), "generation": doc["generation"]}


def lineage() -> List[int]:
    """Keeper pids from the job's pid inwards, then the live pid; [pid] with no checkpoint."""
    chain = _chain_here()
    if chain is None:
        return [os.getpid()]
    return _lineage_of(chain.registry.read())


# --- helpers -------------------------------------------------------------------------------------


def _id_of(cp: Union[Checkpoint, int]) -> int:
    if isinstance(cp, Checkpoint):
        return cp.id
    if isinstance(cp, int) and not isinstance(cp, bool):
        return cp
    raise TypeError(f"a Checkpoint or a checkpoint id is needed, not {type(cp).__name__}")


def _kept_entry(doc: Dict[str, Any], cp_id: int) -> Dict[str, Any]:
    item = entry(doc, cp_id)
    if item is None:
        known = ", ".join(str(c["id"]) for c in doc["checkpoints"]) or "none"
        raise CheckpointError(f"checkpoint {cp_id} is not on this timeline (it was below a checkpoint the job "
                              f"went back to, or never existed); checkpoints now: {known}")
    if item["state"] != "kept":
        raise CheckpointError(f"checkpoint {cp_id} was dropped; its snapshot is gone")
    if sysapi.process_state(item["keeper"]) in (None, "Z", "X"):
        raise CheckpointError(f"the keeper of checkpoint {cp_id} (pid {item['keeper']}) is gone")
    return item


def _checked_label(label: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    out = dict(label or {})
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a checkpoint label must be JSON-able (file, line, function...): {exc}") from None
    return out


def _other_python_threads() -> List[str]:
    """Names of the live Python threads other than this one and framebridge's own."""
    me, main = threading.current_thread(), threading.main_thread()
    names = []
    for thread in threading.enumerate():
        if thread is me or not thread.is_alive():
            continue
        if _is_framebridge(thread):
            continue
        notes = [n for n, on in (("main", thread is main), ("daemon", thread.daemon)) if on]
        names.append(repr(thread.name) + (f" ({', '.join(notes)})" if notes else ""))
    return names


def _is_framebridge(thread: threading.Thread) -> bool:
    # framebridge's threads are named "bridge-*"; the ZAP authenticator is pyzmq's class.
    return thread.name.startswith("bridge-") or type(thread).__module__.startswith("zmq.")


def _cannot_rewind(chain: _Chain, python_threads: List[str], exclude_fds: Iterable[int]) -> Dict[str, Any]:
    witness = [chain.witness.pid] if chain.witness is not None else []
    ours = [t.native_id for t in threading.enumerate() if _is_framebridge(t) and getattr(t, "native_id", None)]
    found = inventory.collect(os.getpid(), exclude_fds=[*chain.fds(), *exclude_fds], exclude_children=witness,
                              exclude_threads=ours)
    found["python_threads"] = python_threads
    alarm = signal.getitimer(signal.ITIMER_REAL)[0]
    if alarm:
        found["alarm_in"] = alarm
    return found


def _random_state() -> Any:
    module = sys.modules.get("random")
    return module.getstate() if module is not None else None


def _set_handler(sig: int, handler: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(sig, handler)
    else:
        sysapi.set_disposition_raw(sig, ignore=handler is signal.SIG_IGN)


def _flush_output() -> None:
    """Flush the standard streams (Python's and C's): a buffer copied into a fork would be
    written once per timeline."""
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s}.values():
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    sysapi.flush_c_stdio()


def _send(fd: int, message: Dict[str, Any]) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.send(json.dumps(message).encode("utf-8"), socket.MSG_NOSIGNAL)
    except OSError as exc:
        raise CheckpointError(f"cannot reach the keeper: {exc}") from None
    finally:
        sock.detach()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
