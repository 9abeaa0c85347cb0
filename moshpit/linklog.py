"""Log records as data over a socket, for processes that hold no log file of their own.

A session process runs as its user. Given the listener's log descriptor it could read
the whole log, truncate it, or write anything into it; given its stderr it could write
to root's terminal. So it gets neither: ``LinkLogHandler`` sends each record over the
link as a small message, and the listener's ``LogIntake`` logs it as what it is, text
from a process it does not trust: control characters shown as ``?``, cut short, and
rate-limited (what is over the rate is dropped and counted, never queued). The fork
server, which runs as root but has stdio on /dev/null, uses the same path.
"""

from __future__ import annotations

import json
import logging
import socket

from moshpit.errors import printable
from moshpit.protocol import link

RATE = 20.0            # records a second a process may log, on average
BURST = 100            # and at once


class LinkLogHandler(logging.Handler):
    """Sends each record as ``{"op": "log", ...}`` on ``sock`` without waiting: when the
    link is full the record is dropped here (the listener is reading on a budget)."""

    def __init__(self, sock: socket.socket, level: int = logging.NOTSET):
        super().__init__(level)
        self.sock = sock
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                lines = self.formatter.formatException(record.exc_info) if self.formatter else \
                    logging.Formatter().formatException(record.exc_info)
                text += " | " + " | ".join(lines.splitlines()[-6:])
            level = min(50, max(10, record.levelno // 10 * 10))
            text = text[:link.MAX_LOG_TEXT]
            while len(data := _encode(level, text)) > link.MAX_FROM_SESSION:   # escapes lengthen JSON
                text = text[: len(text) * 3 // 4]
            self.sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except Exception:
            self.dropped += 1                                     # a handler never raises into its caller


def _encode(level: int, text: str) -> bytes:
    return json.dumps({"op": link.LOG, "level": level, "message": text}, separators=(",", ":")).encode()


def send_logs_over(sock: socket.socket, level: int) -> LinkLogHandler:
    """From now on this process logs only over ``sock`` (every other handler removed)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = LinkLogHandler(sock)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class LogIntake:
    """The listener's side: logs what one process sent, safely, within a token bucket."""

    def __init__(self, who: str, logger: logging.Logger, rate: float = RATE, burst: int = BURST):
        self.who, self.logger = who, logger
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._as_of: float | None = None
        self.dropped = 0

    def take(self, level: int, message: str, now: float) -> bool:
        """Log one record (False: it was over the rate and dropped)."""
        if self._as_of is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._as_of) * self.rate)
        self._as_of = now
        if self._tokens < 1:
            self.dropped += 1
            return False
        self._tokens -= 1
        if self.dropped:
            self.logger.warning("%s: %d log records dropped (over %g a second)", self.who, self.dropped, self.rate)
            self.dropped = 0
        self.logger.log(level, "%s: %s", self.who, printable(message, link.MAX_LOG_TEXT))
        return True

    @property
    def over_budget(self) -> bool:
        return self._tokens < 1
