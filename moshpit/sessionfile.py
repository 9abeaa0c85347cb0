"""Per-terminal session files: running mp again on the same terminal resumes its session.

``~/.mp/sessions/<terminal>`` (0600, directory 0700) remembers the server, the
user and the current resume token. The token alone is useless to anyone else:
it only resumes a session for the identity key that opened it. For a session
``mp --ssh`` started, that key is a throwaway one kept here beside the token (and
the session's name on the server): whoever can read this file could resume the
session, as whoever can read ~/.mp/id_ed25519 could open one.

Beside it, ``<terminal>.shown`` holds how much of the session's output the terminal
has (bytes and lines of the stream, 16 bytes), rewritten in place after every write
to the terminal: a client killed outright leaves it true, and the next one on the
same terminal asks the server to go on from there, each line once.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path


def terminal_name(fd: int = 0) -> str | None:
    try:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", os.ttyname(fd).lstrip("/"))
    except OSError:
        return None


class SessionFile:
    def __init__(self, home: str | os.PathLike, terminal: str | None):
        self.path = Path(home) / ".mp" / "sessions" / terminal if terminal else None

    def load(self, host: str, port: int, user: str) -> bytes | None:
        """The resume token for this server and user, if this terminal has one."""
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
            if (data["host"], data["port"], data["user"]) == (host, port, user):
                token = bytes.fromhex(data["token"])
                return token if len(token) == 32 else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return None

    def save(self, host: str, port: int, user: str, token: bytes) -> None:
        self._write({"host": host, "port": port, "user": user, "token": token.hex()})

    def _write(self, data: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)

    def load_ssh(self, destination: str) -> dict | None:
        """What ``mp --ssh`` keeps for resuming: the session's name on the server, the
        throwaway identity key that opened it and the resume token (hex), or None."""
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
            if data["ssh"] == destination and all(isinstance(data[k], str) for k in ("name", "key", "token")):
                bytes.fromhex(data["key"]), bytes.fromhex(data["token"])
                return data
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return None

    def save_ssh(self, destination: str, name: str, key: bytes, token: bytes) -> None:
        self._write({"ssh": destination, "name": name, "key": key.hex(), "token": token.hex()})

    def remove(self) -> None:
        if self.path is not None:
            for path in (self.path, self._shown_path):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    _SHOWN = struct.Struct("!QQ")

    @property
    def _shown_path(self) -> Path:
        assert self.path is not None                  # (callers check: no terminal, no file)
        return self.path.with_name(self.path.name + ".shown")

    def load_shown(self) -> tuple[int, int] | None:
        """(bytes, lines) of output the terminal had when its last client stopped, if known."""
        if self.path is None:
            return None
        try:
            data = self._shown_path.read_bytes()
        except OSError:
            return None
        if len(data) != self._SHOWN.size:
            return None
        shown_bytes, lines = self._SHOWN.unpack(data)
        return (shown_bytes, lines) if lines <= shown_bytes < 1 << 63 else None

    def shown_writer(self):
        """A function ``(bytes, lines)`` that keeps the file true: one pwrite a call, no fsync
        (a killed process's writes stay in the page cache), never raising."""
        if self.path is None:
            return None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._shown_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        pack = self._SHOWN.pack

        def write(shown_bytes: int, lines: int) -> None:
            try:
                os.pwrite(fd, pack(shown_bytes, lines), 0)
            except OSError:
                pass
        return write
