"""Receiving the ordered flow: bundles in order, when to ACK, when to NAK (no I/O).

``ReceiveFlow`` wraps the sequence tracker (seqtrack.pyx, which holds bundles that
arrive early and schedules a NAK for each gap). It acknowledges within ``ack_delay``,
or at once after ``ack_every`` bundles; a duplicate is acknowledged too (our previous
ACK must have been lost). NAKs pause while the peer is silent: NAKs into an outage
are lost, and each would use up one of a gap's retries; hearing the peer again
resumes them where they were.
"""

from __future__ import annotations

from moshpit.protocol.rtt import RttEstimator
from moshpit.seqtrack import SeqTracker

NAK_PAUSE = 0.5             # no NAKs once the peer has been silent this long (or 2 RTO): an outage


class ReceiveFlow:
    def __init__(self, *, max_retries: int, ack_delay: float, ack_every: int):
        self.tracker = SeqTracker(max_retries=max_retries)
        self.ack_delay, self.ack_every = ack_delay, ack_every
        self.naks: list[tuple[int, int]] = []      # ranges due to be NAKed
        self.ack_due: float | None = None
        self._unacked = 0

    @property
    def next_expected(self) -> int:
        return self.tracker.next_expected

    def ingest(self, osn: int, ordered: list, now: float, rto: float) -> None:
        self.tracker.rto = rto
        self.tracker.ingest(osn, ordered, now)

    def ack_later(self, now: float) -> None:
        """A bundle came (new or not): acknowledge it in time."""
        self._unacked += 1
        due = now if self._unacked >= self.ack_every else now + self.ack_delay
        self.ack_due = due if self.ack_due is None else min(self.ack_due, due)

    def ack_is_due(self, now: float) -> bool:
        return self.ack_due is not None and now >= self.ack_due

    def acked(self) -> None:
        """An ACK went out."""
        self.ack_due = None
        self._unacked = 0

    def nak_deadline(self, last_heard: float, rtt: RttEstimator) -> float | None:
        """When the next NAK is due, unless the peer fell silent before then."""
        due = self.tracker.next_deadline()
        if due is None or due > last_heard + max(NAK_PAUSE, 2 * rtt.rto):
            return None
        return due

    def naks_due(self, now: float, rto: float) -> None:
        self.tracker.rto = rto
        self.naks.extend(self.tracker.due_naks(now))

    def take_naks(self, room: int) -> list[tuple[int, int]]:
        take, self.naks = self.naks[:room], self.naks[room:]
        return take
