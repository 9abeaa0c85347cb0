"""The UDP channel of one connection, both roles, as a sans-IO state machine.

Model: aioquic's ``QuicConnection``. The caller feeds ``receive_datagram(data,
addr, now)`` (or a read's run of them to ``receive_datagrams``, opened in one
call), sends what ``datagrams_to_send(now)`` returns (sealed in one call), arms one timer at
``get_timer()`` and calls ``handle_timer(now)`` when it fires, and reads
``next_event()`` until it returns None. Nothing here reads a clock or touches a
socket.

Two numbers. Every datagram has a *packet number* (the header sequence number:
nonce, replay window, roaming). Datagrams that carry ordered frames (DATA, SKIP,
RESIZE and REPAINT; SCREEN, ECHO_ACK and CLOSE where their flow is reliable) also
carry an *ordered sequence number* (OSN frame) for their bundle; only bundles are
kept in the sender's 512-entry ring, NAKed, acknowledged and delivered in order. A resend puts the same
ordered frames under a fresh packet number with fresh PING and ACK frames, so
the replay window never stands in its way and control datagrams (keepalives,
ACKs, NAKs) never open gaps of their own.

Flows. Client to server is always reliable: keystrokes are never skipped (the
server NAKs a gap for as long as it takes, and closes rather than deliver past
a hole). Server to client, the output stream is reliable in every mode (a gap
still missing after ten NAKs is given up; NAKs pause while the server is not
heard, so an outage uses none of them up): the raw output in ``reliable``, the
rows that scroll off the screen in ``datagram`` and ``statesync``. There the
screens themselves travel outside it, unreliably: the newest screen state
supersedes whatever was lost.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from moshpit import codec
from moshpit.crypto import PacketOpener, PacketSealer, TrafficKeys
from moshpit.errors import DatagramDropped, DecodeError, DropReason, LocalProtocolError, printable
from moshpit.protocol import frames
from moshpit.protocol.events import (AddressChanged, AddressValidated, ConnectionClosed,
                                     DataReceived, EchoAcknowledged, Event, MoveRequested,
                                     OutputSkipped, PeerReachable,
                                     PeerSilent, Resized, ScreenUpdate, StreamGap)
from moshpit.protocol.handshake import DiffMode, SessionParams
from moshpit.protocol.rtt import PingClock, RttEstimator
from moshpit.protocol.screenflow import EchoAcks, ScreenReceiver, ScreenSender
from moshpit.protocol.builder import PayloadBuilder
from moshpit.protocol.closing import Closing
from moshpit.protocol.path import ClientPath, NetworkPath
from moshpit.protocol.receive import ReceiveFlow
from moshpit.protocol.recovery import RenoWindow, SendFlow
from moshpit.protocol.wire import ACK_SIZE as _ACK_SIZE, FRAME_OVERHEAD as _FRAME_OVERHEAD, \
    OSN_SIZE as _OSN_SIZE, PING_SIZE as _PING_SIZE, parse_payload

F = codec  # frame type constants live in the codec
UNSENT_TIME = 0.02          # output waiting to be sent: what the window sends in this long,
UNSENT_FLOOR = 16 << 10     # ...but at least this much (a slow path still moves)...
UNSENT_CEILING = 1 << 20    # ...and at most this (a LAN or loopback: the window is not the limit)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


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


@dataclass(frozen=True)
class ChannelConfig:
    max_datagram_size: int = 1232       # 1280 minus IPv6 and UDP headers: no path fragments it
    keepalive_interval: float = 3.0
    silence_threshold: float = 6.5      # report the peer silent after this long
    silence_report_interval: float = 1.0
    # At most one screen message per frame_interval, after frame_burst at once following a
    # quiet spell (so a command's output follows its echo without the wait).
    frame_interval: float = 0.050
    frame_burst: int = 2
    # Acknowledge within ack_delay, or at once after ack_every bundles.
    ack_delay: float = 0.020
    ack_every: int = 16
    initial_window: int = 64            # bundles in flight (congestion window)
    min_window: int = 32                # random loss is not congestion: keep a floor
    max_window: int = 448               # below the ring size: NAKed data is still there
    # The screen modes' output flow (scrollback lines) is second to the screens: this few
    # bundles in flight, so it never queues up far ahead of a screen on a slow path.
    lines_window: int = 32
    retransmit_capacity: int = 512      # bundles kept for resending (a power of two)
    close_timeout: float = 3.0
    amplification_factor: int = 3
    max_screen_bytes: int = 8 << 20

    def __post_init__(self):
        if not codec.OVERHEAD + 100 <= self.max_datagram_size <= codec.MAX_DATAGRAM_SIZE:
            raise LocalProtocolError("max_datagram_size out of range")
        if not 1 <= self.min_window <= self.initial_window <= self.max_window < self.retransmit_capacity:
            raise LocalProtocolError("need min_window <= initial_window <= max_window < retransmit_capacity")


@dataclass
class SendIntent:
    """Why the next datagram should go even with nothing else due, set from wherever the
    reason arises (a keepalive, a path change, an echo ack, a PADDING probe heard) and
    cleared when a datagram goes."""
    force: bool = False      # send one now
    pad: bool = False        # client: fill it to the full size (earns the server an answer budget)
    elicit: bool = False     # add an empty PADDING frame: "answer me now" (validates an address)

    def clear(self) -> None:
        self.force = self.pad = self.elicit = False


class Channel:
    """One connection's UDP channel. Build it with :meth:`from_params` after a handshake."""

    def __init__(self, role: Role, keys: TrafficKeys, conn_id: int, diff_mode: DiffMode, *,
                 now: float, peer_addr=None, config: ChannelConfig | None = None,
                 screen_source=None):
        self.role = Role(role)
        self.diff_mode = DiffMode(diff_mode)
        self.config = config or ChannelConfig()
        is_client = self.role is Role.CLIENT
        own, peer = ((codec.CLIENT_TO_SERVER, codec.SERVER_TO_CLIENT) if is_client
                     else (codec.SERVER_TO_CLIENT, codec.CLIENT_TO_SERVER))
        send_keys, recv_keys = ((keys.client_to_server, keys.server_to_client) if is_client
                                else (keys.server_to_client, keys.client_to_server))
        self._sealer = PacketSealer(send_keys, conn_id=conn_id, direction=own)
        self._opener = PacketOpener(recv_keys, conn_id=conn_id, direction=peer)
        # Both directions have an ordered, reliable flow in every mode (keystrokes up; the
        # output stream, or in the screen modes the scrollback's lines, down). ``send_reliable``
        # and ``recv_reliable`` say whether the screen, echo acks and CLOSE travel in it too.
        reliable_down = self.diff_mode is DiffMode.RELIABLE
        self.send_reliable = is_client or reliable_down
        self.recv_reliable = (not is_client) or reliable_down
        window_cap = (self.config.lines_window if not (is_client or reliable_down)
                      else self.config.retransmit_capacity - 1)
        self._unordered_in = frozenset({F.FRAME_CLOSE} if self.recv_reliable
                                       else {F.FRAME_CLOSE, F.FRAME_SCREEN, F.FRAME_ECHO_ACK})
        if not is_client and screen_source is None:
            raise LocalProtocolError("a server channel needs a screen_source(base, state) -> bytes")

        self.rtt = RttEstimator()
        self._clock = PingClock(now, self.rtt)
        self._events: deque[Event] = deque()
        self.drops: Counter = Counter()
        self.stats: Counter = Counter()
        self.state = ChannelState.OPEN

        # peer address and roaming
        self._network = NetworkPath(peer_addr, validated=is_client and peer_addr is not None,
                                 factor=self.config.amplification_factor)
        self._highest_rx = -1

        # liveness
        self.last_heard = now
        self._silent_reported = False
        self._next_silence_report = now + self.config.silence_threshold
        self._last_send = now
        self._intent = SendIntent(force=is_client, pad=is_client)   # the client speaks first, padded
        self.path = ClientPath(now) if is_client else None   # client: when to move sockets, hello again
        # echo acknowledgements (keystroke prediction): the newest sent / seen
        self._echo_acks = EchoAcks()

        # sending the ordered flow (recovery.py)
        self._send = SendFlow(self.config.retransmit_capacity,
                              RenoWindow(self.config.initial_window, self.config.min_window, self.config.max_window),
                              window_cap)

        # receiving ordered frames
        self._receive = ReceiveFlow(max_retries=-1 if self.role is Role.SERVER else 10,
                                    ack_delay=self.config.ack_delay, ack_every=self.config.ack_every)

        # screen state
        self._unordered_out: deque[tuple[int, bytes]] = deque()
        self._screens_out = ScreenSender(screen_source, self.config.frame_interval, self.config.frame_burst,
                                         diffs=self.diff_mode is DiffMode.STATESYNC) if not is_client else None
        self._screens_in = ScreenReceiver(self.config.max_screen_bytes)

        # closing
        self._closing = Closing(self.config.close_timeout)

    @classmethod
    def from_params(cls, role: Role, params: SessionParams, *, now: float, peer_addr=None,
                    config: ChannelConfig | None = None, screen_source=None) -> "Channel":
        return cls(role, params.keys, params.conn_id, params.diff_mode, now=now,
                   peer_addr=peer_addr, config=config, screen_source=screen_source)

    # ------------------------------------------------------------------ queries
    @property
    def peer_addr(self):
        """Where datagrams go (the server follows a roaming client)."""
        return self._network.addr

    @property
    def addr_validated(self) -> bool:
        """The peer proved it receives at ``peer_addr`` (until then the budget applies)."""
        return self._network.validated

    @property
    def _screens(self) -> ScreenSender:
        """The server's screen sender (a client has none)."""
        assert self._screens_out is not None, "only the server sends screens"
        return self._screens_out

    @property
    def screen_state(self) -> int:
        """Server: the newest screen; client: the newest applied."""
        return self._screens_out.state if self._screens_out is not None else self._screens_in.state

    @property
    def screen_acked(self) -> int:
        """Server: the newest screen the client acknowledged."""
        return self._screens_out.acked if self._screens_out is not None else 0

    @property
    def conn_id(self) -> int:
        return self._sealer.conn_id

    @property
    def srtt(self) -> float | None:
        return self.rtt.srtt

    @property
    def rto(self) -> float:
        return self.rtt.rto

    @property
    def closed(self) -> bool:
        return self.state is ChannelState.CLOSED

    @property
    def accepts_data(self) -> bool:
        """``send_data`` may be called: open (closing is too late)."""
        return self.state is ChannelState.OPEN

    @property
    def in_flight(self) -> int:
        """Ordered bundles sent and not yet acknowledged."""
        return self._send.in_flight

    @property
    def pending_output(self) -> int:
        """Bytes of the ordered stream not yet handed to a datagram."""
        return self._send.pending_bytes

    @property
    def output_room(self) -> int:
        """Bytes ``send_data`` should take now. Unsent output is held to about what the
        window sends in UNSENT_TIME (TCP_NOTSENT_LOWAT's idea): whatever waits here must
        cross before anything typed after a Ctrl-C is answered, so the rest waits in the
        PTY, where the tty discards it on an interrupt. Floor and ceiling: a slow path
        still moves, and a fast one is never starved between two PTY reads."""
        if not self.accepts_data:
            return 0
        srtt = self.rtt.srtt
        if srtt is None:
            limit = UNSENT_FLOOR
        else:
            per_rtt = int(self._send.window.cwnd) * (self.config.max_datagram_size - codec.OVERHEAD)
            limit = min(UNSENT_CEILING, max(UNSENT_FLOOR, int(per_rtt * UNSENT_TIME / max(srtt, 1e-4))))
        return max(0, limit - self._send.pending_bytes)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------ user calls
    def send_data(self, data: bytes) -> None:
        """Queue bytes on the ordered, reliable stream (the server's, in the screen modes:
        the scrollback's lines)."""
        if self.state is not ChannelState.OPEN:
            raise LocalProtocolError(f"cannot send on a {self.state.value} channel")
        if data:
            self._send.add_data(data)

    def send_skip(self, offset: int, lines: int) -> None:
        """Server, reliable: the stream goes on from ``offset`` (``lines`` newlines before
        it); what lay between was not kept for this client. A ``repaint()`` should follow."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the server skips output")
        if self.accepts_data:
            self._send.drop(F.FRAME_SCREEN)
            self._send.add(F.FRAME_SKIP, frames.pack_skip(offset, lines))

    def send_resize(self, cols: int, rows: int) -> None:
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only the client reports its window size")
        if self.state is ChannelState.OPEN:
            self._send.add(F.FRAME_RESIZE, frames.pack_resize(cols, rows))

    def screen_changed(self, state: int) -> None:
        """Server: the screen is now at ``state`` (numbers only grow)."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the server has a screen to send")
        if state < self._screens.state:
            raise LocalProtocolError("screen state numbers must not go backwards")
        self._screens.state = state

    def screen_applied(self, state: int) -> None:
        """Client: we now hold ``state``; acknowledge it so diffs start from it. (In a
        reliable flow a repaint comes in order and is always drawn, even of a state we
        had: what the terminal shows may have changed since, as a SKIP's marker does.)"""
        self._screens_in.applied(state, ordered=self.recv_reliable)

    def request_repaint(self) -> None:
        """Client: we lost track of the screen; ask (reliably) for a full snapshot."""
        if self.state is ChannelState.OPEN and not self._send.holds(F.FRAME_REPAINT):
            self._send.add_first(F.FRAME_REPAINT, frames.pack_u64(self.screen_state))

    def path_changed(self) -> None:
        """Client: our source address changed (new socket); tell the server at once."""
        self._intent.force = True
        self._intent.pad = True
        if self.path is not None:
            self.path.changed()
        self._send.resend_newest()         # likely lost on the old path: resend it now
        self.stats["path_moves"] += 1

    def send_echo_ack(self, keystrokes: int, flags: int, now: float) -> None:
        """Server: the shell has had ``keystrokes`` bytes of input long enough to echo
        them, and its terminal's ECHO/ICANON are ``flags``. In ``reliable`` it travels in
        the stream, after the output it accounts for; otherwise it names the newest
        screen state and rides on every datagram for ECHO_ACK_REPEAT."""
        if self.send_reliable:
            if self.accepts_data:
                self._send.add(F.FRAME_ECHO_ACK, frames.pack_echo_ack(0, keystrokes, flags))
            return
        self._echo_acks.say(self.screen_state, keystrokes, flags, now)
        self._intent.force = True

    def send_failed(self, error: int, now: float) -> bool:
        """Client: a datagram could not be sent (``error`` is the errno). Returns whether
        to re-open the socket now: then re-open it, call ``path_changed`` and send again."""
        self.stats["send_errors"] += 1
        if self.path is None or not self.path.send_failed(error, now):
            return False
        self.path.moved(now)
        return True

    @property
    def path_unreachable(self) -> bool:
        """Client: sends keep failing for want of a route: resume over another address."""
        return self.path is not None and self.path.unreachable

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, now: float,
              exit_status: int = 0) -> None:
        """Begin an orderly close; ``ConnectionClosed`` follows when the peer answers or time runs out.
        ``exit_status`` (0..255) travels with it, for a client to pass on as ssh does.

        The timeout counts from the last sign of progress, so a long backlog of
        output drains before the CLOSE behind it."""
        if self.state is not ChannelState.OPEN:
            return
        self.state = ChannelState.CLOSING
        self._closing.begin(code, reason, exit_status, now)
        if self.send_reliable:
            self._send.add(F.FRAME_CLOSE, self._closing.frame())

    # --------------------------------------------------------------- receive
    def receive_datagram(self, data: bytes, addr, now: float) -> None:
        """Take one datagram from ``addr``. Anything bad is counted in ``drops`` and ignored."""
        self.receive_datagrams((data,), addr, now)

    def receive_datagrams(self, datagrams: Sequence[bytes], addr, now: float) -> None:
        """Take a run of datagrams from ``addr`` (one read's), opened in one call."""
        for data, opened in zip(datagrams, self._opener.open_many(datagrams), strict=True):
            if isinstance(opened, DatagramDropped):
                self.drops[opened.reason] += 1
            else:
                seq, payload = opened
                self._take_opened(data, seq, payload, addr, now)

    def _take_opened(self, data: bytes, seq: int, payload: bytes, addr, now: float) -> None:
        try:
            immediate, osn, ordered = parse_payload(payload, from_server=self.role is Role.CLIENT,
                                                    unordered_ok=self._unordered_in)
        except DecodeError:
            self.drops[DropReason.MALFORMED] += 1
            return
        self.stats["datagrams_received"] += 1
        self.stats["bytes_received"] += len(data)
        newest = seq > self._highest_rx
        if newest:
            self._highest_rx = seq
        self._note_address(addr, newest, len(data), now)
        self._note_contact(now)
        if self.state is ChannelState.CLOSED and (osn is not None or any(
                ft == F.FRAME_PADDING for ft, _ in immediate)):
            self._closing.reply_pending = True   # they have not heard our CLOSE yet
        if osn is not None:                      # the stream first: scrollback lines before
            self._on_bundle(osn, ordered, now)   # the screen they scrolled off from
        for frame_type, value in immediate:
            self._on_frame(frame_type, value, newest, addr, now)

    def _on_bundle(self, osn: int, ordered: list, now: float) -> None:
        self._receive.ingest(osn, ordered, now, self.rtt.rto)
        if self.role is Role.SERVER and self._input_gap_given_up(now):
            return
        for batch in self._receive.tracker.pop_ready():
            for frame_type, value in batch:
                self._on_ordered(frame_type, value, now)
        self._take_abandoned()
        self._receive.ack_later(now)

    def _input_gap_given_up(self, now: float) -> bool:
        """Keystrokes are never skipped: a peer that forces a gap is closed on, not obeyed."""
        gone = self._receive.tracker.pop_abandoned()
        if not gone:
            return False
        self._receive.tracker.pop_ready()                # never deliver what follows a hole
        for first, last in gone:
            self._events.append(StreamGap(first, last))
        self.close(CloseCode.PROTOCOL_ERROR, "input stream gap", now=now)
        return True

    def _note_address(self, addr, newest: bool, size: int, now: float) -> None:
        if self.role is Role.CLIENT:
            return  # the server does not roam; the client keeps sending where it connected
        if addr != self._network.addr and newest:
            old = self._network.addr
            self._network.move_to(addr)
            self._intent.force = True            # send the challenge right away
            self.stats["address_changes"] += 1
            self._events.append(AddressChanged(old, addr))
        self._network.received(addr, size)

    def _hello_retry_at(self) -> float | None:
        if self.path is None:
            return None
        return self.path.hello_retry_at(self._last_send, self.config.keepalive_interval, self.rtt)

    def _note_contact(self, now: float) -> None:
        if self.path is not None:
            self.path.on_heard(now)
        if self._silent_reported:
            self._events.append(PeerReachable(now - self.last_heard))
            self._silent_reported = False
        self.last_heard = now
        self._next_silence_report = now + self.config.silence_threshold

    def _on_frame(self, frame_type: int, value, newest: bool, addr, now: float) -> None:
        if frame_type == F.FRAME_PING:
            self._clock.on_ping(value.timestamp, value.echo, value.echo_delay, newest, now)
            if value.echo is not None and self._network.echoed(addr, value.echo):
                self._events.append(AddressValidated(addr))
        elif frame_type == F.FRAME_ACK:
            self._on_ack(value, now)
        elif frame_type == F.FRAME_NAK:
            self._on_nak(value, now)
        elif frame_type == F.FRAME_GONE:
            # Only the output flow may be skipped; keystrokes never are.
            if self.role is Role.CLIENT:
                for first, last in value:
                    self._receive.tracker.give_up(first, last)
                self._take_abandoned()
        elif frame_type == F.FRAME_STATE_ACK:
            if self._screens_out is not None:
                self._screens_out.acknowledged(value)
        elif frame_type == F.FRAME_PADDING:
            self._intent.force = True    # a probe, a path change or a challenge: answer at once
        elif frame_type in (F.FRAME_SCREEN, F.FRAME_CLOSE, F.FRAME_ECHO_ACK):
            self._on_ordered(frame_type, value, now)   # unreliable flow: act on arrival

    def _on_ordered(self, frame_type: int, value, now: float) -> None:
        if frame_type == F.FRAME_DATA:
            if self.state is not ChannelState.CLOSED:
                self._events.append(DataReceived(bytes(value)))
        elif frame_type == F.FRAME_RESIZE:
            self._events.append(Resized(*value))
        elif frame_type == F.FRAME_SCREEN:
            try:
                done = self._screens_in.add(value) if self.role is Role.CLIENT else None
            except DecodeError:
                self.drops[DropReason.MALFORMED] += 1
                return
            if done is not None:
                self._events.append(ScreenUpdate(*done))
        elif frame_type == F.FRAME_REPAINT:
            self._on_repaint_request()
        elif frame_type == F.FRAME_ECHO_ACK:
            if self._echo_acks.heard(value.keystrokes, value.flags):
                self._events.append(EchoAcknowledged(value.state, value.keystrokes, value.flags))
        elif frame_type == F.FRAME_CLOSE:
            self._on_close(*value)
        elif frame_type == F.FRAME_SKIP:
            if self.state is not ChannelState.CLOSED:
                self._events.append(OutputSkipped(value.offset, value.lines))

    def _on_ack(self, acked_below: int, now: float) -> None:
        newly = self._send.acked(acked_below, now, self.rto)
        if not newly:
            return
        acked_below = self._send.peer_ack
        if self.state is ChannelState.CLOSING:
            if self._closing.osn is not None and acked_below > self._closing.osn:
                # They acknowledged the bundle with our CLOSE: they processed it, in order.
                self._become_closed(self._closing.by_us())
                return
            self._closing.progress(now)       # still draining: not stuck
        self._send.window.acked(newly)

    def _on_nak(self, ranges, now: float) -> None:
        gone, loss = self._send.naked(ranges)
        if gone:
            self.stats["gone_sent"] += gone
        if loss:
            self.stats["loss_events"] += 1

    def repaint(self) -> None:
        """Server: send the whole screen next (a resumed client's terminal shows nothing
        of what happened while it was away). In ``reliable`` mode the snapshot goes in
        the stream, after any output already handed to ``send_data``."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the server repaints")
        self._repaint()

    def _on_repaint_request(self) -> None:
        self.stats["repaint_requests"] += 1
        self._repaint()

    def _repaint(self) -> None:
        if self.send_reliable:
            self._queue_snapshot()
        else:
            self._screens.restart()

    def _queue_snapshot(self) -> None:
        if self.screen_state == 0 or self._send.holds(F.FRAME_SCREEN):
            return                            # one queued repaint is enough
        for body in self._screens.snapshot(self._chunk_size()):
            self._send.add(F.FRAME_SCREEN, body)

    def _become_closed(self, event: ConnectionClosed, *, reply: bool = False) -> None:
        """The one way to CLOSED; ``reply``: the peer may not have heard a CLOSE from us."""
        self.state = ChannelState.CLOSED
        if reply:
            self._closing.reply_pending = True
        self._events.append(event)

    def _on_close(self, code: int, exit_status: int, reason: str) -> None:
        if self.state is ChannelState.OPEN:
            self._become_closed(ConnectionClosed(code, printable(reason, frames.MAX_REASON_BYTES), by_peer=True,
                                                 exit_status=exit_status), reply=True)
        elif self.state is ChannelState.CLOSING:
            self._become_closed(self._closing.by_us())
        else:
            self._closing.reply_pending = True   # our reply was lost; say it again

    def _take_abandoned(self) -> None:
        for first, last in self._receive.tracker.pop_abandoned():
            # (bundles, not datagrams: the name is the one logs and benchmarks have shown)
            self.stats["datagrams_abandoned"] += last - first + 1
            self._events.append(StreamGap(first, last))
            if self.role is Role.CLIENT:
                self.request_repaint()

    # ------------------------------------------------------------------ timers
    def get_timer(self) -> float | None:
        """The earliest absolute time at which ``handle_timer`` has something to do."""
        if self.state is ChannelState.CLOSED:
            return None
        deadlines = [self._next_silence_report]
        nak = self._nak_deadline()
        if nak is not None:
            deadlines.append(nak)
        if self.state is ChannelState.CLOSING and self._closing.deadline is not None:
            deadlines.append(self._closing.deadline)
        if not self._can_send():
            return min(deadlines)   # nothing can go out before the peer speaks again
        deadlines.append(self._last_send + self.config.keepalive_interval)
        hop = self._hop_deadline()
        if hop is not None:
            deadlines.append(hop)
        hello = self._hello_retry_at()
        if hello is not None:
            deadlines.append(hello)
        if self._receive.ack_due is not None:
            deadlines.append(self._receive.ack_due)
        if self._send.probe_at is not None:
            deadlines.append(self._send.probe_at)
        screen = self._screen_deadline()
        if screen is not None:
            deadlines.append(screen)
        if self._screens_in.ack_pending:
            deadlines.append(self._last_send)  # at once: the server diffs from what we ack
        close_at = self._close_resend_at()
        if close_at is not None:
            deadlines.append(close_at)
        return min(deadlines)

    def _hop_deadline(self) -> float | None:
        if self.path is None or self.state is not ChannelState.OPEN:
            return None
        return self.path.hop_deadline(self.rtt.rto, self.config.keepalive_interval)

    def _close_resend_at(self) -> float | None:
        """When an unreliable flow next repeats its CLOSE: once the final screen is
        acknowledged (or half the close timeout has gone), then every RTO."""
        if self.state is not ChannelState.CLOSING or self.send_reliable:
            return None
        return self._closing.resend_at(self.screen_acked >= self.screen_state, self.rto)

    def _can_send(self) -> bool:
        """Whether a datagram could go out now: a known peer, and budget if it is unvalidated."""
        return self._network.addr is not None and self._network.worth_a_datagram()

    def _nak_deadline(self) -> float | None:
        return self._receive.nak_deadline(self.last_heard, self.rtt)

    def handle_timer(self, now: float) -> None:
        nak = self._nak_deadline()
        if nak is not None and now >= nak:
            self._receive.naks_due(now, self.rtt.rto)
            self._take_abandoned()
        if now >= self._next_silence_report and self.state is not ChannelState.CLOSED:
            self._silent_reported = True
            self._events.append(PeerSilent(now - self.last_heard))
            self._next_silence_report = now + self.config.silence_report_interval
        if now >= self._last_send + self.config.keepalive_interval:
            self._intent.force = True
        hop = self._hop_deadline()
        if hop is not None and now >= hop and self.path is not None:
            self.path.moved(now)
            self._events.append(MoveRequested(now - self.last_heard))
        hello = self._hello_retry_at()
        if hello is not None and now >= hello:
            self._intent.force = self._intent.pad = True
        if self._send.probe_at is not None and now >= self._send.probe_at:
            self._send.probe(now, self.rto, closing=self.state is ChannelState.CLOSING)
            self.stats["probes"] += 1
            if self.role is Role.CLIENT and self._highest_rx < 0:
                self._intent.pad = True        # never heard back: the padded hello may have been lost
        if self.state is ChannelState.CLOSING and self._closing.deadline is not None \
                and now >= self._closing.deadline:
            self._become_closed(self._closing.by_us(timed_out=True), reply=True)   # a last word

    def _screen_deadline(self) -> float | None:
        if self._screens_out is None or self.send_reliable:
            return None
        return self._screens_out.deadline(self.rtt)

    # ------------------------------------------------------------------- send
    def _chunk_size(self) -> int:
        return (self.config.max_datagram_size - codec.OVERHEAD - _PING_SIZE - _ACK_SIZE
                - _OSN_SIZE - _FRAME_OVERHEAD - frames.SCREEN_HEADER_SIZE - 16)

    def _prepare_screen(self, now: float) -> None:
        deadline = self._screen_deadline()
        if deadline is None or now < deadline or self.state is ChannelState.CLOSED:
            return
        self._unordered_out = deque(   # a newer message supersedes any chunks not yet sent
            (F.FRAME_SCREEN, body) for body in self._screens.message(now, self._chunk_size()))
        self.stats["screen_messages"] += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, object]]:
        """Everything due now, as ``(datagram, address)`` pairs."""
        if self.peer_addr is None:
            return []
        close_at = self._close_resend_at()
        if close_at is not None and now >= close_at:
            self._unordered_out.append((F.FRAME_CLOSE, self._closing.frame()))
            self._closing.sent(now)
        if self._closing.reply_pending:
            self._closing.reply_pending = False
            self._unordered_out.append((F.FRAME_CLOSE, frames.pack_close(CloseCode.NORMAL, "")))
        self._prepare_screen(now)
        if not self.addr_validated:
            self._intent.elicit = True     # one "answer me" per batch, never a burst of them
        payloads: list[bytes] = []
        pending = self._send.take_resends()
        for i, osn in enumerate(pending):
            bundle = self._send.ring.lookup(osn)
            if bundle is None:
                self._send.gone.add(osn)
                continue
            for _ in range(self._send.copies(osn)):
                payload = self._build_payload(now, resend=bundle)
                if payload is None:
                    break
                payloads.append(payload)
                self.stats["retransmitted"] += 1
            else:
                continue
            self._send.resend.update(pending[i:])   # over the amplification budget: later
            break
        while True:
            payload = self._build_payload(now)
            if payload is None:
                break
            payloads.append(payload)
        if not payloads:                     # the common answer on a quiet channel: no call
            return []
        peer = self.peer_addr
        return [(datagram, peer) for datagram in self._sealer.seal_many(payloads)]   # one call a turn

    def _count_sent(self, size: int, ts: int, now: float) -> None:
        self._last_send = now
        self.stats["datagrams_sent"] += 1
        self.stats["bytes_sent"] += size
        self._network.sent(size, ts)

    def _anything_due(self, now: float) -> bool:
        """Whether a datagram could be worth sending now (never False when one is):
        the send loop always asks once more than it sends, and that last question
        is on every keystroke's path, so it is answered without building anything."""
        return bool(self._intent.force or self._receive.naks or self._send.gone or self._screens_in.ack_pending
                    or self._unordered_out or self._intent.elicit
                    or (self._intent.pad and self.role is Role.CLIENT)
                    or self._receive.ack_is_due(now)
                    or self._ordered_may_go())

    def _ordered_may_go(self) -> bool:
        return self.state is not ChannelState.CLOSED and self._send.may_go(self.rtt.srtt, self.rtt.min_rtt)

    def _build_payload(self, now: float, resend: bytes | None = None) -> bytes | None:
        """The frames of one datagram of whatever is due (sealed by the caller, with the
        rest of its turn), or None. With ``resend``, that stored bundle goes out again
        under a fresh packet number with fresh PING and ACK frames."""
        if resend is None and not self._anything_due(now):
            return None
        budget = self.config.max_datagram_size - codec.OVERHEAD
        allowance = self._network.allowance()
        if allowance is not None:
            allowance -= codec.OVERHEAD
            if allowance < _PING_SIZE + _ACK_SIZE + (len(resend) if resend else 0):
                return None       # unvalidated address, budget spent: wait for it to answer
            budget = min(budget, allowance)
        out = PayloadBuilder(budget)
        ts = self._clock.next_ts(now)
        out.add(F.FRAME_PING, frames.pack_ping(ts, *self._clock.echo(now, frames.NO_ECHO)))
        ack_sent = out.add(F.FRAME_ACK, frames.pack_u64(self._receive.next_expected))
        if resend is None:
            worth_sending = self._write_control(out, now) | self._write_ordered(out, now)
        else:
            out.add_bundle(resend)
            worth_sending = True
        eliciting = bool(out.bundle)         # ordered frames (or a resend): the peer ACKs them
        if self._intent.pad and self.role is Role.CLIENT:
            out.pad()
            worth_sending = eliciting = True
        elif self._intent.elicit and out.add(F.FRAME_PADDING, b""):
            worth_sending = eliciting = True   # "answer me now": the answer's echo validates the address
        if not (worth_sending or self._intent.force or self._receive.ack_is_due(now)):
            self._clock.give_back(ts)     # nothing sent
            return None
        payload = out.payload()
        if ack_sent:
            self._receive.acked()
        self._intent.clear()
        self._count_sent(len(payload) + codec.OVERHEAD, ts, now)
        if eliciting and self.path is not None:
            self.path.on_sent(now)             # an answer is due: silence from here counts
        return payload

    def _write_control(self, out: PayloadBuilder, now: float) -> bool:
        """NAK, GONE, ECHO_ACK, STATE_ACK and the unordered frames: whether any is worth a datagram."""
        worth_sending = False
        if self._receive.naks and out.ranges_room > 0:
            out.add(F.FRAME_NAK, frames.pack_ranges(self._receive.take_naks(out.ranges_room)))
            worth_sending = True
        if self._send.gone and out.ranges_room > 0:
            out.add(F.FRAME_GONE, frames.pack_ranges(self._send.take_gone(out.ranges_room)))
            worth_sending = True
        echo_ack = self._echo_acks.current(now)
        if echo_ack is not None:
            out.add(F.FRAME_ECHO_ACK, echo_ack)
        if self._screens_in.ack_pending and out.add(F.FRAME_STATE_ACK, frames.pack_u64(self.screen_state)):
            self._screens_in.ack_pending = False
            worth_sending = True
        while self._unordered_out and out.add(*self._unordered_out[0]):
            self._unordered_out.popleft()
            worth_sending = True
        return worth_sending

    def _write_ordered(self, out: PayloadBuilder, now: float) -> bool:
        """A new bundle of the ordered flow, if the window lets one go."""
        if not self._ordered_may_go():
            return False
        room = min(out.left, self.config.max_datagram_size - codec.OVERHEAD - _PING_SIZE - _ACK_SIZE) - _OSN_SIZE
        ordered = self._send.take(room)
        if not ordered:
            return False
        osn, bundle = self._send.bundle(ordered, now, self.rto)
        if any(ft == F.FRAME_CLOSE for ft, _ in ordered):
            self._closing.osn = osn
        out.add_bundle(bundle)
        return True
