"""Signals in a chain of keepers: what the keepers catch, ignore and pass on, and the witness.

The rules (docs/design-checkpoints.md, "Signals and exit status"):

* Only the **root keeper** (the pid the supervisor started) passes signals on, and it sends
  them straight to the live process, whichever pid that is now. Inner keepers ignore
  them: nobody outside knows their pids, and a signal sent to the whole process group
  reaches the live process without their help. The exception is SIGALRM: fork does not
  copy timers, so the job's ``alarm()`` stays in whichever process set it, which may now
  be a keeper; every keeper passes its SIGALRM on.
* A signal sent to the **process group** (Ctrl-C in a terminal, ``kill -- -PGID``, a shell's
  job control, Airflow's ``killpg``) reaches the root keeper *and* the live process. The
  root must then not pass it on, or the job would see it twice. Nothing in the signal
  itself tells ``kill(pid)`` from ``kill(-pgid)``, so the root asks a **witness**: a tiny
  process in the same process group that blocks these signals and takes nothing until
  asked. If the witness has the signal pending, the group got it; otherwise it was sent
  to the root's pid alone and is passed on.
* Job control: a group Ctrl-Z stops the live process (default action) and the root
  stops itself too, so the supervisor (a shell) sees the job stopped; keepers never stop
  otherwise (SIGTTIN and SIGTTOU are ignored).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType
from typing import Any, Dict, List, Optional

from . import sysapi

#: What the root keeper passes on to the live process (SIGALRM: the job's alarm() timer
#: stays with the keeper process, since fork() does not copy timers).
FORWARDED = [
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGCONT, signal.SIGWINCH, signal.SIGALRM, signal.SIGTSTP,
]
#: Ignored by every keeper: they would stop a keeper or end it for nothing.
KEEPER_IGNORED = [signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE]
#: Every disposition a keeper may change; a rewound child puts all of them back.
TOUCHED = FORWARDED + KEEPER_IGNORED + [signal.SIGCHLD]

Handlers = Dict[int, Any]


def save_handlers() -> Handlers:
    """The Python-level handlers of :data:`TOUCHED` now (a handler set from C reads as None
    and is left alone everywhere)."""
    saved = {}
    for sig in TOUCHED:
        handler = signal.getsignal(sig)
        if handler is not None:
            saved[sig] = handler
    return saved


def restore_handlers(saved: Handlers) -> None:
    """Put back the handlers ``saved`` (in a new live process, whose only thread is its main thread)."""
    for sig, handler in saved.items():
        try:
            signal.signal(sig, handler)
        except (OSError, ValueError, TypeError):
            pass


def note_signal(signum: int, frame: Optional[FrameType]) -> None:
    """A keeper's handler: nothing to do here, the wakeup fd already carries the signal number."""


class KeeperSignals:
    """A keeper's signal set-up: catch (root) or ignore (inner) and a wakeup pipe to poll."""

    def __init__(self, *, root: bool, saved: Handlers) -> None:
        self.root = root
        self.saved = saved
        self.on_main_thread = sys.platform != "win32" and _is_main_thread()
        self.wakeup_r: Optional[int] = None
        self._wakeup_w: Optional[int] = None
        self.previous_wakeup_fd = -1

    def install(self) -> None:
        """Catch or ignore as the rules say. On a thread other than the main one (a
        checkpoint forced there) Python allows no handlers: inner keepers still ignore
        through libc, and the root leaves its signals as they were (documented)."""
        if self.on_main_thread:
            self.wakeup_r, self._wakeup_w = os.pipe()
            os.set_blocking(self.wakeup_r, False)
            os.set_blocking(self._wakeup_w, False)
            self.previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for sig in FORWARDED:
            if sig not in self.saved:
                continue  # its handler belongs to C code we cannot restore: leave it
            if self.on_main_thread and (self.root or sig == signal.SIGALRM):
                signal.signal(sig, note_signal)
            elif not self.root:
                self._ignore(sig)
        for sig in KEEPER_IGNORED:
            if sig in self.saved:
                self._ignore(sig)
        if self.on_main_thread and signal.SIGCHLD in self.saved:
            signal.signal(signal.SIGCHLD, note_signal)  # wakes the keeper to reap the job's older children

    def _ignore(self, sig: int) -> None:
        if self.on_main_thread:
            signal.signal(sig, signal.SIG_IGN)
        else:
            sysapi.set_disposition_raw(sig, ignore=True)

    def received(self) -> List[int]:
        """Signal numbers delivered since the last call (from the wakeup pipe), in order."""
        if self.wakeup_r is None:
            return []
        out: List[int] = []
        while True:
            chunk = sysapi.read_holding_gil(self.wakeup_r, 512)
            if not chunk:
                return out
            out.extend(chunk)

    def fds(self) -> List[int]:
        return [fd for fd in (self.wakeup_r, self._wakeup_w) if fd is not None]

    def undo_in_child(self) -> None:
        """In a live process forked from this keeper: close the pipe, restore the job's handlers."""
        if self.on_main_thread:
            signal.set_wakeup_fd(self.previous_wakeup_fd)
        for fd in self.fds():
            _close(fd)
        restore_handlers(self.saved)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# --- the witness ------------------------------------------------------------------------------

# The witness's whole program. Its signal mask (set by posix_spawn, kept across exec) blocks
# FORWARDED, so a group signal stays pending in it until the root asks: one byte, the signal
# number; the answer, b"1" if it was pending (and is now taken), else b"0". EOF: the root is gone.
_WITNESS_PROGRAM = (
    "# framebridge checkpoint witness (bridge/checkpoints/signals.py)\n"
    "import os, signal\n"
    "while True:\n"
    "    b = os.read(0, 1)\n"
    "    if not b:\n"
    "        break\n"
    "    os.write(1, b'1' if signal.sigtimedwait([b[0]], 0) is not None else b'0')\n"
)
#: The longest the root waits for the witness to answer (it answers in microseconds once
#: started; this covers its interpreter start-up).
WITNESS_ANSWER_S = 5.0


class Witness:
    """The root keeper's witness process: tells a group signal from one sent to the root alone."""

    def __init__(self, pid: int, to_fd: int, from_fd: int) -> None:
        self.pid = pid
        self.to_fd = to_fd
        self.from_fd = from_fd

    @classmethod
    def spawn(cls) -> Optional["Witness"]:
        """Start a witness in this process's group; None where no interpreter can be started."""
        exe = sys.executable
        if not exe or not os.access(exe, os.X_OK) or not hasattr(os, "posix_spawn"):
            return None
        cmd_r, cmd_w = os.pipe()
        ans_r, ans_w = os.pipe()
        try:
            # posix_spawn (a vfork underneath): no copy of this process's page tables.
            pid = os.posix_spawn(
                exe, [exe, "-I", "-S", "-c", _WITNESS_PROGRAM], {},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, cmd_r, 0),
                    (os.POSIX_SPAWN_DUP2, ans_w, 1),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
                setsigmask=FORWARDED,
            )
        except OSError:
            for fd in (cmd_r, cmd_w, ans_r, ans_w):
                _close(fd)
            return None
        _close(cmd_r)
        _close(ans_w)
        return cls(pid, cmd_w, ans_r)

    @classmethod
    def from_state(cls, state: Optional[List[int]]) -> Optional["Witness"]:
        return cls(*state) if state else None

    def state(self) -> List[int]:
        return [self.pid, self.to_fd, self.from_fd]

    def saw(self, sig: int) -> Optional[bool]:
        """Whether the witness got ``sig`` too (a group signal); None if it cannot say."""
        try:
            os.write(self.to_fd, bytes([sig]))
            deadline = time.monotonic() + WITNESS_ANSWER_S
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if sysapi.poll_holding_gil([self.from_fd], int(left * 1000) + 1):
                    answer = os.read(self.from_fd, 1)
                    return None if not answer else answer == b"1"
        except OSError:
            return None

    def fds(self) -> List[int]:
        return [self.to_fd, self.from_fd]

    def end(self) -> None:
        """End the witness now and reap it, holding the GIL throughout (the keeper's last act)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            sysapi.waitpid_holding_gil(self.pid, 0)  # SIGKILL: it cannot take long
        except (ProcessLookupError, ChildProcessError):
            pass

    def close(self, wait_s: float = 1.0) -> None:
        """End the witness (EOF on its input) and reap it."""
        for fd in self.fds():
            _close(fd)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.001)  # it exits as soon as it reads EOF
        if not done:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def group_heuristic(sig: int) -> bool:
    """Without a witness: guess that the terminal's and the shell's signals went to the group."""
    return sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGWINCH, signal.SIGCONT)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
