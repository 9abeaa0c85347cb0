"""When the server may send the next screen message (no I/O, no clock).

A token bucket: ``burst`` messages may go at once after a quiet spell, then one
per ``interval``. Under continuous output that is the design's screen-diff tick
(20 frames a second at 50 ms). With a burst of 2, an echo and the output that
follows it (a command's first lines, its prompt) would each go as soon as they
are rendered instead of waiting out the interval the first one started (the
channel's default, ChannelConfig.frame_burst).
"""

from __future__ import annotations


class FramePacer:
    def __init__(self, interval: float, burst: int = 2):
        self.interval, self.burst = interval, burst
        self._credit = float(burst)          # messages that may go now, as of ``_at``
        self._at = float("-inf")

    def next_allowed(self) -> float:
        """The earliest time the next message may go (in the past: now)."""
        if self._credit >= 1:
            return self._at
        return self._at + (1 - self._credit) * self.interval

    def sent(self, now: float) -> None:
        elapsed = now - self._at
        self._credit = min(self.burst, self._credit + elapsed / self.interval) - 1
        self._at = now
