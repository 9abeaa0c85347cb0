"""What each received frame does, once its datagram is authentic and parsed (no I/O).

The channel (channel.py) opens datagrams, tracks the peer's address and orders the
bundles; ``FrameActions`` is the step after: a PING times the path, an ACK frees the
ring and may finish a close, a SCREEN chunk builds a state, DATA becomes an event,
and so on. Split from the channel as aioquic splits its connection, so each file
holds one concern; every frame type's handling is here, in one place.
"""

from __future__ import annotations

from collections import Counter

from moshpit import codec
from moshpit.errors import DecodeError, DropReason, printable
from moshpit.protocol import frames
from moshpit.protocol.closing import ChannelState
from moshpit.protocol.events import (AddressValidated, ConnectionClosed, DataReceived, EchoAcknowledged,
                                     OutputSkipped, Resized, ScreenUpdate, StreamGap)
from moshpit.protocol.parts import ChannelParts, Role
from moshpit.protocol.transmit import Transmitter
from moshpit.protocol.wire import STREAM_FRAMES

F = codec  # frame type constants live in the codec


class FrameActions:
    def __init__(self, parts: ChannelParts, tx: Transmitter, role: Role, drops: Counter):
        self._p, self._tx, self._drops = parts, tx, drops
        self._client = role is Role.CLIENT

    @property
    def _state(self) -> ChannelState:
        return self._p.closing.state

    def immediate(self, frame_type: int, value, newest: bool, addr, now: float) -> None:
        """A frame outside any bundle, acted on as it arrives."""
        p = self._p
        if frame_type == F.FRAME_PING:
            p.clock.on_ping(value.timestamp, value.echo, value.echo_delay, newest, now)
            if value.echo is not None and p.network.echoed(addr, value.echo):
                p.events.append(AddressValidated(addr))
        elif frame_type == F.FRAME_ACK:
            self._ack(value, now)
        elif frame_type == F.FRAME_NAK:
            gone, loss = p.send.naked(value)
            if gone:
                p.stats["gone_sent"] += gone
            if loss:
                p.stats["loss_events"] += 1
        elif frame_type == F.FRAME_GONE:
            # Only the output flow may be skipped; keystrokes never are.
            if self._client:
                for first, last in value:
                    p.receive.tracker.give_up(first, last)
                self.take_abandoned()
        elif frame_type == F.FRAME_STATE_ACK:
            if p.screens_out is not None:
                p.screens_out.acknowledged(value)
        elif frame_type == F.FRAME_PADDING:
            p.intent.force = True    # a probe, a path change or a challenge: answer at once
        elif frame_type in (F.FRAME_SCREEN, F.FRAME_CLOSE, F.FRAME_ECHO_ACK):
            self.ordered(frame_type, value, now)   # unreliable flow: act on arrival

    def ordered(self, frame_type: int, value, now: float) -> None:
        """A frame of a bundle, in order (or of the unreliable screen flow)."""
        p = self._p
        if frame_type == F.FRAME_DATA:
            if self._state is not ChannelState.CLOSED:
                if not self._client:
                    self._tx.keys_arrived()
                p.events.append(DataReceived(bytes(value)))
        elif frame_type == F.FRAME_RESIZE:
            p.events.append(Resized(*value))
        elif frame_type == F.FRAME_SCREEN:
            try:
                done = p.screens_in.add(value) if self._client else None
            except DecodeError:
                self._drops[DropReason.MALFORMED] += 1
                return
            if done is not None:
                p.events.append(ScreenUpdate(*done))
        elif frame_type == F.FRAME_REPAINT:
            p.stats["repaint_requests"] += 1
            self._tx.repaint()
        elif frame_type == F.FRAME_ECHO_ACK:
            if p.echo_acks.heard(value.keystrokes, value.flags):
                p.events.append(EchoAcknowledged(value.state, value.keystrokes, value.flags))
        elif frame_type == F.FRAME_CLOSE:
            self._close(*value)
        elif frame_type in STREAM_FRAMES and p.send.streams is not None:
            p.send.streams.on_frame(frame_type, value)
        elif frame_type == F.FRAME_SKIP:
            if self._state is not ChannelState.CLOSED:
                p.events.append(OutputSkipped(value.offset, value.lines))

    def _ack(self, acked_below: int, now: float) -> None:
        send = self._p.send
        newly = send.acked(acked_below, now, self._p.rtt.rto)
        if not newly:
            return
        if self._p.closing.acked(send.peer_ack, now):
            self.become_closed(self._p.closing.by_us())   # they processed our CLOSE, in order
            return
        send.window.acked(newly)

    def become_closed(self, event: ConnectionClosed, *, reply: bool = False) -> None:
        """The one way to CLOSED; ``reply``: the peer may not have heard a CLOSE from us."""
        self._p.closing.state = ChannelState.CLOSED
        if reply:
            self._p.closing.reply_pending = True
        self._p.events.append(event)

    def _close(self, code: int, exit_status: int, reason: str) -> None:
        if self._state is ChannelState.OPEN:
            self.become_closed(ConnectionClosed(code, printable(reason, frames.MAX_REASON_BYTES), by_peer=True,
                                                exit_status=exit_status), reply=True)
        elif self._state is ChannelState.CLOSING:
            self.become_closed(self._p.closing.by_us())
        else:
            self._p.closing.reply_pending = True   # our reply was lost; say it again

    def take_abandoned(self) -> None:
        p = self._p
        for first, last in p.receive.tracker.pop_abandoned():
            # (bundles, not datagrams: the name is the one logs and benchmarks have shown)
            p.stats["datagrams_abandoned"] += last - first + 1
            p.events.append(StreamGap(first, last))
            if self._client:
                self.request_repaint()

    def request_repaint(self) -> None:
        """Client: we lost track of the screen; ask (reliably) for a full snapshot."""
        p = self._p
        if self._state is ChannelState.OPEN and not p.send.holds(F.FRAME_REPAINT):
            p.send.add_first(F.FRAME_REPAINT, frames.pack_u64(p.screen_state))
