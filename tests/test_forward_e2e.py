"""mp -L, -R, -D and -A as a person uses them: mp typed into a real terminal, a real mps,
real sockets at both ends, a real ssh-agent and sshd for the agent."""

import hashlib
import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

import sshd
from test_mp import MP, Shell, mps  # noqa: F401  (mps is a fixture)

FILE_SIZE = 8 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """A TCP server on loopback answering each connection with ``handle`` in a thread;
    counts connections."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            self.handle(conn)

    def handle(self, conn) -> None:
        raise NotImplementedError

    def close(self):
        self.sock.close()


class FileServer(ThreadedServer):
    """Sends ``data`` to each connection, then closes."""

    def __init__(self, data: bytes):
        self.data = data
        super().__init__()

    def handle(self, conn):
        conn.sendall(self.data)


class EchoServer(ThreadedServer):
    """Echoes each connection's bytes back, upper-cased, until it half-closes."""

    def handle(self, conn):
        while data := conn.recv(65536):
            conn.sendall(data.upper())


def dial(port: int, timeout: float = 60.0) -> socket.socket:
    """A connection to a forward's listener, once it listens (mp makes it as it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def fetch(port: int, timeout: float = 60.0, send: bytes = b"") -> bytes:
    with dial(port, timeout) as sock:
        if send:
            sock.sendall(send)
            sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while data := sock.recv(1 << 16):
            got += data
        return bytes(got)


@pytest.fixture
def shell(tmp_path):
    terminal = Shell(tmp_path)
    yield terminal
    terminal.kill()


def start_server(tmp_path, udp_ports: str, *args: str, **env: str) -> tuple[subprocess.Popen, int]:
    """A real mps on loopback for this home (keys made here), with ``env`` added."""
    import sys
    import nacl.signing
    from moshpit.keyfiles import write_key_pair
    from moshpit.keys import format_public_key
    host_key, client_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    write_key_pair(tmp_path / ".mp" / "mps_host_ed25519_key", host_key)
    write_key_pair(tmp_path / ".mp" / "id_ed25519", client_key)
    (tmp_path / ".mp" / "authorized_keys").write_text(format_public_key(bytes(client_key.verify_key)) + "\n")
    full_env = dict(os.environ, HOME=str(tmp_path), MOSHPITS_CONTROL_SOCKET=str(tmp_path / "mps.ctl"),
                    MOSHPITS_AUTHORIZED_KEYS_FILE=str(tmp_path / ".mp" / "authorized_keys"), **env)
    server = subprocess.Popen([sys.executable, "-m", "moshpit.cli.mps", "-e", *args, "--bind", "127.0.0.1",
                               "--port", "0", "--udp-ports", udp_ports], cwd=tmp_path, env=full_env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ""
    while "mps: listening" not in line:
        line = server.stderr.readline()
        assert line, "mps exited before listening"
    return server, int(re.search(r"port (\d+)", line).group(1))


@pytest.fixture(params=["processes", "in-process"])
def any_mps(request, tmp_path):
    """A real mps with sessions in processes of their own (its default) or in-process."""
    server, port = start_server(tmp_path, "53500-53599",
                                MOSHPITS_SESSION_PROCESSES="true" if request.param == "processes" else "false")
    yield port
    server.terminate()
    server.wait(10)


MODES = ["reliable", "datagram", "statesync"]


def connect(shell, port, *flags):
    shell.type(f"{MP} --host-key-check accept-new -p {port} {' '.join(flags)} 127.0.0.1\r")
    shell.type("echo in-$((3*3))\r")
    assert shell.expect(b"in-9", timeout=30)


@pytest.mark.parametrize("mode", MODES)
def test_local_forward_fetches_a_file_exactly_while_typing_works(shell, any_mps, mode):
    data = os.urandom(FILE_SIZE)
    files = FileServer(data)
    local = free_port()
    try:
        connect(shell, any_mps, f"--diff-mode {mode} -L {local}:127.0.0.1:{files.port}")
        got = fetch(local)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        assert files.connections == 1
        shell.type("echo after-$((2*5))\r")
        assert shell.expect(b"after-10")
        shell.type("exit\r")
        assert shell.expect(b"mp: shell exited with status 0")
    finally:
        files.close()


def test_local_forward_carries_both_ways_with_half_close(shell, mps):  # noqa: F811
    port, _, _ = mps
    echo = EchoServer()
    local = free_port()
    try:
        connect(shell, port, f"-L {local}:127.0.0.1:{echo.port}")
        payload = os.urandom(300_000).hex().encode()
        results = [None, None]

        def run(i):
            results[i] = fetch(local, send=payload)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [payload.upper()] * 2
    finally:
        echo.close()


@pytest.mark.parametrize("mode", MODES)
def test_remote_forward_serves_from_the_client_side(shell, any_mps, mode):
    data = os.urandom(FILE_SIZE // 4)
    files = FileServer(data)
    remote = free_port()
    try:
        connect(shell, any_mps, f"--diff-mode {mode} -R {remote}:127.0.0.1:{files.port}")
        got = fetch(remote)                           # the server's listener, the client's file
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    finally:
        files.close()


def test_remote_forward_to_port_zero_reports_the_port_the_server_chose(shell, mps):  # noqa: F811
    """-R 0:host:port, twice: each listener gets a port of the system's choosing, told
    as ssh tells it, and each serves its own target."""
    import re
    port, _, _ = mps
    first, second = os.urandom(50_000), os.urandom(60_000)
    servers = [FileServer(first), FileServer(second)]
    try:
        connect(shell, port, *(f"-R 0:127.0.0.1:{files.port}" for files in servers))
        told = {int(target): int(chosen) for chosen, target in re.findall(
            rb"Allocated port (\d+) for remote forward to 127\.0\.0\.1:(\d+)", bytes(shell.output))}
        assert set(told) == {files.port for files in servers}
        assert 0 not in told.values() and len(set(told.values())) == 2
        assert fetch(told[servers[0].port]) == first
        assert fetch(told[servers[1].port]) == second
    finally:
        for files in servers:
            files.close()


def test_remote_listeners_past_the_cap_are_refused_and_the_rest_work(shell, mps):  # noqa: F811
    from moshpit.gevent.forward import MAX_LISTENERS
    port, _, _ = mps
    connect(shell, port, *["-R 0:127.0.0.1:9"] * (MAX_LISTENERS + 1))
    assert shell.expect(b"too many -R listeners in one session", timeout=10)
    assert bytes(shell.output).count(b"Allocated port") == MAX_LISTENERS
    shell.type("echo still-$((4*4))\r")
    assert shell.expect(b"still-16")


def test_dynamic_forward_is_a_socks_proxy(shell, mps):  # noqa: F811
    port, _, _ = mps
    data = os.urandom(100_000)
    files = FileServer(data)
    local = free_port()
    try:
        connect(shell, port, f"-D {local}")
        with dial(local) as sock:
            sock.sendall(b"\x05\x01\x00")
            assert sock.recv(2) == b"\x05\x00"
            sock.sendall(b"\x05\x01\x00\x03\x09localhost" + struct.pack("!H", files.port))
            reply = b""
            while len(reply) < 10:
                reply += sock.recv(10 - len(reply))
            assert reply[:2] == b"\x05\x00"
            got = bytearray()
            while chunk := sock.recv(65536):
                got += chunk
        assert bytes(got) == data
    finally:
        files.close()


@pytest.fixture
def strict_mps(tmp_path):
    """An mps whose configuration allows -L only to port 1 and no listener off loopback."""
    (tmp_path / "mps.toml").write_text('permit_open = ["127.0.0.1:1"]\n')
    server, port = start_server(tmp_path, "53400-53499", "-c", str(tmp_path / "mps.toml"))
    yield port
    server.terminate()
    server.wait(10)


def test_a_forward_the_server_forbids_is_one_line_and_the_session_goes_on(shell, strict_mps):
    files = FileServer(b"secret")
    local, remote = free_port(), free_port()
    try:
        connect(shell, strict_mps, f"-L {local}:127.0.0.1:{files.port}", f"-R 0.0.0.0:{remote}:127.0.0.1:1")
        assert shell.expect(b"needs gateway_ports on the server")
        assert fetch(local) == b""                     # refused: closed at once, nothing sent
        assert shell.expect(b"not in the server's permit_open")
        assert files.connections == 0
        shell.type("echo still-$((4*4))\r")
        assert shell.expect(b"still-16")
    finally:
        files.close()


@pytest.fixture(scope="module")
def real_sshd(tmp_path_factory):
    if not sshd.available():
        pytest.skip("needs root, sshd and ssh")
    daemon = sshd.Sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


@pytest.fixture
def agent(tmp_path, real_sshd):
    """A real ssh-agent holding the key the sshd takes; the environment that names it."""
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True, text=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))
    env = {"SSH_AUTH_SOCK": str(sock)}
    subprocess.run(["ssh-add", "-q", str(real_sshd.dir / "client_key")], check=True, env=dict(os.environ, **env))
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(real_sshd.dir / "client_key.pub")], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    yield env, fingerprint
    os.kill(pid, 15)


def ssh_through_the_agent(real_sshd) -> str:
    """What the person types in the remote shell: ssh with no key of its own."""
    real_sshd.ssh_command()                            # (writes its known_hosts)
    return (f"ssh -F none -p {real_sshd.port} -o BatchMode=yes -o StrictHostKeyChecking=yes "
            f"-o UserKnownHostsFile={real_sshd.dir / 'known_hosts'} root@127.0.0.1 echo via-agent-$((6*7))\r")


def check_the_forwarded_agent(shell, real_sshd, fingerprint):
    shell.output.clear()
    shell.type("ssh-add -l; echo \"sock=$SSH_AUTH_SOCK dir=$(stat -c %a $(dirname $SSH_AUTH_SOCK))\"\r")
    assert shell.expect(fingerprint.encode(), timeout=20)
    shell.expect_re(rb"dir=\d+")
    # what the person reads (the screen modes draw with cursor moves, not line breaks)
    found = re.search(r"sock=(\S+) dir=(\d+)", "\n".join(shell.screen()))
    assert found and found.group(2) == "700", shell.screen()
    shell.output.clear()
    shell.type(ssh_through_the_agent(real_sshd))
    assert shell.expect(b"via-agent-42", timeout=30)
    return found.group(1)


@pytest.mark.parametrize("mode", MODES)
def test_agent_forwarding_logs_in_to_a_real_sshd(tmp_path, any_mps, real_sshd, agent, mode):
    env, fingerprint = agent
    shell = Shell(tmp_path, **env)
    try:
        connect(shell, any_mps, f"--diff-mode {mode} -A")
        remote_sock = check_the_forwarded_agent(shell, real_sshd, fingerprint)
        assert remote_sock != env["SSH_AUTH_SOCK"].encode()
    finally:
        shell.kill()


def test_agent_forwarding_with_mp_ssh(tmp_path, real_sshd, agent):
    env, fingerprint = agent
    shell = Shell(tmp_path, **env)
    try:
        remote = f"{MP.replace('moshpit.cli.mp', 'moshpit.cli.mps')} -t {tmp_path}/server.log"
        shell.type(f"{MP} --ssh='{real_sshd.ssh_command()}' --server='{remote}' -A root@127.0.0.1\r")
        shell.type("echo in-$((3*3))\r")
        assert shell.expect(b"in-9", timeout=30)
        check_the_forwarded_agent(shell, real_sshd, fingerprint)
        shell.type("exit\r")
        assert shell.expect(b"mp: shell exited with status 0")
    finally:
        shell.kill()


def test_without_minus_a_the_remote_shell_has_no_agent(shell, mps):  # noqa: F811
    port, _, _ = mps
    connect(shell, port)
    shell.output.clear()
    shell.type("echo agent=[$SSH_AUTH_SOCK]\r")
    assert shell.expect(b"agent=[]")


def test_a_far_end_that_never_reads_stalls_neither_the_terminal_nor_memory(shell, mps):  # noqa: F811
    """The target accepts and never reads; the local application writes as fast as it can.
    Flow control stops it after a bounded amount (the kernel's buffers at three sockets,
    the stream's window and send buffer), and typing goes on meanwhile."""
    port, _, _ = mps
    sink = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(sink.accept()), daemon=True).start()
    local = free_port()
    connect(shell, port, f"-L {local}:127.0.0.1:{sink.getsockname()[1]}")
    app = dial(local)
    app.setblocking(False)
    written, chunk = 0, bytes(1 << 16)
    stalled_since = None
    while written < 200 << 20:
        try:
            written += app.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 3:
                break                                  # nothing taken for 3 s: held back
            time.sleep(0.05)
    print(f"taken before the stall: {written} bytes")
    assert written < 32 << 20, f"{written} bytes taken by a connection nobody reads"
    shell.output.clear()
    shell.type("echo typing-$((7*6))\r")
    assert shell.expect(b"typing-42", timeout=5)
    app.close()
    sink.close()


@pytest.mark.parametrize("mode", MODES)
def test_forwarding_through_mp_ssh(tmp_path, real_sshd, mode):
    """mp --ssh: -L and -R through a session that ssh started."""
    data = os.urandom(FILE_SIZE // 4)
    files = FileServer(data)
    local, remote = free_port(), free_port()
    shell = Shell(tmp_path)
    try:
        server = f"{MP.replace('moshpit.cli.mp', 'moshpit.cli.mps')} -t {tmp_path}/server.log"
        shell.type(f"{MP} --ssh='{real_sshd.ssh_command()}' --server='{server}' --diff-mode {mode} "
                   f"-L {local}:127.0.0.1:{files.port} -R {remote}:127.0.0.1:{files.port} root@127.0.0.1\r")
        shell.type("echo in-$((3*3))\r")
        assert shell.expect(b"in-9", timeout=30)
        assert hashlib.sha256(fetch(local)).digest() == hashlib.sha256(data).digest()
        assert hashlib.sha256(fetch(remote)).digest() == hashlib.sha256(data).digest()
        shell.type("exit\r")
        assert shell.expect(b"mp: shell exited with status 0")
    finally:
        shell.kill()
        files.close()
