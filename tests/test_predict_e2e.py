"""Keystroke prediction end to end: the real client and server, a real shell, and a
250 ms round trip through the impairment relay (tests/relay.py)."""

import time

import gevent
import nacl.signing
import pytest

from moshpit.gevent.server import Server
from moshpit.protocol.handshake import DiffMode
from moshpit.terminal.model import TerminalModel
from relay import Gateway
from test_reconnect import RunningClient, free_udp_port

ONE_WAY = 0.125


@pytest.fixture(params=list(DiffMode), ids=lambda m: m.value)
def slow_link(home, request):
    path, key = home
    udp_port = free_udp_port()
    server = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0),
                    udp_host="127.0.0.1", udp_ports=(udp_port, udp_port),
                    authorized_keys=str(path / ".mp" / "authorized_keys"), command=["/bin/sh"])
    server.start()
    gateway = Gateway(server.address[1], udp_port, delay=ONE_WAY)
    running = RunningClient(gateway, key, server.user.pw_name, path, request.param, predict="adaptive")
    yield server, running
    running.close()
    gateway.close()
    server.stop()


def terminal_of(running) -> TerminalModel:
    terminal = TerminalModel(80, 24)
    terminal.feed(bytes(running.output))
    return terminal


def type_slowly(running, text: bytes, gap: float = 0.08) -> list[float]:
    """Type one key every ``gap`` s; seconds until each shows on the user's terminal."""
    shown_after = []
    for byte in text:
        before = len(running.output)
        started = time.monotonic()
        running.type(bytes([byte]))
        while bytes([byte]) not in running.output[before:] and time.monotonic() - started < 2:
            gevent.sleep(0.001)
        shown_after.append(time.monotonic() - started)
        gevent.sleep(max(0.0, gap - shown_after[-1]))
    return shown_after


def test_typing_shows_at_once_on_a_slow_link_and_settles_on_the_truth(slow_link):
    server, running = slow_link
    running.type(b"cat\r")
    assert running.wait_for(lambda: running.client.channel.rtt.srtt and running.client.channel.rtt.srtt > 0.2)
    times = type_slowly(running, b"the quick brown fox jumps over")
    fast = sum(t < 0.05 for t in times[3:]) / len(times[3:])   # the first confirms the epoch
    assert fast >= 0.8, [round(t, 3) for t in times]
    model = next(iter(server.sessions.values())).session.model
    settled = running.wait_for(lambda: terminal_of(running).state.text() == model.state.text(), timeout=5)
    assert settled, (terminal_of(running).state.text()[:3], model.state.text()[:3])
    assert "the quick brown fox jumps over" in model.state.text()[1]
    assert running.wait_for(lambda: not any(cell.underscore for row in terminal_of(running).state.lines
                                            for cell in row), timeout=5)
    assert running.client.session.engine.stats.glitches == 0


def test_nothing_typed_at_a_password_prompt_is_drawn(slow_link):
    server, running = slow_link
    running.type(b"cat\r")
    assert running.wait_for(lambda: running.client.channel.rtt.srtt and running.client.channel.rtt.srtt > 0.2)
    type_slowly(running, b"warm up\r")                         # predictions are on
    running.type(b"\x04")
    running.type(b"stty -echo; printf 'pass: '; read x; stty echo; echo; echo got-$x-\r")
    def prompt():
        return [row for row in terminal_of(running).state.text() if "pass: " in row and "printf" not in row]
    assert running.wait_for(prompt, timeout=5), terminal_of(running).state.text()
    from moshpit.terminal.predict import ICANON
    assert running.wait_for(lambda: running.client.session.echo_flags == ICANON)   # echo off, said
    for byte in b"hunter2":
        running.type(bytes([byte]))
        gevent.sleep(0.08)
        rows = prompt()
        assert rows and not rows[-1].split("pass: ", 1)[1].strip(), rows
    running.type(b"\r")
    assert running.wait_for(lambda: running.shows("got-hunter2-"), timeout=5)
