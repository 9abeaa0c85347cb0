"""A server's status socket: which sessions it holds, for ``mps sessions``.

One request per connection (see sessionlist.py for the format). The socket is
open to every local user (each is told only of their own sessions), so none may
crowd out another: the kernel says who is calling (SO_PEERCRED) the moment a
connection is accepted, and each uid has a few connections at a time
(``PER_UID``); more are closed at once, unanswered. A request must arrive within
``REQUEST_TIMEOUT``. Holding connections open costs the holder its own listing,
nobody else's.
"""

from __future__ import annotations

import logging
import os
import socket

from collections import Counter

import gevent
import gevent.socket as gsocket
from gevent.server import StreamServer

from moshpit import rundir, sessionlist

log = logging.getLogger("moshpit.server")

REQUEST_TIMEOUT = 0.5      # to send the one request line (a client sends it at once)
ANSWER_TIMEOUT = 2.0       # to take the answer
PER_UID = 4                # connections served at once for one uid
MAX_CONNECTIONS = 256      # in all (each is a greenlet and a descriptor)


class ControlSocket:
    """Answers ``sessions`` with ``list_sessions(uid)``, uid being the caller's."""

    def __init__(self, path: str | os.PathLike, list_sessions, mode: int = 0o600):
        self.path = os.fspath(path)
        self.list_sessions = list_sessions
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)   # /run/moshpit
        plain = rundir.bind_unix(self.path, mode, backlog=socket.SOMAXCONN)   # (excess is closed at once)
        self._inode = os.stat(self.path).st_ino
        listener = gsocket.socket(plain.family, plain.type, fileno=plain.detach())
        self._serving: Counter = Counter()            # uid -> connections being served
        self.turned_away = 0
        self._server = StreamServer(listener, self._handle)
        self._server.start()

    def close(self) -> None:
        self._server.stop(timeout=0)
        rundir.unlink_if_same(self.path, self._inode)     # not a successor's

    def _handle(self, sock, _address) -> None:
        uid = sessionlist.peer_uid(sock)
        if self._serving[uid] >= PER_UID or sum(self._serving.values()) >= MAX_CONNECTIONS:
            self.turned_away += 1
            sock.close()                                  # the caller hears "busy", nobody else waits
            return
        self._serving[uid] += 1
        try:
            self._answer(sock, uid)
        finally:
            self._serving[uid] -= 1
            if not self._serving[uid]:
                del self._serving[uid]

    def _answer(self, sock, uid: int | None) -> None:
        try:
            with gevent.Timeout(REQUEST_TIMEOUT):
                request = bytearray()
                while b"\n" not in request and len(request) < 64:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    request += chunk
            if request.strip() == sessionlist.REQUEST.strip():
                answer = sessionlist.answer(self.list_sessions(uid))
                with gevent.Timeout(ANSWER_TIMEOUT):
                    sock.sendall(answer)
        except (OSError, gevent.Timeout) as exc:
            log.debug("status request ended: %s", exc)
