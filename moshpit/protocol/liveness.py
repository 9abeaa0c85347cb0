"""Whether the peer is still there, as far as hearing from it tells (no I/O).

The runtime shows a silence to the user (the status bar) and ends sessions gone too
long, so the channel says when one begins (after ``threshold``), repeats it every
``interval`` while it lasts, and says when the peer is heard again.
"""

from __future__ import annotations

from moshpit.protocol.events import PeerReachable, PeerSilent


class Liveness:
    def __init__(self, now: float, threshold: float, interval: float):
        self.threshold = threshold
        self.interval = interval
        self.last_heard = now
        self.next_report = now + threshold
        self._silent = False

    def heard(self, now: float) -> PeerReachable | None:
        """An authenticated datagram came: the end of a reported silence, if there was one."""
        ended = PeerReachable(now - self.last_heard) if self._silent else None
        self._silent = False
        self.last_heard = now
        self.next_report = now + self.threshold
        return ended

    def check(self, now: float) -> PeerSilent | None:
        """A silence to report now, if one is due."""
        if now < self.next_report:
            return None
        self._silent = True
        self.next_report = now + self.interval
        return PeerSilent(now - self.last_heard)
