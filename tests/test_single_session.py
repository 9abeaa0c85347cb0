"""The one-session server mp --ssh starts, at the Server level: who may speak to its
Unix socket, and that it does not outlive its purpose."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import gevent
import gevent.socket
import gevent.os
import nacl.signing
import pytest

from moshpit import rundir
from moshpit.gevent.server import Server
from moshpit.keys import Authorization
from moshpit.protocol.handshake import ClientHandshake


def one_session_server(path, **options) -> Server:
    listener = rundir.bind_unix(path, 0o666)
    server = Server(nacl.signing.SigningKey.generate(), listener=listener, udp_host="127.0.0.1",
                    udp_ports=(53500, 53599), authorize=lambda key, user: Authorization(True, "test"),
                    single_session=True, command=["/bin/sh"], **options)
    server.start()
    return server


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to be somebody else")
def test_another_user_is_not_heard_on_the_unix_socket():
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))       # pytest's own is closed to nobody
    tmp_path.chmod(0o755)
    server = one_session_server(tmp_path / "s.sock")
    nobody = pwd.getpwnam("nobody")
    hello = ClientHandshake(nacl.signing.SigningKey.generate(), "nobody", now=0.0).data_to_send()
    try:
        pid = gevent.os.fork()
        if pid == 0:                                   # the child: nobody, plain blocking socket
            import socket
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(tmp_path / "s.sock"))
                sock.settimeout(10)
                try:                                   # closed without a word: the hello may
                    sock.sendall(hello)                # meet the close already (a broken pipe),
                    code = 0 if sock.recv(4096) == b"" else 2  # or be left unread (a reset)
                except (BrokenPipeError, ConnectionResetError):
                    code = 0
                except TimeoutError:                   # heard, and kept waiting
                    code = 3
            finally:
                os._exit(code)
        _, status = gevent.os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not server._stopped.is_set()            # nobody cannot stop it either
        ours = gevent.socket.socket(gevent.socket.AF_UNIX)     # our own uid, the same hello: answered
        ours.connect(str(tmp_path / "s.sock"))
        ours.sendall(hello)
        ours.settimeout(10)
        assert ours.recv(4096)
        ours.close()
    finally:
        server.stop()
        shutil.rmtree(tmp_path)


def test_a_key_exchange_that_makes_no_session_ends_the_server(tmp_path):
    server = one_session_server(tmp_path / "s.sock")
    sock = gevent.socket.socket(gevent.socket.AF_UNIX)
    sock.connect(str(tmp_path / "s.sock"))
    sock.sendall(b"\x00" * 64)                        # not a hello
    sock.settimeout(10)
    while sock.recv(4096):
        pass
    assert server._stopped.wait(10)                   # nothing left to serve
    assert not server.sessions


def test_a_probe_that_says_nothing_does_not_end_a_fresh_server(tmp_path):
    """Another start of the same session checks whether the socket answers (connect, then
    close): that is not a failed key exchange, and the client that follows is served."""
    server = one_session_server(tmp_path / "s.sock")
    try:
        probe = gevent.socket.socket(gevent.socket.AF_UNIX)
        probe.connect(str(tmp_path / "s.sock"))
        probe.close()
        gevent.sleep(0.3)
        assert not server._stopped.is_set()
        hello = ClientHandshake(nacl.signing.SigningKey.generate(), "me", now=0.0).data_to_send()
        sock = gevent.socket.socket(gevent.socket.AF_UNIX)
        sock.connect(str(tmp_path / "s.sock"))
        sock.sendall(hello)
        sock.settimeout(10)
        assert sock.recv(4096)                          # the exchange goes on
        sock.close()
    finally:
        server.stop()


def test_a_server_no_client_reaches_ends_with_its_early_shell(tmp_path):
    """The ssh that started it died before the key exchange: nothing is left running."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "60"])
    server = one_session_server(tmp_path / "s.sock", first_contact_timeout=0.5)
    server.adopt_early_shell((pid, fd))
    assert server._stopped.wait(timeout=10)
    deadline = time.monotonic() + 10                  # the early shell was told to go (well
    while not _ended(pid):                            # before its own 60 s are up)
        assert time.monotonic() < deadline, "the early shell is still running"
        gevent.sleep(0.05)


def _ended(pid: int) -> bool:
    """Exited: reaped (by us or gevent's SIGCHLD handler) or a zombie waiting to be."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_resume_only_run_for_a_session_no_server_holds_starts_nothing(tmp_path):
    """mp's background reconnect, when the session's server is gone (a reboot, a crash, its
    timeout): one line says so, and no new server (nor shell) is started for nothing."""
    import subprocess
    import sys
    env = dict(os.environ, TMPDIR=str(tmp_path), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mps", "--ssh-session", "gone1", "--resume-only",
                             "--window", "80x24", "--env", "TERM=xterm"], env=env, capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=30, cwd=tmp_path)   # not the source tree
    assert (result.returncode, result.stdout) == (0, b"MOSHPIT-SSH-GONE 1\n"), result.stderr
    assert not list((tmp_path / f"moshpit-{os.getuid()}").glob("gone1.*"))


def test_a_log_file_that_cannot_be_written_is_one_line(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, TMPDIR=str(tmp_path), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mps", "--ssh-session", "n1", "--resume-only",
                             "-t", "/proc/self/no/log"], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=30, cwd=tmp_path)   # not the source tree
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "mps: cannot write the log file /proc/self/no/log: No such file or directory (-t PATH names another)"]
