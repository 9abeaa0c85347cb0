"""When the next screen message, and the next burst of forwarded data, may go (no I/O, no clock).

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
        """A message went. One sent without credit (an answer to input, which does not
        wait for the pacer) leaves none, not a debt: the next paced message waits one
        interval at most, not one for every answer sent while typing."""
        elapsed = now - self._at
        self._credit = max(0.0, min(self.burst, self._credit + elapsed / self.interval) - 1)
        self._at = now


class StreamPacer:
    """How many bundles of forwarded-stream data a send turn may carry.

    ``burst`` a turn while nobody types. For ``hold`` seconds after a keystroke
    (typed here or received), one burst per ``gap`` at most: on a machine a
    transfer keeps busy (both ends, and the programs on its sockets), the pause
    between bursts is when a keystroke and its echo get a CPU. Measured on
    loopback, 2 cores (bench_forward.py): the echo p90 during a download went
    from about 10x idle to about 1x, and the download from about 20 MB/s to
    about 6 while typing, back to full speed ``hold`` after the last key.
    """

    def __init__(self, burst: int, hold: float = 1.0, gap: float = 0.001):
        self.burst, self.hold, self.gap = burst, hold, gap
        self._typed = False
        self._typing_until = float("-inf")
        self.resume_at = float("-inf")       # while typing: no stream data before this

    def typed(self) -> None:
        """A keystroke went or came (the next turn's ``now`` dates it)."""
        self._typed = True

    def allowance(self, now: float) -> int:
        """Bundles of stream data this turn may carry."""
        if self._typed:
            self._typed = False
            self._typing_until = now + self.hold
        if now >= self._typing_until:
            return self.burst
        return self.burst if now >= self.resume_at else 0

    def spent(self, bundles: int, now: float) -> None:
        if bundles and now < self._typing_until:
            self.resume_at = now + self.gap
