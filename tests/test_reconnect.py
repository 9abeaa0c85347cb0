"""The real client losing its server and finding it again: a dead UDP path, a vanished
session, a server that refuses TCP for a while. The server sits behind a Gateway
(tests/relay.py) at 127.0.0.2, so the unmodified client meets the impairments."""

import os
import time

import gevent
import gevent.os
import gevent.socket as gsocket
import nacl.signing
import pytest

from moshpit.gevent.client import Client
from moshpit.gevent.server import Server
from moshpit.keys import HostKeyPolicy, KnownHosts
from moshpit.protocol.backoff import Backoff
from moshpit.protocol.handshake import DiffMode
from moshpit.protocol.streampath import StreamAddress
from moshpit.terminal.model import TerminalModel
from relay import Gateway

SILENT_THEN_RECONNECT = 20      # 6.5 s of silence, then the first attempt after about 1 s


def free_udp_port() -> int:
    with gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningClient:
    """``Client.run()`` in a greenlet, with pipes for its terminal."""

    def __init__(self, gateway, key, user, home, mode=DiffMode.RELIABLE, **options):
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w):
            os.set_blocking(fd, False)
        self.output = bytearray()
        self.resumed_params = []
        self.client = Client(gateway.host, gateway.port, identity=key, user=user,
                             known_hosts=KnownHosts(home / "known_hosts"), policy=HostKeyPolicy.ACCEPT_NEW,
                             stdin_fd=self.in_r, stdout_fd=self.out_w,
                             diff_mode=mode, on_resumed=self.resumed_params.append, **options)
        self.client.connect()
        self.runner = gevent.spawn(self.client.run)
        self.reader = gevent.spawn(self._read)

    def _read(self):
        while data := gevent.os.nb_read(self.out_r, 65536):
            self.output += data

    def drain(self) -> bytes:
        """Everything the client wrote, up to now: what is still in the pipe as well (the
        reader greenlet may not have run since the client's last write)."""
        while True:
            try:
                data = os.read(self.out_r, 65536)
            except BlockingIOError:
                return bytes(self.output)
            if not data:
                return bytes(self.output)
            self.output += data

    def type(self, data: bytes):
        gevent.os.nb_write(self.in_w, data)

    def shows(self, text: str) -> bool:
        """Whether the user's terminal shows ``text`` now (the output, played on a model)."""
        terminal = TerminalModel(80, 24)
        terminal.feed(bytes(self.output))
        return any(text in row for row in terminal.state.text())

    def wait_for(self, predicate, timeout=10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            gevent.sleep(0.05)
        return predicate()

    def close(self):
        self.runner.kill()
        self.reader.kill()
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w):
            os.close(fd)


def gateway_server(home, **impairments):
    """A server (sessions in-process, one UDP port) reached only through a Gateway."""
    path, _ = home
    udp_port = free_udp_port()
    server = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0),
                    udp_host="127.0.0.1", udp_ports=(udp_port, udp_port),
                    authorized_keys=str(path / ".mp" / "authorized_keys"), command=["/bin/sh"])
    server.start()
    return server, Gateway(server.address[1], udp_port, **impairments)


@pytest.fixture
def behind_gateway(home, request):
    """A client with ``transport = udp``: a dead UDP path with TCP alive is then a
    reconnect (with ``auto`` the session would go over the kept TCP connection, see
    test_auto_goes_over_tcp_while_udp_is_dead_and_comes_back)."""
    path, key = home
    mode = getattr(request, "param", DiffMode.RELIABLE)
    server, gateway = gateway_server(home)
    running = RunningClient(gateway, key, server.user.pw_name, path, mode, transport="udp")
    yield server, gateway, running
    running.close()
    gateway.close()
    server.stop()


def lines(path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("cut, behind_gateway", [("both directions", DiffMode.RELIABLE),
                                                  ("server to client only", DiffMode.STATESYNC)],
                         indirect=["behind_gateway"])
def test_keystrokes_reach_the_shell_exactly_once_across_a_reconnect(behind_gateway, tmp_path, cut):
    server, gateway, running = behind_gateway
    hits = tmp_path / "hits"
    running.type(b"echo hit >> %s\r" % bytes(hits))
    assert running.wait_for(lambda: lines(hits) == 1)
    shell = next(iter(server.sessions.values()))
    pid, first_conn = shell.pid, shell.channel.conn_id

    gateway.relay.block_down = True
    gateway.relay.block_up = cut == "both directions"
    running.type(b"echo hit >> %s\r" % bytes(hits))      # typed into a dead path
    assert running.wait_for(lambda: running.client.reconnects >= 1, timeout=SILENT_THEN_RECONNECT)
    gateway.relay.block_up = gateway.relay.block_down = False

    running.type(b"echo after-$((3+4))\r")
    assert running.wait_for(lambda: running.shows("after-7"), timeout=20), running.client.channel.stats
    gevent.sleep(0.5)
    assert lines(hits) == 2                               # not lost, not run twice
    assert shell.pid == pid and shell.channel.conn_id != first_conn
    assert running.resumed_params[-1].resume_token == running.client.params.resume_token
    assert b"mp: Last contact" in running.output          # the bar was shown...
    terminal = TerminalModel(80, 24)
    terminal.feed(bytes(running.output))
    assert "Last contact" not in terminal.state.text()[0]  # ...and is gone again


def test_a_reconnect_whose_answer_is_lost_is_retried_with_the_same_token(behind_gateway):
    server, gateway, running = behind_gateway
    running.type(b"echo ready\r")
    assert running.wait_for(lambda: b"ready\r\n" in running.output)
    shell = next(iter(server.sessions.values()))
    gateway.relay.block_up = gateway.relay.block_down = True
    gateway.drop_accepts = 1                              # the server resumes; we never hear it
    assert running.wait_for(lambda: running.client.reconnects >= 1, timeout=SILENT_THEN_RECONNECT + 5)
    assert gateway.drop_accepts == 0 and running.client.reconnect_failures >= 1
    gateway.relay.block_up = gateway.relay.block_down = False
    running.type(b"echo back-$((6*7))\r")
    assert running.wait_for(lambda: running.shows("back-42"), timeout=20)
    assert not running.runner.dead and list(server.sessions.values()) == [shell]


def test_a_session_gone_from_the_server_ends_the_client_with_a_message(behind_gateway):
    server, _, running = behind_gateway
    running.type(b"echo ready\r")
    assert running.wait_for(lambda: b"ready\r\n" in running.output)
    next(iter(server.sessions.values())).shutdown()       # the server forgets it, says nothing
    assert running.wait_for(lambda: running.runner.dead, timeout=SILENT_THEN_RECONNECT)
    assert running.runner.value == 1
    assert "no longer exists" in running.client.exit_message
    assert running.client.session_over                     # mp then removes its session file
    assert not server.sessions                            # and no new shell was started for it


def test_reconnecting_keeps_trying_while_the_server_refuses_tcp(behind_gateway):
    server, gateway, running = behind_gateway
    running.type(b"echo ready\r")
    assert running.wait_for(lambda: b"ready\r\n" in running.output)
    gateway.tcp_open = False
    gateway.relay.block_up = gateway.relay.block_down = True
    assert running.wait_for(lambda: running.client.reconnect_failures >= 2, timeout=SILENT_THEN_RECONNECT + 5)
    assert not running.runner.dead                        # a failed reconnect is not the end
    gateway.tcp_open = True
    assert running.wait_for(lambda: running.client.reconnects >= 1, timeout=15)
    gateway.relay.block_up = gateway.relay.block_down = False
    running.type(b"echo back-$((5*5))\r")
    assert running.wait_for(lambda: b"back-25" in running.output)


@pytest.mark.parametrize("mode", list(DiffMode))
def test_auto_goes_over_tcp_while_udp_is_dead_and_comes_back(home, tmp_path, mode):
    """The default transport: UDP dies both ways (TCP alive, a firewall); the session goes
    on over the kept TCP connection at once, no reconnect, each keystroke once; UDP
    back, the session moves back to it."""
    path, key = home
    server, gateway = gateway_server(home)
    running = RunningClient(gateway, key, server.user.pw_name, path, mode)
    hits = tmp_path / "hits"
    try:
        running.type(b"echo hit >> %s\r" % bytes(hits))
        assert running.wait_for(lambda: lines(hits) == 1)
        gateway.relay.block_up = gateway.relay.block_down = True
        running.type(b"echo hit >> %s\r" % bytes(hits))
        assert running.wait_for(lambda: lines(hits) == 2, timeout=5)
        assert running.client.paths.on_stream and running.client.reconnects == 0
        shell = next(iter(server.sessions.values()))
        assert running.wait_for(lambda: isinstance(shell.channel.peer_addr, StreamAddress), timeout=2)
        gateway.relay.block_up = gateway.relay.block_down = False
        assert running.wait_for(lambda: not running.client.paths.on_stream, timeout=10)
        running.type(b"echo hit >> %s; echo back-$((6*7))\r" % bytes(hits))
        assert running.wait_for(lambda: running.shows("back-42"), timeout=5)
        gevent.sleep(0.5)
        assert lines(hits) == 3 and running.client.reconnects == 0
        assert not isinstance(shell.channel.peer_addr, StreamAddress)
    finally:
        running.close()
        gateway.close()
        server.stop()


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    import random
    backoff = Backoff(10, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    for delay, nominal in zip(delays, [1, 2, 4, 8, 10, 10, 10, 10]):
        assert 0.8 * nominal <= delay <= nominal
    backoff.reset()
    assert backoff.next_delay() <= 1.0
    with pytest.raises(ValueError):
        Backoff(0.5)


@pytest.fixture
def lossy_gateway(home):
    path, key = home
    server, gateway = gateway_server(home, loss=0.3, seed=11)
    yield server, gateway, (key, server.user.pw_name, path)
    gateway.close()
    server.stop()


def test_the_shell_exiting_reaches_the_client_through_30_percent_loss(lossy_gateway):
    server, gateway, (key, user, path) = lossy_gateway
    running = RunningClient(gateway, key, user, path)
    try:
        running.type(b"echo bye-$((2*3)); exit 3\r")
        assert running.wait_for(lambda: running.runner.dead, timeout=30)
        assert b"bye-6" in running.drain()
        assert running.client.exit_message == "shell exited with status 3"
        assert running.client.session_over
        assert gateway.relay.dropped > 0
        assert running.wait_for(lambda: not server.sessions, timeout=10)   # the port is free again
        assert server.registry.ports.free == 1
    finally:
        running.close()


def test_a_flood_of_output_reaches_a_listening_client_byte_exact(behind_gateway):
    # More output than the server may hold for an absent client (1 MiB), produced faster
    # than the client takes it: flow control, not a skip and repaint, while the client listens.
    server, _, running = behind_gateway
    running.type(b"seq 1 1200000; echo flood-$((5+5))\r")
    assert running.wait_for(lambda: b"flood-10" in running.output[-200:], timeout=120)
    expected = b"".join(b"%d\r\n" % i for i in range(1, 1200001))
    assert expected in bytes(running.output)
    assert b"[moshpit: " not in running.output
    shell = next(iter(server.sessions.values()))
    assert shell.channel.stats["repaint_requests"] == 0
