"""mps as a real process: it serves a shell, and says clearly why when it cannot."""

import os
import re
import signal
import socket
import subprocess
import sys

import nacl.signing
import pytest

from moshpit.keyfiles import write_key_pair
from moshpit.keys import format_public_key
from test_gevent_server import ShellClient


def start_mps(home, *args):
    # The server reads authorized_keys from the user's passwd home by default; point it here.
    env = dict(os.environ, HOME=str(home),
               MOSHPITS_AUTHORIZED_KEYS_FILE=str(home / ".mp" / "authorized_keys"))
    return subprocess.Popen([sys.executable, "-m", "moshpit.cli.mps", "-e", *args], cwd=home, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def home(tmp_path):
    write_key_pair(tmp_path / ".mp" / "mps_host_ed25519_key", nacl.signing.SigningKey.generate())
    client_key = nacl.signing.SigningKey.generate()
    keys = tmp_path / ".mp" / "authorized_keys"
    keys.write_text(format_public_key(bytes(client_key.verify_key)) + "\n")
    keys.chmod(0o600)
    return tmp_path, client_key


def test_mps_serves_a_shell_and_stops_on_sigterm(home):
    path, key = home
    proc = start_mps(path, "--bind", "127.0.0.1", "--port", "0", "--udp-ports", "53000-53099")
    try:
        line = ""
        while "mps: listening" not in line:
            line = proc.stderr.readline()
            assert line, "mps exited before listening"
        port = int(re.search(r"port (\d+)", line).group(1))
        import pwd
        client = ShellClient(("127.0.0.1", port), key, pwd.getpwuid(os.getuid()).pw_name)
        assert client.params is not None and 53000 <= client.params.udp_port <= 53099
        client.type(b"echo served-by-mps\r")
        assert client.wait_for(lambda: b"served-by-mps" in client.received)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("args, setup, message, code", [
    (["--port", "x"], None, "port has the wrong type", 1),
    (["--bogus"], None, "mps: unknown option --bogus", 2),
    (["-c", "/nonexistent.toml"], None, "/nonexistent.toml: no such file", 1),
    ([], "port-taken", "cannot listen on 127.0.0.1 port", 1),
    ([], "no-key", "no host key at", 1),
    ([], "bad-config", "not valid TOML", 1),
    (["--udp-ports", "9-1"], None, "udp_ports must be LOW-HIGH", 1),
])
def test_mps_errors_are_one_clear_line(home, args, setup, message, code):
    path, _ = home
    if setup == "no-key":
        (path / ".mp" / "mps_host_ed25519_key").unlink()
    if setup == "port-taken":
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = ["--port", str(taken.getsockname()[1])]
    if setup == "bad-config":
        conf = path / ".config" / "moshpits"
        conf.mkdir(parents=True)
        (conf / "moshpits.toml").write_text("port = = 1\n")
    proc = start_mps(path, "--bind", "127.0.0.1", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    assert message in err and "Traceback" not in err
    assert "('127.0.0.1'" not in err                 # no Python tuple for an address
    if setup == "port-taken":
        assert err.strip().endswith("Address already in use")
        taken.close()
