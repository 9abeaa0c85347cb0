"""When the client should move to a fresh socket: the roaming decisions, no I/O.

The server follows the newest authentic datagram wherever it comes from, so
roaming is the client's to start, by sending from wherever it now is. Its
socket is not connected, so the kernel picks the current source address for
every datagram: an address that changes under it needs nothing more. Two
cases do:

* **A local send error** (the address or route it used is gone, a firewall
  said no) is a reason to re-open the socket at once, not to wait for silence.
* **Silence while waiting.** The client sent something the server answers
  (keystrokes, a hello) and heard nothing for about two RTOs (at least a
  second), or, idle, the server's keepalive is that much overdue: a NAT may
  have dropped or rebound its mapping, so it moves to a new socket, hence a new
  source port and a fresh mapping, as Mosh hops ports. Repeated moves back
  off, up to MAX_HOP_INTERVAL.

The TCP re-key stays the fallback (a server that lost the session, a path
that stays dead); ``unreachable`` tells the runtime when this family of
addresses cannot be sent on at all, so it can resume over another one at once.
"""

from __future__ import annotations

import errno

MIN_HOP_SILENCE = 1.0         # never move for a silence shorter than this...
MAX_HOP_INTERVAL = 8.0        # ...and, moving again and again, at most this far apart
REOPEN_INTERVAL = 0.05        # re-open for send errors at most this often
UNREACHABLE_AFTER = 3         # consecutive send failures, across re-opens: the family is gone

# Local errors that say the socket's address or route is no longer usable here.
REOPEN_ERRORS = frozenset({errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EINVAL, errno.EPERM,
                           errno.EHOSTUNREACH, errno.ENETDOWN, errno.EACCES, errno.ENODEV})
# Of those, the ones that say no route to the server exists in this address family.
NO_ROUTE_ERRORS = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTUNREACH,
                             errno.ENETDOWN})


class PathMonitor:
    """Client side: watches sends and contact; says when to move to a new socket."""

    def __init__(self, now: float):
        self._waiting_since: float | None = None    # first send since the peer was last heard
        self._heard_at = now
        self._moved_at = now
        self._moves_in_a_row = 0
        self._failures_in_a_row = 0
        self.moves = 0

    def on_sent(self, now: float) -> None:
        if self._waiting_since is None:
            self._waiting_since = now

    def on_heard(self, now: float) -> None:
        self._waiting_since = None
        self._heard_at = now
        self._moves_in_a_row = 0
        self._failures_in_a_row = 0

    def hop_deadline(self, rto: float, keepalive_interval: float) -> float:
        """When the silence is long enough to move: since we began waiting for an
        answer, or, waiting for nothing, since the peer's keepalive was due."""
        silence = min(max(MIN_HOP_SILENCE, 2 * rto) * 2 ** self._moves_in_a_row, MAX_HOP_INTERVAL)
        idle = max(self._heard_at + keepalive_interval, self._moved_at) + silence
        if self._waiting_since is None:
            return idle
        return min(max(self._waiting_since, self._moved_at) + silence, idle)

    def send_failed(self, error: int, now: float) -> bool:
        """A local send error; whether to re-open the socket now."""
        if error not in REOPEN_ERRORS:
            return False
        if error in NO_ROUTE_ERRORS:
            self._failures_in_a_row += 1
        return now - self._moved_at >= REOPEN_INTERVAL

    def reopen_after(self, error: int, now: float) -> bool:
        """``send_failed``, and when it says re-open, counted as moved."""
        if not self.send_failed(error, now):
            return False
        self.moved(now)
        return True

    @property
    def unreachable(self) -> bool:
        """Sends keep failing for want of a route, new sockets or not, and nothing has
        been heard since the first of them."""
        return self._failures_in_a_row >= UNREACHABLE_AFTER

    def moved(self, now: float) -> None:
        """The runtime opened a new socket: a new path, waited on afresh."""
        self._moved_at = now
        self._waiting_since = None
        self._moves_in_a_row += 1
        self.moves += 1
