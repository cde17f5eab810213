"""Keys and authorized_keys: parsing and permissions (no processes needed)."""

from __future__ import annotations

import stat

import pytest
import zmq

from bridge import keys


def _key_with(char: str) -> str:
    """A real CURVE public key that contains ``char``."""
    for _ in range(100000):
        public = zmq.curve_keypair()[0].decode()
        if char in public:
            return public
    raise AssertionError(f"no key with {char!r} found")


def test_keys_containing_hash_are_authorized():
    # '#' is a z85 character (about a third of keys hold one): never mistake it for a comment.
    key = _key_with("#")
    assert keys.authorize_key(key, comment="with a # inside")
    assert key in keys.authorized_keys()
    assert not keys.authorize_key(key)  # already there


def test_comments_and_junk_lines_are_ignored(bridge_dirs):
    own = keys.load_client_keypair().public
    path = keys.config_dir() / keys.AUTHORIZED_KEYS_FILE
    text = path.read_text() + "# a comment line\n\nnot-a-key at all\n"
    keys.write_private_file(path, text.encode())
    assert keys.authorized_keys() == {own}


def test_authorize_rejects_malformed_key():
    with pytest.raises(ValueError, match="z85"):
        keys.authorize_key("too-short")


def test_key_files_are_owner_only(bridge_dirs):
    pair = keys.load_client_keypair()
    assert "secret" not in repr(pair) and pair.secret not in repr(pair)
    for name in (keys.CLIENT_KEY_FILE, keys.AUTHORIZED_KEYS_FILE):
        assert stat.S_IMODE((bridge_dirs["config"] / name).stat().st_mode) == 0o600


def test_loose_key_file_is_refused(bridge_dirs):
    keys.load_client_keypair()
    path = bridge_dirs["config"] / keys.CLIENT_KEY_FILE
    path.chmod(0o644)
    with pytest.raises(keys.InsecurePathError, match="chmod 600"):
        keys.load_client_keypair()


# --- many processes at once ------------------------------------------------------------------
#
# Real processes, started the fast way: one helper process imports framebridge once and forks
# the contenders of each round, which all block on one pipe until the helper closes its
# write end, so that they call into keys.py at the same moment (hundreds of rounds take
# seconds, where starting a fresh interpreter per contender would take minutes).

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from conftest import SRC  # noqa: E402

CONTENDERS = r"""
import json, os, sys
import zmq
from bridge import keys

job, rounds, procs, per_proc, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
colleagues = [zmq.curve_keypair()[0].decode() for _ in range(procs * per_proc)]

def contend(i):
    if job == "create":
        return keys.load_client_keypair().public
    for key in colleagues[i * per_proc:(i + 1) * per_proc]:
        keys.authorize_key(key, comment=f"contender {i}")
    return "ok"

bad = []
for r in range(rounds):
    os.environ["BRIDGE_CONFIG_DIR"] = os.path.join(base, f"round{r}")
    if job == "authorize":
        keys.load_client_keypair()  # this user's key exists: the contenders only add keys
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for i in range(procs):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(out_r)
            os.read(go_r, 1)  # blocks until the helper closes go_w: everyone starts at once
            try:
                result = contend(i)
            except BaseException as exc:
                result = f"{type(exc).__name__}: {exc}"
            os.write(out_w, (json.dumps(result) + "\n").encode())
            os._exit(0)
        pids.append(pid)
    os.close(go_r)
    os.close(out_w)
    os.close(go_w)
    for pid in pids:
        os.waitpid(pid, 0)
    with os.fdopen(out_r) as f:
        results = [json.loads(line) for line in f]
    # What a later process finds on disk: the key, and the authorized keys.
    try:
        final = keys.load_client_keypair(create=False).public
        authorized = keys.authorized_keys()
    except BaseException as exc:
        bad.append({"round": r, "results": results[:3], "after": f"{type(exc).__name__}: {exc}"})
        continue
    if job == "create":
        ok = results == [final] * procs and authorized == {final}
    else:
        ok = results == ["ok"] * procs and authorized == {final, *colleagues}
        results = [f"{len(set(colleagues) - authorized)} of {len(colleagues)} keys lost"]
    if not ok:
        bad.append({"round": r, "results": sorted(set(results))[:3]})
print(json.dumps(bad))
"""


def contend(tmp_path, job: str, rounds: int, procs: int, per_proc: int = 0) -> list:
    """Run ``rounds`` rounds of ``procs`` processes doing ``job`` at once; the bad rounds."""
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", CONTENDERS, job, str(rounds), str(procs), str(per_proc),
                          str(tmp_path / "rounds")], capture_output=True, text=True, env=env, timeout=100)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_processes_creating_the_client_key_at_once_all_get_the_same_whole_key(tmp_path):
    # A key written in place after an O_EXCL create was read half-written (empty) by the
    # others, and a process killed in between left an empty key for good.
    assert contend(tmp_path, "create", rounds=100, procs=8) == []


def test_concurrent_authorize_loses_no_key(tmp_path):
    # Each contender authorizes 25 keys, all at once; every one of them (and this user's
    # own key) must be in authorized_keys afterwards.
    assert contend(tmp_path, "authorize", rounds=3, procs=8, per_proc=25) == []


def test_an_empty_client_key_is_made_again_and_authorized(bridge_dirs):
    # An empty key file holds no key anyone could have authorized: it is replaced.
    keys.config_dir()
    path = bridge_dirs["config"] / keys.CLIENT_KEY_FILE
    keys.write_private_file(path, b"")
    pair = keys.load_client_keypair()
    assert json.loads(path.read_text())["public"] == pair.public
    assert pair.public in keys.authorized_keys()
    assert keys.load_client_keypair() == pair


def test_a_damaged_client_key_is_refused_with_a_fix(bridge_dirs):
    keys.config_dir()
    path = bridge_dirs["config"] / keys.CLIENT_KEY_FILE
    keys.write_private_file(path, b'{"public": "x"')
    with pytest.raises(keys.KeyFileError, match="not a valid key file.*framebridge keys"):
        keys.load_client_keypair()
    assert path.read_bytes() == b'{"public": "x"'  # never overwritten: it may be a key someone authorized


def test_authorizing_a_colleague_keeps_this_users_own_key(bridge_dirs):
    # With no authorized_keys file a target serves this user's own key; authorizing a
    # colleague must add to that, not replace it.
    own = keys.load_client_keypair().public
    (bridge_dirs["config"] / keys.AUTHORIZED_KEYS_FILE).unlink()
    assert keys.authorized_keys() == {own}
    colleague = zmq.curve_keypair()[0].decode()
    assert keys.authorize_key(colleague, comment="colleague")
    assert keys.authorized_keys() == {own, colleague}


def test_cli_authorize_from_no_authorized_keys_keeps_this_user_able_to_attach(bridge_dirs, target, attach_to):
    # The documented start: no authorized_keys file (a target serves this user's own key).
    own = keys.load_client_keypair().public
    (bridge_dirs["config"] / keys.AUTHORIZED_KEYS_FILE).unlink()
    colleague = zmq.curve_keypair()[0].decode()
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-m", "client.cli", "keys", "--authorize", colleague],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "authorized" in out.stdout, out.stderr
    assert keys.authorized_keys() == {own, colleague}
    s = attach_to(target("import bridge\nx = 3\nbridge.set_trace()\n"))  # with this user's own key
    assert s.eval("x") == 3
