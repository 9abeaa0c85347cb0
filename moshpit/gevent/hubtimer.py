"""One re-armed hub timer: the runtime's single wake-up for a sans-IO object's deadlines.

The sans-IO layers say when they next need ``handle_timer`` (``get_timer``); the
runtime keeps exactly one libev timer for the earliest of them, re-armed after every
turn of work. Its callback runs in a greenlet of its own, since what it does may wait
for I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent


class HubTimer:
    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self._timer: Any = None

    def arm(self, deadlines, now: float) -> None:
        """Fire at the earliest of ``deadlines`` (absolute, None for none); none: disarm."""
        self.cancel()
        due = min((t for t in deadlines if t is not None), default=None)
        if due is not None:
            self._timer = gevent.get_hub().loop.timer(max(0.0, due - now))
            self._timer.start(gevent.spawn, self.callback)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def fired(self) -> None:
        """The callback is running: the timer is spent (arm it again for the next)."""
        self._timer = None
