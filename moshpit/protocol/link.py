"""Messages between the listening process and a session's process (no I/O).

The listening process authenticates clients; a session's process holds the shell,
the PTY and the UDP socket, running as the session's user. They talk over a Unix
``SOCK_SEQPACKET`` pair, one JSON object per packet. The listener trusts nothing a
session process says beyond its own session: every message from that side is checked
here (``decode_from_session``) before the listener acts on it, so a session process
taken over by its user gains nothing in the listener that the user did not have.
"""

from __future__ import annotations

import ipaddress
import json

from moshpit import crypto
from moshpit.errors import RemoteProtocolError
from moshpit.protocol.handshake import DiffMode, SessionParams

MAX_MESSAGE = 65536            # listener -> session process (a connection's environment may be long)
MAX_FROM_SESSION = 1024        # session process -> listener: every message is small
MAX_LOG_TEXT = 900             # of a log record, in characters, before the listener's own sanitising
LOG_LEVELS = (10, 20, 30, 40, 50)

# listener -> session process
ATTACH = "attach"              # a new connection: params (keys, window), resumed
PREPARE_RESUME = "prepare"     # a resume is authenticated: drop the old connection, say input_received
STOP = "stop"                  # the server is stopping: tell the client, then end
QUERY = "query"                # say STATUS now (for a listing)
STREAM = "stream"              # conn_id, with the key exchange's connection (SCM_RIGHTS): a path kept

# session process -> listener
STARTED = "started"            # shell_pid, tty (sent once, before the process drops privileges)
HEARD = "heard"                # the newest connection has been heard from (its old token is spent)
READY = "ready"                # input_received and whether the shell has ended: PREPARE_RESUME's answer
STATUS = "status"              # attached, idle, peer (the client's last address): QUERY's answer
LOG = "log"                    # level, message: a log record, as data (the process holds no log file)

# What each message from a session process may carry; anything else is a lie.
_FIELDS = {STARTED: {"op", "shell_pid", "tty"}, HEARD: {"op"}, READY: {"op", "input_received", "ended"},
           STATUS: {"op", "attached", "peer", "idle"}, LOG: {"op", "level", "message"}}


def encode(message: dict) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError("link message too large")
    return data


def decode(data: bytes) -> dict:
    """A message from the trusted side (the listener): malformed is a bug, not an attack."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError("not a link message")
    return message


def _int(message: dict, name: str, low: int, high: int) -> int:
    value = message.get(name)
    if type(value) is not int or not low <= value <= high:
        raise RemoteProtocolError(f"link message {message.get('op')!r}: bad {name}")
    return value


def _is_address(text: str) -> bool:
    """``host:port`` or ``[host]:port`` with an IP address: a session reports where its
    client was last heard, and a listing shows nothing else in that column."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return port.isdigit() and len(port) <= 5 and int(port) <= 65535


def decode_from_session(data: bytes) -> dict:
    """A session process's message, checked field by field: it runs as the user and may lie.
    Whether the listener asked for it is the listener's to check (session_process.py)."""
    if len(data) > MAX_FROM_SESSION:
        raise RemoteProtocolError("link message too large")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):           # RecursionError: [[[[... nested past the stack
        raise RemoteProtocolError("link message is not JSON") from None
    if not isinstance(message, dict):
        raise RemoteProtocolError("link message is not an object")
    op = message.get("op")
    if op not in _FIELDS:
        raise RemoteProtocolError("unknown link message")
    if not message.keys() <= _FIELDS[op]:
        raise RemoteProtocolError(f"link message {op!r}: unknown fields")
    if op == STARTED:
        tty = message.get("tty")
        if tty is not None and not (isinstance(tty, str) and tty.startswith("pts/") and tty[4:].isdigit()
                                    and len(tty) < 16):
            raise RemoteProtocolError("link message 'started': bad tty")
        return {"op": op, "shell_pid": _int(message, "shell_pid", 1, 1 << 22), "tty": tty}
    if op == HEARD:
        return {"op": op}
    if op == READY:
        return {"op": op, "input_received": _int(message, "input_received", 0, (1 << 64) - 1),
                "ended": message.get("ended") is True}
    if op == STATUS:
        peer = message.get("peer")
        if peer is not None and not (isinstance(peer, str) and (peer == "" or _is_address(peer))):
            raise RemoteProtocolError("link message 'status': bad peer")
        idle = message.get("idle")
        if idle is not None and not (type(idle) in (int, float) and 0 <= idle < 1e10):
            raise RemoteProtocolError("link message 'status': bad idle")
        return {"op": op, "attached": message.get("attached") is True, "peer": peer, "idle": idle}
    text = message.get("message")
    if not isinstance(text, str) or len(text) > MAX_LOG_TEXT:
        raise RemoteProtocolError("link message 'log': bad message")
    return {"op": op, "level": _int(message, "level", 10, 50) // 10 * 10, "message": text}


# --- session parameters (the keys of one connection) cross as hex -----------------------

def params_to_json(params: SessionParams) -> dict:
    """What a session's process needs of a connection. The resume token stays with the
    listener: the process that parses network data never holds the session's credential."""
    keys = params.keys
    return {"conn_id": params.conn_id, "udp_port": params.udp_port, "session_id": params.session_id.hex(),
            "resumed": params.resumed, "diff_mode": params.diff_mode.value,
            "c2s": [keys.client_to_server.aead_key.hex(), keys.client_to_server.mac_key.hex()],
            "s2c": [keys.server_to_client.aead_key.hex(), keys.server_to_client.mac_key.hex()],
            "client_key": params.client_key.hex(), "host_key": params.host_key.hex(), "user": params.user,
            "cols": params.cols, "rows": params.rows, "env": params.env,
            "input_received": params.input_received, "shown": params.shown,
            "forward_agent": params.forward_agent}


def params_from_json(data: dict) -> SessionParams:
    keys = crypto.TrafficKeys(crypto.DirectionKeys(*map(bytes.fromhex, data["c2s"])),
                              crypto.DirectionKeys(*map(bytes.fromhex, data["s2c"])))
    return SessionParams(conn_id=data["conn_id"], udp_port=data["udp_port"],
                         session_id=bytes.fromhex(data["session_id"]), resume_token=b"",
                         resumed=data["resumed"], diff_mode=DiffMode(data["diff_mode"]), keys=keys,
                         client_key=bytes.fromhex(data["client_key"]), host_key=bytes.fromhex(data["host_key"]),
                         user=data["user"], cols=data["cols"], rows=data["rows"], env=data["env"],
                         input_received=data["input_received"],
                         shown=tuple(data["shown"]) if data.get("shown") is not None else None,
                         forward_agent=bool(data.get("forward_agent", False)))
