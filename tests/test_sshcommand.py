"""The ssh command line mp --ssh runs, and where it sends UDP afterwards."""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import sys
import time

import gevent
import pytest

from moshpit.gevent.routes import ClientError, SshRoute
from moshpit.sshcommand import SshCommand


def test_the_remote_command_survives_the_remote_shell():
    command = SshCommand("ssh", "bob@example.org", "example.org", server="/opt/moshpit/bin/mps -c 'my conf.toml'",
                         name="abc123", command=["sh", "-c", "echo \"a b\"; echo $HOME"], udp_ports="60000-60010",
                         window=(132, 43), env={"TERM": "xterm-256color", "LANG": "C.UTF-8"})
    words = shlex.split(command.remote_command())          # what the remote shell will run
    assert words == ["/opt/moshpit/bin/mps", "-c", "my conf.toml", "--ssh-session", "abc123",
                     "--udp-ports", "60000-60010", "--window", "132x43", "--env", "TERM=xterm-256color",
                     "--env", "LANG=C.UTF-8", "--", "sh", "-c", "echo \"a b\"; echo $HOME"]


@pytest.mark.parametrize("remote_shell", [s for s in ("sh", "bash", "dash") if shutil.which(s)])
@pytest.mark.parametrize("installed", ["on PATH", "in ~/.local/bin", "nowhere"])
def test_the_default_server_is_found_where_pip_user_and_pipx_put_it(tmp_path, remote_shell, installed):
    """The remote command as the user's shell runs it for ssh (``SHELL -c STRING``), with
    the PATH a non-interactive ssh command gets: an ``mps`` on it wins, else the one in
    ~/.local/bin, else the shell's 127 (which mp turns into one clear line)."""
    home, system_bin = tmp_path / "home", tmp_path / "usr-bin"
    where = {"on PATH": system_bin, "in ~/.local/bin": home / ".local" / "bin"}
    for place in {system_bin, home / ".local" / "bin"}:
        place.mkdir(parents=True)
        if where.get(installed) == place:
            (place / "mps").write_text(f'#!/bin/sh\necho "{place.name}:$*"\n')
            (place / "mps").chmod(0o755)
    command = SshCommand("ssh", "h", "h", name="n1", command=["echo", "a b"])
    env = {"HOME": str(home), "PATH": f"{system_bin}:/usr/bin:/bin"}
    result = subprocess.run([shutil.which(remote_shell), "-c", command.remote_command()], env=env,
                            capture_output=True, text=True)
    if installed == "nowhere":
        assert result.returncode == 127
    else:
        assert (result.returncode, result.stdout) == (0, f"{where[installed].name}:--ssh-session n1 -- echo a b\n")


def test_a_server_named_by_the_user_is_run_as_named_by_the_remote_shell(tmp_path):
    """As mosh's --server: a shell fragment, so ~ and $HOME expand over there."""
    command = SshCommand("ssh", "h", "h", server="/opt/mp/bin/mps -v", name="n1")
    assert shlex.split(command.remote_command()) == ["/opt/mp/bin/mps", "-v", "--ssh-session", "n1"]
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "mps").write_text('#!/bin/sh\necho "venv:$*"\n')
    (tmp_path / "venv" / "mps").chmod(0o755)
    for given in ("~/venv/mps", "$HOME/venv/mps"):
        command = SshCommand("ssh", "h", "h", server=given, name="n1", command=["echo", "$x"])
        result = subprocess.run(["sh", "-c", command.remote_command()], env={"HOME": str(tmp_path)},
                                capture_output=True, text=True)
        assert result.stdout == "venv:--ssh-session n1 -- echo $x\n"     # ours stay quoted


def test_the_users_ssh_options_come_first_and_a_reconnect_asks_nothing():
    command = SshCommand("ssh -p 2222 -o 'ProxyJump=jump host'", "db", "db", name="n1")
    first = command.argv(interactive=True)
    assert first[:5] == ["ssh", "-p", "2222", "-o", "ProxyJump=jump host"]
    assert first[-4:-1] == ["-T", "--", "db"]
    assert shlex.split(first[-1])[-3:] == ["mps", "--ssh-session", "n1"]
    assert "BatchMode=yes" not in first
    again = command.argv(interactive=False)
    assert "BatchMode=yes" in again and any(word.startswith("ConnectTimeout=") for word in again)
    assert again[-3:-1] == first[-3:-1]
    assert shlex.split(again[-1])[-4:] == ["mps", "--ssh-session", "n1", "--resume-only"]   # starts nothing


FAKE_SSH = """
echo "sid=$(ps -o sid= -p $$ | tr -d ' ') pid=$$ askpass=$SSH_ASKPASS_REQUIRE"
head -c 300000 /dev/zero | tr '\\0' x >&2; echo >&2  # ssh -vvv: more than a pipe holds
echo "the last line of stderr" >&2
echo done
"""


def read_to_end(pipe, timeout: float) -> bytes:
    deadline, data = time.monotonic() + timeout, b""
    while select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no end of output within {timeout} s: {data[-200:]!r}")


def test_a_background_ssh_has_no_terminal_to_prompt_on_and_never_waits_on_its_stderr():
    """A reconnect's ssh (and any ssh it runs for a ProxyJump) can neither open the
    user's terminal, which mp holds in raw mode, nor ask through an askpass program;
    however much it writes to stderr, it is not held up, and the log gets the tail."""
    command = SshCommand(shlex.join(["sh", "-c", FAKE_SSH, "fake-ssh"]), "h", "h", name="n1")
    proc = command.start(interactive=False)
    try:
        out = read_to_end(proc.stdout, timeout=20).decode()     # (a held-up ssh never ends)
        assert proc.wait(timeout=10) == 0
        ids = dict(word.split("=") for word in out.splitlines()[0].split())
        assert ids["sid"] == ids["pid"]                  # a session of its own: no terminal
        assert ids["askpass"] == "never"
        assert out.splitlines()[-1] == "done"
        from moshpit.gevent.routes import PipeStream
        stream = PipeStream(proc)
        assert stream.wait(1.0) == 0
        assert stream.stderr_line() == "the last line of stderr"
        stream.close()
    finally:
        proc.kill()


def fake_ssh_recording(path) -> str:
    return shlex.join(["sh", "-c", f'printf "%s\\n" "$@" >> {path}; echo nope >&2; exit 255', "fake-ssh"])


@pytest.mark.parametrize("dest, expected", [("[::1]", "::1"), ("bob@[::1]", "bob@::1"), ("bob@h", "bob@h")])
def test_ssh_is_given_the_destination_it_can_use(tmp_path, dest, expected):
    """ssh takes an IPv6 address bare: brackets, which mp's help allows, are taken off."""
    record = tmp_path / "argv"
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mp", f"--ssh={fake_ssh_recording(record)}", dest],
                            capture_output=True, text=True, env=dict(os.environ, HOME=str(tmp_path)),
                            stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path)   # not the source tree
    assert result.returncode == 1 and "Traceback" not in result.stderr
    words = record.read_text().splitlines()
    assert expected in words and not any("[" in word for word in words if word.endswith("]"))


def test_mosh_s_spaced_ssh_option_is_one_clear_line(tmp_path):
    """``mosh --ssh "ssh -p 2222" host`` works in mosh; here --ssh's value follows '='."""
    record = tmp_path / "argv"
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mp", "--ssh", "ssh -p 2222", "host"],
                            capture_output=True, text=True, env=dict(os.environ, HOME=str(tmp_path)),
                            stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path)   # not the source tree
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mp: 'ssh -p 2222' is not a host; an ssh command goes after '=': mp --ssh='ssh -p 2222' HOST"]
    assert not record.exists()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh (for ssh -G)")
def test_udp_goes_where_the_ssh_config_alias_points(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host myalias\n    HostName 127.0.0.1\n")
    route = SshRoute(SshCommand(f"ssh -F {config}", "myalias", "myalias", name="n"))
    family, address = route.udp_address("")
    assert address == "127.0.0.1"
    assert route.udp_address("127.0.0.1")[1] == "127.0.0.1"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh (for ssh -G)")
def test_a_name_only_the_far_side_knows_uses_the_address_the_server_gave(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host inner\n    HostName no-such-host.invalid\n")
    route = SshRoute(SshCommand(f"ssh -F {config}", "inner", "inner", name="n"))
    assert route.udp_address("192.0.2.7")[1] == "192.0.2.7"
    assert route.udp_address("2001:db8::7")[1] == "2001:db8::7"
    with pytest.raises(ClientError, match="cannot tell which address"):
        route.udp_address("")
    for printed in ("224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::", "240.1.2.3"):
        with pytest.raises(ClientError, match="not a host's address"):      # never sprayed anywhere
            route.udp_address(printed)
    with pytest.raises(ClientError, match="named no address"):
        route.udp_address("\x1b[2Jevil.example")


HOSTILE = r"\033]0;owned\007\033[2J"


def test_what_a_background_ssh_says_reaches_the_screen_and_the_log_without_escapes(caplog):
    """A reconnect's ssh is remote text's one way to the status bar: shown and logged
    with its control characters as '?', as a peer's ERROR text is."""
    import logging
    from moshpit.gevent.routes import PipeStream
    caplog.set_level(logging.INFO, logger="moshpit")
    command = SshCommand(shlex.join(["sh", "-c", f'printf "{HOSTILE}first\\n{HOSTILE}last\\n" >&2; exit 255',
                                     "fake-ssh"]), "h", "h", name="n1")
    stream = PipeStream(command.start(interactive=False))
    assert stream.wait(10.0) is not None        # (its status may be reaped by gevent's child watcher)
    assert stream.stderr_line() == "?]0;owned??[2Jlast"
    stream.close()
    deadline = time.monotonic() + 10
    while not any("ssh said" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline
        gevent.sleep(0.05)
    said = next(r.getMessage() for r in caplog.records if "ssh said" in r.getMessage())
    assert said == "ssh said: ?]0;owned??[2Jfirst | ?]0;owned??[2Jlast"


def test_a_server_that_prints_escapes_instead_of_starting_is_reported_without_them(tmp_path):
    fake = shlex.join(["sh", "-c", f'printf "{HOSTILE}no session here\\n"; exit 3', "fake-ssh"])
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mp", f"--ssh={fake}", "host"],
                            capture_output=True, text=True, env=dict(os.environ, HOME=str(tmp_path)),
                            stdin=subprocess.DEVNULL, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "?]0;owned??[2Jno session here" in result.stderr, result.stderr
