"""The status sockets (mps sessions) and the runtime directory their sockets live in."""

from __future__ import annotations

import errno
import os
import pwd
import socket
import threading

import pytest

from moshpit import rundir, sessionlist
from moshpit.errors import MoshpitError


def test_the_table_has_one_line_a_session_oldest_first():
    now = 1_000_000.0
    table = sessionlist.format_table([
        {"user": "bob", "pid": 42, "tty": "pts/7", "started": now - 3 * 86400 - 4 * 3600, "attached": False,
         "idle": 125, "peer": "[2001:db8::1]:4000", "via": "ssh", "name": "ab12"},
        {"user": "alice", "pid": 7, "started": now - 61, "attached": True, "idle": 0.5,
         "peer": "192.0.2.1:5000", "via": "mps"},
    ], now=now).splitlines()
    assert table[0].split() == ["USER", "SHELL", "TTY", "AGE", "STATE", "LAST", "ADDRESS", "VIA"]
    assert table[1].split() == ["bob", "42", "pts/7", "3d04h", "detached", "2m05s", "[2001:db8::1]:4000",
                                "ssh", "ab12"]
    assert table[2].split() == ["alice", "7", "-", "1m01s", "attached", "192.0.2.1:5000", "mps"]


def test_the_notice_counts_only_detached_sessions():
    assert sessionlist.detached_notice([{"attached": True}]) == ""
    assert "you have a detached session" in sessionlist.detached_notice([{"attached": False}, {"attached": True}])
    assert "you have 2 detached sessions" in sessionlist.detached_notice([{"attached": False}] * 2)


def test_root_sees_everyone_and_others_only_themselves():
    nobody = pwd.getpwnam("nobody")
    assert sessionlist.visible_to(0, "nobody")
    assert sessionlist.visible_to(nobody.pw_uid, "nobody")
    assert not sessionlist.visible_to(nobody.pw_uid, "root")
    assert not sessionlist.visible_to(None, "nobody")             # the kernel would not say who
    assert not sessionlist.visible_to(nobody.pw_uid, "no-such-user-here")


def serve_once(path, answer: bytes) -> threading.Thread:
    listener = rundir.bind_unix(path)

    def run():
        conn, _ = listener.accept()
        conn.recv(64)
        try:
            conn.sendall(answer)
        except BrokenPipeError:                      # the client stopped reading: too long
            pass
        conn.close()
        listener.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer, expected", [
    (b'{"sessions": [{"user": "bob", "pid": "7", "attached": 1, "idle": true, "x": 1, "peer": "a:1"}]}\n',
     [{"user": "bob", "peer": "a:1"}]),                           # wrong types are dropped, not trusted
    (b"not json\n", None),
    (b'{"sessions": 5}\n', None),
    (b'[1, 2]\n', None),
    (b'{"sessions": [' + b'{"user": "x"},' * 200000 + b'{}]}', None),   # past the size limit
])
def test_a_status_answer_is_checked(tmp_path, answer, expected):
    thread = serve_once(tmp_path / "s.ctl", answer)
    assert sessionlist.query(tmp_path / "s.ctl") == expected
    thread.join(5)


def test_nobody_listening_is_none(tmp_path):
    assert sessionlist.query(tmp_path / "nothing.ctl") is None


def test_only_a_server_that_is_gone_is_reported_gone(tmp_path):
    """mps sessions removes the sockets of a server that is gone; one that is only slow to
    answer (busy, or stopped by ^Z) keeps them: they are how its client gets back in."""
    answering = serve_once(tmp_path / "a.ctl", b'{"sessions": [{"user": "bob"}]}\n')
    slow = rundir.bind_unix(tmp_path / "slow.ctl")             # listens, never answers
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.bind(str(tmp_path / "gone.ctl"))
    gone.close()                                             # the file stays, nobody listens
    paths = [tmp_path / name for name in ("a.ctl", "slow.ctl", "gone.ctl", "never.ctl")]
    try:
        sessions, gone_paths, busy = sessionlist.gather(paths, timeout=0.3)
    finally:
        slow.close()
    answering.join(5)
    assert sessions == [{"user": "bob"}]
    assert gone_paths == [tmp_path / "gone.ctl"]
    assert busy == [tmp_path / "slow.ctl"]                   # its sessions are missing, not "none"


def test_a_socket_left_behind_is_replaced_but_a_live_one_is_not(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                                    # the file stays, nobody listens
    live = rundir.bind_unix(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(OSError) as caught:
        rundir.bind_unix(path)
    assert caught.value.errno == errno.EADDRINUSE
    live.close()


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


def test_the_runtime_directory_is_made_private(tmpdir_env):
    path = rundir.runtime_dir(create=True)
    assert path == tmpdir_env / f"moshpit-{os.getuid()}"
    assert os.stat(path).st_mode & 0o777 == 0o700
    assert rundir.session_socket("abc123").parent == path


@pytest.mark.parametrize("problem, message", [
    ("open", "is open to others"),
    ("symlink", "is not a directory"),
])
def test_a_runtime_directory_of_our_own_that_is_unsafe_is_refused(tmpdir_env, problem, message):
    path = tmpdir_env / f"moshpit-{os.getuid()}"
    if problem == "symlink":
        (tmpdir_env / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmpdir_env / "elsewhere")
    else:
        path.mkdir(mode=0o700)
        path.chmod(0o777)
    with pytest.raises(MoshpitError, match=message):
        rundir.runtime_dir(create=True)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to be a squatter")
@pytest.mark.parametrize("squat", ["directory", "symlink", "file"])
def test_a_runtime_directory_name_another_user_took_is_passed_over_for_home(tmpdir_env, monkeypatch, caplog, squat):
    home = tmpdir_env / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(rundir, "_told", set())
    path = tmpdir_env / f"moshpit-{os.getuid()}"
    if squat == "directory":
        path.mkdir(mode=0o777)
    elif squat == "symlink":
        path.symlink_to(tmpdir_env)
    else:
        path.write_text("")
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1, follow_symlinks=False)
    caplog.set_level("WARNING", logger="moshpit")
    chosen = rundir.runtime_dir(create=True)
    assert chosen == home / ".mp" / "run"
    assert os.stat(chosen).st_mode & 0o777 == 0o700 and os.stat(home / ".mp").st_mode & 0o777 == 0o700
    assert rundir.session_socket("s1", create=True).parent == chosen
    with rundir.start_lock():
        assert (chosen / "start.lock").exists()
    said = [r.getMessage() for r in caplog.records if "belongs to uid" in r.getMessage()]
    assert said == [f"{path} belongs to uid {pwd.getpwnam('nobody').pw_uid}, not 0: using {chosen} instead"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to be a squatter")
def test_a_session_made_while_the_name_was_taken_is_still_found_after(tmpdir_env, monkeypatch):
    """A squatter that leaves (or comes) while a session lasts does not hide it: its
    socket and status socket are looked for in both places."""
    monkeypatch.setenv("HOME", str(tmpdir_env / "home"))
    (tmpdir_env / "home").mkdir()
    path = tmpdir_env / f"moshpit-{os.getuid()}"
    path.mkdir()
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    made_in = rundir.runtime_dir(create=True)
    live = rundir.bind_unix(made_in / "s1.sock")
    status = rundir.bind_unix(made_in / "s1.ctl")
    try:
        path.rmdir()                                    # the squatter goes
        assert rundir.runtime_dir(create=True) == path
        assert rundir.session_socket("s1") == made_in / "s1.sock"
        assert rundir.session_socket("s2") == path / "s2.sock"
        assert rundir.control_sockets() == [made_in / "s1.ctl"]
    finally:
        live.close()
        status.close()


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 65, "a b"])
def test_session_names_are_plain(tmpdir_env, name):
    with pytest.raises(MoshpitError, match="bad session name"):
        rundir.session_socket(name)
