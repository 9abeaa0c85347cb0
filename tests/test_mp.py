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
