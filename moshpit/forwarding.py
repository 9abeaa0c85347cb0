"""Port and agent forwarding: the user's specs (ssh's syntax) and the server's policy (no I/O).

``-L [bind:]port:host:hostport``, ``-R [bind:]port:host:hostport`` and ``-D [bind:]port``
read as ssh reads them: the bind address defaults to loopback, an IPv6 address goes
in brackets. The server's policy follows sshd's: ``allow_tcp_forwarding`` and
``allow_agent_forwarding`` (both on by default), ``permit_open`` and
``permit_listen`` lists (``host:port``, ``*`` for any host or port; empty: anything),
and ``gateway_ports`` for a listener on anything but loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


class SpecError(ValueError):
    """A forwarding spec the user typed that cannot mean anything."""


@dataclass(frozen=True)
class Forward:
    """One -L or -R (``host``/``port`` empty for -D: SOCKS picks them per connection)."""
    bind: str
    listen_port: int
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        target = f":{_show(self.host)}:{self.port}" if self.host else ""
        return f"{_show(self.bind)}:{self.listen_port}{target}"


def _show(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _split(text: str) -> list[str]:
    """``a:b:[::1]:c`` -> ``['a', 'b', '::1', 'c']``."""
    parts, current, depth = [], "", 0
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise SpecError("nested brackets")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise SpecError("unbalanced brackets")
        elif ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise SpecError("unbalanced brackets")
    parts.append(current)
    return parts


def _port(text: str, *, zero_ok: bool = False) -> int:
    if not text.isdigit() or not (0 if zero_ok else 1) <= int(text) <= 65535:
        raise SpecError(f"bad port {text!r}")
    return int(text)


def _host(text: str) -> str:
    if not text or len(text) > 255 or any(c.isspace() or ord(c) < 32 for c in text):
        raise SpecError(f"bad host {text!r}")
    return text


def parse_forward(spec: str) -> Forward:
    """``[bind:]port:host:hostport`` (-L, -R)."""
    parts = _split(spec)
    if len(parts) == 3:
        parts = [LOOPBACK, *parts]
    if len(parts) != 4:
        raise SpecError(f"{spec!r}: expected [bind_address:]port:host:hostport")
    bind = _bind(parts[0])
    return Forward(bind, _port(parts[1], zero_ok=True), _host(parts[2]), _port(parts[3]))


def parse_dynamic(spec: str) -> Forward:
    """``[bind:]port`` (-D)."""
    parts = _split(spec)
    if len(parts) == 1:
        parts = [LOOPBACK, *parts]
    if len(parts) != 2:
        raise SpecError(f"{spec!r}: expected [bind_address:]port")
    return Forward(_bind(parts[0]), _port(parts[1]))


def _bind(text: str) -> str:
    """ssh's habits: empty or ``*`` is every address; ``localhost`` is loopback."""
    if text in ("", "*"):
        return "0.0.0.0"
    if text == "localhost":
        return LOOPBACK
    return _host(text)


def is_loopback(address: str) -> bool:
    if address in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ForwardPolicy:
    """What a server lets its clients forward (sshd_config's words, in snake case)."""
    allow_agent_forwarding: bool = True
    allow_tcp_forwarding: bool = True
    gateway_ports: bool = False
    permit_open: tuple[str, ...] = field(default=())      # empty: any
    permit_listen: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, config) -> ForwardPolicy:
        """From mps's configuration (config.ServerConfig)."""
        return cls(allow_agent_forwarding=config.allow_agent_forwarding,
                   allow_tcp_forwarding=config.allow_tcp_forwarding, gateway_ports=config.gateway_ports,
                   permit_open=tuple(config.permit_open), permit_listen=tuple(config.permit_listen))

    @classmethod
    def from_dict(cls, data: dict) -> ForwardPolicy:
        """From ``dataclasses.asdict`` after a trip through JSON (lists back to tuples)."""
        return cls(allow_agent_forwarding=bool(data.get("allow_agent_forwarding", True)),
                   allow_tcp_forwarding=bool(data.get("allow_tcp_forwarding", True)),
                   gateway_ports=bool(data.get("gateway_ports", False)),
                   permit_open=tuple(data.get("permit_open", ())),
                   permit_listen=tuple(data.get("permit_listen", ())))

    def may_open(self, host: str, port: int) -> str | None:
        """None if a -L (or -D) connection to ``host:port`` may be made, else why not."""
        if not self.allow_tcp_forwarding:
            return "TCP forwarding is disabled on the server (allow_tcp_forwarding)"
        if self.permit_open and not _permitted(self.permit_open, host, port):
            return f"{_show(host)}:{port} is not in the server's permit_open"
        return None

    def may_listen(self, bind: str, port: int) -> str | None:
        """None if a -R listener at ``bind:port`` may be made, else why not."""
        if not self.allow_tcp_forwarding:
            return "TCP forwarding is disabled on the server (allow_tcp_forwarding)"
        if not is_loopback(bind) and not self.gateway_ports:
            return f"binding {_show(bind)} needs gateway_ports on the server"
        if self.permit_listen and not _permitted(self.permit_listen, bind, port):
            return f"port {port} is not in the server's permit_listen"
        return None

    def may_forward_agent(self) -> str | None:
        if not self.allow_agent_forwarding:
            return "agent forwarding is disabled on the server (allow_agent_forwarding)"
        return None


def _permitted(rules: tuple[str, ...], host: str, port: int) -> bool:
    for rule in rules:
        parts = _split(rule)
        rule_host, rule_port = (parts if len(parts) == 2 else ("*", parts[0]))
        if rule_host not in ("*", host) and not (rule_host == "localhost" and is_loopback(host)):
            continue
        if rule_port == "*" or (rule_port.isdigit() and int(rule_port) == port):
            return True
    return False
