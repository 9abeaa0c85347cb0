"""A server's status socket: which sessions it holds, for ``mps sessions``.

One request per connection (see sessionlist.py for the format). At most a few
connections are served at once and each gets two seconds, so a local user
holding connections open costs the server a few descriptors, nothing more.
"""

from __future__ import annotations

import logging
import os

import gevent
import gevent.pool
import gevent.socket as gsocket
from gevent.server import StreamServer

from moshpit import rundir, sessionlist

log = logging.getLogger("moshpit.server")

REQUEST_TIMEOUT = 2.0


class ControlSocket:
    """Answers ``sessions`` with ``list_sessions(uid)``, uid being the caller's."""

    def __init__(self, path: str | os.PathLike, list_sessions, mode: int = 0o600):
        self.path = os.fspath(path)
        self.list_sessions = list_sessions
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)   # /run/moshpit
        plain = rundir.bind_unix(self.path, mode)
        self._inode = os.stat(self.path).st_ino
        listener = gsocket.socket(plain.family, plain.type, fileno=plain.detach())
        self._server = StreamServer(listener, self._handle, spawn=gevent.pool.Pool(8))
        self._server.start()

    def close(self) -> None:
        self._server.stop(timeout=0)
        rundir.unlink_if_same(self.path, self._inode)     # not a successor's

    def _handle(self, sock, _address) -> None:
        uid = sessionlist.peer_uid(sock)
        try:
            with gevent.Timeout(REQUEST_TIMEOUT):
                request = bytearray()
                while b"\n" not in request and len(request) < 64:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    request += chunk
                if request.strip() == sessionlist.REQUEST.strip():
                    sock.sendall(sessionlist.answer(self.list_sessions(uid)))
        except (OSError, gevent.Timeout) as exc:
            log.debug("status request ended: %s", exc)
