"""Where UDP is blocked: mp and mps on two hosts of the test's own (tests/netns.py), with
nftables in the client's host dropping every UDP datagram, both ways. The session goes
over the key exchange's TCP connection (protocol/streampath.py, transport.py), moves
back to UDP when UDP works again, and to TCP again when it stops, with every keystroke
once. The same through ``mp --ssh`` and a real sshd: the session rides the ssh
connection that started it."""

import os
import shlex
import sys
import time

import pytest

import netns
from moshpit.protocol.handshake import DiffMode
from test_forward_roaming import in_process_server  # noqa: F401
from pty_driver import PtyProgram
from test_roaming_netns import (hosts, rows_with, server, sshd_in_server, start_mp, typed_and_shown,  # noqa: F401
                                wait_shown)

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
ON_SSH = "the session goes over the ssh connection now"
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


# --- mp --ssh: the session rides the ssh connection ---------------------------------

def start_mp_ssh(hosts, home, daemon, mode, *, ssh: str | None = None):
    """mp --ssh through the real sshd in the server's host; ``ssh``: the ssh command, if
    not the plain one (a wrapper around it)."""
    env = dict(os.environ, HOME=str(home), TERM="xterm-256color")
    return PtyProgram(hosts.in_client([sys.executable, "-m", "moshpit.cli.mp", "--diff-mode", mode.value,
                                       f"--ssh={ssh or daemon.ssh_command('mpserver')}",
                                       f"--server={sys.executable} -m moshpit.cli.mps", "mpserver"]),
                      env=env, cwd=str(home))


def end(mp) -> None:
    mp.write(b"\x1e.")
    mp.expect(b"", timeout=2)


@pytest.mark.parametrize("mode, where", WHERE)
def test_mp_ssh_with_udp_blocked_connects_and_echoes_within_5_s(hosts, sshd_in_server, tmp_path, mode, where):  # noqa: F811
    hosts.block_udp(where)
    started = time.monotonic()
    mp = start_mp_ssh(hosts, tmp_path, sshd_in_server, mode)
    try:
        typed_and_shown(mp, 1, timeout=10)
        assert time.monotonic() - started < 5.0
        assert ON_SSH in client_log(tmp_path)
        mp.write(b"seq 1 12 | sed 's/^/line-/'; echo done-$((6*7))\r")
        assert wait_shown(mp, "done-42", 10)
        assert rows_with(mp, "line-12") == 1 and rows_with(mp, "mark-1-42") == 1
    finally:
        end(mp)


def test_mp_ssh_moves_to_udp_when_it_is_allowed_and_back_when_it_is_blocked(hosts, sshd_in_server, tmp_path):  # noqa: F811
    hosts.block_udp("server")
    mp = start_mp_ssh(hosts, tmp_path, sshd_in_server, DiffMode.STATESYNC)
    try:
        typed_and_shown(mp, 1, timeout=10)
        hosts.allow_udp()
        allowed = time.monotonic()
        for n in range(2, 5):                                      # typing on meanwhile
            typed_and_shown(mp, n, timeout=10)
        assert wait_log(tmp_path, ON_UDP, 10 - (time.monotonic() - allowed))
        hosts.block_udp("server")
        assert typed_and_shown(mp, 5, timeout=10) < 3.0
        assert client_log(tmp_path).count(ON_SSH) == 2
        for n in range(1, 6):
            assert rows_with(mp, f"mark-{n}-42") == 1                 # each once
        assert "running ssh" in client_log(tmp_path) and "resumed the session" not in client_log(tmp_path)
    finally:
        end(mp)


@pytest.mark.parametrize("mode", list(DiffMode))
def test_mp_ssh_udp_blocked_mid_session_moves_to_ssh_in_the_middle_of_typing(hosts, sshd_in_server, tmp_path,  # noqa: F811
                                                                            mode):
    mp = start_mp_ssh(hosts, tmp_path, sshd_in_server, mode)
    try:
        typed_and_shown(mp, 1, timeout=20)
        hosts.block_udp("client")
        elapsed = typed_and_shown(mp, 2, timeout=10)
        assert elapsed < 3.0, f"{elapsed:.1f} s"
        assert ON_SSH in client_log(tmp_path)
        typed_and_shown(mp, 3, timeout=5)
        assert rows_with(mp, "mark-2-42") == 1 and rows_with(mp, "mark-3-42") == 1
    finally:
        end(mp)


def test_what_ssh_says_at_login_is_shown_and_what_it_says_later_only_logged(hosts, sshd_in_server, tmp_path):  # noqa: F811
    """The ssh kept for the session writes to stderr before the login (shown, as ssh's
    own warnings are) and during the session (a lost connection): that must not land
    on the screen mp draws in raw mode, but in its log."""
    ssh = sshd_in_server.ssh_command('mpserver') + ' "$@"'
    wrapper = (f'[ "$1" = -G ] && exec {ssh}; '                 # (mp's look-up of the host name)
               f"echo warned-before-login >&2; (sleep 4; echo said-$((6*7))-during-the-session >&2) & exec {ssh}")
    mp = start_mp_ssh(hosts, tmp_path, sshd_in_server, DiffMode.RELIABLE,
                      ssh=shlex.join(["sh", "-c", wrapper, "ssh"]))
    try:
        typed_and_shown(mp, 1, timeout=20)
        assert b"warned-before-login" in mp.output
        assert wait_log(tmp_path, "ssh: said-42-during-the-session", 10)
        typed_and_shown(mp, 2, timeout=5)
        assert b"said-42" not in mp.output
    finally:
        end(mp)


def test_mp_ssh_roaming_while_on_the_ssh_connection_logs_in_again_and_resumes(hosts, sshd_in_server, tmp_path):  # noqa: F811
    """On the ssh connection (UDP blocked), the client's address changes: that connection
    is dead. mp finds the session silent, runs ssh again in batch mode from the new
    address, resumes the same shell and goes on over the new ssh connection."""
    hosts.prefer_ipv4()
    hosts.block_udp("client")
    mp = start_mp_ssh(hosts, tmp_path, sshd_in_server, DiffMode.RELIABLE)
    try:
        mp.write(b"kept=$((6*7)); echo set-$kept-\r")
        assert wait_shown(mp, "set-42-", 20), mp.output[-600:]
        hosts.readdress(hosts.CLIENT4, "10.77.0.3")
        typed_and_shown(mp, 2, timeout=30, typed=b"echo mark-2-$kept\r")     # the same shell
        log = client_log(tmp_path)
        assert "resumed the session" in log and log.count(ON_SSH) >= 2
        ssh_runs = [line for line in log.splitlines() if "running ssh " in line]
        assert len(ssh_runs) == 2 and "BatchMode=yes" in ssh_runs[1]
        assert rows_with(mp, "mark-2-42") == 1
    finally:
        end(mp)


def test_where_udp_goes_out_but_nothing_comes_back_the_session_stays_on_tcp(hosts, server, tmp_path):  # noqa: F811
    """The client's host drops incoming UDP only: its probes reach the server, the
    answers never come back. The session stays on TCP through several probes, never
    claims UDP, and every echo comes back at once. (Where the server would have
    followed a probe to UDP, tests/test_streampath.py shows it in the simulation: here
    each keystroke over TCP brings it back within a round trip anyway.)"""
    hosts.block_udp("client", inbound_only=True)
    mp = start_mp(hosts, tmp_path, server, DiffMode.RELIABLE, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=10)
        slowest = 0.0
        for n in range(2, 25):                       # about 8 s: probes 1 s after the move, then 2, 4, 5...
            slowest = max(slowest, typed_and_shown(mp, n, timeout=10))
            time.sleep(0.3)
        assert slowest < 0.5, f"an echo took {slowest:.2f} s"
        log = client_log(tmp_path)
        assert ON_TCP in log and ON_UDP not in log
        assert rows_with(mp, "mark-24-42") == 1
    finally:
        end(mp)
