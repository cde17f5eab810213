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
