"""Keys, authorized keys, the runtime dir and connection files. Used by both sides.

Layout (all owner-only)::

    $BRIDGE_CONFIG_DIR  (default $XDG_CONFIG_HOME/framebridge or ~/.config/framebridge), 0700
        client.key              this user's CURVE key pair (z85 public + secret), 0600
        authorized_keys         z85 public keys a target serves, one per line, 0600
    $BRIDGE_RUNTIME_DIR (default $XDG_RUNTIME_DIR/framebridge or <tmp>/framebridge-<uid>), 0700
        bridge-<pid>.json       endpoint, server public key, pid, argv, python, pause state, 0600

A target's own server key pair is made fresh in memory at start; only its public half is
written, into the connection file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

import zmq
from zmq.utils import z85

CLIENT_KEY_FILE = "client.key"
AUTHORIZED_KEYS_FILE = "authorized_keys"
CONNECTION_PREFIX = "bridge-"


class InsecurePathError(PermissionError):
    """A key or runtime path is not owned by this user or is open to others."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair in z85 text form."""

    public: str
    secret: str

    def __repr__(self) -> str:  # never show the secret
        return f"KeyPair(public={self.public!r}, fingerprint={fingerprint(self.public)!r})"


def fingerprint(public_key: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return "SHA256:" + hashlib.sha256(public_key.encode("ascii")).hexdigest()[:16]


def config_dir() -> Path:
    """Where this user's keys live (created 0700 if missing)."""
    env = os.environ.get("BRIDGE_CONFIG_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        path = Path(base) / "framebridge"
    return ensure_private_dir(path)


def runtime_dir() -> Path:
    """Where connection files live (created 0700 if missing)."""
    env = os.environ.get("BRIDGE_RUNTIME_DIR")
    if env:
        path = Path(env)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "framebridge"
    else:
        path = Path(tempfile.gettempdir()) / f"framebridge-{os.getuid()}"
    return ensure_private_dir(path)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700, or check an existing one is ours and closed to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise InsecurePathError(f"{path} is not a plain directory")
    if st.st_uid != os.getuid():
        raise InsecurePathError(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & 0o077:
        # Our own directory with loose permissions (umask, a user's mkdir): tighten it.
        os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file + rename)."""
    if exclusive:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp is 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_private_file(path: Path) -> None:
    """Refuse a key file that is not ours or that others can read."""
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


def load_client_keypair(create: bool = True) -> KeyPair:
    """This user's client key pair, created on first use with owner-only permissions."""
    path = config_dir() / CLIENT_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"no client key at {path}; run `framebridge keys`")
        public, secret = zmq.curve_keypair()
        body = {"public": public.decode("ascii"), "secret": secret.decode("ascii")}
        try:
            write_private_file(path, json.dumps(body).encode(), exclusive=True)
        except FileExistsError:
            pass  # another process created it first; use theirs
        else:
            authorize_key(body["public"], comment="this user's own client key")
    check_private_file(path)
    body = json.loads(path.read_text())
    return KeyPair(public=body["public"], secret=body["secret"])


def _valid_public_key(key: str) -> bool:
    if len(key) != 40:
        return False
    try:
        z85.decode(key.encode("ascii"))
    except Exception:
        return False
    return True


def _key_token(line: str) -> str:
    """The key on an authorized_keys line ('' for blank and comment lines).

    '#' is a z85 character (a key may even start with it), so comments cannot be found by
    looking for '#': the key is the first whitespace-separated word when that word is a
    40-character z85 key; anything else on the line, or any other line, is a comment.
    """
    words = line.split()
    return words[0] if words and _valid_public_key(words[0]) else ""


def authorized_keys() -> Set[str]:
    """The client public keys a target serves: the authorized_keys file, or our own key."""
    path = config_dir() / AUTHORIZED_KEYS_FILE
    if not path.exists():
        return {load_client_keypair().public}
    check_private_file(path)
    keys = set()
    for line in path.read_text().splitlines():
        token = _key_token(line)
        if token and _valid_public_key(token):
            keys.add(token)
    return keys


def authorize_key(public_key: str, comment: str = "") -> bool:
    """Add ``public_key`` to authorized_keys; return False if it was already there."""
    public_key = public_key.strip()
    if not _valid_public_key(public_key):
        raise ValueError(f"{public_key!r} is not a 40-character z85 CURVE public key")
    path = config_dir() / AUTHORIZED_KEYS_FILE
    lines: List[str] = []
    if path.exists():
        check_private_file(path)
        lines = path.read_text().splitlines()
        if any(_key_token(line) == public_key for line in lines):
            return False
    lines.append(f"{public_key}  # {comment}" if comment else public_key)
    write_private_file(path, ("\n".join(lines) + "\n").encode())
    return True


# --- connection files -------------------------------------------------------------------


def connection_path(pid: int) -> Path:
    """Path of the connection file of process ``pid``."""
    return runtime_dir() / f"{CONNECTION_PREFIX}{pid}.json"


def write_connection_file(info: Dict[str, Any]) -> Path:
    """Write (or update) this process's connection file, 0600, atomically.

    The process's start time is recorded too, so that a file left by a dead process whose
    pid was reused is still recognised as stale.
    """
    path = connection_path(info["pid"])
    if "start_time" not in info:
        info = dict(info, start_time=process_start_time(info["pid"]))
    write_private_file(path, json.dumps(info, indent=1).encode())
    return path


def read_connection_file(path: Path) -> Dict[str, Any]:
    """Read and validate a connection file; ValueError names what is wrong."""
    check_private_file(path)
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    for key, kind in (("endpoint", str), ("server_key", str), ("pid", int)):
        if not isinstance(info.get(key), kind):
            raise ValueError(f"{path} lacks a valid {key!r}")
    if not _valid_public_key(info["server_key"]):
        raise ValueError(f"{path} has a malformed server key")
    info["path"] = str(path)
    return info


def iter_connection_files() -> Iterable[Path]:
    """Every connection file in the runtime dir, newest first."""
    paths = list(runtime_dir().glob(f"{CONNECTION_PREFIX}*.json"))
    paths.sort(key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    return paths


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (kill -0 alone says yes to zombies)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill -0 is all we have


@functools.lru_cache(maxsize=64)
def _own_start_time(pid: int) -> Optional[int]:
    # Cached: our start time never changes, and the connection file is rewritten at every pause.
    return _read_start_time(pid)


def _read_start_time(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Field 22 (starttime, clock ticks since boot); the name before it may hold spaces.
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None  # no /proc (macOS) or the process is gone


def process_start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started (opaque ticks from /proc), or None where unknown."""
    return _own_start_time(pid) if pid == os.getpid() else _read_start_time(pid)


def connection_is_stale(path: Path) -> bool:
    """True if the process that wrote ``path`` is gone (dead, or its pid now names another process)."""
    try:
        pid = int(path.stem[len(CONNECTION_PREFIX):])
    except ValueError:
        return False  # not one of ours
    if not process_alive(pid):
        return True
    try:
        recorded = json.loads(path.read_text()).get("start_time")
    except (OSError, ValueError, AttributeError):
        return False  # unreadable or half-written: not provably stale, leave it
    current = process_start_time(pid)
    return isinstance(recorded, int) and current is not None and recorded != current


def remove_stale_connection_files() -> List[Path]:
    """Delete connection files whose process is gone (or whose pid was reused); return what was removed."""
    removed = []
    for path in iter_connection_files():
        if connection_is_stale(path):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def python_description() -> str:
    """e.g. 'CPython 3.11.7'."""
    return f"{sys.implementation.name.capitalize().replace('Cpython', 'CPython')} {sys.version.split()[0]}"
