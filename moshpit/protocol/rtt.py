"""Round-trip time estimation (Jacobson/Karels, RFC 6298), as Mosh does it."""

from __future__ import annotations

ALPHA = 1 / 8
BETA = 1 / 4
MIN_RTO = 0.050
MAX_RTO = 1.000
INITIAL_RTO = 1.000


class RttEstimator:
    """Smoothed RTT, its variation and the retransmission timeout, in seconds."""

    __slots__ = ("srtt", "rttvar", "samples", "min_rtt")

    def __init__(self):
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.samples = 0
        self.min_rtt: float | None = None     # the path's own delay, without queues

    def observe(self, sample: float) -> None:
        if sample < 0:
            return
        if self.min_rtt is None or sample < self.min_rtt:
            self.min_rtt = sample
        if self.srtt is None:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - sample)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * sample
        self.samples += 1

    @property
    def rto(self) -> float:
        """SRTT + 4 RTTVAR, clamped to 50 ms .. 1 s (1 s before the first sample)."""
        if self.srtt is None:
            return INITIAL_RTO
        return min(MAX_RTO, max(MIN_RTO, self.srtt + 4 * self.rttvar))
