"""mps's process model: each session in a process of its own, as its user."""

import os
import re
import signal
import time

import gevent
import pytest

from moshpit.protocol.events import ConnectionClosed
from test_gevent_server import ShellClient, make_server


def _pid(client, tag=b"pid"):
    found = re.search(tag + rb"=(\d+)\.", bytes(client.received))
    return found and int(found.group(1))


def test_a_session_runs_in_a_process_of_its_own_and_resumes_there(home):
    _, key = home
    srv = make_server(home, processes=True)
    try:
        first = ShellClient(srv.address, key, srv.user.pw_name)
        first.type(b"echo pid=$$. ppid=$PPID.\r")
        assert first.wait_for(lambda: _pid(first, b"ppid"))
        handle, = srv.sessions.values()
        assert _pid(first, b"ppid") == handle.pid != os.getpid()
        assert handle.shell_pid == _pid(first)
        first.close()                                  # the client vanishes (kill -9)
        second = ShellClient(srv.address, key, srv.user.pw_name, token=first.params.resume_token)
        assert second.params.resumed
        second.type(b"echo again=$$.\r")
        assert second.wait_for(lambda: _pid(second, b"again") == _pid(first))
        second.type(b"exit\r")
        assert second.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in second.events))
        assert second.wait_for(lambda: not srv.sessions)
        second.close()
    finally:
        srv.stop()
