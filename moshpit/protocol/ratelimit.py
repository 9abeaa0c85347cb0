"""How many key exchanges the server starts, per source address and in all (no I/O).

Each handshake costs the server an X25519 and an Ed25519 signature before it
knows who is asking, so an unauthenticated peer must not be able to make it
do that without bound. A token bucket per source address allows a burst (a
user reconnecting several terminals at once) and then a steady trickle; caps
on handshakes in progress, per source and in all, stop a few sources from
holding every slot with connections that never finish.
"""

from __future__ import annotations

import ipaddress


def source_key(host: str) -> str:
    """The bucket an address draws from: the address itself, or its /64 for IPv6
    (one host easily owns a whole /64, so per-address buckets would be free)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class HandshakeLimiter:
    def __init__(self, *, burst: int = 10, per_second: float = 1.0, max_in_progress: int = 64,
                 max_in_progress_per_source: int = 4, max_sources: int = 4096):
        self.burst, self.per_second = burst, per_second
        self.max_in_progress = max_in_progress
        self.max_in_progress_per_source = max_in_progress_per_source
        self._active: dict[str, int] = {}
        self.max_sources = max_sources
        self.in_progress = 0
        self.refused = 0
        self._buckets: dict[str, tuple[float, float]] = {}     # source -> (tokens, as of)

    def admit(self, host: str, now: float) -> bool:
        """May a handshake from ``host`` start now? If so, call ``done(host)`` when it ends."""
        key = source_key(host)
        if self.in_progress >= self.max_in_progress \
                or self._active.get(key, 0) >= self.max_in_progress_per_source:
            self.refused += 1
            return False
        tokens, since = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) * self.per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self.refused += 1
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_sources:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now)
        self.in_progress += 1
        self._active[key] = self._active.get(key, 0) + 1
        return True

    def done(self, host: str) -> None:
        key = source_key(host)
        self.in_progress = max(0, self.in_progress - 1)
        if self._active.get(key, 0) <= 1:
            self._active.pop(key, None)
        else:
            self._active[key] -= 1

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold no information); if none
        has, drop the oldest, so the table stays bounded under a flood of sources."""
        full = [k for k, (tokens, since) in self._buckets.items()
                if tokens + (now - since) * self.per_second >= self.burst]
        for key in full or [min(self._buckets, key=lambda k: self._buckets[k][1])]:
            del self._buckets[key]
