"""mps as a real process: it serves a shell, and says clearly why when it cannot."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import nacl.signing
import pytest

from moshpit.keyfiles import write_key_pair
from moshpit.keys import format_public_key
from test_gevent_server import ShellClient


def start_mps(home, *args):
    # The server reads authorized_keys from the user's passwd home by default; point it here.
    env = dict(os.environ, HOME=str(home),
               MOSHPITS_AUTHORIZED_KEYS_FILE=str(home / ".mp" / "authorized_keys"),
               MOSHPITS_CONTROL_SOCKET=str(home / "mps.ctl"))
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


def test_check_config_says_what_would_be_served_and_exits(home, tmp_path):
    from moshpit.keyfiles import read_private_key
    from moshpit.keys import fingerprint
    path, _ = home
    good = start_mps(path, "--check-config", "--port", "4711", "--udp-ports", "53000-53099")
    out, err = good.communicate(timeout=30)
    host = read_private_key(path / ".mp" / "mps_host_ed25519_key")
    assert good.returncode == 0, err
    assert "configuration good" in out and "port 4711" in out and "UDP 53000-53099" in out
    assert fingerprint(bytes(host.verify_key)) in out
    bad = tmp_path / "bad.toml"
    bad.write_text('udp_ports = "60000-50000"\n')
    refused = start_mps(path, "--check-config", "-c", str(bad))
    out, err = refused.communicate(timeout=30)
    assert refused.returncode == 1 and err.startswith("mps: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and "udp_ports" in err


def test_under_the_journal_log_lines_carry_no_timestamp_of_their_own(home):
    """systemd connects stderr to the journal and says so in JOURNAL_STREAM (device:inode)."""
    path, _ = home
    read_end, write_end = os.pipe()
    stat = os.fstat(write_end)
    env = dict(os.environ, HOME=str(path), JOURNAL_STREAM=f"{stat.st_dev}:{stat.st_ino}",
               MOSHPITS_AUTHORIZED_KEYS_FILE=str(path / ".mp" / "authorized_keys"),
               MOSHPITS_CONTROL_SOCKET=str(path / "mps.ctl"))
    proc = subprocess.Popen([sys.executable, "-m", "moshpit.cli.mps", "-e", "--bind", "127.0.0.1", "--port", "0",
                             "--udp-ports", "53100-53199"], cwd=path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=write_end)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as stderr:
            lines = []
            while not any("mps: listening" in line for line in lines):
                lines.append(stderr.readline())
                assert lines[-1], lines
            logged = [line for line in lines if "moshpit.server" in line]
            assert logged and all(line.startswith("moshpit.server INFO ") for line in logged), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def mps_sessions(home) -> str:
    """Our mps's listing, and only its: the sessions mp --ssh started on this machine
    (another test's, a person's) are looked for under another TMPDIR."""
    (home / "tmp").mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mps", "sessions"], capture_output=True, text=True,
                            env=dict(os.environ, MOSHPITS_CONTROL_SOCKET=str(home / "mps.ctl"),
                                     TMPDIR=str(home / "tmp")), timeout=20)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("processes", ["true", "false"])
def test_mps_sessions_lists_sessions_and_a_new_login_hears_of_a_detached_one(home, processes):
    """Each session: user, shell, age, attached or detached, the client's last address. A
    session in a process of its own is asked over its link; one in-process directly."""
    import pwd
    import gevent
    path, key = home
    os.environ["MOSHPITS_SESSION_PROCESSES"] = processes
    try:
        proc = start_mps(path, "--bind", "127.0.0.1", "--port", "0", "--udp-ports", "53100-53199")
    finally:
        del os.environ["MOSHPITS_SESSION_PROCESSES"]
    try:
        line = ""
        while "mps: listening" not in line:
            line = proc.stderr.readline()
            assert line, "mps exited before listening"
        port = int(re.search(r"port (\d+)", line).group(1))
        user = pwd.getpwuid(os.getuid()).pw_name
        assert mps_sessions(path).strip() == "no sessions"
        first = ShellClient(("127.0.0.1", port), key, user)
        first.type(b"echo shell=$$.\r")
        assert first.wait_for(lambda: re.search(rb"shell=\d+\.", first.received))
        shell_pid = re.search(rb"shell=(\d+)\.", first.received).group(1).decode()
        rows = mps_sessions(path).splitlines()
        assert rows[0].split() == ["USER", "SHELL", "TTY", "AGE", "STATE", "LAST", "ADDRESS", "VIA"]
        row = rows[1].split()
        assert row[0] == user and row[1] == shell_pid and row[2].startswith("pts/")
        assert row[4] == "attached" and row[5].startswith("127.0.0.1:") and row[6] == "mps"
        first.close()                                  # the client goes away without a word
        deadline = time.monotonic() + 20
        while "detached" not in mps_sessions(path):
            assert time.monotonic() < deadline
            gevent.sleep(0.5)
        second = ShellClient(("127.0.0.1", port), key, user)
        assert second.wait_for(lambda: b"you have a detached session on this server" in second.received)
        assert len(mps_sessions(path).splitlines()) == 3
        second.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not (path / "mps.ctl").exists()


def test_mps_sessions_says_a_server_that_does_not_answer_is_busy_never_that_there_are_none(tmp_path):
    from moshpit import rundir
    silent = rundir.bind_unix(tmp_path / "mps.ctl")            # listening, never answering
    (tmp_path / "tmp").mkdir()
    try:
        result = subprocess.run([sys.executable, "-m", "moshpit.cli.mps", "sessions"], capture_output=True,
                                text=True, env=dict(os.environ, MOSHPITS_CONTROL_SOCKET=str(tmp_path / "mps.ctl"),
                                                    TMPDIR=str(tmp_path / "tmp")), timeout=30)
    finally:
        silent.close()
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr.strip() == (f"mps: the server at {tmp_path / 'mps.ctl'} is busy and did not answer; "
                                     "its sessions are not listed")
