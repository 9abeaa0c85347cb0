"""The ssh command line mp --ssh runs, and where it sends UDP afterwards."""

from __future__ import annotations

import shlex
import shutil

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


def test_the_users_ssh_options_come_first_and_a_reconnect_asks_nothing():
    command = SshCommand("ssh -p 2222 -o 'ProxyJump=jump host'", "db", "db", name="n1")
    first = command.argv(interactive=True)
    assert first[:5] == ["ssh", "-p", "2222", "-o", "ProxyJump=jump host"]
    assert first[-4:] == ["-T", "--", "db", "mps --ssh-session n1"]
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
