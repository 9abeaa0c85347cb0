"""Configuration: defaults, TOML, environment and command line, in that order of strength."""

import pytest

from moshpit.config import ClientConfig, ConfigError, ServerConfig, default_path, load


def write(tmp_path, text):
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


def test_missing_file_means_defaults(tmp_path):
    assert load("moshpits", tmp_path / "absent.toml", environ={}) == ServerConfig()
    assert load("moshpit", tmp_path / "absent.toml", environ={}) == ClientConfig()
    assert str(default_path("moshpits", "/home/u")) == "/home/u/.config/moshpits/moshpits.toml"


def test_file_then_environment_then_command_line(tmp_path):
    path = write(tmp_path, 'port = 4000\nudp_ports = [51000, 51010]\n[log]\nlevel = "debug"\n')
    config = load("moshpits", path, environ={})
    assert (config.port, config.udp_ports, config.log.level) == (4000, (51000, 51010), "debug")
    assert load("moshpits", path, cli={"port": 4001}, environ={}).port == 4001
    env = {"MOSHPITS_PORT": "4002", "MOSHPITS_UDP_PORTS": "52000-52100", "MOSHPITS_LOG_LEVEL": "error",
           "MOSHPITS_AUTHORIZED_KEYS_FILE": "/etc/mp/%u"}
    config = load("moshpits", path, environ=env)
    assert (config.port, config.udp_ports, config.log.level) == (4002, (52000, 52100), "error")
    assert config.authorized_keys_file == "/etc/mp/%u"
    config = load("moshpits", path, cli={"port": 4001, "udp_ports": None}, environ=env)
    assert (config.port, config.udp_ports) == (4001, (52000, 52100))   # the command line wins
    client = load("moshpit", tmp_path / "none.toml", environ={"MOSHPIT_SERVER_PORT": "2222",
                                                             "MOSHPIT_DIFF_MODE": "statesync"})
    assert (client.server_port, client.diff_mode) == (2222, "statesync")
    client = load("moshpit", tmp_path / "none.toml", cli={"server_port": 40555},
                  environ={"MOSHPIT_SERVER_PORT": "1"})
    assert client.server_port == 40555


def test_a_file_named_explicitly_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="nonexistent.toml: no such file"):
        load("moshpit", tmp_path / "nonexistent.toml", environ={}, required=True)


@pytest.mark.parametrize("text, env, message", [
    ("port = 70000\n", {}, "conf.toml: port must be a port number"),
    ("port = -1\n", {}, "conf.toml: port must be a port number"),
    ('port = "x"\n', {}, "conf.toml: port has the wrong type"),
    ("prot = 1\n", {}, "unknown key 'prot'"),
    ("port = \n", {}, "not valid TOML"),
    ("", {"MOSHPITS_PORT": "many"}, "environment variable MOSHPITS_PORT: port has the wrong type"),
    ("", {"MOSHPITS_UDP_PORTS": "60000-50000"}, "udp_ports must be LOW-HIGH"),
    ("[log]\nlevel = 'loud'\n", {}, "log.level must be one of"),
])
def test_bad_values_name_their_source(tmp_path, text, env, message):
    with pytest.raises(ConfigError, match=message):
        load("moshpits", write(tmp_path, text), environ=env)


def test_client_backoff_bounds(tmp_path):
    with pytest.raises(ConfigError, match="between 2 and 86400"):
        load("moshpit", write(tmp_path, "max_reconnect_backoff_secs = 1\n"), environ={})
    with pytest.raises(ConfigError, match="must be one of"):
        load("moshpit", tmp_path / "none", environ={"MOSHPIT_HOST_KEY_CHECK": "maybe"})
