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

from collections import Counter
from collections.abc import Sequence

from moshpit import codec
from moshpit.crypto import PacketOpener, PacketSealer, TrafficKeys
from moshpit.errors import DatagramDropped, DecodeError, DropReason, LocalProtocolError
from moshpit.protocol import frames
from moshpit.protocol.closing import ChannelState, CloseCode
from moshpit.protocol.events import (AddressChanged, Event, StreamGap)
from moshpit.protocol.handshake import DiffMode, SessionParams
from moshpit.protocol.liveness import Liveness
from moshpit.protocol.parts import ChannelConfig, ChannelParts, Role
from moshpit.protocol.streampath import is_stream
from moshpit.protocol.streams import StreamSet
from moshpit.protocol.frameactions import FrameActions
from moshpit.protocol.transmit import Transmitter
from moshpit.protocol.wire import parse_payload

__all__ = ["Channel", "ChannelConfig", "ChannelState", "CloseCode", "Role"]

F = codec  # frame type constants live in the codec


class Channel:
    """One connection's UDP channel. Build it with :meth:`from_params` after a handshake."""

    def __init__(self, role: Role, keys: TrafficKeys, conn_id: int, diff_mode: DiffMode, *,
                 now: float, peer_addr=None, config: ChannelConfig | None = None,
                 screen_source=None):
        self.role = Role(role)
        self.diff_mode = DiffMode(diff_mode)
        self.config = config or ChannelConfig()
        is_client = self.role is Role.CLIENT
        if not is_client and screen_source is None:
            raise LocalProtocolError("a server channel needs a screen_source(base, state) -> bytes")
        own, peer = ((codec.CLIENT_TO_SERVER, codec.SERVER_TO_CLIENT) if is_client
                     else (codec.SERVER_TO_CLIENT, codec.CLIENT_TO_SERVER))
        send_keys, recv_keys = ((keys.client_to_server, keys.server_to_client) if is_client
                                else (keys.server_to_client, keys.client_to_server))
        self._opener = PacketOpener(recv_keys, conn_id=conn_id, direction=peer)
        self._p = p = ChannelParts.build(is_client, self.diff_mode, self.config, now=now,
                                         peer_addr=peer_addr, screen_source=screen_source)
        self._tx = Transmitter(p, PacketSealer(send_keys, conn_id=conn_id, direction=own), now)
        self.conn_id = conn_id
        self.rtt, self.path, self.stats = p.rtt, p.path, p.stats
        self.drops: Counter = Counter()
        # ``send_reliable``: the screen, echo acks and CLOSE we send travel in the ordered
        # flow; ``recv_reliable``: those we receive do.
        self.send_reliable = p.send_reliable
        self.recv_reliable = (not is_client) or self.diff_mode is DiffMode.RELIABLE
        self._unordered_in = frozenset({F.FRAME_CLOSE} if self.recv_reliable
                                       else {F.FRAME_CLOSE, F.FRAME_SCREEN, F.FRAME_ECHO_ACK})
        self._highest_rx = -1
        self._liveness = Liveness(now, self.config.silence_threshold, self.config.silence_report_interval)
        self._act = FrameActions(p, self._tx, self.role, self.drops)

    @classmethod
    def from_params(cls, role: Role, params: SessionParams, *, now: float, peer_addr=None,
                    config: ChannelConfig | None = None, screen_source=None) -> "Channel":
        return cls(role, params.keys, params.conn_id, params.diff_mode, now=now,
                   peer_addr=peer_addr, config=config, screen_source=screen_source)

    # ------------------------------------------------------------------ queries
    @property
    def state(self) -> ChannelState:
        return self._p.closing.state

    @property
    def last_heard(self) -> float:
        return self._liveness.last_heard

    @property
    def peer_addr(self):
        """Where datagrams go (the server follows a roaming client)."""
        return self._p.network.addr

    @property
    def addr_validated(self) -> bool:
        """The peer proved it receives at ``peer_addr`` (until then the budget applies)."""
        return self._p.network.validated

    @property
    def screen_state(self) -> int:
        """Server: the newest screen; client: the newest applied."""
        return self._p.screen_state

    @property
    def screen_acked(self) -> int:
        """Server: the newest screen the client acknowledged."""
        return self._p.screens_out.acked if self._p.screens_out is not None else 0

    srtt = property(lambda self: self.rtt.srtt)
    rto = property(lambda self: self.rtt.rto)

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
        return self._p.send.in_flight

    @property
    def pending_output(self) -> int:
        """Bytes of the ordered stream not yet handed to a datagram."""
        return self._p.send.pending_bytes

    @property
    def output_room(self) -> int:
        """Bytes ``send_data`` should take now (recovery.py's UNSENT_TIME: the rest waits
        in the PTY, where a Ctrl-C discards it)."""
        if not self.accepts_data:
            return 0
        return self._p.send.unsent_room(self.rtt.srtt, self.config.max_datagram_size - codec.OVERHEAD)

    def attach_streams(self, streams: StreamSet | None) -> None:
        """Carry ``streams`` (forwarded connections, which outlive a channel: see streams.py), or no more."""
        self._p.send.streams = streams

    def next_event(self) -> Event | None:
        events = self._p.events
        return events.popleft() if events else None

    # ------------------------------------------------------------ user calls
    def send_data(self, data: bytes) -> None:
        """Queue bytes on the ordered, reliable stream (the server's, in the screen modes:
        the scrollback's lines)."""
        if self.state is not ChannelState.OPEN:
            raise LocalProtocolError(f"cannot send on a {self.state.value} channel")
        if data:
            self._p.send.add_data(data)
            if self.role is Role.CLIENT:
                self._p.send.stream_pacer.typed()     # keystrokes: our forwards yield

    def send_skip(self, offset: int, lines: int) -> None:
        """Server, reliable: the stream goes on from ``offset`` (``lines`` newlines before
        it); what lay between was not kept for this client. A ``repaint()`` should follow."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the server skips output")
        if self.accepts_data:
            self._p.send.drop(F.FRAME_SCREEN)
            self._p.send.add(F.FRAME_SKIP, frames.pack_skip(offset, lines))

    def send_resize(self, cols: int, rows: int) -> None:
        if self.role is not Role.CLIENT:
            raise LocalProtocolError("only the client reports its window size")
        if self.state is ChannelState.OPEN:
            self._p.send.add(F.FRAME_RESIZE, frames.pack_resize(cols, rows))

    def screen_changed(self, state: int) -> None:
        """Server: the screen is now at ``state`` (numbers only grow)."""
        screens = self._p.screens_out
        if screens is None:
            raise LocalProtocolError("only the server has a screen to send")
        if state < screens.state:
            raise LocalProtocolError("screen state numbers must not go backwards")
        screens.state = state

    def screen_applied(self, state: int) -> None:
        """Client: we now hold ``state``; acknowledge it so diffs start from it. (In a
        reliable flow a repaint comes in order and is always drawn, even of a state we
        had: what the terminal shows may have changed since, as a SKIP's marker does.)"""
        self._p.screens_in.applied(state, ordered=self.recv_reliable)

    def request_repaint(self) -> None:
        """Client: we lost track of the screen; ask (reliably) for a full snapshot."""
        self._act.request_repaint()

    def path_changed(self) -> None:
        """Client: our source address changed (new socket); tell the server at once."""
        self._tx.path_changed()

    def use_path(self, addr) -> None:
        """Client: send to ``addr`` now, UDP's or a ``StreamAddress`` (transport.py); the
        server follows. Onto a stream, what is in flight goes once more, then never again."""
        self._client_only("chooses its path")
        self._tx.use_path(addr)

    def probe_datagram(self, now: float) -> bytes:
        """Client: one datagram for the path not in use; the server answers it there."""
        self._client_only("probes paths")
        return self._tx.probe_datagram(now)

    def _client_only(self, what: str) -> None:
        if self.role is not Role.CLIENT:
            raise LocalProtocolError(f"only the client {what}")

    def send_echo_ack(self, keystrokes: int, flags: int, now: float) -> None:
        """Server: the shell has had ``keystrokes`` bytes of input long enough to echo
        them, and its terminal's ECHO/ICANON are ``flags``. In ``reliable`` it travels in
        the stream, after the output it accounts for; otherwise it names the newest
        screen state and rides on every datagram for ECHO_ACK_REPEAT."""
        if not self.send_reliable or self.accepts_data:
            self._tx.echo_ack(keystrokes, flags, now)

    def send_failed(self, error: int, now: float) -> bool:
        """Client: a datagram could not be sent (``error`` is the errno). Returns whether
        to re-open the socket now: then re-open it, call ``path_changed`` and send again."""
        self.stats["send_errors"] += 1
        return self.path is not None and self.path.reopen_after(error, now)

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
        self._p.closing.begin(code, reason, exit_status, now)
        if self.send_reliable:
            self._p.send.add(F.FRAME_CLOSE, self._p.closing.frame())

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
        if self.role is Role.SERVER and addr != self._p.network.addr \
                and any(ft == F.FRAME_PATH_PROBE for ft, _ in immediate):
            self._tx.answer_probe(addr)            # answered there; we stay where we are
        else:
            self._note_address(addr, newest, len(data))
        self._note_contact(now)
        if self.state is ChannelState.CLOSED and (osn is not None or any(
                ft == F.FRAME_PADDING for ft, _ in immediate)):
            self._p.closing.reply_pending = True   # they have not heard our CLOSE yet
        if osn is not None:                      # the stream first: scrollback lines before
            self._on_bundle(osn, ordered, now)   # the screen they scrolled off from
        for frame_type, value in immediate:
            self._act.immediate(frame_type, value, newest, addr, now)

    def _on_bundle(self, osn: int, ordered: list, now: float) -> None:
        self._p.receive.ingest(osn, ordered, now, self.rtt.rto)
        if self.role is Role.SERVER and self._input_gap_given_up(now):
            return
        for batch in self._p.receive.tracker.pop_ready():
            for frame_type, value in batch:
                self._act.ordered(frame_type, value, now)
        self._act.take_abandoned()
        self._p.receive.ack_later(now)

    def _input_gap_given_up(self, now: float) -> bool:
        """Keystrokes are never skipped: a peer that forces a gap is closed on, not obeyed."""
        gone = self._p.receive.tracker.pop_abandoned()
        if not gone:
            return False
        self._p.receive.tracker.pop_ready()                # never deliver what follows a hole
        for first, last in gone:
            self._p.events.append(StreamGap(first, last))
        self.close(CloseCode.PROTOCOL_ERROR, "input stream gap", now=now)
        return True

    def _note_address(self, addr, newest: bool, size: int) -> None:
        if self.role is Role.CLIENT:
            return  # the server does not roam; the client keeps sending where it connected
        old = self._p.network.addr
        if self._p.network.heard_from(addr, newest, size):
            self._p.send.path_is_stream(is_stream(addr))
            self._p.intent.force = True            # send the challenge right away
            self.stats["address_changes"] += 1
            self._p.events.append(AddressChanged(old, addr))

    def _note_contact(self, now: float) -> None:
        if self.path is not None:
            self.path.on_heard(now)
        reachable = self._liveness.heard(now)
        if reachable is not None:
            self._p.events.append(reachable)

    def repaint(self) -> None:
        """Server: send the whole screen next (a resumed client's terminal shows nothing
        of what happened while it was away). In ``reliable`` mode the snapshot goes in
        the stream, after any output already handed to ``send_data``."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only the server repaints")
        self._tx.repaint()

    # ------------------------------------------------------------------ timers
    def get_timer(self) -> float | None:
        """The earliest absolute time at which ``handle_timer`` has something to do."""
        if self.state is ChannelState.CLOSED:
            return None
        deadlines = [self._liveness.next_report]
        nak = self._nak_deadline()
        if nak is not None:
            deadlines.append(nak)
        closing = self._p.closing
        if self.state is ChannelState.CLOSING and closing.deadline is not None:
            deadlines.append(closing.deadline)
        deadlines += self._tx.deadlines()
        return min(deadlines)

    def _nak_deadline(self) -> float | None:
        return self._p.receive.nak_deadline(self.last_heard, self.rtt)

    def handle_timer(self, now: float) -> None:
        nak = self._nak_deadline()
        if nak is not None and now >= nak:
            self._p.receive.naks_due(now, self.rtt.rto)
            self._act.take_abandoned()
        silent = self._liveness.check(now) if self.state is not ChannelState.CLOSED else None
        if silent is not None:
            self._p.events.append(silent)
        self._tx.handle_timer(now, self.last_heard, heard_any=self._highest_rx >= 0)
        closing = self._p.closing
        if self.state is ChannelState.CLOSING and closing.deadline is not None and now >= closing.deadline:
            self._act.become_closed(closing.by_us(timed_out=True), reply=True)   # a last word

    # ------------------------------------------------------------------- send
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, object]]:
        """Everything due now, as ``(datagram, address)`` pairs."""
        return self._tx.datagrams_to_send(now)
