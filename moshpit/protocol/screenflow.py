"""The screen's side of the channel: screen messages out, screens in, echo acks (no I/O).

In ``datagram`` and ``statesync`` the screen travels outside the ordered flow: the
newest state supersedes whatever was lost. ``ScreenSender`` (the server) decides
when the next screen message is due (paced, and resent while unacknowledged) and
from which base it is diffed; ``ScreenReceiver`` (the client) reassembles messages
and owes the server a STATE_ACK for each newer state it applies. ``EchoAcks``
carries the server's word on which keystrokes the screen accounts for, for the
client's prediction. In ``reliable`` the screen, when it is sent at all (repaints),
goes in the ordered flow instead, and so do echo acks.
"""

from __future__ import annotations

from moshpit.protocol import frames
from moshpit.protocol.pacing import FramePacer
from moshpit.protocol.rtt import RttEstimator
from moshpit.protocol.screensync import ScreenAssembler, chunk_screen

ECHO_ACK_REPEAT = 1.0       # screen modes: an echo ack rides on every datagram this long
ANSWER_FLOOR = 0.004        # the least time between screen messages when one answers input


class ScreenSender:
    def __init__(self, source, frame_interval: float, frame_burst: int, *, diffs: bool):
        self.source = source                # source(base, state) -> the screen's bytes
        self.diffs = diffs                  # statesync: diff from what the client acknowledged
        self.state = 0                      # the newest screen
        self.acked = 0                      # the newest the client acknowledged
        self._sent = 0
        self._sent_at = float("-inf")
        self._interval = frame_interval
        self._pacer = FramePacer(frame_interval, frame_burst)
        self._answer_owed = False           # input came since the last message

    def typed(self) -> None:
        """Keystrokes arrived: the next new screen (their echo, most likely) goes as soon
        as ANSWER_FLOOR allows instead of waiting its turn in the pacer. At 50 keys a
        second the pacer's 20 frames a second would hold most echoes for up to 50 ms;
        output nobody typed for is paced as before."""
        self._answer_owed = True

    def acknowledged(self, state: int) -> None:
        if self.acked < state <= self.state:
            self.acked = state

    def restart(self) -> None:
        """The client lost track: the next message starts from blank."""
        self.acked = 0
        self._sent = 0

    def deadline(self, rtt: RttEstimator) -> float | None:
        """When the next message is due: a new state when the pacer allows, an
        unacknowledged one again after a frame interval or an RTO."""
        if self.state <= self.acked:
            return None
        if self.state != self._sent:
            paced = self._pacer.next_allowed()
            return min(paced, self._sent_at + ANSWER_FLOOR) if self._answer_owed else paced
        return self._sent_at + max(self._interval, rtt.rto)

    def message(self, now: float, chunk_size: int) -> list[bytes]:
        """The next message's chunks, from the newest state (the source may report a
        newer state while it renders: the message is labelled with the one asked for)."""
        base = self.acked if self.diffs else 0
        state = self.state
        data = self.source(base, state)
        self._sent = state
        self._sent_at = now
        self._answer_owed = False
        self._pacer.sent(now)
        return list(chunk_screen(state, base, data, chunk_size))

    def snapshot(self, chunk_size: int) -> list[bytes]:
        """The whole screen, for a repaint in the ordered flow."""
        state = self.state
        data = self.source(0, state)
        if self.state != state:
            # Rendering took in output that was gathered but not yet modelled. A repaint shows
            # the newest screen (in reliable mode that output is already in the stream before
            # it), labelled with the state it shows.
            state = self.state
            data = self.source(0, state)
        return list(chunk_screen(state, 0, data, chunk_size))


class ScreenReceiver:
    def __init__(self, max_screen_bytes: int):
        self.state = 0                      # the newest screen applied
        self.ack_pending = False            # a STATE_ACK is owed
        self._assembler = ScreenAssembler(max_screen_bytes)

    def add(self, chunk):
        """A SCREEN frame: a whole message once its last chunk is in, else None
        (DecodeError for a chunk that does not fit the message it belongs to)."""
        return self._assembler.add(chunk)

    def applied(self, state: int, *, ordered: bool) -> None:
        if state > self.state:
            self.state = state
            self.ack_pending = True
            if not ordered:
                self._assembler.discard_through(state)


class EchoAcks:
    def __init__(self):
        self._out: bytes | None = None
        self._until = float("-inf")
        self._seen = 0
        self._flags_seen = -1

    def say(self, state: int, keystrokes: int, flags: int, now: float) -> None:
        """Server, screen modes: ride on every datagram for ECHO_ACK_REPEAT."""
        self._out = frames.pack_echo_ack(state, keystrokes, flags)
        self._until = now + ECHO_ACK_REPEAT

    def current(self, now: float) -> bytes | None:
        return self._out if self._out is not None and now <= self._until else None

    def heard(self, keystrokes: int, flags: int) -> bool:
        """Client: whether this ack says anything new (repeats carry nothing)."""
        newer = keystrokes > self._seen
        if newer:
            self._seen = keystrokes
        if newer or flags != self._flags_seen:
            self._flags_seen = flags
            return True
        return False
