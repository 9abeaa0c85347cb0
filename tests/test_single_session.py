"""The one-session server mp --ssh starts, at the Server level: who may speak to its
Unix socket, and that it does not outlive its purpose."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
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


def one_session_server(path) -> Server:
    listener = rundir.bind_unix(path, 0o666)
    server = Server(nacl.signing.SigningKey.generate(), listener=listener, udp_host="127.0.0.1",
                    udp_ports=(53500, 53599), authorize=lambda key, user: Authorization(True, "test"),
                    single_session=True, command=["/bin/sh"])
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
