"""mp-keygen and identity key files: real files, real processes, clear errors."""

import os
import subprocess
import sys

import nacl.signing
import pytest

from moshpit.cli.keygen import main
from moshpit.keyfiles import (PassphraseRequired, WrongPassphrase, read_private_key,
                              read_public_key, write_key_pair)
from moshpit.keys import KeyFormatError, fingerprint

FAST_KDF = dict(opslimit=1, memlimit=8192)       # keep tests quick; the CLI uses the real cost


def test_key_pair_round_trip_with_and_without_passphrase(tmp_path):
    key = nacl.signing.SigningKey.generate()
    private, public = write_key_pair(tmp_path / "k", key, passphrase="hunter2", comment="me", **FAST_KDF)
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert read_public_key(public) == (bytes(key.verify_key), "me")
    assert bytes(read_private_key(private, "hunter2")) == bytes(key)
    with pytest.raises(WrongPassphrase):
        read_private_key(private, "wrong")
    with pytest.raises(PassphraseRequired):
        read_private_key(private)
    plain, _ = write_key_pair(tmp_path / "plain", key)
    assert bytes(read_private_key(plain)) == bytes(key)
    assert bytes(key) not in plain.read_bytes() and bytes(key).hex() not in plain.read_text()


def test_refuses_to_overwrite_and_to_read_loose_or_broken_keys(tmp_path):
    key = nacl.signing.SigningKey.generate()
    private, _ = write_key_pair(tmp_path / "k", key)
    with pytest.raises(FileExistsError):
        write_key_pair(tmp_path / "k", key)
    write_key_pair(tmp_path / "k", key, force=True)
    private.chmod(0o644)
    with pytest.raises(KeyFormatError, match="0644"):
        read_private_key(private)
    private.chmod(0o600)
    private.write_text("-----BEGIN MOSHPIT PRIVATE KEY-----\n!!!\n-----END MOSHPIT PRIVATE KEY-----\n")
    with pytest.raises(KeyFormatError):
        read_private_key(private)


def run(*args, env=None):
    # From a neutral directory: ``-m`` puts the working directory first on sys.path.
    cwd = (env or {}).get("HOME") or "/"
    return subprocess.run([sys.executable, "-m", "moshpit.cli.keygen", *args], capture_output=True,
                          text=True, env=env, timeout=60, stdin=subprocess.DEVNULL, cwd=cwd)


def test_generate_fingerprint_verify_as_a_user_would(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))
    made = run("generate", "--no-passphrase", "-C", "alice@laptop", env=env)
    assert made.returncode == 0, made.stderr
    pub = tmp_path / ".mp" / "id_ed25519.pub"
    assert oct((tmp_path / ".mp").stat().st_mode & 0o777) == "0o700"
    key, _ = read_public_key(pub)
    assert fingerprint(key) in made.stdout and "[MOSHPIT 256]" in made.stdout
    shown = run("fingerprint", "--randomart", str(pub), env=env)
    assert shown.stdout.splitlines()[0] == f"{fingerprint(key)} alice@laptop"
    assert shown.stdout.count("|") == 18                    # 9 rows of the picture
    assert run("verify", fingerprint(key), str(pub), env=env).returncode == 0
    assert run("verify", "SHA256:nope", str(pub), env=env).returncode == 1
    host = run("generate", "--host", "--no-passphrase", env=env)
    assert host.returncode == 0 and (tmp_path / ".mp" / "mps_host_ed25519_key").exists()


@pytest.mark.parametrize("args, message", [
    (["generate"], "no passphrase given"),                # no terminal to ask on
    (["fingerprint", "/nonexistent.pub"], "no such file"),
    (["frobnicate"], "Usage:"),
])
def test_errors_are_one_clear_message_never_a_traceback(tmp_path, args, message):
    result = run(*args, env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_existing_key_is_not_overwritten(tmp_path, capsys):
    assert main(["generate", "-f", str(tmp_path / "k"), "--no-passphrase"]) == 0
    assert main(["generate", "-f", str(tmp_path / "k"), "--no-passphrase"]) == 2
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 AAAA\n")
    assert main(["fingerprint", str(bad)]) == 2
