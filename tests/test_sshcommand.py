"""The ssh command line mp --ssh runs, and where it sends UDP afterwards."""

from __future__ import annotations

import shlex
import shutil
import subprocess

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


def test_a_server_named_by_the_user_is_run_as_named():
    command = SshCommand("ssh", "h", "h", server="/opt/mp/bin/mps -v", name="n1")
    assert shlex.split(command.remote_command()) == ["/opt/mp/bin/mps", "-v", "--ssh-session", "n1"]


def test_the_users_ssh_options_come_first_and_a_reconnect_asks_nothing():
    command = SshCommand("ssh -p 2222 -o 'ProxyJump=jump host'", "db", "db", name="n1")
    first = command.argv(interactive=True)
    assert first[:5] == ["ssh", "-p", "2222", "-o", "ProxyJump=jump host"]
    assert first[-4:-1] == ["-T", "--", "db"]
    assert shlex.split(first[-1])[-3:] == ["mps", "--ssh-session", "n1"]
    assert "BatchMode=yes" not in first
    again = command.argv(interactive=False)
    assert "BatchMode=yes" in again and any(word.startswith("ConnectTimeout=") for word in again)
    assert again[-3:] == first[-3:]


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
