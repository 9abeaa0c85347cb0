"""The real client following its path: a NAT that rebinds, a NAT mapping that is stuck.

The client runs unmodified behind a Gateway (tests/relay.py): its UDP goes through
a relay that plays the NAT. Address changes on a real interface are in
test_roaming_netns.py."""

import time

import pytest

from moshpit.protocol.handshake import DiffMode
from test_reconnect import behind_gateway  # noqa: F401  (the fixture)

MODES = list(DiffMode)


def shown_once(running, text: str) -> bool:
    """``text`` is on the user's terminal, on exactly one row."""
    from moshpit.terminal.model import TerminalModel
    terminal = TerminalModel(80, 24)
    terminal.feed(bytes(running.output))
    return sum(text in row for row in terminal.state.text()) == 1


def ready(running):
    running.type(b"echo ready-$((6*7))\r")
    assert running.wait_for(lambda: running.shows("ready-42"))


@pytest.mark.parametrize("behind_gateway", MODES, indirect=True)
def test_a_nat_rebinding_is_followed_within_a_round_trip_of_the_next_keystroke(behind_gateway):
    server, gateway, running = behind_gateway
    ready(running)
    old = next(iter(server.sessions.values())).channel.peer_addr
    gateway.relay.roam()                                  # the NAT rebooted: a new outside port
    started = time.monotonic()
    running.type(b"echo after-$((6*7))\r")
    assert running.wait_for(lambda: running.shows("after-42"), timeout=10)
    elapsed = time.monotonic() - started
    assert next(iter(server.sessions.values())).channel.peer_addr != old
    assert shown_once(running, "after-42") and running.client.reconnects == 0
    assert elapsed < 1.0, f"{elapsed:.2f} s"              # loopback: a round trip is microseconds


@pytest.mark.parametrize("behind_gateway", MODES, indirect=True)
def test_a_stuck_nat_mapping_is_left_for_a_new_source_port_without_a_reconnect(behind_gateway):
    """Nothing passes for the client's address and port any more. Typing, it hears no
    answer for about two RTOs (at least 1 s) and moves to a new socket: the keystrokes
    arrive once, with no key exchange and no status bar."""
    server, gateway, running = behind_gateway
    ready(running)
    gateway.relay.kill_mapping()
    started = time.monotonic()
    running.type(b"echo hop-$((6*7))\r")
    assert running.wait_for(lambda: running.shows("hop-42"), timeout=10)
    elapsed = time.monotonic() - started
    assert running.client.channel.stats["path_moves"] >= 1
    assert running.client.reconnects == 0 and b"Last contact" not in running.output
    assert shown_once(running, "hop-42")
    assert elapsed < 3.0, f"{elapsed:.2f} s"
