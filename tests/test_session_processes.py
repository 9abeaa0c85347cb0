"""mps's process model: each session in a process of its own, as its user."""

import os
import re
import signal
import time

import gevent
import pytest

from moshpit.protocol.events import ConnectionClosed
from test_gevent_server import ShellClient, make_server, nobodys_key


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


def _ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    """Real, effective, saved and filesystem uids and gids, and the groups, of a process."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return ([int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()],
            [int(x) for x in fields["Groups"].split()])


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch users")
def test_as_root_a_session_process_runs_as_its_user_and_the_listener_stays_root(tmp_path):
    nobody, key, template = nobodys_key(tmp_path)
    srv = make_server((tmp_path, key), authorized_keys=template, processes=True)
    client = ShellClient(srv.address, key, "nobody")
    try:
        client.type(b"echo \"[$(id -u):$(id -g):$(stat -c %u $(tty))]\"\r")
        assert client.wait_for(lambda: b"]\r\n" in client.received)
        assert f"[{nobody.pw_uid}:{nobody.pw_gid}:{nobody.pw_uid}]".encode() in client.received
        handle, = srv.sessions.values()
        uids, gids, groups = _ids(handle.pid)
        assert uids == [nobody.pw_uid] * 4 and gids == [nobody.pw_gid] * 4
        assert set(groups) <= set(os.getgrouplist("nobody", nobody.pw_gid))
        assert os.stat(f"/proc/{handle.pid}/mem").st_uid == 0            # not dumpable: the user's
        assert _ids(os.getpid())[0] == [0] * 4                           # programs cannot ptrace it
        # the listener is still root
        assert _ids(srv._forkserver.process.pid)[0] == [0] * 4
    finally:
        client.close()
        srv.stop()


def test_killing_one_session_process_leaves_the_others_working_and_frees_its_port(home, caplog):
    import logging
    _, key = home
    srv = make_server(home, processes=True)
    free = srv.registry.ports.free
    victim = ShellClient(srv.address, key, srv.user.pw_name)
    bystander = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        for client in (victim, bystander):
            client.type(b"echo up=$$.\r")
            assert client.wait_for(lambda: _pid(client, b"up"))
        handles = {h.shell_pid: h for h in srv.sessions.values()}
        doomed = handles[_pid(victim, b"up")]
        survivor = handles[_pid(bystander, b"up")]
        assert doomed.pid != survivor.pid
        # no session process holds another's UDP socket or the listener's TCP socket
        assert not _socket_inodes(survivor.pid) & _socket_inodes(doomed.pid)
        listening = {f"socket:[{os.fstat(srv._tcp.socket.fileno()).st_ino}]"}
        assert not _socket_inodes(survivor.pid) & listening
        with caplog.at_level(logging.WARNING, logger="moshpit"):
            os.kill(doomed.pid, signal.SIGKILL)
            assert victim.wait_for(lambda: len(srv.sessions) == 1 and srv.registry.ports.free == free - 1)
            assert victim.wait_for(lambda: "killed by signal 9" in caplog.text)
        assert victim.wait_for(lambda: not os.path.exists(f"/proc/{_pid(victim, b'up')}"), timeout=5)
        bystander.type(b"echo still-$((6*7))\r")
        assert bystander.wait_for(lambda: b"still-42" in bystander.received)
        resumed = ShellClient(srv.address, key, srv.user.pw_name, token=victim.params.resume_token)
        assert resumed.params is None or not resumed.params.resumed       # that session is gone
        resumed.close()
    finally:
        victim.close()
        bystander.close()
        srv.stop()


def test_stopping_the_server_tells_every_session_process_client(home):
    from moshpit.protocol.channel import CloseCode
    _, key = home
    srv = make_server(home, processes=True)
    clients = [ShellClient(srv.address, key, srv.user.pw_name) for _ in range(2)]
    try:
        for client in clients:
            client.type(b"echo up=$$.\r")
            assert client.wait_for(lambda: _pid(client, b"up"))
        pids = [h.pid for h in srv.sessions.values()]
        srv.stop()
        for client in clients:
            assert client.wait_for(lambda: any(isinstance(e, ConnectionClosed) and e.code == CloseCode.SERVER_SHUTDOWN
                                               for e in client.events))
        assert clients[0].wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and
                                                   open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                                                   for pid in pids), timeout=5)
    finally:
        for client in clients:
            client.close()


class _Listener:
    """Just what a SessionProcess handle asks of its server."""

    def __init__(self):
        self.killed, self.forgotten, self.started, self.confirmed = [], [], [], []
        self.registry = self

    def confirm(self, session_id):
        self.confirmed.append(session_id)

    def _kill_session_process(self, pid):
        self.killed.append(pid)

    def _forget(self, handle):
        self.forgotten.append(handle)

    def _session_started(self, handle):
        self.started.append((handle.shell_pid, handle.tty))


def _params():
    from moshpit import crypto
    from moshpit.protocol.handshake import DiffMode, SessionParams
    keys = crypto.TrafficKeys(crypto.DirectionKeys(b"a" * 32, b"b" * 64), crypto.DirectionKeys(b"c" * 32, b"d" * 64))
    return SessionParams(conn_id=1, udp_port=50001, session_id=b"s" * 16, resume_token=b"", resumed=False,
                         diff_mode=DiffMode.RELIABLE, keys=keys, client_key=b"k" * 32, host_key=b"h" * 32,
                         user="alice", cols=80, rows=24, env={})


def _handle(listener):
    """A listener's handle on a session process played by the test (theirs)."""
    import socket
    from types import SimpleNamespace
    import gevent.socket as gsocket
    from moshpit.gevent.session_process import SessionProcess
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    record = SimpleNamespace(session_id=b"s" * 16, udp_port=50001)
    handle = SessionProcess(listener, record, "alice", "192.0.2.1",
                            gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=ours.detach()), 4321)
    return handle, gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=theirs.detach())


@pytest.mark.parametrize("lie", [b'{"op":"started","shell_pid":42,"tty":"pts/1"}',   # said twice
                                 b'{"op":"ready","input_received":-5}', b"\xff\xfe", b"[" * 5000,
                                 b'{"op":"heard"}',                               # heard twice for one attach
                                 b'{"op":"ready","input_received":5}',            # nobody asked
                                 b'{"op":"status","attached":true}',              # nobody asked
                                 b'{"op":"log","level":20,"message":"' + b"x" * 1100 + b'"}',   # too big
                                 b'{"op":"started","shell_pid":42,"tty":"pts/1","note":"x"}'])
def test_a_session_process_that_breaks_the_link_protocol_is_killed_and_forgotten(lie):
    listener = _Listener()
    handle, theirs = _handle(listener)
    theirs.send(b'{"op":"started","shell_pid":42,"tty":"pts/1"}')
    handle.attach(_params())
    assert theirs.recv(65536).startswith(b'{"op":"attach"')
    theirs.send(b'{"op":"heard"}')
    theirs.send(lie)
    deadline = time.monotonic() + 5
    while not handle.closed and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert listener.started == [(42, "pts/1")] and listener.confirmed == [b"s" * 16]
    assert listener.killed == [4321] and listener.forgotten == [handle]
    theirs.close()


def test_answers_asked_for_are_taken_and_log_records_are_logged_as_data(caplog):
    listener = _Listener()
    handle, theirs = _handle(listener)
    caplog.set_level("INFO", logger="moshpit.server")
    asked = gevent.spawn(handle.prepare_resume)
    assert theirs.recv(65536) == b'{"op":"prepare"}'
    theirs.send(b'{"op":"log","level":30,"message":"\\u001b]0;pwned\\u0007\\u001b[2Jdisk full"}')
    theirs.send(b'{"op":"ready","input_received":77,"ended":false}')
    assert asked.get(timeout=5) == 77
    status = gevent.spawn(handle.query_status, 5)
    assert theirs.recv(65536) == b'{"op":"query"}'
    theirs.send(b'{"op":"status","attached":false,"peer":"198.51.100.7:4000","idle":3}')
    assert status.get(timeout=5) == {"attached": False, "peer": "198.51.100.7:4000", "idle": 3}
    assert not handle.closed and listener.killed == []
    [record] = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert record.levelname == "WARNING" and "\x1b" not in record.getMessage() and "\x07" not in record.getMessage()
    assert record.getMessage() == "session process 4321 (alice): ?]0;pwned??[2Jdisk full"
    theirs.close()


def test_a_link_kept_full_of_log_records_neither_freezes_the_listener_nor_fills_its_log(caplog):
    """The listener reads a link on a budget: other greenlets keep their turns, and what
    is over the log rate is dropped and counted, not written."""
    import socket
    listener = _Listener()
    handle, theirs = _handle(listener)
    caplog.set_level("INFO", logger="moshpit.server")
    record = b'{"op":"log","level":20,"message":"' + b"y" * 800 + b'"}'
    theirs.setblocking(False)
    ticks, sent = [], 0
    ticker = gevent.spawn(lambda: [ticks.append(time.monotonic()) or gevent.sleep(0.01) for _ in range(1000)])
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        try:
            theirs.send(record, socket.MSG_DONTWAIT)
            sent += 1
        except BlockingIOError:
            gevent.sleep(0.001)
    ticker.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    logged = [r for r in caplog.records if "yyyy" in r.getMessage()]
    assert sent > 200 and max(gaps) < 0.5, (sent, max(gaps))
    assert len(logged) <= 100 + 2.5 * 20 + 5 < sent           # a burst, then the rate
    theirs.close()
    gevent.sleep(0.3)
    assert any("log records dropped" in r.getMessage() for r in caplog.records) or handle.closed


def test_a_finished_shell_is_not_resumed_and_a_dead_fork_server_is_replaced(home):
    _, key = home
    srv = make_server(home, processes=True)
    try:
        first = ShellClient(srv.address, key, srv.user.pw_name)
        first.type(b"exit\r")
        assert first.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in first.events))
        first.close()
        late = ShellClient(srv.address, key, srv.user.pw_name, token=first.params.resume_token)
        assert late.params is None or not late.params.resumed       # not the finished shell
        late.close()
        os.kill(srv._forkserver.process.pid, signal.SIGKILL)
        assert first.wait_for(lambda: not srv._forkserver.alive)
        again = ShellClient(srv.address, key, srv.user.pw_name)
        again.type(b"echo fresh-$((2*3))\r")
        assert again.wait_for(lambda: b"fresh-6" in again.received)
        again.close()
    finally:
        srv.stop()


def test_keystrokes_sent_before_the_session_process_has_the_keys_are_not_lost(home):
    """The client types the moment the key exchange ends; its first datagrams can reach
    the session process before the listener's word with the connection's keys. They are
    kept and read once the keys come, not dropped (and resent a timeout later)."""
    _, key = home
    srv = make_server(home, processes=True)
    try:
        for _ in range(3):
            client = ShellClient(srv.address, key, srv.user.pw_name)
            client.type(b"echo first=$((20+1)).\r")            # at once, before any reply
            assert client.wait_for(lambda: b"first=21." in client.received)
            assert client.channel.stats["retransmitted"] == 0
            client.type(b"exit\r")
            assert client.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in client.events))
            client.close()
    finally:
        srv.stop()
