"""Where UDP is blocked: mp and mps on two hosts of the test's own (tests/netns.py), with
nftables in the client's host dropping every UDP datagram, both ways. The session goes
over the key exchange's TCP connection (protocol/streampath.py, transport.py), moves
back to UDP when UDP works again, and to TCP again when it stops, with every keystroke
once."""

import time

import pytest

import netns
from moshpit.protocol.handshake import DiffMode
from test_forward_roaming import in_process_server  # noqa: F401
from test_roaming_netns import hosts, rows_with, server, start_mp, typed_and_shown, wait_shown  # noqa: F401

if not netns.firewall_available():
    pytest.skip("needs root, iproute2 and nftables", allow_module_level=True)


def client_log(home) -> str:
    return (home / ".config" / "moshpit" / "logs" / "moshpit.log").read_text()


def wait_log(home, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in client_log(home):
            return True
        time.sleep(0.1)
    return False


ON_TCP = "the session goes over TCP now"
ON_UDP = "the session goes over UDP now"


WHERE = [(mode, "client") for mode in DiffMode] + [(DiffMode.RELIABLE, "server")]


@pytest.mark.parametrize("mode, where", WHERE)
def test_with_udp_blocked_mp_connects_and_echoes_within_5_s(hosts, server, tmp_path, mode, where):  # noqa: F811
    """``where``: the firewall in the client's host (sends fail) or the server's (silence)."""
    hosts.block_udp(where)
    started = time.monotonic()
    mp = start_mp(hosts, tmp_path, server, mode, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        assert time.monotonic() - started < 5.0
        assert ON_TCP in client_log(tmp_path)
        mp.write(b"seq 1 12 | sed 's/^/line-/'; echo done-$((6*7))\r")   # output, not only echoes
        assert wait_shown(mp, "done-42", 10)
        assert rows_with(mp, "line-12") == 1 and rows_with(mp, "mark-1-42") == 1
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


@pytest.mark.parametrize("where", ["client", "server"])
def test_udp_allowed_again_takes_the_session_back_within_10_s(hosts, server, tmp_path, where):  # noqa: F811
    hosts.block_udp(where)
    mp = start_mp(hosts, tmp_path, server, DiffMode.RELIABLE, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        hosts.allow_udp()
        allowed = time.monotonic()
        for n in range(2, 6):                                      # typing on meanwhile
            typed_and_shown(mp, n, timeout=10)
        assert wait_log(tmp_path, ON_UDP, 10 - (time.monotonic() - allowed))
        typed_and_shown(mp, 6, timeout=5)
        for n in range(1, 7):
            assert rows_with(mp, f"mark-{n}-42") == 1                 # each once
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


@pytest.mark.parametrize("mode, where", WHERE + [(DiffMode.STATESYNC, "server")])
def test_udp_blocked_mid_session_moves_to_tcp_in_the_middle_of_typing(hosts, server, tmp_path, mode, where):  # noqa: F811
    mp = start_mp(hosts, tmp_path, server, mode, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        hosts.block_udp(where)
        elapsed = typed_and_shown(mp, 2, timeout=10)
        assert elapsed < 3.0, f"{elapsed:.1f} s"
        assert ON_TCP in client_log(tmp_path)
        typed_and_shown(mp, 3, timeout=5)
        assert rows_with(mp, "mark-2-42") == 1 and rows_with(mp, "mark-3-42") == 1
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


def test_sessions_in_process_go_over_tcp_too(hosts, in_process_server, tmp_path):  # noqa: F811
    mp = start_mp(hosts, tmp_path, in_process_server, DiffMode.STATESYNC, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        hosts.block_udp("server")
        assert typed_and_shown(mp, 2, timeout=10) < 3.0
        assert ON_TCP in client_log(tmp_path)
        assert rows_with(mp, "mark-2-42") == 1
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


def test_roaming_while_on_tcp_reconnects_and_resumes(hosts, server, tmp_path):  # noqa: F811
    """On TCP (UDP blocked), the client's address changes: that TCP connection is dead
    (its address is gone); the client finds the session silent, runs a new key
    exchange from the new address, resumes, and goes on over its new connection."""
    hosts.block_udp("client")
    mp = start_mp(hosts, tmp_path, server, DiffMode.RELIABLE, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        hosts.readdress(hosts.CLIENT4, "10.77.0.3")
        typed_and_shown(mp, 2, timeout=30)
        log = client_log(tmp_path)
        assert "resumed the session" in log and log.count(ON_TCP) >= 2
        assert rows_with(mp, "mark-2-42") == 1
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)
