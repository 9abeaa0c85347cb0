"""A flood of output, then Ctrl-C and a command: the command's output must not wait behind
megabytes already queued, and every line printed during an outage still arrives. A real
server and client, the server behind a Gateway (tests/relay.py) that delays each
datagram, so the path has a real round trip."""

import time

import gevent
import pytest

from moshpit.protocol.handshake import DiffMode
from test_reconnect import RunningClient, gateway_server
from transcript import judge_numbers, transcript_lines


class Watcher:
    """Whether the user's terminal shows some text yet. A stream client's output holds it
    as it is; a screen-state client may leave unchanged cells of a row unwritten, so its
    own account of what it drew is asked (playing its output on a model here, in this
    one process, would cost the client and server under test their CPU)."""

    def __init__(self, running):
        self.running = running

    def shows(self, text: str) -> bool:
        client = self.running.client
        if client.diff_mode is DiffMode.RELIABLE:
            return text.encode() in self.running.output
        return any(text in row for row in client.session.displayed.text())


@pytest.fixture
def delayed(home, request):
    """A server behind a gateway with ``request.param`` = (mode, round trip in s)."""
    mode, rtt = request.param
    path, key = home
    server, gateway = gateway_server(home, delay=rtt / 2)
    running = RunningClient(gateway, key, server.user.pw_name, path, mode)
    yield server, gateway, running, path
    running.close()
    gateway.close()
    server.stop()


MODES = [DiffMode.RELIABLE, DiffMode.STATESYNC, DiffMode.DATAGRAM]


@pytest.mark.parametrize("delayed", [(mode, rtt) for mode in MODES for rtt in (0.25, 0.05, 0.0)],
                         indirect=True, ids=[f"{mode.value}-{rtt}" for mode in MODES for rtt in (0.25, 0.05, 0.0)])
def test_ctrl_c_under_a_flood_answers_the_next_command_within_a_few_round_trips(delayed):
    # main before issue 22: 5.7 s at 250 ms, the unsent output (up to 1 MiB, plus the
    # channel's queue) crossing first. Now what waits is about what the path carries
    # in a round trip, and the tty's own flush discards the rest.
    # A flood that does not end by itself (a file would, in the screen modes, before the
    # Ctrl-C: nothing there holds the program up).
    server, gateway, running, path = delayed
    watcher = Watcher(running)
    running.type(b"yes 'some output from a flood'\r")
    assert running.wait_for(lambda: watcher.shows("some output"), timeout=30)
    gevent.sleep(2.0)                                         # two seconds of output, then Ctrl-C
    pressed = time.monotonic()
    running.type(b"\x03echo mark$((6*7))\r")
    assert running.wait_for(lambda: watcher.shows("mark42"), timeout=30)
    took = time.monotonic() - pressed
    assert took < 2.0, f"{took:.2f} s from Ctrl-C to the next command's output"


@pytest.mark.parametrize("delayed", [(mode, 0.25) for mode in MODES], indirect=True,
                         ids=[mode.value for mode in MODES])
def test_a_burst_reaches_the_scrollback_whole(delayed):
    # main before issue 22: 22 of these lines in statesync and datagram (a screenful).
    server, gateway, running, _ = delayed
    running.type(b"seq 1 20000; echo end-$((2+2))\r")
    watcher = Watcher(running)
    assert running.wait_for(lambda: watcher.shows("end-4"), timeout=60)
    gevent.sleep(2.0)                                         # the last lines, after the screen
    verdict = judge_numbers(transcript_lines(running.drain()), 1, 20000)
    assert verdict.once == 20000 and not verdict.repeated and not verdict.out_of_order, verdict
    assert not verdict.markers


@pytest.mark.parametrize("delayed", [(mode, 0.25) for mode in MODES], indirect=True,
                         ids=[mode.value for mode in MODES])
def test_lines_printed_during_an_outage_reach_the_scrollback_once_in_order(delayed):
    server, gateway, running, _ = delayed
    running.type(b"i=1; while [ $i -le 1500 ]; do echo $i; i=$((i+1)); sleep 0.01; done; echo end-$((2+2))\r")
    watcher = Watcher(running)
    assert running.wait_for(lambda: watcher.shows("200"), timeout=30)
    relay = gateway.relay
    gateway.stall_tcp = True                                  # the network gone: TCP too
    relay.block_up = relay.block_down = True                  # 8 s with no UDP at all
    gevent.sleep(8.0)
    relay.block_up = relay.block_down = False
    assert running.wait_for(lambda: watcher.shows("end-4"), timeout=90)
    gevent.sleep(2.0)
    verdict = judge_numbers(transcript_lines(running.drain()), 1, 1500)
    assert verdict.once == 1500 and not verdict.repeated and not verdict.out_of_order, verdict
    assert not verdict.markers
