"""Asking servers which sessions they hold: the client side of the status sockets.

A server (mps, or the one-session server that ``mp --ssh`` starts) answers one
request per connection on a Unix socket: the line ``sessions`` gets back one JSON
line, ``{"sessions": [...]}``, listing only the caller's own sessions unless the
caller is root (the server asks the kernel who is calling, SO_PEERCRED). Nothing
here needs gevent: ``mps sessions`` is a short blocking program.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import time
from collections.abc import Sequence

REQUEST = b"sessions\n"
MAX_ANSWER = 1 << 20
FIELDS = {"user": str, "pid": int, "tty": str, "started": (int, float), "attached": bool,
          "idle": (int, float), "peer": str, "udp_port": int, "via": str, "name": str}


def query(path: str | os.PathLike, timeout: float = 2.0) -> list[dict] | None:
    """The sessions the server at ``path`` lists for us, or None if nobody answers there.
    Entries are checked: only known fields of the right type are kept."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            _connect(sock, os.fspath(path), deadline)
            sock.sendall(REQUEST)
            data = bytearray()
            while len(data) <= MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        sessions = json.loads(data)["sessions"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(sessions, list):
        return None
    return [{name: entry[name] for name, kind in FIELDS.items() if _fits(entry.get(name), kind)}
            for entry in sessions if isinstance(entry, dict)]


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    """Connect, waiting while the server's queue of connections is full (a Unix socket
    says so at once rather than wait: another user may be filling it, and the server
    empties it as fast as it accepts)."""
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _fits(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def answer(sessions: list[dict]) -> bytes:
    return json.dumps({"sessions": sessions}, separators=(",", ":")).encode() + b"\n"


def peer_uid(sock) -> int | None:
    """Who is at the other end of a Unix socket, as the kernel says (Linux)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (OSError, AttributeError):
        return None
    return int.from_bytes(creds[4:8], "little")


def visible_to(uid: int | None, user: str) -> bool:
    """Root sees every session; anyone else only their own."""
    if uid == 0:
        return True
    try:
        return uid is not None and pwd.getpwnam(user).pw_uid == uid
    except KeyError:
        return False


def _age(seconds: float) -> str:
    """42s, 5m03s, 3h12m, 2d04h: two units at most, as ``ps`` and ``w`` keep it short."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_table(sessions: list[dict], now: float | None = None) -> str:
    """The listing ``mps sessions`` prints: one session a line, newest last."""
    now = time.time() if now is None else now
    rows = [("USER", "SHELL", "TTY", "AGE", "STATE", "LAST ADDRESS", "VIA")]
    for entry in sorted(sessions, key=lambda e: e.get("started", 0)):
        idle = entry.get("idle")
        state = "attached" if entry.get("attached") else \
            ("detached" + (f" {_age(idle)}" if idle is not None else ""))
        rows.append((entry.get("user", "?"), str(entry.get("pid", "-")), entry.get("tty") or "-",
                     _age(now - entry.get("started", now)), state, entry.get("peer") or "-",
                     entry.get("via", "mps") + (f" {entry['name']}" if entry.get("name") else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def nobody_listens(path: str | os.PathLike) -> bool:
    """The socket file is there but refuses connections: its server is gone. (One that is
    slow to answer, or answers oddly, is alive: its sockets are still its way back in.)"""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(os.fspath(path))
    except ConnectionRefusedError:
        return True
    except OSError:
        pass
    return False


def gather(control_paths: Sequence[str | os.PathLike],
           timeout: float = 2.0) -> tuple[list[dict], list, list]:
    """Every answer from these sockets; the sockets whose server is gone; and those whose
    server is there but did not answer (busy, stopped, or turning us away), whose
    sessions are therefore missing from the answer: never to be taken for "none"."""
    sessions: list[dict] = []
    gone: list = []                     # paths, as given
    busy: list = []
    for path in control_paths:
        found = query(path, timeout)
        if found is not None:
            sessions += found
        elif nobody_listens(path):
            gone.append(path)
        elif os.path.exists(path):
            busy.append(path)
    return sessions, gone, busy


def detached_notice(sessions: list[dict]) -> str:
    """What a new session's terminal is told first, as Mosh does, or ''."""
    detached = [entry for entry in sessions if not entry.get("attached")]
    if not detached:
        return ""
    some = "a detached session" if len(detached) == 1 else f"{len(detached)} detached sessions"
    return f"moshpit: you have {some} on this server (mps sessions lists them).\r\n"
