"""mp as a person uses it: on a real terminal, against a real server."""

import os
import sys

import pytest

from pty_driver import PtyProgram


@pytest.fixture
def local(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm-256color", PS1="$ ")
    program = PtyProgram([sys.executable, "-m", "moshpit.cli.mp", "--local"], env=env, cwd=str(tmp_path))
    yield program
    program.kill()


def test_mp_local_runs_commands_and_exits_with_the_shell(local):
    assert local.expect(b"known hosts")                        # the first-use notice
    local.write(b"echo hi-$((40+2))\r")
    assert local.expect(b"hi-42")
    local.write(b"exit\r")
    assert local.wait() == 0
    assert b"shell exited with status 0" in local.output


def test_escape_key_quits(local):
    assert local.expect(b"known hosts")
    local.write(b"echo ready\r")
    assert local.expect(b"ready")
    local.write(b"\x1e.")
    assert local.wait() == 0


@pytest.mark.parametrize("args, message, code", [
    (["nosuchhost.invalid"], "no identity key at", 1),
    (["--diff-mode", "fast", "--local"], "diff_mode must be one of", 1),
    ([], "say where to connect", 2),
    (["--frobnicate"], "Usage:", 2),
])
def test_mp_errors_are_one_clear_line(tmp_path, args, message, code):
    env = dict(os.environ, HOME=str(tmp_path))
    program = PtyProgram([sys.executable, "-m", "moshpit.cli.mp", *args], env=env, cwd=str(tmp_path))
    try:
        assert program.wait() == code
        text = program.output.decode(errors="replace")
        assert message in text and "Traceback" not in text
    finally:
        program.kill()


def test_kill_9_and_run_again_on_the_same_terminal_resumes_the_same_shell(tmp_path):
    import nacl.signing
    import re
    import signal
    import subprocess
    from moshpit.keyfiles import write_key_pair
    from moshpit.keys import format_public_key
    from test_mps import start_mps

    key = nacl.signing.SigningKey.generate()
    write_key_pair(tmp_path / ".mp" / "id_ed25519", key)
    write_key_pair(tmp_path / ".mp" / "mps_host_ed25519_key", nacl.signing.SigningKey.generate())
    (tmp_path / ".mp" / "authorized_keys").write_text(format_public_key(bytes(key.verify_key)) + "\n")
    (tmp_path / ".mp" / "authorized_keys").chmod(0o600)
    server = start_mps(tmp_path, "--bind", "127.0.0.1", "--port", "0", "--udp-ports", "53200-53299")
    line = ""
    while "mps: listening" not in line:
        line = server.stderr.readline()
        assert line, "mps exited before listening"
    port = re.search(r"port (\d+)", line).group(1)
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm-256color", PS1="$ ")
    terminal = PtyProgram(["bash", "--norc", "--noprofile"], env=env, cwd=str(tmp_path))
    mp = f"{sys.executable} -m moshpit.cli.mp -s {port} --host-key-check accept-new 127.0.0.1\r".encode()
    try:
        terminal.write(mp)
        assert terminal.expect(b"known hosts")
        terminal.write(b"echo shell=$$.\r")
        found = None
        for _ in range(100):
            found = re.search(rb"shell=(\d+)\.", bytes(terminal.output))
            if found:
                break
            terminal.read(0.1)
        assert found
        shell_pid = found.group(1)
        client_pid = subprocess.run(["pgrep", "-P", str(terminal.pid)], capture_output=True,
                                    text=True).stdout.split()[0]
        os.kill(int(client_pid), signal.SIGKILL)    # the client dies without a word
        terminal.read(0.5)
        terminal.output.clear()
        terminal.write(b"stty sane\r" + mp)         # same terminal, same command
        assert terminal.expect(b"shell=" + shell_pid + b".")   # its screen is repainted
        terminal.write(b"echo again=$$.\r")
        assert terminal.expect(b"again=" + shell_pid + b".")
        terminal.write(b"exit\r")
        assert terminal.expect(b"shell exited with status 0")
    finally:
        terminal.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
