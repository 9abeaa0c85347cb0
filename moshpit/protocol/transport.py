"""Which path the client's datagrams take: UDP, or the kept key-exchange stream (no I/O).

``transport = auto`` (the default) sends over UDP while UDP answers, and moves to
the stream (see streampath.py) when it does not: at the start, when nothing has
come back over UDP within FALLBACK_AFTER; mid-session, when the channel finds UDP
silent while it waits for an answer (its MoveRequested). On the stream it keeps
trying UDP, a padded probe now and then (soon after the move, then every
PROBE_INTERVAL), and moves back as soon as an answer comes over UDP. A probe
makes the server follow to UDP (it follows the newest datagram); if no answer
comes back within PROBE_PATIENCE, the client speaks on the stream again, and the
server comes back to it. ``udp`` never uses the stream; ``stream`` never uses UDP.
"""

from __future__ import annotations

import enum

FALLBACK_AFTER = 2.0      # at the start: UDP unanswered this long, and the stream is there
FIRST_PROBE = 1.0         # after a move to the stream: try UDP this soon...
PROBE_INTERVAL = 5.0      # ...then, doubling, at most this far apart
PROBE_PATIENCE = 1.0      # a probe unanswered this long: call the server back to the stream


class Transport(enum.Enum):
    AUTO = "auto"
    UDP = "udp"
    STREAM = "stream"


class Step(enum.Enum):
    """What the runtime is to do."""
    USE_STREAM = "use the stream"        # channel.use_path(the stream's address)
    USE_UDP = "use UDP"                  # channel.use_path(the UDP address)
    PROBE_UDP = "probe UDP"              # send channel.probe_datagram() over UDP
    RECALL = "speak on the stream"       # channel.use_path(the stream's address) again


class PathChooser:
    """The client's choice of path, told what was heard where; asked at its timer."""

    def __init__(self, transport: Transport, now: float, *, stream: bool):
        """``stream``: the key-exchange stream was kept (a route that has one)."""
        self.transport = transport
        self.stream_up = stream and transport is not Transport.UDP
        self.on_stream = self.stream_up and transport is Transport.STREAM
        self.udp_heard = False
        self.moves = 0                   # to the stream and back, for the log and tests
        self._fallback_at = now + FALLBACK_AFTER if self._may_switch else None
        self._probe_at: float | None = None
        self._probed_at: float | None = None
        self._interval = FIRST_PROBE
        self._recall_at: float | None = None

    @property
    def _may_switch(self) -> bool:
        return self.transport is Transport.AUTO and self.stream_up

    def first_steps(self) -> list[Step]:
        """Where to start: the stream for ``transport = stream``, else UDP."""
        return [Step.USE_STREAM] if self.on_stream else []

    def heard_udp(self, now: float) -> list[Step]:
        """An authentic datagram came over UDP."""
        if not self.on_stream:
            self.udp_heard = True
            self._fallback_at = None
            return []
        if self._probed_at is None or self.transport is not Transport.AUTO:
            return []                    # one sent before we moved, arriving late: not an answer
        return self._move(to_stream=False, now=now)

    def udp_silent(self, now: float) -> list[Step]:
        """The channel found UDP silent while it waited for an answer (MoveRequested)."""
        if self.on_stream or not self._may_switch:
            return []
        return self._move(to_stream=True, now=now)

    def stream_lost(self) -> bool:
        """The stream closed; whether it was in use (then the runtime goes back to UDP
        and resumes over a new key exchange, which brings a new stream)."""
        was_in_use = self.on_stream
        self.stream_up = self.on_stream = False
        self._fallback_at = self._probe_at = self._recall_at = None
        return was_in_use

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._fallback_at, self._probe_at, self._recall_at) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Step]:
        steps: list[Step] = []
        if self._fallback_at is not None and now >= self._fallback_at:
            self._fallback_at = None
            if not self.udp_heard and not self.on_stream and self._may_switch:
                steps += self._move(to_stream=True, now=now)
        if self._recall_at is not None and now >= self._recall_at:
            self._recall_at = None
            steps.append(Step.RECALL)
        if self._probe_at is not None and now >= self._probe_at:
            self._probed_at = now
            self._recall_at = now + PROBE_PATIENCE
            self._interval = min(self._interval * 2, PROBE_INTERVAL)
            self._probe_at = now + self._interval
            steps.append(Step.PROBE_UDP)
        return steps

    def _move(self, *, to_stream: bool, now: float) -> list[Step]:
        self.on_stream = to_stream
        self.moves += 1
        self._fallback_at = self._recall_at = self._probed_at = None
        if to_stream:
            self._interval = FIRST_PROBE
            self._probe_at = now + FIRST_PROBE
            return [Step.USE_STREAM]
        self._probe_at = None
        self.udp_heard = True
        return [Step.USE_UDP]
