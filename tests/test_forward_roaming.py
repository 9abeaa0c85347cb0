"""Forwarded connections that survive a change of network: mps and mp on two hosts of the
test's own (tests/netns.py), a download through -L and an upload through -R while the
client's address is replaced and then gone for 8 s. Both TCP connections stay open and
the bytes arrive whole, once, never restarted."""

import hashlib
import subprocess
import sys
import textwrap
import time

import pytest

import netns
from test_roaming_netns import (hosts, server, sshd_in_server, start_mp, start_server, typed_and_shown,  # noqa: F401
                               rows_with)

if not netns.available():
    pytest.skip("needs root and iproute2 for network namespaces", allow_module_level=True)

SIZE = 50 << 20
RATE = 4 << 20                  # bytes a second the far end reads: the transfer outlasts the outage

# A file server: SIZE bytes (a seeded stream) to each connection, then close; it prints
# how many connections it had when it is told to stop (stdin closes).
SERVE = textwrap.dedent("""
    import hashlib, random, socket, sys, threading
    size, port = int(sys.argv[1]), int(sys.argv[2])
    data = random.Random(7).randbytes(size)
    sock = socket.create_server(("127.0.0.1", port))
    count = [0]
    def serve():
        while True:
            conn, _ = sock.accept()
            count[0] += 1
            threading.Thread(target=lambda c=conn: (c.sendall(data), c.close()), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    print("connections", count[0], flush=True)
""")

# A slow reader: connects (retrying until the forward listens), reads at RATE, prints
# progress and at the end the size and sha256 of what it read.
FETCH = textwrap.dedent("""
    import hashlib, socket, sys, time
    port, rate = int(sys.argv[1]), int(sys.argv[2])
    deadline = time.monotonic() + 30
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    digest, total, started = hashlib.sha256(), 0, time.monotonic()
    while data := sock.recv(65536):
        digest.update(data)
        total += len(data)
        print("progress", total, flush=True)
        ahead = total / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    print("done", total, digest.hexdigest(), flush=True)
""")


def assert_fetched_whole(fetcher) -> None:
    """The reader finished with every byte of the file server's stream, once."""
    out, _ = fetcher.communicate(timeout=120)
    done = [line for line in out.splitlines() if line.startswith("done")]
    assert done, out[-500:]
    _, size, digest = done[0].split()
    assert int(size) == SIZE and digest == expected_digest()


def expected_digest() -> str:
    import random
    return hashlib.sha256(random.Random(7).randbytes(SIZE)).hexdigest()


def run_python(argv_in_ns, code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(argv_in_ns([sys.executable, "-c", code, *map(str, args)]), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def wait_progress(fetcher, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = fetcher.stdout.readline()
        assert line, "the fetcher ended"
        if line.startswith("progress") and int(line.split()[1]) >= at_least:
            return int(line.split()[1])
        if line.startswith("done"):
            pytest.fail(f"finished before the move: {line}")
    pytest.fail(f"no progress to {at_least} bytes")


@pytest.mark.parametrize("direction, mode", [("-L", "reliable"), ("-R", "reliable"), ("-L", "statesync"),
                                             ("-R", "datagram")])
def test_a_transfer_survives_a_move_and_an_8s_outage(hosts, server, tmp_path, direction, mode):  # noqa: F811
    """-L: the file server is on the server's host, the reader on the client's; -R the
    other way round. The client moves to a new address mid-transfer, then loses its
    address for 8 s, then gets another."""
    transfer_across_a_move_and_an_outage(hosts, server, tmp_path, direction, mode)


def test_a_transfer_survives_the_client_sleeping(hosts, server, tmp_path):  # noqa: F811
    """The laptop's lid closed mid-download: mp stopped (SIGSTOP) for 20 s, the network
    unchanged, then woken. The server's end waits on the window; the reader's
    connection stays open; the bytes go on from where they stopped."""
    import os
    import signal
    files = run_python(hosts.in_server, SERVE, SIZE, 47021)
    assert files.stdout.readline().strip() == "ready"
    mp = start_mp_with(hosts, tmp_path, server, "-L 127.0.0.1:47022:127.0.0.1:47021")
    fetcher = None
    try:
        typed_and_shown(mp, 1, timeout=20)
        fetcher = run_python(hosts.in_client, FETCH, 47022, RATE)
        wait_progress(fetcher, 8 << 20, timeout=60)
        os.kill(mp.pid, signal.SIGSTOP)
        time.sleep(20)
        os.kill(mp.pid, signal.SIGCONT)
        typed_and_shown(mp, 2, timeout=20)
        assert_fetched_whole(fetcher)
    finally:
        connections = wind_up(mp, fetcher, files)
    assert "connections 1" in connections


@pytest.fixture
def in_process_server(hosts, tmp_path):  # noqa: F811
    """As test_roaming_netns's ``server``, with every session inside mps."""
    proc, port = start_server(hosts, tmp_path, "54100-54199", MOSHPITS_SESSION_PROCESSES="false")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_a_transfer_survives_a_move_and_an_outage_with_sessions_in_process(hosts, in_process_server, tmp_path):  # noqa: F811
    transfer_across_a_move_and_an_outage(hosts, in_process_server, tmp_path, "-L", "reliable")


@pytest.mark.parametrize("direction, mode", [("-L", "reliable"), ("-R", "statesync")])
def test_an_mp_ssh_transfer_survives_a_move_and_an_outage(hosts, sshd_in_server, tmp_path, direction, mode):  # noqa: F811
    """The same through mp --ssh: the session's server started by a real sshd in the
    server's host, which is gone once the session runs; the forwards are the session's."""
    transfer_across_a_move_and_an_outage(hosts, None, tmp_path, direction, mode, ssh=sshd_in_server)


def transfer_across_a_move_and_an_outage(hosts, server, tmp_path, direction, mode, ssh=None):  # noqa: F811
    """``server``: mps's port, or with ``ssh`` (an Sshd in the server's host) none: mp --ssh."""
    file_port, listen_port = 47001, 47002
    if direction == "-L":
        files = run_python(hosts.in_server, SERVE, SIZE, file_port)
        spec = f"-L 127.0.0.1:{listen_port}:127.0.0.1:{file_port}"
        reader_side = hosts.in_client
    else:
        files = run_python(hosts.in_client, SERVE, SIZE, file_port)
        spec = f"-R 127.0.0.1:{listen_port}:127.0.0.1:{file_port}"
        reader_side = hosts.in_server
    assert files.stdout.readline().strip() == "ready"
    if ssh is None:
        mp = start_mp_with(hosts, tmp_path, server, f"--diff-mode {mode} {spec}")
    else:
        mp = start_mp_with(hosts, tmp_path, None, ["--diff-mode", mode, *spec.split(),
                                                   f"--ssh={ssh.ssh_command('mpserver')}",
                                                   f"--server={sys.executable} -m moshpit.cli.mps"], dest="mpserver")
    fetcher = None
    try:
        typed_and_shown(mp, 1, timeout=20)
        fetcher = run_python(reader_side, FETCH, listen_port, RATE)
        wait_progress(fetcher, 8 << 20, timeout=60)
        hosts.readdress(hosts.CLIENT4, "10.77.0.3")             # the laptop moved...
        typed_and_shown(mp, 2, timeout=20)
        moved_at = wait_progress(fetcher, 16 << 20, timeout=60)
        hosts.remove("10.77.0.3")                               # ...then lost the network
        time.sleep(8)
        subprocess.run(["ip", "-n", hosts.client_ns, "addr", "add", "10.77.0.4/24", "dev", hosts.client_if],
                       check=True)
        typed_and_shown(mp, 3, timeout=40)                      # the session is back
        assert_fetched_whole(fetcher)
        assert moved_at < SIZE
        assert rows_with(mp, "mark-3-42") == 1                  # typed once, shown once
    finally:
        connections = wind_up(mp, fetcher, files)
    assert "connections 1" in connections                       # never restarted


def test_a_transfer_goes_on_over_a_resumed_connection(hosts, server, tmp_path):  # noqa: F811
    """The client loses IPv4 altogether mid-download: it resumes the session over IPv6 with
    a new key exchange, a new channel; the stream carries on from what each side says it
    received (the old channel's bytes in flight are sent again, none twice)."""
    hosts.prefer_ipv4()
    files = run_python(hosts.in_server, SERVE, SIZE, 47011)
    assert files.stdout.readline().strip() == "ready"
    mp = start_mp_with(hosts, tmp_path, server, "-L 127.0.0.1:47012:127.0.0.1:47011", dest="mpserver")
    fetcher = None
    try:
        typed_and_shown(mp, 1, timeout=20)
        fetcher = run_python(hosts.in_client, FETCH, 47012, RATE)
        wait_progress(fetcher, 12 << 20, timeout=60)
        hosts.remove(hosts.CLIENT4)
        typed_and_shown(mp, 2, timeout=30)
        assert_fetched_whole(fetcher)
        log = (tmp_path / ".config" / "moshpit" / "logs" / "moshpit.log").read_text()
        assert "resumed the session" in log                     # a new channel carried it
    finally:
        connections = wind_up(mp, fetcher, files)
    assert "connections 1" in connections


def wind_up(mp, fetcher, files) -> str:
    """Stop the reader, end the session, stop the file server; what it says of its connections."""
    if fetcher is not None and fetcher.poll() is None:
        fetcher.kill()
    mp.write(b"\x1e.")
    mp.expect(b"", timeout=2)
    files.stdin.close()
    connections = files.stdout.read()
    files.wait(10)
    return connections


def start_mp_with(hosts, home, port, spec, dest=None):  # noqa: F811
    import os
    from pty_driver import PtyProgram
    env = dict(os.environ, HOME=str(home), TERM="xterm-256color")
    port_args = [] if port is None else ["-p", str(port), "--host-key-check", "accept-new"]
    args = spec.split() if isinstance(spec, str) else spec
    return PtyProgram(hosts.in_client([sys.executable, "-m", "moshpit.cli.mp", *port_args,
                                       *args, dest or hosts.SERVER4]),
                      env=env, cwd=str(home))


def test_the_forwarded_agent_answers_after_a_move(hosts, server, tmp_path):  # noqa: F811
    """A real ssh-agent on the client's host; in the remote shell ``ssh-add -l`` lists its
    key before and after the client's address is replaced."""
    import os
    import re
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True, text=True).stdout
    agent_pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "roaming-key", "-f",
                    str(tmp_path / "key")], check=True)
    subprocess.run(["ssh-add", "-q", str(tmp_path / "key")], check=True, env=dict(os.environ, SSH_AUTH_SOCK=str(sock)))
    from pty_driver import PtyProgram
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm-256color", SSH_AUTH_SOCK=str(sock))
    mp = PtyProgram(hosts.in_client([sys.executable, "-m", "moshpit.cli.mp", "-p", str(server), "-A",
                                     "--host-key-check", "accept-new", hosts.SERVER4]), env=env, cwd=str(tmp_path))
    try:
        typed_and_shown(mp, 1, timeout=20)
        mp.write(b"ssh-add -l | sed 's/^/agent-says: /'\r")
        assert mp.expect(b"roaming-key", timeout=20)
        hosts.readdress(hosts.CLIENT4, "10.77.0.3")
        typed_and_shown(mp, 2, timeout=20)
        mp.output.clear()
        mp.write(b"ssh-add -l | sed 's/^/after-move: /'\r")
        assert mp.expect(b"roaming-key", timeout=20)
    finally:
        mp.write(b"\x1e.")
        mp.expect(b"", timeout=2)
        os.kill(agent_pid, 15)
