"""The gevent server with real sockets on loopback and a real shell on a real PTY."""

import os
import pwd
import re
import time

import gevent
import gevent.socket as gsocket
import nacl.signing
import pytest

from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import (ConnectionClosed, DataReceived, HandshakeRefused, HostKeyReceived)
from moshpit.protocol.handshake import ClientHandshake, DiffMode
from moshpit.gevent.server import HELLO_TIMEOUT
from moshpit.gevent.udp import size_buffers


class ShellClient:
    """Just enough client to talk to a real server: handshake, then a channel on UDP."""

    def __init__(self, address, key, user, mode=DiffMode.RELIABLE, token=None, env=None, cols=80, rows=24):
        self.received = bytearray()
        self.events = []
        hs = ClientHandshake(key, user, now=time.monotonic(), diff_mode=mode, resume_token=token, env=env,
                             cols=cols, rows=rows)
        tcp = gsocket.create_connection(address[:2], timeout=10)
        tcp.sendall(hs.data_to_send())
        self.refused = None
        while hs.params is None and self.refused is None:
            data = tcp.recv(4096)
            if not data:
                break
            hs.receive_data(data, time.monotonic())
            while (event := hs.next_event()) is not None:
                if isinstance(event, HostKeyReceived):
                    hs.accept_host_key()
                elif isinstance(event, HandshakeRefused):
                    self.refused = event.reason
            tcp.sendall(hs.data_to_send())
        tcp.close()
        self.params = hs.params
        if self.params is None:
            return
        self.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        size_buffers(self.sock)
        self.sock.connect((address[0], self.params.udp_port))
        self.channel = Channel.from_params(Role.CLIENT, self.params, now=time.monotonic(),
                                           peer_addr=(address[0], self.params.udp_port))
        self.reader = gevent.spawn(self._read)
        self.ticker = gevent.spawn(self._tick)

    def _read(self):
        while True:
            data = self.sock.recv(2048)
            self.channel.receive_datagram(data, self.channel.peer_addr, time.monotonic())
            self.service()

    def _tick(self):
        while True:
            timer = self.channel.get_timer()
            gevent.sleep(0.05 if timer is None else max(0.0, min(0.05, timer - time.monotonic())))
            self.channel.handle_timer(time.monotonic())
            self.service()

    def service(self):
        for data, _ in self.channel.datagrams_to_send(time.monotonic()):
            self.sock.send(data)
        while (event := self.channel.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.received += event.data

    def type(self, text: bytes):
        self.channel.send_data(text)
        self.service()

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.02)
        return True

    def close(self):
        if self.params is not None:
            self.reader.kill()
            self.ticker.kill()
            self.sock.close()


def test_a_shell_runs_commands_over_udp(server, home):
    _, key = home
    client = ShellClient(server.address, key, server.user.pw_name)
    try:
        assert client.params is not None
        client.type(b"echo moshpit-$((6*7))\r")
        assert client.wait_for(lambda: b"moshpit-42" in client.received)
        client.type(b"exit\r")
        assert client.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in client.events))
        closed = [e for e in client.events if isinstance(e, ConnectionClosed)][0]
        assert closed.code == CloseCode.SHELL_EXITED and "status 0" in closed.reason
    finally:
        client.close()


def test_resume_reattaches_the_same_shell(server, home):
    _, key = home
    first = ShellClient(server.address, key, server.user.pw_name)
    first.type(b"echo pid=$$.\r")

    def pid():
        found = re.search(rb"pid=(\d+)\.", bytes(first.received))
        return found and found.group(1)
    assert first.wait_for(pid)
    shell_pid = pid()
    first.close()                                   # the client vanishes (kill -9)
    second = ShellClient(server.address, key, server.user.pw_name, token=first.params.resume_token)
    try:
        assert second.params.resumed and second.params.session_id == first.params.session_id
        second.type(b"echo again $$\r")
        assert second.wait_for(lambda: b"again " + shell_pid in second.received)
    finally:
        second.close()


def test_unknown_key_is_refused(server):
    stranger = ShellClient(server.address, nacl.signing.SigningKey.generate(), server.user.pw_name)
    assert stranger.params is None and stranger.refused == "not authorised"
    assert not server.sessions


def make_server(home, **options):
    from moshpit.gevent.server import Server
    path, _ = home
    options.setdefault("authorized_keys", str(path / ".mp" / "authorized_keys"))
    options.setdefault("command", ["/bin/sh"])
    srv = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0), udp_ports=(52200, 52300), **options)
    srv.start()
    return srv


def test_only_the_allowed_client_variables_reach_the_shell(home):
    _, key = home
    srv = make_server(home, accept_env=("LANG", "LC_*"))
    client = ShellClient(srv.address, key, srv.user.pw_name, env={
        "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "Asia/Tokyo", "LD_PRELOAD": "/evil.so", "TERM": "vt100",
        "LC_ALL\nLD_PRELOAD": "/evil.so", "LC_NAME": "a\x1b]52;c;aGk=\x07b", "LC_PAPER": "A4"})
    try:
        client.type(b"echo smuggled=$(env | grep -c -e PRELOAD -e ']52'); "
                    b"echo \"[$LANG|$LC_TIME|${TZ-unset}|${LD_PRELOAD-unset}|$TERM|${LC_NAME-unset}|$LC_PAPER]\"\r")
        assert client.wait_for(lambda: b"]\r\n" in client.received)
        assert b"[C.UTF-8|C|unset|unset|vt100|unset|A4]" in client.received
        assert b"smuggled=0" in client.received           # nothing rode in behind a newline
    finally:
        client.close()
        srv.stop()


def test_a_detached_session_ends_after_the_configured_timeout(home):
    _, key = home
    srv = make_server(home, detached_timeout=1.5)
    client = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        client.type(b"echo here\r")
        assert client.wait_for(lambda: b"here\r\n" in client.received)
        free_before = srv.registry.ports.free
        client.close()                                   # vanishes without a word
        shell = next(iter(srv.sessions.values()))
        gevent.sleep(0.5)
        assert srv.sessions                              # not yet
        assert client.wait_for(lambda: not srv.sessions, timeout=5)
        assert srv.registry.ports.free == free_before + 1
        assert client.wait_for(lambda: _gone(shell.pid), timeout=5)
    finally:
        srv.stop()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:                                             # a zombie nobody reaped yet still counts as gone
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def test_a_session_outlives_a_client_that_vanished(server, home):
    _, key = home
    client = ShellClient(server.address, key, server.user.pw_name)
    client.type(b"echo here\r")
    assert client.wait_for(lambda: b"here\r\n" in client.received)
    client.close()
    gevent.sleep(2)
    assert len(server.sessions) == 1


def test_a_flood_of_key_exchanges_from_one_address_is_told_to_wait(home):
    """Past its burst a source gets no cryptography, but an answer: BUSY and when to retry
    (before, the connection was reset and mp could only say 'connection reset by peer')."""
    from moshpit.protocol.ratelimit import HandshakeLimiter
    from moshpit.protocol.handshake import ServerBusy
    srv = make_server(home, limiter=HandshakeLimiter(burst=3, per_second=0.5))
    try:
        answers = []
        for _ in range(6):
            with gsocket.create_connection(srv.address[:2], timeout=5) as tcp:
                hs = ClientHandshake(nacl.signing.SigningKey.generate(), "x", now=0.0)
                tcp.sendall(hs.data_to_send())
                try:
                    hs.receive_data(tcp.recv(4096), 0.0)
                    answers.append("hello")
                except ServerBusy as exc:
                    answers.append(exc.retry_after)
        assert answers == ["hello"] * 3 + [2, 2, 2]          # half a token a second: 2 s
        assert srv.limiter.refused == 3 and srv.limiter.in_progress == 0
    finally:
        srv.stop()


def test_idle_connections_from_many_sources_do_not_lock_out_logins(home):
    """The review held 64 idle connections (16 sources x 4) and 0 of 14 logins got in."""
    _, key = home
    srv = make_server(home)
    idle = []
    try:
        for source in range(16):
            for _ in range(4):
                tcp = gsocket.socket()
                tcp.bind((f"127.0.0.{10 + source}", 0))
                tcp.connect(srv.address[:2])
                idle.append(tcp)
        gevent.sleep(0.3)
        assert srv.limiter.waiting == 64 and srv.limiter.in_progress == 0
        started = time.monotonic()
        client = ShellClient(srv.address, key, srv.user.pw_name)
        assert client.params is not None and time.monotonic() - started < 2
        client.close()
        gevent.sleep(HELLO_TIMEOUT + 0.5)
        assert srv.limiter.waiting == 0                  # the silent ones were let go
    finally:
        for tcp in idle:
            tcp.close()
        srv.stop()


def nobodys_key(tmp_path):
    """A key nobody's authorized_keys (owned by nobody) lists: (nobody, key, the template)."""
    from moshpit.keys import format_public_key
    nobody = pwd.getpwnam("nobody")
    key = nacl.signing.SigningKey.generate()
    keys_dir = tmp_path / "keys" / "nobody"
    keys_dir.mkdir(parents=True, mode=0o700)
    (keys_dir / "authorized_keys").write_text(format_public_key(bytes(key.verify_key)) + "\n")
    (keys_dir / "authorized_keys").chmod(0o600)
    for path in (keys_dir, keys_dir / "authorized_keys"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return nobody, key, str(tmp_path / "keys" / "%u" / "authorized_keys")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch users")
def test_run_as_root_the_shell_runs_as_the_target_user(tmp_path):
    nobody, key, template = nobodys_key(tmp_path)
    srv = make_server((tmp_path, key), authorized_keys=template)
    client = ShellClient(srv.address, key, "nobody")
    try:
        assert client.params is not None
        client.type(b"echo \"[$(id -u):$(id -g):$(id -G):$USER:$HOME:$(stat -c %u $(tty))]\"\r")
        assert client.wait_for(lambda: b"]\r\n" in client.received)
        expected = f"[{nobody.pw_uid}:{nobody.pw_gid}:{nobody.pw_gid}:nobody:{nobody.pw_dir}:{nobody.pw_uid}]"
        assert expected.encode() in client.received
        refused = ShellClient(srv.address, key, "no-such-user-here")
        assert refused.params is None and refused.refused == "not authorised"
    finally:
        client.close()
        srv.stop()


def test_a_shell_holds_no_other_sessions_terminal_or_the_servers_sockets(server, home):
    _, key = home
    first = ShellClient(server.address, key, server.user.pw_name)
    second = ShellClient(server.address, key, server.user.pw_name)
    try:
        second.type(b'echo "[$(for f in /proc/$$/fd/*; do readlink $f; done | grep -c -e ptmx -e socket)]"\r')
        assert second.wait_for(lambda: re.search(rb"\[\d+\]", bytes(second.received)))
        assert b"[0]" in second.received
    finally:
        first.close()
        second.close()


def test_a_large_paste_reaches_the_shell_whole(server, home, tmp_path):
    _, key = home
    client = ShellClient(server.address, key, server.user.pw_name)
    target = tmp_path / "pasted"
    lines = [b"%05d %s" % (i, b"x" * 43) for i in range(4000)]        # 196 kB, more than a PTY holds
    try:
        client.type(b"stty -echo; cat > %s; echo pasted-$((4*4))\r" % bytes(target))
        gevent.sleep(0.5)
        client.type(b"\r".join(lines) + b"\r\x04")
        assert client.wait_for(lambda: b"pasted-16" in client.received, timeout=30)
        assert target.read_bytes() == b"\n".join(lines) + b"\n"
    finally:
        client.close()


def test_resuming_takes_the_new_window_size_and_a_finished_shell_is_not_resumed(server, home):
    _, key = home
    first = ShellClient(server.address, key, server.user.pw_name)
    first.type(b"echo one\r")
    assert first.wait_for(lambda: b"one\r\n" in first.received)
    first.close()
    again = ShellClient(server.address, key, server.user.pw_name, token=first.params.resume_token,
                        cols=132, rows=50)
    try:
        assert again.params.resumed
        again.type(b"echo size=$(stty size | tr ' ' x)\r")
        assert again.wait_for(lambda: b"size=50x132" in again.received)
        again.type(b"exit\r")
        assert again.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in again.events))
    finally:
        again.close()
    late = ShellClient(server.address, key, server.user.pw_name, token=again.params.resume_token)
    assert late.params is None or not late.params.resumed
    late.close()


def test_ending_a_session_twice_closes_its_descriptors_once(server, home):
    _, key = home
    client = ShellClient(server.address, key, server.user.pw_name)
    pipes = []
    try:
        client.type(b"echo up\r")
        assert client.wait_for(lambda: b"up\r\n" in client.received)
        shell = next(iter(server.sessions.values()))
        shell.shutdown()
        while len(pipes) < 100 and not any(shell.fd in pair for pair in pipes):
            pipes.append(os.pipe())        # until one takes the PTY's old number
        assert any(shell.fd in pair for pair in pipes)
        shell.shutdown()                   # as when a close and the shell's exit both end it
        os.fstat(shell.fd)                 # that pipe is still open
    finally:
        for pair in pipes:
            for fd in pair:
                os.close(fd)
        client.close()


def test_a_terminal_type_with_control_characters_is_not_passed_on(home):
    _, key = home
    srv = make_server(home)
    client = ShellClient(srv.address, key, srv.user.pw_name, env={"TERM": "xterm\x1b]0;pwned\x07"})
    try:
        client.type(b"echo \"[$TERM]\"\r")
        assert client.wait_for(lambda: b"]\r\n" in client.received)
        assert b"[xterm-256color]" in client.received
    finally:
        client.close()
        srv.stop()


def test_the_shell_gets_default_signal_dispositions(home):
    """Python ignores SIGPIPE; a shell that inherits that makes `yes | head -1` complain."""
    _, key = home
    srv = make_server(home)
    client = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        client.type(b"yes | head -1; grep -E '^Sig(Ign|Blk)' /proc/self/status; echo done-$((1+1))\r")
        assert client.wait_for(lambda: b"done-2" in client.received)
        assert b"Broken pipe" not in client.received
        assert b"SigBlk:\t0000000000000000" in client.received
    finally:
        client.close()
        srv.stop()


def test_closed_accounts_and_hostile_names_are_refused_and_the_server_carries_on(home, tmp_path, caplog):
    import logging
    from moshpit.accounts import LoginPolicy
    _, key = home
    me = pwd.getpwuid(os.getuid()).pw_name
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{me}:!:19000:0:99999:7::0:\n")             # chage -E 0
    srv = make_server(home, login_policy=LoginPolicy(shadow_path=str(shadow),
                                                      nologin_path=str(tmp_path / "nologin")))
    try:
        with caplog.at_level(logging.WARNING, logger="moshpit"):
            expired = ShellClient(srv.address, key, me)
            assert expired.params is None and expired.refused == "not authorised"
            for name in ("a\0b", "root\nforged log line", "\x1b]52;c;aGk=\x07x"):
                hostile = ShellClient(srv.address, key, name)
                assert hostile.params is None and hostile.refused == "not authorised"
        assert "the account has expired" in caplog.text
        assert "\x1b" not in caplog.text and "\nforged" not in caplog.text
        shadow.write_text(f"{me}:!:19000:0:99999:7:::\n")            # the expiry lifted
        client = ShellClient(srv.address, key, me)
        assert client.params is not None
        client.close()
    finally:
        srv.stop()


def test_windows_too_big_for_the_model_are_clamped_at_login_and_mid_session(home):
    """A client may claim 65535x65535: the session clamps to what the model holds, keeps
    its port, and a RESIZE past the limit does not kill the session's reader."""
    from moshpit.terminal.model import MAX_COLUMNS, MAX_ROWS
    _, key = home
    srv = make_server(home)
    free = srv.registry.ports.free
    client = ShellClient(srv.address, key, srv.user.pw_name, cols=5000, rows=3000)
    try:
        assert client.params is not None
        client.type(b"echo size=$(stty size | tr ' ' x).\r")
        assert client.wait_for(lambda: f"size={MAX_ROWS}x{MAX_COLUMNS}.".encode() in client.received)
        client.channel.send_resize(1001, 24)
        client.service()
        client.type(b"echo size=$(stty size | tr ' ' x)!\r")
        assert client.wait_for(lambda: f"size=24x{MAX_COLUMNS}!".encode() in client.received)
        client.type(b"exit\r")
        assert client.wait_for(lambda: not srv.sessions)
        assert srv.registry.ports.free == free
    finally:
        client.close()
        srv.stop()


def test_a_failing_session_greenlet_ends_its_session_cleanly(home, monkeypatch):
    _, key = home
    srv = make_server(home)
    free = srv.registry.ports.free
    client = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        assert client.wait_for(lambda: srv.sessions)
        shell = next(iter(srv.sessions.values()))
        def broken(data, now):
            raise RuntimeError("a bug in the screen model")
        monkeypatch.setattr(shell.session, "pty_output", broken)
        client.type(b"echo boom\r")
        assert client.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in client.events))
        closed = next(e for e in client.events if isinstance(e, ConnectionClosed))
        assert closed.reason == "server error"
        assert client.wait_for(lambda: not srv.sessions and srv.registry.ports.free == free)
        assert client.wait_for(lambda: _gone(shell.pid), timeout=5)
    finally:
        client.close()
        srv.stop()


@pytest.mark.parametrize("processes", [False, True], ids=["in-process", "session-process"])
def test_a_session_is_a_login_in_utmp_and_wtmp(home, tmp_path, processes):
    """As sshd: `who` lists the session while it lasts, `last` remembers it (written by the
    listener for a session process, which may no longer write them once it is the user)."""
    import struct
    from moshpit.gevent.logins import DEAD_PROCESS, USER_PROCESS, LoginRecords, Utmpx
    utmp, wtmp = tmp_path / "utmp", tmp_path / "wtmp"
    utmp.touch()
    wtmp.touch()
    _, key = home
    srv = make_server(home, login_records=LoginRecords(str(utmp), str(wtmp)), processes=processes)

    def records(path):
        data = path.read_bytes()
        size = struct.calcsize("384s")
        return [Utmpx.from_buffer_copy(data[i:i + size]) for i in range(0, len(data), size)]

    client = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        client.type(b"echo tty=$(tty).\r")
        assert client.wait_for(lambda: re.search(rb"tty=/dev/(pts/\d+)\.", bytes(client.received)))
        line = re.search(rb"tty=/dev/(pts/\d+)\.", bytes(client.received)).group(1)
        now, = [r for r in records(utmp) if r.ut_type == USER_PROCESS]
        assert (now.ut_line, now.ut_user, now.ut_host) == (line, srv.user.pw_name.encode(), b"127.0.0.1")
        client.type(b"exit\r")
        assert client.wait_for(lambda: not srv.sessions)
        assert [r.ut_type for r in records(utmp)] == [DEAD_PROCESS]      # no longer logged in
        assert [(r.ut_type, r.ut_line) for r in records(wtmp)] == [(USER_PROCESS, line), (DEAD_PROCESS, line)]
    finally:
        client.close()
        srv.stop()


def test_a_session_printing_costly_escapes_does_not_stall_another_sessions_echo(home):
    """One user's shell prints, without end, the escape sequences that cost the screen
    model most at the largest window (insert 9999 lines in a background colour: a
    whole screen erased each time). Another user's echo must still come back within a
    second or so (it took minutes when each read of output was modelled in one go),
    and the flooding session's own Ctrl-C must still stop its program."""
    _, key = home
    srv = make_server(home)
    flooder = ShellClient(srv.address, key, srv.user.pw_name, mode=DiffMode.STATESYNC, cols=1000, rows=500)
    typist = ShellClient(srv.address, key, srv.user.pw_name)
    try:
        flooder.type(b"while :; do printf '\\033[44m\\033[9999L\\033[3@x'; done\r")
        gevent.sleep(1.0)                                   # the flood is under way
        assert srv.sessions and any(s.session.model.screen.work > 100_000 for s in srv.sessions.values())
        for i in range(3):
            started = time.monotonic()
            typist.type(b"echo echo-$((%d*7))\r" % i)
            assert typist.wait_for(lambda: b"echo-%d" % (i * 7) in typist.received, timeout=10)
            assert time.monotonic() - started < 1.5
        flooder.type(b"\x03echo stopped-$((6*7))\r")
        assert flooder.wait_for(lambda: any("stopped-42" in row for s in srv.sessions.values()
                                            for row in s.session.model.state.text()), timeout=20)
    finally:
        shells = [s.pid for s in srv.sessions.values()]
        flooder.close()
        typist.close()
        srv.stop()
        for pid in shells:                                  # a flood left behind would slow every
            try:                                            # test after this one
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_a_shell_starts_with_every_signal_at_its_default_whatever_the_server_ignored(tmp_path):
    """A server started as a background job or under nohup ignores SIGINT, SIGQUIT or
    SIGHUP, and exec would pass that on: the shell's Ctrl-C would stop nothing. The
    shell gets what sshd gives one: nothing ignored, nothing blocked."""
    import signal
    from moshpit.gevent.spawn import spawn_shell
    import pwd
    user = pwd.getpwuid(os.getuid())
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)}
    try:
        pid, fd = spawn_shell(["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/$$/status"], dict(os.environ),
                              user, 80, 24)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    out, deadline = b"", time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        except OSError:                                     # EIO: the shell is gone, all read
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    os.waitpid(pid, 0)
    masks = dict(line.split(":") for line in out.decode().split("\r\n") if ":" in line)
    ignored, blocked = int(masks["SigIgn"], 16), int(masks["SigBlk"], 16)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGPIPE):
        assert not ignored & (1 << (sig - 1)), f"{signal.Signals(sig).name} ignored in the shell"
    assert blocked == 0
