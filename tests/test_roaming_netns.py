"""Roaming for real: mps and mp on two hosts of the test's own (network namespaces
joined by a veth pair, tests/netns.py), the client's address really replaced.

A keystroke typed after the move must come back within a round trip or so, and
arrive once; a client that loses IPv4 altogether goes on over IPv6."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest

import netns
import sshd
from moshpit.keyfiles import write_key_pair
from moshpit.keys import format_public_key
from moshpit.protocol.handshake import DiffMode
from moshpit.terminal.model import TerminalModel
from pty_driver import PtyProgram
from test_ssh_bootstrap import session_servers

if not netns.available():
    pytest.skip("needs root and iproute2 for network namespaces", allow_module_level=True)


@pytest.fixture
def hosts(tmp_path):
    """The hosts; in the client's, the name ``mpserver`` has both addresses, and
    ``prefer_ipv4()`` makes the resolver give IPv4 first (IPv6 comes first here)."""
    net = netns.TwoHosts()
    etc = Path("/etc/netns") / net.client_ns                  # `ip netns exec` mounts it on /etc
    etc.mkdir(parents=True)
    (etc / "hosts").write_text(f"{net.SERVER4} mpserver\n{net.SERVER6} mpserver\n")
    net.prefer_ipv4 = lambda: (etc / "gai.conf").write_text("precedence ::ffff:0:0/96 100\n")
    yield net
    net.close()
    for name in ("hosts", "gai.conf"):
        (etc / name).unlink(missing_ok=True)
    etc.rmdir()


def start_server(hosts, tmp_path, udp_ports: str, **env: str) -> tuple[subprocess.Popen, int]:
    """A real mps in the server host, on both address families, with ``env`` added."""
    client_key = nacl.signing.SigningKey.generate()
    write_key_pair(tmp_path / ".mp" / "mps_host_ed25519_key", nacl.signing.SigningKey.generate())
    write_key_pair(tmp_path / ".mp" / "id_ed25519", client_key)
    keys = tmp_path / ".mp" / "authorized_keys"
    keys.write_text(format_public_key(bytes(client_key.verify_key)) + "\n")
    proc = subprocess.Popen(hosts.in_server([sys.executable, "-m", "moshpit.cli.mps", "-e", "--bind", "::",
                                             "--port", "0", "--udp-ports", udp_ports]),
                            cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path),
                                                   MOSHPITS_AUTHORIZED_KEYS_FILE=str(keys), **env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = ""
    while "mps: listening" not in line:
        line = proc.stderr.readline()
        assert line, "mps exited before listening"
    return proc, int(re.search(r"port (\d+)", line).group(1))


@pytest.fixture
def server(hosts, tmp_path):
    """A real mps in the server host, on both address families."""
    proc, port = start_server(hosts, tmp_path, "54000-54099")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def start_mp(hosts, home, port, mode, dest):
    env = dict(os.environ, HOME=str(home), TERM="xterm-256color")
    return PtyProgram(hosts.in_client([sys.executable, "-m", "moshpit.cli.mp", "-p", str(port),
                                       "--host-key-check", "accept-new", "--diff-mode", mode.value,
                                       dest]), env=env, cwd=str(home))


def rows_with(program, text: str) -> int:
    terminal = TerminalModel(80, 24)
    terminal.feed(bytes(program.output))
    return sum(text in row for row in terminal.state.text())


def wait_shown(program, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not program.exited():
        program.read(0.02)
        if rows_with(program, text):
            return True
    return bool(rows_with(program, text))


def typed_and_shown(program, n: int, timeout: float = 10.0, typed: bytes | None = None) -> float:
    """Seconds from typing (the rest of) ``echo mark-N-$((6*7))`` to seeing its output."""
    started = time.monotonic()
    program.write(b"echo mark-%d-$((6*7))\r" % n if typed is None else typed)
    assert wait_shown(program, f"mark-{n}-42", timeout), program.output[-400:]
    return time.monotonic() - started


@pytest.mark.parametrize("mode", list(DiffMode))
def test_a_new_address_carries_the_session_on_within_a_round_trip(hosts, server, tmp_path, mode):
    mp = start_mp(hosts, tmp_path, server, mode, hosts.SERVER4)
    try:
        typed_and_shown(mp, 1, timeout=20)
        hosts.readdress(hosts.CLIENT4, "10.77.0.3")          # the laptop moved
        elapsed = typed_and_shown(mp, 2)
        assert elapsed < 1.0, f"{elapsed:.2f} s after the move"
        assert rows_with(mp, "mark-2-42") == 1 and b"Last contact" not in mp.output
        mp.write(b"echo mark-3-")                            # and again, mid-line
        hosts.readdress("10.77.0.3", "10.77.0.4")
        elapsed = typed_and_shown(mp, 3, typed=b"$((6*7))\r")
        assert elapsed < 1.0, f"{elapsed:.2f} s after the second move"
        assert rows_with(mp, "mark-3-42") == 1
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


@pytest.mark.parametrize("first", ["IPv4", "IPv6"])
def test_a_client_that_loses_its_address_family_goes_on_over_the_other(hosts, server, tmp_path, first):
    """The server listens on both; the client's first family disappears entirely. Its
    sends fail for want of a route, so it resumes at once over the server's other
    address (no silence to wait out), and what was typed arrives once."""
    if first == "IPv4":
        hosts.prefer_ipv4()
    mp = start_mp(hosts, tmp_path, server, DiffMode.RELIABLE, "mpserver")
    try:
        typed_and_shown(mp, 1, timeout=20)
        hosts.remove(hosts.CLIENT4 if first == "IPv4" else hosts.CLIENT6)
        elapsed = typed_and_shown(mp, 2, timeout=20)
        assert elapsed < 3.0, f"{elapsed:.2f} s after {first} went"
        assert rows_with(mp, "mark-2-42") == 1
        log = (tmp_path / ".config" / "moshpit" / "logs" / "moshpit.log").read_text()
        assert "no route to the server" in log and "resumed the session" in log
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)


@pytest.fixture
def sshd_in_server(hosts, tmp_path):
    """A real sshd in the server host, on both families (port 22 there), and nothing of
    moshpit running: mp --ssh starts the session's server through it."""
    if not sshd.available():
        pytest.skip("needs sshd and ssh")
    daemon = sshd.Sshd(tmp_path / "sshd", listen=(hosts.SERVER4, hosts.SERVER6), wrap=hosts.in_server([]))
    before = set(session_servers())
    yield daemon
    for name, pid in session_servers().items():     # one still running failed its test: stop it
        if name not in before:
            os.kill(pid, 9)
    daemon.stop()


@pytest.mark.parametrize("first", ["IPv4", "IPv6"])
def test_mp_ssh_that_loses_its_address_family_logs_in_again_through_ssh(hosts, sshd_in_server, tmp_path,
                                                                         first):
    """mp --ssh, the client's first family gone: it resumes by itself through ssh in batch
    mode (asking nothing), over the other family, to the same shell, and what was typed
    arrives once."""
    if first == "IPv4":
        hosts.prefer_ipv4()
    remote = f"{sys.executable} -m moshpit.cli.mps -t {tmp_path}/server.log"
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm-256color")
    mp = PtyProgram(hosts.in_client([sys.executable, "-m", "moshpit.cli.mp",
                                     f"--ssh={sshd_in_server.ssh_command('mpserver')}",
                                     f"--server={remote}", "mpserver"]), env=env, cwd=str(tmp_path))
    try:
        mp.write(b"kept=$((6*7)); echo set-$kept-\r")
        assert wait_shown(mp, "set-42-", 30), mp.output[-600:]
        client = hosts.CLIENT4 if first == "IPv4" else hosts.CLIENT6
        server_log = tmp_path / "server.log"
        assert f"started over ssh from {client}\n" in server_log.read_text()   # the first family
        hosts.remove(hosts.CLIENT4 if first == "IPv4" else hosts.CLIENT6)
        elapsed = typed_and_shown(mp, 2, timeout=30, typed=b"echo mark-2-$kept\r")
        assert elapsed < 5.0, f"{elapsed:.2f} s after {first} went"
        assert rows_with(mp, "mark-2-42") == 1              # the same shell, the line once
        log = (tmp_path / ".config" / "moshpit" / "logs" / "moshpit.log").read_text()
        assert "no route to the server" in log and "resumed the session" in log
        ssh_runs = [line for line in log.splitlines() if "running ssh " in line]
        assert len(ssh_runs) == 2 and "BatchMode=yes" in ssh_runs[1]   # it asked nothing
        assert "resumed session for root" in server_log.read_text()
        mp.write(b"exit\r")                                  # the session ends with its shell
        assert mp.wait(15) == 0
    finally:
        if not mp.exited():
            mp.kill()
