"""Which sessions exist, who owns them, and which UDP ports they hold (server side, no I/O).

A session outlives its connections. Each accepted handshake gets a fresh
connection id (the keys change with it); a resume token, bound to the identity
key that opened the session, lets that same key re-attach later. Tokens are
single-use: every resume issues a new one, and the one presented is spent as
soon as the new connection is heard from (until then a retry may present it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from dataclasses import dataclass, field

from moshpit.protocol.handshake import SESSION_ID_SIZE, TOKEN_SIZE

DEFAULT_PORTS = range(50000, 60000)


class PortsExhausted(Exception):
    """No UDP port of the configured range is free."""


class SessionGone(Exception):
    """A resume-only request named no live session of its key and user."""


class TooManySessions(Exception):
    """A new session would take its user or its key past the configured limit."""


class PortPool:
    """Hands out UDP port numbers from a range, at random, and takes them back."""

    def __init__(self, ports=DEFAULT_PORTS, rng: random.Random | None = None):
        self._free = set(ports)
        if not self._free:
            raise ValueError("empty port range")
        self._rng = rng or random.SystemRandom()

    def allocate(self) -> int:
        if not self._free:
            raise PortsExhausted("no free UDP port in the configured range")
        port = self._rng.choice(sorted(self._free))
        self._free.discard(port)
        return port

    def release(self, port: int) -> None:
        self._free.add(port)

    @property
    def free(self) -> int:
        return len(self._free)


@dataclass
class Session:
    session_id: bytes
    owner_key: bytes
    user: str
    udp_port: int
    conn_id: int
    token_digest: bytes = field(repr=False)
    generation: int = 0          # how many connections it has had
    previous_digest: bytes = field(default=b"", repr=False)   # valid until the new one is used


@dataclass(frozen=True)
class Admission:
    session: Session
    resume_token: bytes = field(repr=False)
    resumed: bool
    note: str = ""               # for the server's log


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class SessionRegistry:
    """``max_per_user`` / ``max_per_key``: how many sessions one account, and one identity
    key, may hold at once (0: no limit), so one user cannot take every port and the memory."""

    def __init__(self, ports: PortPool | None = None, rng=os.urandom, *, max_per_user: int = 0,
                 max_per_key: int = 0):
        self.ports = ports or PortPool()
        self.max_per_user, self.max_per_key = max_per_user, max_per_key
        self._rng = rng
        self._by_id: dict[bytes, Session] = {}
        self._by_token: dict[bytes, Session] = {}
        self._conn_ids: set[int] = set()

    def __len__(self):
        return len(self._by_id)

    def get(self, session_id: bytes) -> Session | None:
        return self._by_id.get(session_id)

    def _new_conn_id(self) -> int:
        while True:
            conn_id = int.from_bytes(self._rng(4), "big")
            if conn_id not in self._conn_ids:
                self._conn_ids.add(conn_id)
                return conn_id

    def _issue_token(self, session: Session) -> bytes:
        # The token just presented stays valid (for its owner) until the new connection is
        # heard from: if the accept carrying the new token is lost, the client can retry.
        self._by_token.pop(session.previous_digest, None)
        session.previous_digest = session.token_digest
        token = self._rng(TOKEN_SIZE)
        session.token_digest = _digest(token)
        self._by_token[session.token_digest] = session
        return token

    def admit(self, user: str, client_key: bytes, resume_token: bytes | None, *,
              resume_only: bool = False) -> Admission:
        """Re-attach the session the token names if ``client_key`` owns it; else open a new one.

        Raises PortsExhausted when a new session cannot get a port, TooManySessions past
        a limit, and SessionGone instead of opening one when ``resume_only`` is set.
        """
        note, reason = "", "no resume token"
        if resume_token is not None:
            session = self._by_token.get(_digest(resume_token))
            if session is not None and hmac.compare_digest(session.owner_key, client_key) \
                    and session.user == user:
                self._conn_ids.discard(session.conn_id)
                session.conn_id = self._new_conn_id()
                session.generation += 1
                return Admission(session, self._issue_token(session), resumed=True)
            reason = "resume token belongs to another identity" if session is not None \
                else "unknown resume token"
            note = f"{reason}; opening a new session"
        if resume_only:
            raise SessionGone(reason)
        self._check_limits(user, bytes(client_key))
        port = self.ports.allocate()
        session = Session(session_id=self._rng(SESSION_ID_SIZE), owner_key=bytes(client_key),
                          user=user, udp_port=port, conn_id=self._new_conn_id(), token_digest=b"")
        self._by_id[session.session_id] = session
        return Admission(session, self._issue_token(session), resumed=False, note=note)

    def _check_limits(self, user: str, client_key: bytes) -> None:
        sessions = self._by_id.values()
        if self.max_per_user and sum(s.user == user for s in sessions) >= self.max_per_user:
            raise TooManySessions(f"{user} already has {self.max_per_user} sessions")
        if self.max_per_key and sum(s.owner_key == client_key for s in sessions) >= self.max_per_key:
            raise TooManySessions(f"this key already has {self.max_per_key} sessions")

    def confirm(self, session_id: bytes) -> None:
        """The newest connection of the session has been heard from: its token's
        predecessor is spent for good."""
        session = self._by_id.get(session_id)
        if session is not None and session.previous_digest:
            self._by_token.pop(session.previous_digest, None)
            session.previous_digest = b""

    def close(self, session_id: bytes) -> None:
        """Forget a session (its shell ended); its port goes back to the pool."""
        session = self._by_id.pop(session_id, None)
        if session is None:
            return
        self._by_token.pop(session.token_digest, None)
        self._by_token.pop(session.previous_digest, None)
        self._conn_ids.discard(session.conn_id)
        self.ports.release(session.udp_port)
