"""Configuration: TOML files with environment-variable overrides, checked against a schema.

Precedence, highest first: command line, environment, file, defaults (as
everywhere else: what you type now beats what you exported earlier). Every key
of the schema can be set by an environment variable named after it, nested
tables joined with ``_``: ``port`` of the server is ``MOSHPITS_PORT``,
``server_port`` of the client is ``MOSHPIT_SERVER_PORT``, ``[log] file`` is
``MOSHPITS_LOG_FILE``. A missing file means defaults; a bad file, key or value
is one ``ConfigError`` naming where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from moshpit.errors import MoshpitError


class ConfigError(MoshpitError):
    """A configuration value that cannot be used; the message says where it came from."""


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number, 1..65535")
    return value


def _port_range(value) -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]                  # "LOW-HIGH" from the environment or the command line
    if isinstance(value, str):
        first, sep, last = value.partition("-")
        if not sep:
            raise ValueError("must look like LOW-HIGH")
        value = (first, last)
    low, high = (int(v) for v in value)
    if not (1 <= low <= high <= 65535):
        raise ValueError("must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535")
    return low, high


def _choice(*allowed):
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return check


def _between(low: int, high: int):
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return check


def _check(check):
    return {"check": check}


@dataclass(frozen=True)
class LogConfig:
    file: str = ""                  # empty: ~/.config/<app>/logs/<app>.log
    level: str = field(default="info", metadata=_check(_choice("debug", "info", "warning", "error")))


def _listen_port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number, 0..65535 (0: any free port)")
    return value


@dataclass(frozen=True)
class ServerConfig:
    port: int = field(default=40404, metadata=_check(_listen_port))
    bind: str = "::"
    udp_ports: tuple = field(default=(50000, 59999), metadata=_check(_port_range))
    authorized_keys_file: str = "%h/.mp/authorized_keys"
    host_key: str = "~/.mp/mps_host_ed25519_key"
    detached_timeout_secs: int = field(default=7 * 86400, metadata=_check(_between(0, 10 ** 9)))  # 0: never
    max_sessions_per_user: int = field(default=32, metadata=_check(_between(0, 100000)))   # 0: no limit
    max_sessions_per_key: int = field(default=16, metadata=_check(_between(0, 100000)))
    accept_env: tuple = ("LANG", "LC_*", "TZ")
    allow_users: tuple = ()         # empty: everyone not denied; shell-style patterns
    deny_users: tuple = ()
    permit_root: bool = True
    session_processes: bool = True  # each session in a process of its own, as its user
    control_socket: str = ""        # mps sessions asks here; empty: /run/moshpit/mps.ctl as root
    # forwarding, as sshd_config (mp -A, -L, -R, -D)
    allow_agent_forwarding: bool = True
    allow_tcp_forwarding: bool = True
    gateway_ports: bool = False     # a -R listener on anything but loopback
    permit_open: tuple = ()         # -L/-D targets allowed, "host:port" ("*" wildcards); empty: any
    permit_listen: tuple = ()       # -R listeners allowed, "[bind:]port"; empty: any
    log: LogConfig = field(default_factory=LogConfig)


@dataclass(frozen=True)
class ClientConfig:
    server_port: int = field(default=40404, metadata=_check(_port))
    identity: str = "~/.mp/id_ed25519"
    known_hosts: str = "~/.mp/known_hosts"
    host_key_check: str = field(default="ask", metadata=_check(_choice("ask", "accept-new", "strict")))
    diff_mode: str = field(default="reliable", metadata=_check(_choice("reliable", "datagram", "statesync")))
    predict: str = field(default="adaptive", metadata=_check(_choice("adaptive", "always", "never")))
    transport: str = field(default="auto", metadata=_check(_choice("auto", "udp", "stream")))
    max_reconnect_backoff_secs: int = field(default=3600, metadata=_check(_between(2, 86400)))
    term: str = "xterm-256color"
    clipboard_max_bytes: int = field(default=0, metadata=_check(_between(0, 1 << 20)))   # 0: no OSC 52
    ssh_command: str = "ssh"        # mp --ssh: how to run ssh (split as a shell would)
    ssh_server: str = "mps"         # mp --ssh: the server command on the remote PATH
    # forwarding, as ssh's options (the command line adds to these)
    forward_agent: bool = False     # -A
    local_forward: tuple = ()       # -L specs, "[bind:]port:host:hostport"
    remote_forward: tuple = ()      # -R specs
    dynamic_forward: tuple = ()     # -D specs, "[bind:]port"
    log: LogConfig = field(default_factory=LogConfig)


APPS = {"moshpits": ServerConfig, "moshpit": ClientConfig}
_TABLES = {"log": LogConfig}     # keys that are TOML tables of their own


def default_path(app: str, home: str | None = None) -> Path:
    return Path(home or os.path.expanduser("~")) / ".config" / app / f"{app}.toml"


def _convert(name: str, kind: type, value: Any, source: str):
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError("must be true or false")
                return lowered in ("1", "true", "yes", "on")
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if kind is int:
            if isinstance(value, bool):
                raise ValueError("must be a whole number")
            return int(value)
        if kind is tuple:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("must be a string")
            return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {name} {exc if str(exc).startswith('must') else 'has the wrong type'}") from None
    return value


def _build(cls, values: dict, origins: dict, prefix: str):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in _TABLES:
            sub = values.get(f.name, {})
            kwargs[f.name] = _build(_TABLES[f.name], sub if isinstance(sub, dict) else {}, origins,
                                    f"{prefix}{f.name}.")
            continue
        if f.name not in values:
            continue
        kind = {"int": int, "str": str, "tuple": tuple, "bool": bool}.get(str(f.type), str)
        source = origins.get(prefix + f.name, "config")
        value = _convert(prefix + f.name, kind, values[f.name], source)
        check = f.metadata.get("check")
        if check is not None:
            try:
                value = check(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: {prefix}{f.name} {exc}") from None
        kwargs[f.name] = value
    return cls(**kwargs)


def _env_names(cls, app: str, prefix: str = "") -> dict[str, str]:
    """Environment variable -> dotted key, for every key of the schema."""
    names = {}
    for f in dataclasses.fields(cls):
        if f.name in _TABLES:
            names.update(_env_names(_TABLES[f.name], app, f"{prefix}{f.name}."))
        else:
            dotted = prefix + f.name
            names[f"{app.upper()}_{dotted.replace('.', '_').upper()}"] = dotted
    return names


def _set(values: dict, dotted: str, value) -> None:
    *tables, key = dotted.split(".")
    for table in tables:
        values = values.setdefault(table, {})
    values[key] = value


def load(app: str, path: str | os.PathLike | None = None, *, cli: dict | None = None,
         environ: dict | None = None, required: bool = False):
    """The configuration of ``app`` ("moshpits" or "moshpit"). ``required``: the file was
    named by the user, so its absence is a mistake to report rather than defaults."""
    cls = APPS[app]
    env: Mapping[str, str] = os.environ if environ is None else environ
    path = Path(path) if path else default_path(app)
    values: dict = {}
    origins: dict = {}
    if required and not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.exists():
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r}")
        for table, table_cls in _TABLES.items():
            sub = values.get(table)
            for key in sub if isinstance(sub, dict) else ():
                if key not in {f.name for f in dataclasses.fields(table_cls)}:
                    raise ConfigError(f"{path}: unknown key '{table}.{key}'")
        origins = {k: str(path) for k in _env_names(cls, app).values()}
    for name, dotted in _env_names(cls, app).items():
        if name in env:
            _set(values, dotted, env[name])
            origins[dotted] = f"environment variable {name}"
    for dotted, value in (cli or {}).items():
        if value is not None:
            _set(values, dotted, value)
            origins[dotted] = "command line"
    return _build(cls, values, origins, "")
