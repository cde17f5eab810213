"""Keys, authorized keys, the runtime dir and connection files. Used by both sides.

Layout (all owner-only, see private_files.py for the rules)::

    $BRIDGE_CONFIG_DIR  (default $XDG_CONFIG_HOME/framebridge or ~/.config/framebridge), 0700
        client.key              this user's CURVE key pair (z85 public + secret), 0600
        authorized_keys         z85 public keys a target serves, one per line, 0600
        .lock                   held while a key is created or authorized_keys is updated
    $BRIDGE_RUNTIME_DIR (default $XDG_RUNTIME_DIR/framebridge or <tmp>/framebridge-<uid>), 0700
        bridge-<pid>.json       endpoint, server public key, pid, argv, python, pause state, 0600

When ``<tmp>/framebridge-<uid>`` cannot be used (another user made it first: with no
XDG_RUNTIME_DIR anyone can), the runtime dir is ``$XDG_CACHE_HOME/framebridge/runtime-<host>``
(default ``~/.cache/...``) instead, on both sides alike (docs/security.md).

A target's own server key pair is made fresh in memory at start; only its public half is
written, into the connection file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set

import zmq
from zmq.utils import z85

# Both sides use the path helpers through this module (keys.InsecurePathError, ...).
from .private_files import (  # noqa: F401
    InsecurePathError,
    check_private_file,
    ensure_private_dir,
    locked,
    write_private_file,
)

log = logging.getLogger("bridge")

CLIENT_KEY_FILE = "client.key"
AUTHORIZED_KEYS_FILE = "authorized_keys"
CONNECTION_PREFIX = "bridge-"
OWN_KEY_COMMENT = "this user's own client key"


class KeyFileError(ValueError):
    """A key file that exists but holds no valid key; the message says how to replace it."""


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


# --- where things live -----------------------------------------------------------------


def config_dir() -> Path:
    """Where this user's keys live (created 0700 if missing)."""
    env = os.environ.get("BRIDGE_CONFIG_DIR")
    if env:
        return ensure_private_dir(Path(env), "BRIDGE_CONFIG_DIR")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return ensure_private_dir(Path(base) / "framebridge", "BRIDGE_CONFIG_DIR")


def runtime_dir() -> Path:
    """Where connection files live (created 0700 if missing)."""
    env = os.environ.get("BRIDGE_RUNTIME_DIR")
    if env:
        return ensure_private_dir(Path(env), "BRIDGE_RUNTIME_DIR")
    if os.environ.get("XDG_RUNTIME_DIR"):
        return ensure_private_dir(Path(os.environ["XDG_RUNTIME_DIR"]) / "framebridge", "BRIDGE_RUNTIME_DIR")
    default = Path(tempfile.gettempdir()) / f"framebridge-{os.getuid()}"
    try:
        return ensure_private_dir(default)
    except OSError as unusable:
        # Anyone can create <tmp>/framebridge-<uid> before us (cron jobs, containers and
        # ssh sessions without systemd have no XDG_RUNTIME_DIR). Our home is ours alone,
        # and a client with the same environment comes to the same place.
        fallback = _fallback_runtime_dir()
        try:
            path = ensure_private_dir(fallback, "BRIDGE_RUNTIME_DIR")
        except OSError as exc:
            raise InsecurePathError(
                f"cannot use {default} ({unusable}) nor the fallback {fallback} ({exc}); "
                f"set BRIDGE_RUNTIME_DIR to a directory of your own"
            ) from None
        _warn_once(f"bridge: cannot use {default} ({unusable}: another user may have made it first); "
                   f"using {path} instead (set XDG_RUNTIME_DIR or BRIDGE_RUNTIME_DIR, for targets "
                   f"and notebooks alike, to choose)")
        return path


def _fallback_runtime_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # Per host: a home shared over NFS must not mix pids of different machines (a file
    # would look stale on every other host, and be removed there).
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"
    return Path(base) / "framebridge" / f"runtime-{host}"


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


# --- this user's key pair ---------------------------------------------------------------


def load_client_keypair(create: bool = True) -> KeyPair:
    """This user's client key pair, created on first use with owner-only permissions.

    Many processes may start at once on a fresh config dir: one of them creates the key
    (under the config dir's lock), written whole, and they all use that one.
    """
    directory = config_dir()
    path = directory / CLIENT_KEY_FILE
    pair = _read_keypair(path)
    if pair is None:
        if not create:
            raise FileNotFoundError(f"no client key at {path}; run `framebridge keys`")
        with locked(directory):
            pair = _read_keypair(path) or _create_keypair(directory)
    return pair


def _read_keypair(path: Path) -> Optional[KeyPair]:
    """The key pair in ``path``; None if there is none (no file, or an empty one)."""
    try:
        check_private_file(path)
        text = path.read_text()
    except FileNotFoundError:
        return None
    if not text.strip():
        # Left by a process killed while it created the key in place (as framebridge once
        # did): no key anyone could have authorized, so it is made again.
        return None
    try:
        body = json.loads(text)
        pair = KeyPair(public=body["public"], secret=body["secret"])
        valid = _valid_public_key(pair.public) and _valid_public_key(pair.secret)
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise KeyFileError(
            f"{path} is not a valid key file (damaged or edited); move it away and run "
            f"`framebridge keys` to make a new key pair (then authorize the new public key "
            f"wherever the old one was)"
        )
    return pair


def _create_keypair(directory: Path) -> KeyPair:
    """Make, write and authorize a new key pair (the caller holds ``directory``'s lock)."""
    public, secret = zmq.curve_keypair()
    pair = KeyPair(public=public.decode("ascii"), secret=secret.decode("ascii"))
    body = json.dumps({"public": pair.public, "secret": pair.secret}).encode()
    write_private_file(directory / CLIENT_KEY_FILE, body, durable=True)
    _add_authorized_key(directory, pair.public, OWN_KEY_COMMENT, own=pair.public)
    return pair


# --- authorized keys --------------------------------------------------------------------


def _valid_public_key(key: str) -> bool:
    if not isinstance(key, str) or len(key) != 40:
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
    return {token for token in map(_key_token, path.read_text().splitlines()) if token}


def authorize_key(public_key: str, comment: str = "") -> bool:
    """Add ``public_key`` to authorized_keys; return False if it was already there.

    With no authorized_keys file (a target then serves this user's own key), the file is
    made with this user's own key first, so that authorizing a colleague never locks the
    user out. Concurrent calls (processes or threads) lose nothing: each one reads,
    changes and writes the file under the config dir's lock.
    """
    public_key = public_key.strip()
    if not _valid_public_key(public_key):
        raise ValueError(f"{public_key!r} is not a 40-character z85 CURVE public key")
    directory = config_dir()
    with locked(directory):
        own = None
        if not (directory / AUTHORIZED_KEYS_FILE).exists():
            own = (_read_keypair(directory / CLIENT_KEY_FILE) or _create_keypair(directory)).public
        return _add_authorized_key(directory, public_key, comment, own=own)


def _add_authorized_key(directory: Path, public_key: str, comment: str, own: Optional[str]) -> bool:
    """authorize_key's work, under ``directory``'s lock. ``own``: this user's key, written
    first if the file is new (its absence meant "serve this user's own key")."""
    path = directory / AUTHORIZED_KEYS_FILE
    exists = path.exists()
    if exists:
        check_private_file(path)
        lines = path.read_text().splitlines()
    else:
        lines = [f"{own}  # {OWN_KEY_COMMENT}"] if own else []
    present = any(_key_token(line) == public_key for line in lines)
    if present and exists:
        return False
    if not present:
        lines.append(f"{public_key}  # {comment}" if comment else public_key)
    write_private_file(path, ("\n".join(lines) + "\n").encode(), durable=True)
    return not present


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
