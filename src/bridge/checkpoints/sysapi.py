"""Linux process primitives the checkpoints need and the ``os`` module lacks (libc via ctypes).

Everything here is small and synchronous. The keeper's calls go through ``ctypes.PyDLL``
on purpose, which does *not* release the GIL (``os.read``, ``os.waitpid`` and
``ctypes.CDLL`` calls do): its idle wait (:func:`poll_holding_gil`), the reads of its
pipes and its reaping. So whatever other Python threads the keeper process still has (a
checkpoint taken with ``force=True``) stay frozen while it keeps the snapshot and as it
ends, and print nothing after the job's end (docs/design-checkpoints.md, "Threads").
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
import time
from typing import Iterable, List, NoReturn, Optional, Sequence

_PR_SET_PDEATHSIG = 1
_POLLIN = 0x001
_SIG_DFL = 0
_SIG_IGN = 1


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _load() -> "tuple[Optional[ctypes.CDLL], Optional[ctypes.PyDLL]]":
    if not sys.platform.startswith("linux"):
        return None, None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        held = ctypes.PyDLL(None, use_errno=True)
    except OSError:
        return None, None
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal.restype = ctypes.c_void_p
    libc.fflush.argtypes = [ctypes.c_void_p]
    held.poll.argtypes = [ctypes.POINTER(_PollFd), ctypes.c_ulong, ctypes.c_int]
    held.poll.restype = ctypes.c_int
    held.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    held.read.restype = ctypes.c_ssize_t
    held.waitpid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    held.waitpid.restype = ctypes.c_int
    held.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    held.signal.restype = ctypes.c_void_p
    return libc, held


_libc, _libc_holding_gil = _load()


def available() -> Optional[str]:
    """None where these primitives work (Linux with a libc), else why not."""
    if not hasattr(os, "fork"):
        return f"checkpoints need os.fork(), which {sys.platform} does not have"
    if _libc is None:
        return f"checkpoints need Linux (prctl, /proc); this is {sys.platform}"
    if not hasattr(os, "memfd_create"):
        return "checkpoints need os.memfd_create (Linux 3.17+, Python 3.8+)"
    return None


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when the thread that forked it ends."""
    assert _libc is not None
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_disposition_raw(sig: int, ignore: bool) -> None:
    """SIG_IGN or SIG_DFL for ``sig`` straight through libc: unlike ``signal.signal`` this
    works on any thread (Python allows handlers only on the main thread)."""
    assert _libc_holding_gil is not None
    _libc_holding_gil.signal(sig, _SIG_IGN if ignore else _SIG_DFL)


def flush_c_stdio() -> None:
    """fflush(NULL): C-level stdio buffers would otherwise be written once per timeline."""
    if _libc is not None:
        _libc.fflush(None)


def poll_holding_gil(fds: Sequence[int], timeout_ms: int) -> List[int]:
    """poll(2) for readability *without releasing the GIL*; the fds that are ready.

    An interrupted poll (a signal: its C-level handler has already run) returns [].
    """
    assert _libc_holding_gil is not None
    array = (_PollFd * len(fds))(*[_PollFd(fd, _POLLIN, 0) for fd in fds])
    n = _libc_holding_gil.poll(array, len(fds), timeout_ms)
    if n < 0:
        err = ctypes.get_errno()
        if err == errno.EINTR:
            return []
        raise OSError(err, os.strerror(err))
    return [entry.fd for entry in array if entry.revents]


def read_holding_gil(fd: int, size: int) -> Optional[bytes]:
    """read(2) without releasing the GIL; None if a non-blocking ``fd`` has nothing now."""
    assert _libc_holding_gil is not None
    buffer = ctypes.create_string_buffer(size)
    while True:
        n = _libc_holding_gil.read(fd, buffer, size)
        if n >= 0:
            return buffer.raw[:n]
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            return None
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def waitpid_holding_gil(pid: int, options: int) -> "tuple[int, int]":
    """waitpid(2) without releasing the GIL: (pid, status), (0, 0) if none ended (WNOHANG);
    ChildProcessError when there is no such child."""
    assert _libc_holding_gil is not None
    status = ctypes.c_int(0)
    while True:
        done = _libc_holding_gil.waitpid(pid, ctypes.byref(status), options)
        if done >= 0:
            return done, status.value
        err = ctypes.get_errno()
        if err == errno.ECHILD:
            raise ChildProcessError(err, os.strerror(err))
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def open_pidfd(pid: int) -> Optional[int]:
    """A pidfd for ``pid`` (readable once it has exited), or None where the kernel has none
    (before Linux 5.3) or the process is already gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


def process_state(pid: int) -> Optional[str]:
    """The one-letter state of ``pid`` from /proc (R, S, D, T, Z...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> Optional[int]:
    """The parent pid of ``pid`` (from /proc), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def child_pids(pid: int) -> List[int]:
    """The children of ``pid`` now (/proc/<pid>/task/*/children), [] if it is gone."""
    out: List[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
    except (OSError, ValueError):
        pass
    return out


def stop_trees(roots: Iterable[int], rounds: int = 8) -> List[int]:
    """SIGSTOP ``roots`` and all their descendants, again until no new one appears (a
    stopped process forks no more); every pid stopped, to be killed together."""
    stopped: List[int] = []
    seen: set = set()
    frontier = list(roots)
    for _ in range(rounds):
        new = [p for p in frontier if p not in seen]
        if not new:
            break
        for pid in new:
            seen.add(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        frontier = [c for p in seen for c in child_pids(p)]
    return stopped


def is_descendant(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is a (grand)parent of ``pid``, walking /proc."""
    seen = 0
    while pid > 1 and seen < 4096:
        parent = parent_of(pid)
        if parent is None:
            return False
        if parent == ancestor:
            return True
        pid, seen = parent, seen + 1
    return False


def wait_gone(pids: Iterable[int], deadline: float) -> List[int]:
    """Wait until each of ``pids`` has exited (dead or a zombie: it runs no more); the ones
    still running at ``deadline``. Uses pidfds where the kernel has them."""
    pending = {}
    fallback = []
    for pid in pids:
        fd = open_pidfd(pid)
        if fd is None:
            fallback.append(pid)
        else:
            pending[fd] = pid
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd in poll_holding_gil(list(pending), int(min(left, 1.0) * 1000) + 1):
                pending.pop(fd)
                os.close(fd)
        while fallback and time.monotonic() < deadline:
            fallback = [pid for pid in fallback if process_state(pid) not in (None, "Z", "X")]
            if fallback:
                time.sleep(0.001)  # no pidfd on this kernel: /proc is all there is to watch
        return sorted(list(pending.values()) + fallback)
    finally:
        for fd in pending:
            os.close(fd)


def die_like(status: int) -> NoReturn:
    """End this process the way a child with wait ``status`` ended: same exit code, or
    death by the same signal (without a core file of our own)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
            set_disposition_raw(sig, ignore=False)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            time.sleep(1.0)  # the signal is on its way; this only covers a signal whose default is not fatal
        finally:
            os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
