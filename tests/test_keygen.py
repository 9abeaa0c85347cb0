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


# --- fingerprint / verify given a private key, as ssh-keygen -lf --------------------------

def key_pair(tmp_path, name="k", passphrase=None, comment="alice@laptop", pub=True):
    key = nacl.signing.SigningKey.generate()
    private, public = write_key_pair(tmp_path / name, key, passphrase=passphrase, comment=comment,
                                     **FAST_KDF)
    if not pub:
        public.unlink()
    return private, fingerprint(bytes(key.verify_key))


def test_fingerprint_of_a_private_key_without_pub_derives_it(tmp_path):
    private, expected = key_pair(tmp_path, pub=False)
    shown = run("fingerprint", str(private))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == expected                  # no .pub, so no comment
    assert run("verify", expected, str(private)).returncode == 0
    assert run("verify", "SHA256:nope", str(private)).returncode == 1


def test_fingerprint_of_a_private_key_uses_the_pub_beside_it(tmp_path):
    private, expected = key_pair(tmp_path)
    shown = run("fingerprint", str(private))
    assert shown.stdout.strip() == f"{expected} alice@laptop"
    # Sealed: the .pub answers, and nobody is asked for a passphrase (stdin is not a terminal).
    sealed, sealed_expected = key_pair(tmp_path, "sealed", passphrase="hunter2")
    shown = run("fingerprint", str(sealed))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"{sealed_expected} alice@laptop"
    assert run("verify", sealed_expected, str(sealed)).returncode == 0


def test_a_pub_beside_that_is_not_the_private_keys_own_is_called_out(tmp_path):
    private, expected = key_pair(tmp_path)
    _, other = key_pair(tmp_path, "other")
    (tmp_path / "k.pub").write_text((tmp_path / "other.pub").read_text())
    shown = run("fingerprint", str(private))
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert shown.stderr.strip() == f"mp-keygen: {tmp_path}/k.pub does not match the private key {private}"
    (tmp_path / "k.pub").write_text("not a key at all\n")     # unusable: the private key decides
    assert run("fingerprint", str(private)).stdout.strip() == expected


def test_sealed_private_key_without_pub_and_no_terminal_says_so(tmp_path):
    private, _ = key_pair(tmp_path, passphrase="hunter2", pub=False)
    for args in (["fingerprint", str(private)], ["verify", "SHA256:x", str(private)]):
        result = run(*args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.strip() == (f"mp-keygen: {private} is protected by a passphrase and "
                                         "there is no terminal to ask on")


def test_sealed_private_key_without_pub_asks_on_a_terminal(tmp_path, monkeypatch, capsys):
    private, expected = key_pair(tmp_path, passphrase="hunter2", pub=False)
    asked = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "hunter2")
    assert main(["fingerprint", str(private)]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert asked == [f"Enter passphrase for {private}: "]
    monkeypatch.setattr("getpass.getpass", lambda prompt: "wrong")
    assert main(["verify", expected, str(private)]) == 2
    assert capsys.readouterr().err.strip() == "mp-keygen: wrong passphrase"


@pytest.mark.parametrize("content", [
    b"hello, world\n",
    b"",
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n",
    b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me\n",
    bytes(range(256)) * 4,                                   # binary, not UTF-8
])
def test_anything_else_is_not_a_moshpit_key_file(tmp_path, content):
    path = tmp_path / "thing"
    path.write_bytes(content)
    for args in (["fingerprint", str(path)], ["verify", "SHA256:x", str(path)]):
        result = run(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == f"mp-keygen: {path} is not a moshpit key file"


@pytest.mark.parametrize("name, message", [
    ("missing", "{path}: no such file"),
    ("directory", "{path} is not a moshpit key file (it is a directory)"),
    ("damaged", "{path} is a damaged moshpit private key: private key is not valid base64"),
])
def test_missing_or_damaged_key_files_are_one_line(tmp_path, name, message):
    path = tmp_path / name
    if name == "directory":
        path.mkdir()
    elif name == "damaged":
        path.write_text("-----BEGIN MOSHPIT PRIVATE KEY-----\n!!!\n-----END MOSHPIT PRIVATE KEY-----\n")
    result = run("fingerprint", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == "mp-keygen: " + message.format(path=path)


def test_generate_never_writes_through_a_link(tmp_path):
    """A link planted where a key goes (even a dangling one) is replaced with --force and
    refused without it; the file it points to is never touched or created."""
    import nacl.signing
    from moshpit.keyfiles import write_key_pair
    victim, absent = tmp_path / "victim", tmp_path / "created-through-link"
    victim.write_text("precious\n")
    key_path = tmp_path / "keys" / "id"
    key_path.parent.mkdir()
    key_path.symlink_to(victim)
    key_path.with_name("id.pub").symlink_to(absent)
    with pytest.raises(FileExistsError):
        write_key_pair(key_path, nacl.signing.SigningKey.generate())
    write_key_pair(key_path, nacl.signing.SigningKey.generate(), force=True)
    assert victim.read_text() == "precious\n" and not absent.exists()
    assert not key_path.is_symlink() and (key_path.stat().st_mode & 0o777) == 0o600
    assert not key_path.with_name("id.pub").is_symlink()
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["id", "id.pub"]   # no temp left
