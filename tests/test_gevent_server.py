"""The gevent server with real sockets on loopback and a real shell on a real PTY."""

import re
import time

import gevent
import gevent.socket as gsocket
import nacl.signing

from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import (ConnectionClosed, DataReceived, HandshakeRefused, HostKeyReceived)
from moshpit.protocol.handshake import ClientHandshake, DiffMode
from moshpit.gevent.server import size_buffers


class ShellClient:
    """Just enough client to talk to a real server: handshake, then a channel on UDP."""

    def __init__(self, address, key, user, mode=DiffMode.RELIABLE, token=None):
        self.received = bytearray()
        self.events = []
        hs = ClientHandshake(key, user, now=time.monotonic(), diff_mode=mode, resume_token=token)
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
