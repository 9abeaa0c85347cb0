"""When a client that lost its server tries the key exchange again (no I/O, no clock).

Doubling delays from ``first`` up to ``cap`` (``max_reconnect_backoff_secs``),
each shortened by up to a fifth at random so that the clients of a restarted
server do not all knock at once.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, cap: float, *, first: float = 1.0, rng: random.Random | None = None):
        if cap < first or first <= 0:
            raise ValueError("need 0 < first <= cap")
        self.cap, self.first = float(cap), float(first)
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """How long to wait before the next attempt; each call counts one attempt."""
        nominal = min(self.cap, self.first * 2.0 ** min(self.attempts, 64))
        self.attempts += 1
        return nominal * self._rng.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.attempts = 0
