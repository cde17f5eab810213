"""Owner-only directories and files: make them, check them, write them whole, lock them.

Used for the config dir (keys) and the runtime dir (connection files), on both sides.
The rules (docs/security.md, "Files and secrets"):

* a directory is ours (owned by this uid, a plain directory, not a symlink); one of ours
  with loose permissions is tightened to 0700, except a directory that is *shared by
  intent* (the sticky or the set-group-ID bit: ``/tmp``, a team's 2775 project dir),
  whose permissions are never touched: it is refused with a clear error instead;
* a file is written to a temporary file (0600, created by ``mkstemp``) and renamed into
  place, so that a reader sees the old content or the new, never a part;
* read-modify-write updates (authorized_keys) hold an ``fcntl.flock`` on a lock file in
  the same directory, so that concurrent writers do not lose each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

#: The lock file of a directory's read-modify-write updates.
LOCK_FILE = ".lock"
#: The prefix of the temporary files that writes rename into place.
TEMP_PREFIX = ".tmp-"


class InsecurePathError(PermissionError):
    """A key or runtime path is not owned by this user or is open to others."""


def ensure_private_dir(path: Path, setting: str = "") -> Path:
    """Create ``path`` 0700, or check that an existing one is ours and closed to others.

    ``setting`` names the environment variable that chose ``path`` (the fix in an error
    message says to change it). An existing directory of ours that others may open is
    tightened to 0700, unless it is shared by intent (sticky or set-group-ID bit): that
    one is refused, and its permissions are left as they are.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    fix = f"set {setting} to a directory of your own" if setting else "use a directory of your own"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecurePathError(f"{path} is not a plain directory; {fix}")
    if st.st_uid != os.getuid():
        raise InsecurePathError(f"{path} is owned by uid {st.st_uid}, not by this user; {fix}")
    if st.st_mode & 0o077:
        if st.st_mode & (stat.S_ISVTX | stat.S_ISGID):
            # chmod 700 here would lock everyone else out of a directory they share
            # (as root with /tmp: every user of the machine).
            raise InsecurePathError(
                f"{path} is a shared directory (mode {stat.S_IMODE(st.st_mode):o}): framebridge keeps its "
                f"files in a directory only you can open and leaves this one's permissions alone; "
                f"{fix} instead (a new path: framebridge creates it 0700)"
            )
        # Our own directory with loose permissions (umask, a user's mkdir): tighten it.
        os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, whole or not at all (temp file + rename).

    ``durable``: fsync the file before it is renamed into place, so that a crash cannot
    leave an empty file under the name (keys); connection files do without (they are
    rewritten at every pause and mean nothing after a reboot).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)  # mkstemp is 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_private_file(path: Path) -> None:
    """Refuse a file that is not ours or that others can read (FileNotFoundError if missing)."""
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise InsecurePathError(f"{path} is not a regular file")
    if st.st_uid != os.getuid():
        raise InsecurePathError(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o077:
        raise InsecurePathError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}; it must be readable by its owner only "
            f"(chmod 600 {path})"
        )


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock (an exclusive ``flock`` on its lock file) for the block.

    Not re-entrant: a second ``locked`` of the same directory in the same process waits
    for the first (each opens the lock file anew, and flock locks belong to open files).
    """
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
