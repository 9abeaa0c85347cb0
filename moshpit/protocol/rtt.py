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

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0                     # (meaningful once srtt is)
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


class PingClock:
    """The PING frame's two timestamps: ours, strictly increasing so an echo names exactly
    which datagram it answers (the real send time kept aside, so bursts do not skew the
    RTT), and the peer's newest, echoed back with how long we held it."""

    def __init__(self, now: float, rtt: RttEstimator):
        self.rtt = rtt
        self._epoch = now
        self._last_ts = -1
        self._sent_at: dict[int, float] = {}   # timestamp we sent -> when (exact RTT samples)
        self._peer_ts: int | None = None
        self._peer_ts_at = 0.0

    def next_ts(self, now: float) -> int:
        ts = max(int((now - self._epoch) * 1000), self._last_ts + 1)
        self._last_ts = ts
        ts &= 0xFFFFFFFF
        self._sent_at[ts] = now
        if len(self._sent_at) > 1024:
            for old in list(self._sent_at)[:512]:
                del self._sent_at[old]
        return ts

    def give_back(self, ts: int) -> None:
        """Nothing was sent with ``ts``: the next datagram takes it."""
        self._sent_at.pop(ts, None)
        self._last_ts -= 1

    def echo(self, now: float, no_echo: int) -> tuple[int | None, int]:
        """(the peer's newest timestamp or None, ms we held it). Echoed however old:
        the hold time travels with it, and an echo is what validates a new address."""
        held_ms = int((now - self._peer_ts_at) * 1000)
        return (self._peer_ts if held_ms < no_echo else None), held_ms

    def on_ping(self, timestamp: int, echo: int | None, echo_delay_ms: int, newest: bool, now: float) -> None:
        """A PING came. A reordered datagram carries a stale timestamp, and its echo is no sample."""
        if newest:
            self._peer_ts, self._peer_ts_at = timestamp, now
        if echo is not None and newest:
            sent = self._sent_at.pop(echo, None)
            if sent is not None:
                sample = now - sent - echo_delay_ms / 1000
                if 0 <= sample < 60:
                    self.rtt.observe(sample)
