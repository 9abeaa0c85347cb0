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

from moshpit.protocol import frames
from moshpit.protocol.events import ConnectionClosed


class Closing:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.code = 0
        self.reason = ""
        self.exit_status = 0               # the shell's, told with SHELL_EXITED
        self.deadline: float | None = None
        self.osn: int | None = None        # the bundle that carried our CLOSE
        self.reply_pending = False
        self._sent_at = float("-inf")

    def begin(self, code: int, reason: str, exit_status: int, now: float) -> None:
        self.code, self.reason, self.exit_status = int(code), reason, exit_status & 0xFF
        self.deadline = now + self.timeout

    def progress(self, now: float) -> None:
        """The peer is taking what we send: not stuck, whatever is still queued."""
        self.deadline = now + self.timeout

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
