"""Key text formats, authorized_keys checks and known_hosts trust-on-first-use."""

import os

import nacl.signing
import pytest

from moshpit.keys import (HostKeyPolicy, KeyFormatError, KnownHosts, check_authorized,
                          expand_path_template, fingerprint, format_public_key, host_id,
                          parse_public_key)

ALICE = bytes(nacl.signing.SigningKey(bytes(32)).verify_key)
MALLORY = bytes(nacl.signing.SigningKey(bytes([1] * 32)).verify_key)


def test_fingerprint_is_openssh_style():
    fp = fingerprint(ALICE)
    assert fp.startswith("SHA256:") and len(fp) == 7 + 43 and not fp.endswith("=")
    assert fingerprint(ALICE) != fingerprint(MALLORY)


def test_public_key_lines_round_trip():
    line = format_public_key(ALICE, "alice@laptop")
    assert line.startswith("moshpit ")
    assert parse_public_key(line) == (ALICE, "alice@laptop")
    for bad in ("ssh-ed25519 AAAA", "moshpit", "moshpit !!!", "moshpit QUFB"):
        with pytest.raises(KeyFormatError):
            parse_public_key(bad)


def test_path_template():
    assert str(expand_path_template("%h/.mp/authorized_keys", "bob", "/home/bob")) == "/home/bob/.mp/authorized_keys"
    assert str(expand_path_template("/etc/mp/%u.keys", "bob", "/home/bob")) == "/etc/mp/bob.keys"
    assert str(expand_path_template("/x/100%%/%q", "u", "/h")) == "/x/100%/%q"


@pytest.fixture
def home(tmp_path):
    mp = tmp_path / ".mp"
    mp.mkdir(mode=0o700)
    keys = mp / "authorized_keys"
    keys.write_text("# my keys\n\nnot a key line\n" + format_public_key(ALICE, "alice") + "\n")
    keys.chmod(0o600)
    return tmp_path


def check(home, key, uid=None):
    return check_authorized(key, user="alice", home=str(home), uid=os.getuid() if uid is None else uid)


def test_listed_key_is_allowed_others_are_not(home):
    ok = check(home, ALICE)
    assert ok.allowed and ok.reason.endswith("authorized_keys:4")
    refused = check(home, MALLORY)
    assert not refused.allowed and fingerprint(MALLORY) in refused.reason


@pytest.mark.parametrize("target, mode, words", [
    (".mp", 0o775, "directory"), (".mp", 0o707, "directory"),
    (".mp/authorized_keys", 0o664, "file"), (".mp/authorized_keys", 0o646, "file"),
])
def test_files_others_can_write_are_refused(home, target, mode, words):
    (home / target).chmod(mode)
    result = check(home, ALICE)
    assert not result.allowed
    assert words in result.reason and f"{mode:04o}" in result.reason and "writable" in result.reason


def test_readable_files_are_accepted_as_sshd_accepts_them(home):
    """What `cat key.pub >> ~/.mp/authorized_keys` makes under umask 022: public keys are
    not secret, only who can write them matters (sshd's StrictModes)."""
    (home / ".mp").chmod(0o755)
    (home / ".mp/authorized_keys").chmod(0o644)
    assert check(home, ALICE).allowed


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_wrong_owner_is_refused(home):
    os.chown(home / ".mp/authorized_keys", 4243, 4243)      # neither the user nor root
    result = check(home, ALICE, uid=4242)
    assert not result.allowed and "owned by uid 4243" in result.reason
    os.chown(home / ".mp/authorized_keys", 0, 0)            # root's file: sshd accepts it too
    os.chown(home / ".mp", 4242, 4242)
    assert check(home, ALICE, uid=4242).allowed


def test_missing_file_and_symlink_are_refused(home, tmp_path):
    (home / ".mp/authorized_keys").unlink()
    assert "does not exist" in check(home, ALICE).reason
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(format_public_key(ALICE) + "\n")
    elsewhere.chmod(0o600)
    (home / ".mp/authorized_keys").symlink_to(elsewhere)
    assert "not a regular file" in check(home, ALICE).reason


def test_a_fifo_or_a_huge_file_is_refused_without_blocking_or_reading_it(home):
    keys = home / ".mp/authorized_keys"
    keys.unlink()
    os.mkfifo(keys, 0o600)                       # opening this for reading would block
    assert "not a regular file" in check(home, ALICE).reason
    keys.unlink()
    with open(keys, "wb") as sparse:
        sparse.truncate(64 << 20)                # 64 MiB of nothing, costs no disk
    keys.chmod(0o600)
    result = check(home, ALICE)
    assert not result.allowed and "larger than" in result.reason


# --- known_hosts ------------------------------------------------------------------

def test_host_ids_follow_openssh():
    assert host_id("example.org") == "example.org"
    assert host_id("example.org", 2222) == "[example.org]:2222"
    assert host_id("::1", 40404) == "::1" and host_id("::1", 1) == "[::1]:1"


def test_accept_new_then_recognise(tmp_path):
    kh = KnownHosts(tmp_path / "mp" / "known_hosts")
    first = kh.verify("h", 40404, ALICE, HostKeyPolicy.ACCEPT_NEW)
    assert first.accepted and first.added and "Permanently added 'h'" in first.message
    assert oct(kh.path.stat().st_mode & 0o777) == "0o600"
    assert oct(kh.path.parent.stat().st_mode & 0o777) == "0o700"
    again = kh.verify("h", 40404, ALICE, HostKeyPolicy.STRICT)
    assert again.accepted and not again.added and again.message == ""
    other_port = kh.verify("h", 2222, MALLORY, HostKeyPolicy.ACCEPT_NEW)
    assert other_port.accepted
    assert "[h]:2222 moshpit " in kh.path.read_text()


@pytest.mark.parametrize("policy", list(HostKeyPolicy))
def test_changed_key_is_always_refused(tmp_path, policy):
    kh = KnownHosts(tmp_path / "known_hosts")
    kh.add("other", 40404, MALLORY)
    kh.add("h", 40404, ALICE)
    verdict = kh.verify("h", 40404, MALLORY, policy, ask=lambda prompt: "yes")
    assert not verdict.accepted
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in verdict.message
    assert f"{kh.path}:2" in verdict.message and fingerprint(MALLORY) in verdict.message
    assert kh.path.read_text().count("\n") == 2          # nothing was added


def test_strict_refuses_unknown_and_says_how_to_trust_it(tmp_path):
    kh = KnownHosts(tmp_path / "known_hosts")
    verdict = kh.verify("h", 40404, ALICE, HostKeyPolicy.STRICT)
    assert not verdict.accepted and fingerprint(ALICE) in verdict.message
    assert "accept-new" in verdict.message and not kh.path.exists()


def answers(*lines):
    """An ``ask`` that types ``lines`` one by one, keeping the prompts it was shown."""
    typed = iter(lines)
    def ask(prompt):
        ask.prompts.append(prompt)
        return next(typed)
    ask.prompts = []
    return ask


@pytest.mark.parametrize("typed, accepted", [
    (["yes"], True), (["YES\n"], True), ([fingerprint(ALICE)], True),
    (["no"], False), ([fingerprint(MALLORY)], False), (["y", "maybe", "no"], False),
    (["sure", "yes"], True), ([None], False),
])
def test_ask_takes_yes_no_or_the_fingerprint(tmp_path, typed, accepted):
    kh = KnownHosts(tmp_path / "known_hosts")
    ask = answers(*typed)
    verdict = kh.verify("h", 40404, ALICE, HostKeyPolicy.ASK, ask=ask)
    assert verdict.accepted is accepted and verdict.added is accepted
    assert fingerprint(ALICE) in ask.prompts[0] and len(ask.prompts) == len(typed)
    assert [key for _, key in kh.lookup("h")] == ([ALICE] if accepted else [])
    if typed == [fingerprint(MALLORY)]:
        assert "not the one" in verdict.message
    if typed == [None]:                  # no terminal: say how to trust it some other way
        assert "no terminal" in verdict.message and "accept-new" in verdict.message
    assert not kh.verify("h2", 40404, ALICE, HostKeyPolicy.ASK).accepted   # no way to ask: refuse
