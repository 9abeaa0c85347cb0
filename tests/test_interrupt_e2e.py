"""A flood of output, then Ctrl-C and a command: the command's output must not wait behind
megabytes already queued, and every line printed during an outage still arrives. A real
server and client, the server behind a Gateway (tests/relay.py) that delays each
datagram, so the path has a real round trip."""

import time

import gevent
import nacl.signing
import pytest

from moshpit.gevent.server import Server
from moshpit.protocol.handshake import DiffMode
from relay import Gateway
from test_reconnect import RunningClient, free_udp_port
from transcript import judge_numbers, transcript_lines


@pytest.fixture
def delayed(home, request):
    """A server behind a gateway with ``request.param`` = (mode, round trip in s)."""
    mode, rtt = request.param
    path, key = home
    udp_port = free_udp_port()
    server = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0),
                    udp_host="127.0.0.1", udp_ports=(udp_port, udp_port),
                    authorized_keys=str(path / ".mp" / "authorized_keys"), command=["/bin/sh"])
    server.start()
    gateway = Gateway(server.address[1], udp_port, delay=rtt / 2)
    running = RunningClient(gateway, key, server.user.pw_name, path, mode)
    yield server, gateway, running, path
    running.close()
    gateway.close()
    server.stop()


@pytest.mark.parametrize("delayed", [(DiffMode.RELIABLE, 0.25), (DiffMode.RELIABLE, 0.05),
                                     (DiffMode.RELIABLE, 0.0)],
                         indirect=True, ids=["250ms", "50ms", "loopback"])
def test_ctrl_c_under_a_flood_answers_the_next_command_within_a_few_round_trips(delayed):
    # main before issue 22: 5.7 s at 250 ms, the unsent output (up to 1 MiB, plus the
    # channel's queue) crossing first. Now what waits is about what the path carries
    # in a round trip, and the tty's own flush discards the rest.
    server, gateway, running, path = delayed
    big = path / "big"
    with big.open("wb") as out:
        for i in range(0, 400_000, 1000):
            out.write(b"".join(b"%07d some output from a big file\n" % n for n in range(i, i + 1000)))
    running.type(b"cat %s\r" % bytes(big))
    assert running.wait_for(lambda: len(running.output) > 300_000, timeout=30)
    gevent.sleep(1.0)
    pressed = time.monotonic()
    running.type(b"\x03echo mark$((6*7))\r")
    assert running.wait_for(lambda: b"mark42\r\n" in running.output, timeout=30)
    took = time.monotonic() - pressed
    assert took < 2.0, f"{took:.2f} s from Ctrl-C to the next command's output"
    assert len(running.drain()) < big.stat().st_size          # the rest of the file never came


@pytest.mark.parametrize("delayed", [(DiffMode.RELIABLE, 0.25)], indirect=True, ids=["250ms"])
def test_lines_printed_during_an_outage_reach_the_scrollback_once_in_order(delayed):
    server, gateway, running, _ = delayed
    running.type(b"i=1; while [ $i -le 1500 ]; do echo $i; i=$((i+1)); sleep 0.01; done; echo end-$((2+2))\r")
    assert running.wait_for(lambda: b"\r\n200\r\n" in running.output, timeout=30)
    relay = gateway.relay
    relay.block_up = relay.block_down = True                  # 8 s with no UDP at all
    gevent.sleep(8.0)
    relay.block_up = relay.block_down = False
    assert running.wait_for(lambda: b"end-4" in running.output, timeout=90)
    verdict = judge_numbers(transcript_lines(running.drain()), 1, 1500)
    assert verdict.once == 1500 and not verdict.repeated and not verdict.out_of_order, verdict
    assert not verdict.markers
