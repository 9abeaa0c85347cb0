"""The peer's address as the channel knows it, and the client's path to it (no I/O).

``NetworkPath``: where datagrams go, and whether that address is proven. The server
follows a client that roams (the newest authenticated datagram names the address),
but until the new address echoes a timestamp sent to it (a challenge), it may send
there at most ``factor`` times what it received from there: a spoofed source buys an
attacker no amplification. The one place that budget is counted.
"""

from __future__ import annotations

from moshpit import codec
from moshpit.protocol.roaming import PathMonitor
from moshpit.protocol.streampath import is_stream
from moshpit.protocol.rtt import RttEstimator
from moshpit.protocol.wire import ACK_SIZE, PING_SIZE


def ts_after_or_equal(a: int, b: int) -> bool:
    """``a >= b`` for 32-bit millisecond timestamps that wrap."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


class NetworkPath:
    def __init__(self, addr, *, validated: bool, factor: int):
        self.addr = addr
        self.validated = validated
        self.factor = factor
        self.bytes_from = 0          # received from the unproven address
        self.bytes_to = 0            # sent to it
        self.challenge_ts: int | None = None

    def allowance(self) -> int | None:
        """Bytes that may still be sent before the address is proven (None: no limit)."""
        if self.validated:
            return None
        return self.factor * self.bytes_from - self.bytes_to

    def may_send(self, size: int) -> bool:
        allowance = self.allowance()
        return allowance is None or allowance >= size

    def move_to(self, addr) -> None:
        """A newer datagram came from ``addr``: send there, unproven, from a zero budget.
        (A stream is proven: a connection the key exchange ran over, not a forgeable
        source address.)"""
        self.addr = addr
        self.validated = is_stream(addr)
        self.bytes_from = self.bytes_to = 0
        self.challenge_ts = None

    def heard_from(self, addr, newest: bool, size: int) -> bool:
        """Server: an authenticated datagram of ``size`` came from ``addr``; whether the
        peer moved there (only the newest datagram may move it)."""
        moved = newest and addr != self.addr
        if moved:
            self.move_to(addr)
        self.received(addr, size)
        return moved

    def received(self, addr, size: int) -> None:
        if addr == self.addr and not self.validated:
            self.bytes_from += size

    def sent(self, size: int, ts: int) -> None:
        """A datagram of ``size`` went out with timestamp ``ts``; the first one sent to an
        unproven address is its challenge."""
        if not self.validated:
            self.bytes_to += size
            if self.challenge_ts is None:
                self.challenge_ts = ts

    def echoed(self, addr, echo: int) -> bool:
        """The peer at ``addr`` echoed timestamp ``echo``: True if that proves the address now."""
        if self.validated or addr != self.addr or self.challenge_ts is None \
                or not ts_after_or_equal(echo, self.challenge_ts):
            return False
        self.validated = True
        return True

    def worth_a_datagram(self) -> bool:
        """Whether the budget left pays for a datagram at all (a PING and an ACK)."""
        return self.may_send(codec.OVERHEAD + PING_SIZE + ACK_SIZE)


class ClientPath(PathMonitor):
    """The client's path to the server: when to move sockets (PathMonitor), and until the
    server answers on this path, when to repeat the padded hello (so a lost one does not
    leave the server without an answer budget for a keepalive interval)."""

    def __init__(self, now: float):
        super().__init__(now)
        self.unanswered = True            # nothing heard on this path yet

    def on_heard(self, now: float) -> None:
        super().on_heard(now)
        self.unanswered = False

    def changed(self) -> None:
        """A new source address: the server has not heard from it."""
        self.unanswered = True

    def hello_retry_at(self, last_send: float, keepalive_interval: float, rtt: RttEstimator) -> float | None:
        if not self.unanswered:
            return None
        return last_send + min(keepalive_interval, max(rtt.rto, 0.5))
