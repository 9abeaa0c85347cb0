"""How many key exchanges the server starts, per source and in all (no I/O).

Two stages, because they cost different things:

* **Waiting for a hello** costs a socket and a greenlet, no cryptography. Many
  may wait (``max_waiting``), a few per source, and only for a short time (the
  runtime's hello timeout). A connection that never speaks is dropped without
  having taken anything a real login needs.
* **A handshake in progress** costs an X25519 and an Ed25519 signature before
  the server knows who is asking. It starts only once the client's hello has
  arrived, draws a token from its source's buckets, and holds one of
  ``max_in_progress`` slots.

Sources are aggregated as providers hand out addresses. An IPv4 address is one
source. An IPv6 source draws from its /64, its /56 and its /48 at once, each
with room in proportion (a home gets a /56 or a /60, a site a /48), so rotating
through a /48's 65,536 /64s buys no more than the /48's own allowance. When
the bucket table is full, new sources are refused ("deny new") rather than old
buckets forgotten: a forgotten bucket would hand its source a fresh burst.

A refusal comes with how long to wait, so the runtime can answer "busy, retry
in N s" instead of resetting the connection.
"""

from __future__ import annotations

import ipaddress
import math

# (prefix length, how many /64s' worth of allowance) for an IPv6 source.
IPV6_LEVELS = ((64, 1), (56, 4), (48, 8))
SLOT_WAIT = 1.0            # suggested wait when only the in-progress slots are full


def source_key(host: str) -> str:
    """The finest bucket an address draws from: the address for IPv4, its /64 for IPv6
    (one host easily owns a whole /64, so per-address buckets would be free)."""
    return source_keys(host)[0][0]


def source_keys(host: str) -> list[tuple[str, int]]:
    """Every bucket ``host`` draws from, finest first, with its scale."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return [(host, 1)]
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return [(str(address), 1)]
    return [(str(ipaddress.ip_network(f"{address}/{bits}", strict=False)), scale)
            for bits, scale in IPV6_LEVELS]


class HandshakeLimiter:
    def __init__(self, *, burst: int = 10, per_second: float = 1.0, max_in_progress: int = 64,
                 max_in_progress_per_source: int = 4, max_sources: int = 4096,
                 max_waiting: int = 1024, max_waiting_per_source: int = 16):
        self.burst, self.per_second = burst, per_second
        self.max_in_progress = max_in_progress
        self.max_in_progress_per_source = max_in_progress_per_source
        self.max_sources = max_sources
        self.max_waiting, self.max_waiting_per_source = max_waiting, max_waiting_per_source
        self.in_progress = 0
        self.waiting = 0
        self.refused = 0
        self._active: dict[str, int] = {}      # bucket key -> handshakes in progress
        self._waiting: dict[str, int] = {}     # bucket key -> connections waiting for a hello
        self._buckets: dict[str, tuple[float, float]] = {}     # key -> (tokens, as of)

    # --- stage one: a connection that has not spoken yet ---------------------------------
    def connect(self, host: str, now: float) -> float | None:
        """May a new connection from ``host`` wait for its hello? None if so (call
        ``disconnect`` when it ends), else how many seconds to wait before trying again."""
        keys = source_keys(host)
        if self.waiting >= self.max_waiting or any(
                self._waiting.get(key, 0) >= self.max_waiting_per_source * scale for key, scale in keys):
            self.refused += 1
            return SLOT_WAIT
        self.waiting += 1
        _count(self._waiting, keys, +1)
        return None

    def disconnect(self, host: str) -> None:
        self.waiting = max(0, self.waiting - 1)
        _count(self._waiting, source_keys(host), -1)

    # --- stage two: the hello is in, the cryptography would start ---------------------------
    def admit(self, host: str, now: float) -> float | None:
        """May the handshake of ``host`` go on? None if so (call ``done`` when it ends),
        else how many seconds until it may."""
        keys = source_keys(host)
        if self.in_progress >= self.max_in_progress or any(
                self._active.get(key, 0) >= self.max_in_progress_per_source * scale for key, scale in keys):
            self.refused += 1
            return SLOT_WAIT
        levels = [(key, scale, self._tokens(key, scale, now)) for key, scale in keys]
        short = [(1.0 - tokens) / (self.per_second * scale) for _, scale, tokens in levels if tokens < 1.0]
        if short:
            self.refused += 1
            return max(short)
        new = sum(key not in self._buckets for key, _, _ in levels)
        if new and len(self._buckets) + new > self.max_sources and not self._forget_full(now, new):
            self.refused += 1
            return self.burst / self.per_second    # deny new sources until buckets refill
        for key, _, tokens in levels:
            self._buckets[key] = (tokens - 1.0, now)
        self.in_progress += 1
        _count(self._active, keys, +1)
        return None

    def done(self, host: str) -> None:
        self.in_progress = max(0, self.in_progress - 1)
        _count(self._active, source_keys(host), -1)

    def _tokens(self, key: str, scale: int, now: float) -> float:
        cap = float(self.burst * scale)
        tokens, since = self._buckets.get(key, (cap, now))
        return min(cap, tokens + (now - since) * self.per_second * scale)

    def _forget_full(self, now: float, room: int) -> bool:
        """Drop buckets that have refilled (they hold no information); True if that made
        ``room`` entries free. A bucket still short of tokens is never dropped."""
        for key in list(self._buckets):
            tokens, since = self._buckets[key]
            scale = self._scale_of(key)
            if tokens + (now - since) * self.per_second * scale >= self.burst * scale:
                del self._buckets[key]
        return len(self._buckets) + room <= self.max_sources

    @staticmethod
    def _scale_of(key: str) -> int:
        if "/" not in key:
            return 1
        bits = int(key.rsplit("/", 1)[1])
        return dict(IPV6_LEVELS).get(bits, 1)


def _count(table: dict[str, int], keys: list[tuple[str, int]], delta: int) -> None:
    for key, _ in keys:
        value = table.get(key, 0) + delta
        if value > 0:
            table[key] = value
        else:
            table.pop(key, None)


def retry_after(seconds: float) -> int:
    """A wait to tell a client: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))
