"""A real server and shell, a client behind an impairment relay: loss and roaming."""

import time

import gevent
import gevent.socket as gsocket
import pytest

from moshpit.protocol.handshake import DiffMode
from relay import Relay
from test_gevent_server import ShellClient


def through_relay(server, key, mode=DiffMode.RELIABLE, **impairments):
    """A ShellClient whose UDP goes through a relay (the handshake stays direct)."""
    client = ShellClient(server.address, key, server.user.pw_name, mode=mode)
    relay = Relay(("127.0.0.1", client.params.udp_port), **impairments)
    client.sock.close()
    client.reader.kill()
    client.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    client.sock.connect(relay.address)
    client.reader = gevent.spawn(client._read)
    client.channel.path_changed()
    client.service()
    return client, relay


def expected_seq(n):
    return b"".join(b"%d\r\n" % i for i in range(1, n + 1))


def test_reliable_output_is_byte_exact_through_30_percent_loss(server, home):
    _, key = home
    client, relay = through_relay(server, key, loss=0.3, duplicate=0.05, seed=7)
    try:
        client.type(b"seq 1 20000; echo done-$((1+1))\r")
        assert client.wait_for(lambda: b"done-2" in client.received, timeout=60)
        assert expected_seq(20000) in bytes(client.received)
        assert relay.dropped > 30                    # the loss was real
    finally:
        client.close()
        relay.close()


def test_output_continues_when_the_client_roams(server, home):
    _, key = home
    client, relay = through_relay(server, key)
    try:
        client.type(b"echo before-roam\r")
        assert client.wait_for(lambda: b"before-roam\r\n" in client.received)
        old_addr = server.sessions and next(iter(server.sessions.values())).channel.peer_addr
        relay.roam()
        client.type(b"seq 1 3000; echo after-$((2+2))\r")
        assert client.wait_for(lambda: b"after-4" in client.received, timeout=30)
        assert expected_seq(3000) in bytes(client.received)
        channel = next(iter(server.sessions.values())).channel
        assert channel.peer_addr != old_addr and channel.addr_validated
    finally:
        client.close()
        relay.close()


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_screen_modes_end_to_end_under_loss(server, home, mode):
    from moshpit.protocol.events import ScreenUpdate
    from moshpit.clientsession import ClientSession
    from moshpit.terminal.model import TerminalModel
    _, key = home
    client, relay = through_relay(server, key, mode=mode, loss=0.3, seed=3)
    session, terminal = ClientSession(80, 24), TerminalModel(80, 24)
    session.attach(client.channel, 0)
    original_service = client.service

    def service():
        original_service()
        for event in [e for e in client.events if isinstance(e, ScreenUpdate)]:
            session.on_event(event, time.monotonic())
            terminal.feed(session.take_output())
        client.events.clear()
    client.service = service
    try:
        client.type(b"printf 'screen-%s\\n' $((7*6)); seq 1 500\r")
        shell = next(iter(server.sessions.values()))
        assert client.wait_for(lambda: b"500" in "".join(terminal.state.text()).encode()
                               and terminal.state == shell.session.model.state, timeout=30)
    finally:
        client.close()
        relay.close()
