"""Account rules before any key is looked at, as sshd applies them."""

import pwd
import time

import pytest

from moshpit.accounts import LoginPolicy, valid_user_name
from moshpit.errors import printable
from moshpit.config import load

DAY = 86400


def account(name="alice", uid=1000):
    return pwd.struct_passwd((name, "x", uid, uid, "", f"/home/{name}", "/bin/sh"))


@pytest.fixture
def files(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n"
                      "alice:!:19000:0:99999:7:::\n"
                      f"gone:!:19000:0:99999:7::{int(time.time() // DAY) - 1}:\n"
                      "zero:!:19000:0:99999:7::0:\n"
                      f"later:!:19000:0:99999:7::{int(time.time() // DAY) + 30}:\n")
    return dict(shadow_path=str(shadow), nologin_path=str(tmp_path / "nologin"))


@pytest.mark.parametrize("name, uid, policy, refused", [
    ("alice", 1000, {}, None),
    ("gone", 1001, {}, "expired"),                       # chage -E yesterday
    ("zero", 1002, {}, "expired"),                       # chage -E 0
    ("later", 1003, {}, None),
    ("root", 0, {"permit_root": False}, "permit_root"),
    ("root", 0, {}, None),
    ("alice", 1000, {"deny_users": ("al*",)}, "deny_users"),
    ("alice", 1000, {"allow_users": ("bob", "carol")}, "allow_users"),
    ("alice", 1000, {"allow_users": ("a*",), "deny_users": ("alice",)}, "deny_users"),
])
def test_account_rules(files, name, uid, policy, refused):
    reason = LoginPolicy(**files, **policy).refusal(account(name, uid), now=time.time())
    assert (reason is None) if refused is None else (refused in reason)


def test_nologin_closes_every_account_but_root(files, tmp_path):
    (tmp_path / "nologin").write_text("maintenance\n")
    policy = LoginPolicy(**files)
    assert "nologin" in policy.refusal(account(), now=time.time())
    assert policy.refusal(account("root", 0), now=time.time()) is None


@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("svc-web.01", True), ("host$", True), ("a" * 32, True),
    ("", False), ("-rf", False), ("a\0b", False), ("alice\nroot", False), ("al ice", False),
    ("a" * 33, False), ("\x1b[31mroot", False), ("../etc", False),
])
def test_user_names(name, ok):
    assert valid_user_name(name) is ok


def test_printable_strips_control_characters_and_bounds_length():
    assert printable("ok\x1b]52;c;aGk=\x07\nforged") == "ok?]52;c;aGk=??forged"
    assert printable("x" * 100, limit=10) == "x" * 10 + "..."


def test_the_settings_reach_the_policy_from_the_environment():
    config = load("moshpits", "/nonexistent", environ={
        "MOSHPITS_PERMIT_ROOT": "no", "MOSHPITS_ALLOW_USERS": "alice,web-*", "MOSHPITS_DENY_USERS": "web-admin"})
    assert (config.permit_root, config.allow_users, config.deny_users) == (False, ("alice", "web-*"), ("web-admin",))
