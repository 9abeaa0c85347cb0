"""An orderly close: what we said, when to say it again, when to give up (no I/O).

A reliable flow carries our CLOSE in the ordered flow, after everything sent before
it, and the close is done when the peer acknowledges that bundle (``osn``). An
unreliable flow (the server's, in the screen modes) repeats its CLOSE outside it:
once the final screen is acknowledged (or half the timeout has gone), then every
RTO. Either way the timeout counts from the last sign of progress, so a long
backlog drains before the CLOSE behind it. Once closed, a peer still sending has
not heard us: we answer it with a CLOSE (``reply_pending``).
"""

from __future__ import annotations

import enum

from moshpit.protocol import frames
from moshpit.protocol.events import ConnectionClosed


class ChannelState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class CloseCode(enum.IntEnum):
    NORMAL = 0
    SHELL_EXITED = 1
    SERVER_SHUTDOWN = 2
    DISPLACED = 3          # a newer connection resumed this session
    PROTOCOL_ERROR = 4
    DETACHED_TIMEOUT = 5   # the server ended a session whose client was gone too long


class Closing:
    """Where the channel is in its life (``state``), and the close under way."""

    def __init__(self, timeout: float):
        self.state = ChannelState.OPEN
        self.timeout = timeout
        self.code = 0
        self.reason = ""
        self.exit_status = 0               # the shell's, told with SHELL_EXITED
        self.deadline: float | None = None
        self.osn: int | None = None        # the bundle that carried our CLOSE
        self.reply_pending = False
        self._sent_at = float("-inf")

    def begin(self, code: int, reason: str, exit_status: int, now: float) -> None:
        self.state = ChannelState.CLOSING
        self.code, self.reason, self.exit_status = int(code), reason, exit_status & 0xFF
        self.deadline = now + self.timeout

    def progress(self, now: float) -> None:
        """The peer is taking what we send: not stuck, whatever is still queued."""
        self.deadline = now + self.timeout

    def acked(self, acked_below: int, now: float) -> bool:
        """The peer holds every bundle below ``acked_below``: whether that includes our CLOSE."""
        if self.state is not ChannelState.CLOSING:
            return False
        if self.osn is not None and acked_below > self.osn:
            return True
        self.progress(now)                 # still draining: not stuck
        return False

    def frame(self) -> bytes:
        return frames.pack_close(self.code, self.reason, self.exit_status)

    def by_us(self, timed_out: bool = False) -> ConnectionClosed:
        return ConnectionClosed(self.code, self.reason, by_peer=False, timed_out=timed_out,
                                exit_status=self.exit_status)

    def resend_at(self, screen_acked: bool, rto: float) -> float:
        """Unreliable flow: when our CLOSE next goes out."""
        assert self.deadline is not None                # (only while closing)
        ready = float("-inf") if screen_acked else self.deadline - self.timeout / 2
        return max(ready, self._sent_at + max(rto, 0.2))

    def sent(self, now: float) -> None:
        self._sent_at = now
