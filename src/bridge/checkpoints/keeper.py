"""The keeper: the process that holds a checkpoint's memory and stands in for the job.

After ``take()`` forks, the original process runs :meth:`Keeper.run` on the thread that
called it and never returns to the job's code there: its memory, frozen at the fork, *is*
the snapshot. The loop waits (without releasing the GIL: see sysapi) on three things:

* its control socket, on which processes below send requests: ``rewind`` (kill the
  timeline below, fork a new live process from this unchanged memory), ``drop`` (stop
  keeping: exec a small relay that frees the memory) and ``live`` (to the root: a new
  live pid, send it the signals held back meanwhile);
* its child, through a pidfd: when the chain below ends, the keeper ends the same way
  (same exit code, or death by the same signal);
* its wakeup pipe: signals (the root passes them on, see signals.py) and SIGCHLD.

A keeper never runs the job's code, atexit handlers or buffered-file flushes: it leaves
through ``os._exit`` or a signal (sysapi.die_like).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
import traceback
import warnings
from typing import Any, Dict, List, Optional

from . import sysapi
from .registry import Registry, entry
from .signals import FORWARDED, Handlers, KeeperSignals, Witness, group_heuristic, note_signal

#: How long a rewind waits for the abandoned timeline's processes to die after SIGKILL.
KILL_WAIT_S = 10.0
#: Where the relay finds this package (a dropped keeper execs a fresh interpreter).
_SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_RELAY_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from bridge.checkpoints.relay import main; main(sys.argv[2])"


def fork_quietly() -> int:
    """os.fork() without 3.12+'s DeprecationWarning about forking a multi-threaded process:
    the threads are checked (or forced) by the caller, and the warning would only be noise
    in the job's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


class Keeper:
    """One keeper's state and loop. ``can_rewind`` is False in a relay (a dropped keeper)."""

    def __init__(self, *, checkpoint_id: int, depth: int, child: int, control: int, registry: Registry,
                 witness: Optional[Witness], saved: Handlers, can_rewind: bool,
                 pending: Optional[List[int]] = None) -> None:
        self.pid = os.getpid()
        self.checkpoint_id = checkpoint_id
        self.depth = depth
        self.root = depth == 0
        self.child = child
        self.control = control
        self.registry = registry
        self.witness = witness
        self.can_rewind = can_rewind
        self.pending: List[int] = list(pending or [])  # signals for a live process not yet known
        self.signals = KeeperSignals(root=self.root, saved=saved)
        self.child_fd: Optional[int] = None
        self._control_open = True
        self._gc_was_enabled = gc.isenabled()
        self._trace = sys.gettrace()
        self._profile = sys.getprofile()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Keep until the chain below ends (this process then ends like it). Returns only in
        a new live process forked by a rewind: the number of rewinds to this checkpoint."""
        sys.settrace(None)
        sys.setprofile(None)
        gc.disable()  # no collection touching (and so copying) the snapshot's pages, no finalizers here
        self.signals.install()
        # take() (and a relay's exec) left these blocked until the handlers above were in place.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED + [signal.SIGCHLD])
        self.child_fd = sysapi.open_pidfd(self.child)
        os.set_blocking(self.control, False)
        while True:
            fds = [self.control] if self._control_open else []
            if self.signals.wakeup_r is not None:
                fds.append(self.signals.wakeup_r)
            if self.child_fd is not None:
                fds.append(self.child_fd)
            # Without a pidfd or a wakeup pipe, look at the children now and then.
            timeout = 50 if self.child_fd is None else (-1 if self.signals.wakeup_r is not None else 1000)
            sysapi.poll_holding_gil(fds, timeout)
            for sig in self.signals.received():
                self._on_signal(sig)
            for message in self._messages():
                try:
                    rewinds = self._on_message(message)
                except Exception as exc:
                    if os.getpid() != self.pid:
                        raise  # the new live process: its errors are the job's
                    _say(f"keeper {self.pid}: ignored a request it could not carry out ({exc!r})")
                    continue
                if rewinds is not None:
                    return rewinds  # in the new live process
            self._reap()

    def _messages(self) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        while self._control_open:
            data = sysapi.read_holding_gil(self.control, 65536)
            if data is None:
                return out
            if not data:  # every sender is gone (a relay holds no sender of its own): the chain is ending
                self._control_open = False
                return out
            try:
                message = json.loads(data.decode("utf-8"))
            except ValueError:
                message = None
            if isinstance(message, dict):
                out.append(message)
            else:
                _say(f"keeper {self.pid}: ignored a malformed request")
        return out

    def _on_message(self, message: Dict[str, Any]) -> Optional[int]:
        op = message.get("op")
        if op == "rewind":
            if not self.can_rewind:
                _say(f"keeper {self.pid}: checkpoint {self.checkpoint_id} was dropped; cannot rewind to it")
                return None
            return self._rewind([p for p in message.get("kill", []) if isinstance(p, int) and p > 1])
        if op == "drop":
            if self.can_rewind:
                self._become_relay()
        elif op == "live" and self.root:
            live = message.get("pid")
            held, self.pending = self.pending, []
            for sig in held:
                self._send(live, sig)
        return None

    # --- signals (root) -----------------------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        if sig not in FORWARDED:
            return  # SIGCHLD: _reap runs after this
        live = self.registry.read().get("live")
        # An inner keeper catches only SIGALRM: its own timer (the job's alarm(), set before
        # the checkpoint this keeper keeps: fork does not copy timers), the job's to get.
        reached = self._reached_live(sig, live) if self.root else False
        if not reached:
            if live is None:
                self.pending.append(sig)  # a rewind is under way: the next live process gets it
            else:
                self._send(live, sig)
        if sig == signal.SIGTSTP:
            self._stop_like_a_job()

    def _stop_like_a_job(self) -> None:
        """Stop as the job did (so that a shell sees its job stop): by SIGTSTP's default
        action, which the kernel skips in an orphaned process group, as it did for the job."""
        sysapi.set_disposition_raw(signal.SIGTSTP, ignore=False)
        try:
            os.kill(self.pid, signal.SIGTSTP)  # delivered (and acted on) before kill() returns
        finally:
            signal.signal(signal.SIGTSTP, note_signal)  # only reached on the main thread (see _on_signal)

    def _reached_live(self, sig: int, live: Optional[int]) -> bool:
        """Whether the live process got ``sig`` by itself (it was sent to our process group)."""
        group = self.witness.saw(sig) if self.witness is not None else None
        if group is None:
            group = group_heuristic(sig)
        if not group or live is None:
            return False
        try:
            return os.getpgid(live) == os.getpgid(0)  # one that left our group did not get it
        except ProcessLookupError:
            return False

    def _send(self, live: Optional[int], sig: int) -> None:
        if live is None or live == self.pid:
            self.pending.append(sig)
            return
        try:
            os.kill(live, sig)
        except ProcessLookupError:
            self.pending.append(sig)  # it died this instant: a rewind is starting

    # --- children -------------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every child that ended; the chain child's end is the job's end."""
        while True:
            try:
                pid, status = sysapi.waitpid_holding_gil(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self._finish(status)
            if self.witness is not None and pid == self.witness.pid:
                for fd in self.witness.fds():
                    _close(fd)
                self.witness = None  # gone: the root falls back to guessing (signals.group_heuristic)

    def _finish(self, status: int) -> None:
        if self.witness is not None:
            self.witness.end()
        sysapi.die_like(status)

    # --- rewind ----------------------------------------------------------------------------

    def _rewind(self, requested: List[int]) -> Optional[int]:
        # Kill only what is really below this keeper (a stale or confused request must not
        # reach other processes).
        victims = [p for p in requested if p != self.pid and (p == self.child or sysapi.is_descendant(p, self.pid))]
        if self.child not in victims:
            victims.append(self.child)

        def forget_below(doc: Dict[str, Any]) -> int:
            doc["live"] = None
            doc["checkpoints"] = [c for c in doc["checkpoints"] if c["depth"] <= self.depth]
            mine = entry(doc, self.checkpoint_id)
            assert mine is not None
            mine["rewinds"] += 1
            return mine["rewinds"]

        rewinds = self.registry.update(forget_below)
        # The abandoned timeline is the chain below and every process it started since the
        # checkpoint (still attached below it): stop them all first, so that none forks
        # away while they are killed. The job's processes from before the checkpoint are
        # this keeper's children, not below the chain: they stay.
        victims = sysapi.stop_trees(victims)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = sysapi.wait_gone(victims, time.monotonic() + KILL_WAIT_S)
        if left:
            _say(f"keeper {self.pid}: processes {left} still run {KILL_WAIT_S:g}s after SIGKILL; rewinding anyway")
        os.waitpid(self.child, 0)  # ours to reap (it is dead or dying: SIGKILL cannot be held off)
        if self.child_fd is not None:
            _close(self.child_fd)
            self.child_fd = None
        # As in take(): signals wait across the fork, the new live process takes them once
        # the job's handlers are back (take()'s last step gives back the job's mask).
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            pid = fork_quietly()
        except OSError as exc:
            _say(f"keeper {self.pid}: fork failed ({exc}); the job ends here")
            self._finish(1 << 8)
        if pid == 0:
            self._undo_in_child()
            return rewinds
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        self.child = pid
        self.child_fd = sysapi.open_pidfd(pid)
        return None

    def _undo_in_child(self) -> None:
        """In the new live process: drop the keeper's descriptors, give back the job's settings."""
        _close(self.control)
        if self.child_fd is not None:
            _close(self.child_fd)
        if self.witness is not None:
            for fd in self.witness.fds():
                _close(fd)
        self.signals.undo_in_child()
        if self._gc_was_enabled:
            gc.enable()
        sys.settrace(self._trace)
        sys.setprofile(self._profile)

    # --- drop: become a relay ----------------------------------------------------------------

    def _become_relay(self) -> None:
        """Free the snapshot: exec a fresh interpreter that only relays (same pid, same
        parent and child, same descriptors that matter). On failure, keep keeping."""
        state = {
            "checkpoint_id": self.checkpoint_id, "depth": self.depth, "child": self.child,
            "control": self.control, "registry": self.registry.fd, "pending": self.pending,
            "witness": self.witness.state() if self.witness is not None else None,
        }
        keep = [self.control, self.registry.fd] + (self.witness.fds() if self.witness is not None else [])
        exe = sys.executable
        if exe:
            # Signals that arrive while the new interpreter starts wait, blocked (the mask
            # survives exec); the relay unblocks them once its handlers are in place.
            signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED + [signal.SIGCHLD])
            for fd in keep:
                os.set_inheritable(fd, True)
            try:
                os.execv(exe, [exe, "-I", "-S", "-c", _RELAY_BOOT, _SRC_DIR, json.dumps(state)])
            except OSError as exc:
                reason = str(exc)
            for fd in keep:
                os.set_inheritable(fd, False)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED + [signal.SIGCHLD])
        else:
            reason = "no interpreter path (sys.executable is empty)"
        _say(f"keeper {self.pid}: cannot free checkpoint {self.checkpoint_id} ({reason}); it stays in memory")

        def note(doc: Dict[str, Any]) -> None:
            mine = entry(doc, self.checkpoint_id)
            if mine is not None:
                mine["memory_kept"] = reason

        self.registry.update(note)

    def last_resort(self) -> None:
        """The loop broke (a bug): still relay the chain's end, blocking, and nothing else."""
        while True:
            try:
                _, status = os.waitpid(self.child, 0)
            except ChildProcessError:
                os._exit(1)
            except InterruptedError:
                continue
            sysapi.die_like(status)


def keep(keeper: Keeper) -> int:
    """Run ``keeper``; returns only in a live process forked by a rewind (see Keeper.run)."""
    try:
        return keeper.run()
    except BaseException:
        if os.getpid() != keeper.pid:
            raise  # the new live process: its errors are the job's
        try:
            _say(f"keeper {keeper.pid}: internal error; only relaying the job's end from now on\n"
                 + traceback.format_exc())
        finally:
            keeper.last_resort()
        raise  # not reached: last_resort ends the process


def _say(text: str) -> None:
    try:
        os.write(2, f"framebridge: {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
