"""Byte streams multiplexed over a session: forwarded agent and TCP connections (no I/O).

Model: aioquic's ``stream.py``, trimmed to what rides on an ordered flow. Stream
frames travel in the channel's ordered, reliable flow, so on one channel they arrive
once and in order. What this layer adds:

- **Flow control.** A receiver grants each stream a window (an absolute ``limit``
  offset, as QUIC's MAX_STREAM_DATA), refilled as the application *consumes* (writes
  to its socket). Credit outstanding across a session is bounded (``SESSION_CREDIT``
  plus a small floor per stream), so a far end that never reads costs bounded memory.
- **Bounds.** At most ``MAX_STREAMS`` open at once; at most ``SEND_BUFFER`` bytes
  queued per stream (the runtime reads its socket only while ``room`` allows).
- **Surviving a new channel.** A resumed connection is a new channel, so bytes are
  kept until the peer says it *received* them (WINDOW's ``received``), not merely
  until a channel acknowledged them. After ``rewind()`` each side sends a WINDOW per
  stream and resends from the offset the other reports; a receiver drops what it
  already had. Streams pause across an outage of any length; they never reset.
- **Priority.** The channel asks for stream frames only after the terminal's own
  frames, so a bulk transfer fills what room typing leaves.

Stream ids: the client opens even ones, the server odd ones (no race for an id).
A peer's frame that breaks these rules is counted in ``violations`` and the stream
it names is reset; it never raises.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from moshpit import codec as F
from moshpit.errors import LocalProtocolError
from moshpit.protocol import frames

AGENT = 1               # stream kinds: a connection to the peer's ssh agent...
TCP = 2                 # ...or a TCP connection (host, port)
LISTEN = 2              # forward kinds: AGENT (a socket for the shell), LISTEN (-R),
HELLO = 3               # and HELLO: which client process is speaking (first on every channel)
FORWARD_ASK = 0         # forward statuses: a request (client to server)...
FORWARD_OK = 1          # ...or the server's answer
FORWARD_REFUSED = 2

INITIAL_WINDOW = 64 << 10      # each new stream may carry this much before any WINDOW
STREAM_CREDIT = 1 << 20        # a stream's window, refilled as it is consumed (a long path's
                               # bandwidth-delay product: 4 MB/s at 250 ms)...
SESSION_CREDIT = 4 << 20       # ...out of this much for the whole session...
MIN_CREDIT = 16 << 10          # ...but never less than this per stream (none starves)
SEND_BUFFER = 1 << 20          # bytes kept per stream: unsent, or sent and not yet received...
SESSION_SEND_BUFFER = 4 << 20  # ...and for all of a session's streams together
MAX_STREAMS = 64
RECEIPT_EVERY = 256 << 10      # a WINDOW says what arrived at least this often


class ResetCode(enum.IntEnum):
    CLOSED = 0            # the application closed it abruptly
    REFUSED = 1           # policy, or nothing listens at the target
    FLOW_CONTROL = 2      # the peer sent past the window
    TOO_MANY = 3          # MAX_STREAMS reached
    PROTOCOL = 4          # an impossible frame for this stream
    SESSION_ENDED = 5     # the session (or the client that opened it) is gone


@dataclass(frozen=True)
class ClientChanged:
    """Server: another client process took the session over; its streams ended (and the
    runtime closes the listeners the old one asked for)."""


@dataclass(frozen=True)
class StreamOpened:
    stream: int
    kind: int
    host: str
    port: int


@dataclass(frozen=True)
class StreamDataReceived:
    stream: int
    data: bytes


@dataclass(frozen=True)
class StreamFinished:
    """The peer will send no more (a half-close)."""
    stream: int


@dataclass(frozen=True)
class StreamClosed:
    """Reset by the peer (or by us, for a peer's fault): the stream is gone."""
    stream: int
    code: int
    reason: str


@dataclass(frozen=True)
class ForwardAsked:
    kind: int
    host: str
    port: int


@dataclass(frozen=True)
class ForwardAnswered:
    kind: int
    host: str
    port: int
    ok: bool
    reason: str


class _Stream:
    def __init__(self, sid: int, kind: int, host: str, port: int, credit: int):
        self.id, self.kind, self.host, self.port = sid, kind, host, port
        self.open_unconfirmed = True      # ours: OPEN not yet answered by a WINDOW
        # sending: _buf holds [base, base + len(_buf)); next is the next offset to send
        self.buf = bytearray()
        self.base = 0
        self.next = 0
        self.limit = INITIAL_WINDOW       # the peer's grant
        self.fin_queued = False
        self.fin_sent = False
        # receiving
        self.received = 0
        self.consumed = 0
        self.granted = INITIAL_WINDOW     # what we let the peer send up to
        self.credit = credit              # granted - consumed may not pass this
        self.reported = 0                 # the ``received`` our last WINDOW said
        self.peer_fin: int | None = None
        self.told_finished = False
        self.fin_acked = False            # the peer's WINDOW closed at our final size
        self.window_due = False

    @property
    def unsent(self) -> int:
        return self.base + len(self.buf) - self.next


class StreamSet:
    """One session's streams, one side's view. Feed it the stream frames the channel
    delivered (``on_frame``), take its frames for the ordered flow (``frames_to_send``),
    and read its events (``next_event``)."""

    def __init__(self, *, is_client: bool, epoch: bytes = b""):
        """``epoch``: client, a random name for this process (a resume from the same
        process carries its streams on; one from another ends them)."""
        self.is_client = is_client
        self._epoch = epoch.hex()
        self._paused = False             # server: a new channel, its client not yet known
        self._next_id = 0 if is_client else 1
        self._streams: dict[int, _Stream] = {}
        self._control: deque[tuple[int, bytes]] = deque()   # OPEN, FIN, RESET, FORWARD
        self._events: deque = deque()
        self._turn = 0                   # round robin among streams with data
        self._peer_next = 1 if is_client else 0   # the peer has opened every id of its below this
        self._buffered = 0               # bytes in all send buffers
        self.violations = 0

    # --- the application's side ----------------------------------------------------------
    def open(self, kind: int, host: str = "", port: int = 0) -> int:
        if len(self._streams) >= MAX_STREAMS:
            raise LocalProtocolError("too many streams: check can_open first")
        sid = self._next_id
        self._next_id += 2
        self._streams[sid] = _Stream(sid, kind, host, port, self._credit_for_new())
        self._control.append((F.FRAME_STREAM_OPEN, frames.pack_stream_open(sid, kind, port, host)))
        return sid

    @property
    def can_open(self) -> bool:
        return len(self._streams) < MAX_STREAMS

    def room(self, sid: int) -> int:
        """Bytes ``send`` takes now (0: stop reading the socket feeding this stream)."""
        stream = self._streams.get(sid)
        if stream is None or stream.fin_queued:
            return 0
        return max(0, min(SEND_BUFFER - len(stream.buf), SESSION_SEND_BUFFER - self._buffered))

    def send(self, sid: int, data: bytes) -> int:
        """Queue what ``room`` allows of ``data``; returns how much was taken."""
        take = min(len(data), self.room(sid))
        if take:
            self._streams[sid].buf += data[:take]
            self._buffered += take
        return take

    def finish(self, sid: int) -> None:
        """Nothing more will be sent on ``sid`` (the socket read EOF)."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.fin_queued = True

    def reset(self, sid: int, code: int = ResetCode.CLOSED, reason: str = "") -> None:
        """End ``sid`` at once, both ways (the socket failed, or was refused)."""
        if self._drop(sid) is not None:
            self._control.append((F.FRAME_STREAM_RESET, frames.pack_stream_reset(sid, code, reason)))

    def consumed(self, sid: int, count: int) -> None:
        """The application wrote ``count`` received bytes on: the peer may send more."""
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.consumed = min(stream.received, stream.consumed + count)
        if stream.told_finished:
            return                        # nothing more will come: no credit to give
        if stream.granted - stream.consumed <= stream.credit // 2:
            stream.granted = stream.consumed + stream.credit
            stream.window_due = True
        elif stream.consumed == stream.received > stream.reported:
            stream.window_due = True      # caught up: the sender may let all of it go

    def ask_forward(self, kind: int, host: str = "", port: int = 0) -> None:
        """Client: ask the server for an agent socket (AGENT) or a listener (LISTEN)."""
        self._control.append((F.FRAME_FORWARD, frames.pack_forward(kind, FORWARD_ASK, port, host)))

    def answer_forward(self, asked: ForwardAsked, ok: bool, reason: str = "", port: int | None = None) -> None:
        """Server: grant (naming the ``port`` it listens on, which differs from the one
        asked only for port 0) or refuse, with a ``reason``."""
        status = FORWARD_OK if ok else FORWARD_REFUSED
        text = asked.host if ok else reason
        port = asked.port if port is None or not ok else port
        self._control.append((F.FRAME_FORWARD, frames.pack_forward(asked.kind, status, port, text)))

    def end_all(self, reason: str) -> None:
        """The session is over (or its client replaced): every stream closes, with a reason."""
        for sid in list(self._streams):
            self.reset(sid, ResetCode.SESSION_ENDED, reason)
            self._events.append(StreamClosed(sid, ResetCode.SESSION_ENDED, reason))

    def new_channel(self) -> None:
        """A channel (the first, or a resumed connection's) carries the streams from now.
        The client names itself first; the server waits to hear whose channel it is."""
        if self.is_client:
            self.rewind()
            self._control.appendleft((F.FRAME_FORWARD, frames.pack_forward(HELLO, FORWARD_ASK, 0, self._epoch)))
        else:
            self._paused = True

    def rewind(self) -> None:
        """A new channel (a resumed connection): what the old one carried may be lost.
        Send again from what the peer last said it received, OPEN again what it never
        confirmed, and tell it what we received."""
        for stream in self._streams.values():
            stream.next = stream.base
            stream.fin_sent = False
            stream.window_due = True
            if stream.open_unconfirmed and self._ours(stream.id):
                self._control.appendleft((F.FRAME_STREAM_OPEN, frames.pack_stream_open(
                    stream.id, stream.kind, stream.port, stream.host)))

    def next_event(self):
        return self._events.popleft() if self._events else None

    def __contains__(self, sid: int) -> bool:
        return sid in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    def buffered(self) -> int:
        """Bytes held for sending, all streams (the memory bound's measure)."""
        return self._buffered

    # --- the channel's side ----------------------------------------------------------------
    def wants_to_send(self) -> bool:
        if self._paused:
            return False
        return bool(self._control) or any(
            s.window_due or (s.unsent and s.next < s.limit) or (s.fin_queued and not s.fin_sent and not s.unsent)
            for s in self._streams.values())

    def frames_to_send(self, room: int) -> list[tuple[int, bytes]]:
        """Stream frames for one bundle, within ``room`` bytes (frame headers counted):
        control first, then windows, then data round robin."""
        out: list[tuple[int, bytes]] = []
        if self._paused:
            return out
        overhead = F.FRAME_HEADER_SIZE
        while self._control and len(self._control[0][1]) + overhead <= room:
            frame = self._control.popleft()
            out.append(frame)
            room -= len(frame[1]) + overhead
        for stream in self._streams.values():
            if stream.window_due and room >= overhead + 20:
                out.append((F.FRAME_STREAM_WINDOW,
                            frames.pack_stream_window(stream.id, stream.received, stream.granted)))
                stream.window_due = False
                stream.reported = stream.received
                room -= overhead + 20
        order = sorted(self._streams)
        if order:
            start = self._turn % len(order)
            for sid in order[start:] + order[:start]:
                stream = self._streams[sid]
                room = self._write_data(stream, out, room)
            self._turn += 1
        return out

    def _write_data(self, stream: _Stream, out: list, room: int) -> int:
        header = F.FRAME_HEADER_SIZE + frames.STREAM_DATA_HEADER_SIZE
        can = min(stream.unsent, stream.limit - stream.next, room - header)
        if can > 0:
            start = stream.next - stream.base
            out.append((F.FRAME_STREAM_DATA, frames.pack_stream_data(
                stream.id, stream.next, bytes(stream.buf[start:start + can]))))
            stream.next += can
            room -= header + can
        if stream.fin_queued and not stream.fin_sent and not stream.unsent and room >= F.FRAME_HEADER_SIZE + 12:
            out.append((F.FRAME_STREAM_FIN, frames.pack_stream_fin(stream.id, stream.next)))
            stream.fin_sent = True
            room -= F.FRAME_HEADER_SIZE + 12
        return room

    def on_frame(self, frame_type: int, value) -> None:
        if frame_type == F.FRAME_STREAM_OPEN:
            self._on_open(value)
        elif frame_type == F.FRAME_STREAM_DATA:
            self._on_data(value)
        elif frame_type == F.FRAME_STREAM_WINDOW:
            self._on_window(value)
        elif frame_type == F.FRAME_STREAM_FIN:
            self._on_fin(value)
        elif frame_type == F.FRAME_STREAM_RESET:
            if self._drop(value.stream) is not None:
                self._events.append(StreamClosed(value.stream, value.code, value.reason))
        elif frame_type == F.FRAME_FORWARD:
            self._on_forward(value)

    # --- frames in ---------------------------------------------------------------------------
    def _ours(self, sid: int) -> bool:
        return (sid % 2 == 0) == self.is_client

    def _violation(self, sid: int, code: int, reason: str) -> None:
        self.violations += 1
        if sid in self._streams:
            self._events.append(StreamClosed(sid, code, reason))
        self.reset(sid, code, reason)

    def _on_open(self, value: frames.StreamOpen) -> None:
        sid = value.stream
        if sid in self._streams:
            return                        # sent again after a rewind: we have it
        if self._ours(sid) or value.kind not in (AGENT, TCP):
            self.violations += 1
        elif len(self._streams) >= MAX_STREAMS:
            self.violations += 1
            self._control.append((F.FRAME_STREAM_RESET, frames.pack_stream_reset(
                sid, ResetCode.TOO_MANY, "too many streams")))
        else:
            self._peer_next = max(self._peer_next, sid + 2)
            stream = _Stream(sid, value.kind, value.host, value.port, self._credit_for_new())
            stream.open_unconfirmed = False
            stream.window_due = True      # confirms the open
            self._streams[sid] = stream
            self._events.append(StreamOpened(sid, value.kind, value.host, value.port))

    def _on_data(self, value: frames.StreamData) -> None:
        stream = self._streams.get(value.stream)
        if stream is None:
            if self._never_opened(value.stream):
                self.violations += 1
            return                        # (closed here: late data is dropped)
        end = value.offset + len(value.data)
        if end > stream.granted or (stream.peer_fin is not None and end > stream.peer_fin):
            self._violation(stream.id, ResetCode.FLOW_CONTROL, "sent past the window")
            return
        if value.offset > stream.received:
            self._violation(stream.id, ResetCode.PROTOCOL, "stream data out of order")
            return
        fresh = value.data[stream.received - value.offset:]
        if fresh:
            stream.received = end
            self._events.append(StreamDataReceived(stream.id, fresh))
            if stream.received - stream.reported >= RECEIPT_EVERY:
                stream.window_due = True  # the sender may let go of what arrived
        self._maybe_finished(stream)

    def _on_window(self, value: frames.StreamWindow) -> None:
        stream = self._streams.get(value.stream)
        if stream is None:
            return
        if value.received > stream.base + len(stream.buf):
            self._violation(stream.id, ResetCode.PROTOCOL, "received more than was sent")
            return
        stream.open_unconfirmed = False
        if value.received > stream.base:
            del stream.buf[:value.received - stream.base]
            self._buffered -= value.received - stream.base
            stream.base = value.received
        stream.next = max(stream.next, stream.base)
        stream.limit = max(stream.limit, value.limit)
        if stream.fin_sent and value.received == value.limit == stream.next:
            stream.fin_acked = True
        self._maybe_done(stream)

    def _on_fin(self, value: frames.StreamFin) -> None:
        stream = self._streams.get(value.stream)
        if stream is None:
            return
        if value.size < stream.received or (stream.peer_fin is not None and stream.peer_fin != value.size):
            self._violation(stream.id, ResetCode.PROTOCOL, "stream end moved")
            return
        if stream.peer_fin is None:
            stream.peer_fin = value.size
            self._maybe_finished(stream)

    def _maybe_finished(self, stream: _Stream) -> None:
        if stream.peer_fin is not None and not stream.told_finished and stream.received == stream.peer_fin:
            stream.told_finished = True
            stream.granted = stream.received  # a window closed at the end: "your FIN arrived"
            stream.window_due = True
            self._events.append(StreamFinished(stream.id))
            self._maybe_done(stream)

    def _maybe_done(self, stream: _Stream) -> None:
        """Both halves closed, each side's FIN known to have arrived: forget it (a last
        WINDOW still goes, so the peer learns its FIN arrived)."""
        if stream.told_finished and stream.fin_acked:
            if stream.window_due:
                self._control.append((F.FRAME_STREAM_WINDOW,
                                      frames.pack_stream_window(stream.id, stream.received, stream.granted)))
            self._drop(stream.id)

    def _on_forward(self, value: frames.Forward) -> None:
        if value.kind == HELLO and not self.is_client and value.status == FORWARD_ASK:
            self._on_hello(value.host)
        elif value.kind not in (AGENT, LISTEN):
            self.violations += 1
        elif self.is_client:
            if value.status == FORWARD_ASK:
                self.violations += 1      # a request from the server: never
            else:
                ok = value.status == FORWARD_OK
                self._events.append(ForwardAnswered(value.kind, value.host if ok else "", value.port, ok,
                                                    "" if ok else value.host))
        elif value.status != FORWARD_ASK:
            self.violations += 1          # an answer from the client: never
        else:
            self._events.append(ForwardAsked(value.kind, value.host, value.port))

    def _on_hello(self, epoch: str) -> None:
        """Server: whose channel this is. The same client: carry on from where it says it
        is. Another: the old one's streams end, with a reason, on both sides."""
        if epoch == self._epoch:
            self.rewind()
        else:
            if self._epoch:                # (nothing goes on the wire: that client is gone,
                self._control.clear()      # and this one will number its streams afresh)
                reason = "another client took the session over"
                for sid in list(self._streams):
                    self._drop(sid)
                    self._events.append(StreamClosed(sid, ResetCode.SESSION_ENDED, reason))
                self._events.append(ClientChanged())
            self._epoch = epoch
            self._peer_next = 0
        self._paused = False

    def _drop(self, sid: int) -> _Stream | None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._buffered -= len(stream.buf)
        return stream

    def _never_opened(self, sid: int) -> bool:
        return sid >= (self._next_id if self._ours(sid) else self._peer_next)

    def _credit_for_new(self) -> int:
        outstanding = sum(s.granted - s.consumed for s in self._streams.values())
        return max(MIN_CREDIT, min(STREAM_CREDIT, SESSION_CREDIT - outstanding))
