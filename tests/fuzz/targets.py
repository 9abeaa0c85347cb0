"""Fuzz targets for every parser of moshpit that the network reaches.

Each target is a function ``target(data: bytes)`` that hands ``data`` to one parser the
way the network would, and raises only if something is wrong: an exception other than
the documented ones, or a broken invariant (a round trip that does not come back, a
result the parser's own rules forbid). The documented outcomes of bad input are
``DecodeError`` / ``RemoteProtocolError`` (``HandshakeError`` and friends); a channel
never raises on ``receive_datagram`` at all (it counts drops). A target returns a small
hashable *outcome* (which path the input took); the seeded runner keeps inputs with a
new outcome as seeds for further mutation, a cheap stand-in for coverage feedback.

Everything is deterministic: handshakes draw their "random" values from a fixed-seed
generator, so a reproducer file replays exactly. ``SEEDS[name]()`` builds each
target's seed corpus from real objects (valid messages, real datagram payloads).

Targets: codec, frames, handshake_server, handshake_client, screen_reassembly,
channel_reliable, channel_datagram, channel_statesync, terminal_stream, link.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import struct
import zlib

import nacl.signing

from moshpit import codec
from moshpit.crypto import PacketOpener
from moshpit.errors import DatagramDropped, DecodeError, RemoteProtocolError
from moshpit.protocol import frames, link, streams
from moshpit.protocol import handshake as hs
from moshpit.protocol.channel import Channel, ChannelState, Role
from moshpit.protocol.events import (AuthRequested, HandshakeComplete, HandshakeRefused,
                                     HostKeyReceived)
from moshpit.protocol.handshake import ClientHandshake, DiffMode, ServerHandshake
from moshpit.protocol.screensync import ScreenAssembler, chunk_screen
from moshpit.replay import ReplayWindow
from moshpit.clientsession import ClientSession
from moshpit.session import ServerSession
from moshpit.terminal.model import TerminalModel
from moshpit.terminal.queries import QueryFilter
from moshpit.terminal.render import render_diff, render_full


class FuzzFailure(AssertionError):
    """A target saw something wrong that is not an exception of the code under test."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FuzzFailure(message)


class Input:
    """Reads a fuzz input as a program: bytes, small numbers, slices; zeros once it runs out."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos < len(self.data):
            self.pos += 1
            return self.data[self.pos - 1]
        return 0

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + max(0, n)]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.left())


def det_rng(label: bytes):
    """A deterministic stand-in for ``os.urandom``: the same handshake every time."""
    counter = itertools.count()
    return lambda n: hashlib.shake_256(label + next(counter).to_bytes(4, "big")).digest(n)


CLIENT_KEY = nacl.signing.SigningKey(bytes(range(32)))
HOST_KEY = nacl.signing.SigningKey(bytes(range(32, 64)))
CLIENT_ENV = {"TERM": "xterm-256color", "LANG": "C.UTF-8"}
CLIENT_ADDR = ("192.0.2.1", 41000)
ROAMED_ADDR = ("198.51.100.7", 41001)
SERVER_ADDR = ("203.0.113.5", 50001)


# =============================================================================== codec

# The wire rules, restated in Python: a reference for the Cython decoder.
_RULES = {codec.FRAME_DATA: (1, 1216, 1), codec.FRAME_ACK: (8, 8, 1), codec.FRAME_NAK: (10, 1216, 10),
          codec.FRAME_PING: (10, 10, 1), codec.FRAME_RESIZE: (4, 4, 1), codec.FRAME_SCREEN: (20, 1216, 1),
          codec.FRAME_STATE_ACK: (8, 8, 1), codec.FRAME_REPAINT: (8, 8, 1), codec.FRAME_CLOSE: (2, 1216, 1),
          codec.FRAME_GONE: (10, 1216, 10), codec.FRAME_PADDING: (0, 1216, 1), codec.FRAME_OSN: (8, 8, 1),
          codec.FRAME_ECHO_ACK: (17, 17, 1), codec.FRAME_SKIP: (16, 16, 1),
          codec.FRAME_STREAM_OPEN: (7, 262, 1), codec.FRAME_STREAM_DATA: (13, 1216, 1),
          codec.FRAME_STREAM_WINDOW: (20, 20, 1), codec.FRAME_STREAM_FIN: (12, 12, 1),
          codec.FRAME_STREAM_RESET: (5, 260, 1), codec.FRAME_FORWARD: (4, 259, 1)}


def _body_ok(frame_type: int, n: int) -> bool:
    rule = _RULES.get(frame_type)
    return rule is not None and rule[0] <= n <= rule[1] and (n - rule[0]) % rule[2] == 0


def reference_decode_frames(payload: bytes):
    """``codec.decode_frames`` in plain Python: a list, or None where it must raise."""
    if len(payload) > codec.MAX_PAYLOAD_SIZE:
        return None
    out, pos = [], 0
    while pos < len(payload):
        if len(payload) - pos < 3:
            return None
        frame_type, length = payload[pos], int.from_bytes(payload[pos + 1:pos + 3], "big")
        if length > len(payload) - pos - 3 or not _body_ok(frame_type, length):
            return None
        out.append((frame_type, payload[pos + 3:pos + 3 + length]))
        pos += 3 + length
    return out


def reference_decode_header(datagram: bytes):
    if not codec.MIN_DATAGRAM_SIZE <= len(datagram) <= codec.MAX_DATAGRAM_SIZE:
        return None
    first = datagram[0]
    seq = int.from_bytes(datagram[5:13], "big")
    if first >> 4 != codec.VERSION or first & 0x0E or seq > codec.MAX_SEQ:
        return None
    return first & 1, int.from_bytes(datagram[1:5], "big"), seq


def fuzz_codec(data: bytes):
    """Header and frame decoding of raw datagram bytes, checked against a Python reference,
    with the encoder's round trip wherever decoding succeeds."""
    outcome = []
    expected = reference_decode_header(data)
    try:
        got = codec.decode_header(data)
    except DecodeError:
        got = None
    check(got == expected, f"decode_header gave {got}, the wire rules say {expected}")
    if got is not None:
        check(codec.header(*got) == data[:codec.HEADER_SIZE], "header does not re-encode to its bytes")
        check(codec.decode_header(bytearray(data)) == got == codec.decode_header(memoryview(data)),
              "decode_header differs between bytes, bytearray and memoryview")
    outcome.append(got is not None)
    for payload in (data, data[codec.HEADER_SIZE:]):
        expected = reference_decode_frames(payload)
        try:
            got = codec.decode_frames(payload)
        except DecodeError:
            got = None
        check(got == expected, "decode_frames disagrees with the wire rules")
        if got is not None:
            check(codec.encode_frames(got) == payload, "frames do not re-encode to their payload")
            check(codec.decode_frames(bytearray(payload)) == got, "bytearray decodes differently")
            outcome.append(tuple(sorted({t for t, _ in got})))
        else:
            outcome.append(None)
    # The frame length rule, for the type and length the input starts with.
    if len(data) >= 3:
        t, n = data[0], int.from_bytes(data[1:3], "big")
        check(codec.frame_body_ok(t, n) == _body_ok(t, n), f"frame_body_ok({t}, {n}) is wrong")
    return tuple(outcome)


# =============================================================================== frames

def _typed(frame_type: int, body: bytes):
    """Decode one frame body as the channel does, checking each decoder's round trip."""
    try:
        if frame_type == codec.FRAME_PING:
            ping = frames.unpack_ping(body)
            if ping.echo is None:
                check(body[8:10] == b"\xff\xff", "PING without echo lost its echo")
            else:
                check(frames.pack_ping(ping.timestamp, ping.echo, ping.echo_delay) == body, "PING round trip")
            return "ping", ping.echo is None
        if frame_type in (codec.FRAME_ACK, codec.FRAME_STATE_ACK, codec.FRAME_REPAINT, codec.FRAME_OSN):
            value = frames.unpack_u64(body)
            check(0 <= value <= codec.MAX_SEQ + 1 and frames.pack_u64(value) == body, "u64 round trip")
            return "u64"
        if frame_type in (codec.FRAME_NAK, codec.FRAME_GONE):
            ranges = frames.unpack_ranges(body)
            check(all(0 <= a <= b <= codec.MAX_SEQ for a, b in ranges), "range out of order or bounds")
            check(frames.pack_ranges(ranges) == body, "ranges round trip")
            return "ranges", min(len(ranges), 3)
        if frame_type == codec.FRAME_RESIZE:
            cols, rows = frames.unpack_resize(body)
            check(cols > 0 and rows > 0 and frames.pack_resize(cols, rows) == body, "RESIZE round trip")
            return "resize"
        if frame_type == codec.FRAME_SCREEN:
            chunk = frames.unpack_screen(body)
            check(chunk.count > 0 and chunk.index < chunk.count and chunk.base < chunk.state,
                  "SCREEN chunk breaks its own rules")
            check(frames.pack_screen(chunk.state, chunk.base, chunk.index, chunk.count, chunk.chunk) == body,
                  "SCREEN round trip")
            return "screen"
        if frame_type == codec.FRAME_CLOSE:
            code, status, reason = frames.unpack_close(body)
            if len(body) - 2 <= frames.MAX_REASON_BYTES:
                check(frames.pack_close(code, reason, status) == body, "CLOSE round trip")
            return "close"
        if frame_type in _STREAM_CODECS:
            unpack, pack = _STREAM_CODECS[frame_type]
            value = unpack(body)
            check(pack(value) == body, f"{codec.FRAME_NAMES[frame_type]} round trip")
            return codec.FRAME_NAMES[frame_type].lower()
        return "raw"
    except DecodeError as exc:
        return "refused", str(exc)[:12]


_STREAM_CODECS = {
    codec.FRAME_STREAM_OPEN: (frames.unpack_stream_open, lambda v: frames.pack_stream_open(
        v.stream, v.kind, v.port, v.host)),
    codec.FRAME_STREAM_DATA: (frames.unpack_stream_data, lambda v: frames.pack_stream_data(v.stream, v.offset, v.data)),
    codec.FRAME_STREAM_WINDOW: (frames.unpack_stream_window, lambda v: frames.pack_stream_window(
        v.stream, v.received, v.limit)),
    codec.FRAME_STREAM_FIN: (frames.unpack_stream_fin, lambda v: frames.pack_stream_fin(v.stream, v.size)),
    codec.FRAME_STREAM_RESET: (frames.unpack_stream_reset, lambda v: frames.pack_stream_reset(
        v.stream, v.code, v.reason)),
    codec.FRAME_FORWARD: (frames.unpack_forward, lambda v: frames.pack_forward(v.kind, v.status, v.port, v.host)),
}
_STREAM_TYPES = tuple(_STREAM_CODECS)
_DECODED_TYPES = (codec.FRAME_PING, codec.FRAME_ACK, codec.FRAME_NAK, codec.FRAME_RESIZE,
                  codec.FRAME_SCREEN, codec.FRAME_STATE_ACK, codec.FRAME_REPAINT, codec.FRAME_CLOSE,
                  codec.FRAME_GONE, codec.FRAME_OSN, *_STREAM_CODECS)


def fuzz_frames(data: bytes):
    """Every typed frame decoder of ``moshpit.protocol.frames``: on the frames of a payload
    (the network's path, through the codec), and directly on each body length the codec
    lets through for each type, cut from the input."""
    outcome = []
    try:
        decoded = codec.decode_frames(data[:codec.MAX_PAYLOAD_SIZE])
    except DecodeError:
        decoded = []
    for frame_type, body in decoded:
        outcome.append(_typed(frame_type, body))
    if data:
        frame_type = _DECODED_TYPES[data[0] % len(_DECODED_TYPES)]
        lo, hi, step = _RULES[frame_type]
        body = data[1:1 + hi]
        length = len(body) if len(body) >= lo else lo
        length -= (length - lo) % step
        body = body[:length].ljust(length, b"\0")
        outcome.append(_typed(frame_type, body))
    return tuple(outcome[:8])


# ============================================================================ handshake

@functools.lru_cache(maxsize=None)
def _reference_handshake(diff_mode: DiffMode = DiffMode.RELIABLE, cols: int = 80, rows: int = 24):
    """One real, deterministic handshake; every fuzz run's fresh peers replay it exactly."""
    client = _fresh_client(diff_mode, cols=cols, rows=rows)
    server = _fresh_server()
    client_hello = client.data_to_send()
    server.receive_data(client_hello, 0.0)
    server_hello = server.data_to_send()
    client.receive_data(server_hello, 0.0)
    client.next_event()
    client.accept_host_key()
    client_auth = client.data_to_send()
    server.receive_data(client_auth, 0.0)
    request = server.next_event()
    assert isinstance(request, AuthRequested), request
    server.accept(conn_id=0x5EED0001, udp_port=50001, session_id=bytes(range(16)),
                  resume_token=bytes(range(100, 132)), input_received=0)
    server_accept = server.data_to_send()
    client.receive_data(server_accept, 0.0)
    while (event := client.next_event()) is not None:
        assert isinstance(event, HandshakeComplete), event
    return dict(client_hello=client_hello, server_hello=server_hello, client_auth=client_auth,
                server_accept=server_accept, k_c_hs=server._k_c_hs, k_s_hs=server._k_s_hs,
                client_params=client.params, server_params=server.params)


def _fresh_client(diff_mode: DiffMode = DiffMode.RELIABLE, **kw) -> ClientHandshake:
    return ClientHandshake(CLIENT_KEY, "alice", now=0.0, diff_mode=diff_mode, env=CLIENT_ENV,
                           rng=det_rng(b"client"), **kw)


def _fresh_server() -> ServerHandshake:
    return ServerHandshake(HOST_KEY, now=0.0, rng=det_rng(b"server"))


def _pieces(inp: Input, stream: bytes) -> list[bytes]:
    """``stream`` cut at up to 7 points the input chooses (TCP hands bytes over in any pieces)."""
    cuts = sorted({inp.u16() % (len(stream) + 1) for _ in range(inp.byte() % 8)}) if stream else []
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def _feed(peer, pieces, eof: bool, late: bool, on_event) -> tuple:
    """Feed TCP pieces; only ``RemoteProtocolError`` may come out, and only by failing."""
    outcome = []
    now = 11.0 if late else 0.0
    for piece in [*pieces, b""] if eof else pieces:
        try:
            peer.receive_data(piece, now)
        except RemoteProtocolError as exc:
            check(peer.state is hs.State.FAILED and peer.failure is exc,
                  "handshake raised without failing")
            outcome.append(f"{type(exc).__name__}:{getattr(exc, 'code', '')}")
            break                                # as a runtime does: the handshake is over
        check(isinstance(peer.data_to_send(), bytes), "data_to_send is not bytes")
        while (event := peer.next_event()) is not None:
            outcome.append(type(event).__name__)
            on_event(event)
    try:
        peer.handle_timer(now)                   # a timeout fails the handshake, as it says
    except RemoteProtocolError as exc:
        check(now >= 10.0 and peer.state is hs.State.FAILED and peer.failure is exc, "timer failure")
        outcome.append("timeout")
    return tuple(outcome[:6]) + (peer.state.value,)


def fuzz_handshake_server(data: bytes):
    """A fresh ServerHandshake fed what a client (or anyone) sends, in pieces.

    Mode 0: the raw input. Mode 1: a valid CLIENT_HELLO, then the raw input (the WAIT_AUTH
    stage's framing). Mode 2: a valid hello, then the input sealed as an authentic
    CLIENT_AUTH (its field parser). Mode 3: as 2, with the real client key put in its
    place and a valid signature appended, so fuzzed fields reach the AuthRequested
    event, which is accepted or refused."""
    inp = Input(data)
    flags = inp.byte()
    mode = flags & 3
    ref = _reference_handshake()
    if mode == 0:
        stream = inp.rest()
    elif mode == 1:
        stream = ref["client_hello"] + inp.rest()
    else:
        fields = inp.take(inp.u16() % 1500)
        tail = inp.rest()
        if mode == 3:
            fields = bytearray(fields)
            at = 1 + (fields[0] if fields else 0)        # user name length, then the key
            if len(fields) < at + 32:
                fields += bytes(at + 32 - len(fields))
            fields[at:at + 32] = bytes(CLIENT_KEY.verify_key)
            fields = bytes(fields)
            signed = hs._CLIENT_SIG_CONTEXT + hashlib.sha512(
                ref["client_hello"] + ref["server_hello"] + fields).digest()
            plaintext = fields + CLIENT_KEY.sign(signed).signature
        else:
            plaintext = fields
        plaintext = plaintext[:hs.MAX_MESSAGE_BODY - 16]
        stream = ref["client_hello"] + hs._seal(ref["k_c_hs"], hs.MessageType.CLIENT_AUTH, plaintext) + tail
    server = _fresh_server()

    def on_event(event):
        check(isinstance(event, (AuthRequested, HandshakeComplete)), f"server event {event!r}")
        if isinstance(event, AuthRequested):
            check(server.state is hs.State.AUTH_DECISION and server.request is event, "request state")
            check(event.cols > 0 and event.rows > 0 and len(event.client_key) == 32, "request fields")
            check(event.diff_mode in ("reliable", "datagram", "statesync"), "request mode")
            check(event.resume_token is None or len(event.resume_token) == hs.TOKEN_SIZE, "request token")
            if flags & 0x10:
                server.refuse(hs.RefuseCode.NOT_AUTHORISED, "no")
            else:
                params = server.accept(conn_id=7, udp_port=50001, session_id=bytes(16),
                                       resume_token=bytes(32), resumed=bool(flags & 0x20))
                check(params.user == event.user and params.env == event.env, "params differ from request")

    return (mode,) + _feed(server, _pieces(inp, stream), eof=bool(flags & 0x40),
                           late=flags & 0x88 == 0x88, on_event=on_event)


def fuzz_handshake_client(data: bytes):
    """A ClientHandshake that has sent its hello, fed the input as the server's reply.

    Mode 0: the raw input (the seeds hold a real SERVER_HELLO and what follows it).
    Mode 1: a real SERVER_HELLO, the host key accepted (or rejected), then the raw input
    (the encrypted stage's framing). Mode 2: as 1, then the input sealed as an authentic
    SERVER_ACCEPT or SERVER_REFUSE (their parsers), then the rest raw."""
    inp = Input(data)
    flags = inp.byte()
    mode = min(flags & 3, 2)
    late = flags & 0x84 == 0x84
    ref = _reference_handshake()
    client = _fresh_client(resume_token=bytes(32) if flags & 0x40 else None)
    check(client.data_to_send() == ref["client_hello"], "the client's hello is not the reference one")

    def on_event(event):
        check(isinstance(event, (HostKeyReceived, HandshakeComplete, HandshakeRefused)), f"client event {event!r}")
        if isinstance(event, HostKeyReceived):
            check(event.host_key == bytes(HOST_KEY.verify_key), "host key the server did not sign")
            if flags & 0x20:
                client.reject_host_key()
            else:
                client.accept_host_key()
        elif isinstance(event, HandshakeComplete):
            check(client.state is hs.State.DONE and event.params.udp_port > 0, "complete state")

    if mode == 0:
        return (0,) + _feed(client, _pieces(inp, inp.rest()), eof=bool(flags & 0x10),
                            late=late, on_event=on_event)
    first = _feed(client, [ref["server_hello"]], eof=False, late=False, on_event=on_event)
    if mode == 1:
        stream = inp.rest()
    else:
        kind = hs.MessageType.SERVER_REFUSE if flags & 0x08 else hs.MessageType.SERVER_ACCEPT
        plaintext = inp.take(inp.byte())
        stream = hs._seal(ref["k_s_hs"], kind, plaintext) + inp.rest()
    return (mode,) + first + _feed(client, _pieces(inp, stream), eof=bool(flags & 0x10),
                                   late=late, on_event=on_event)


# ==================================================================== screen reassembly

_SCREEN_LIMITS = (8 << 20, 1 << 16, 300)


def fuzz_screen_reassembly(data: bytes):
    """The client's screen chunk assembler (zlib inside, bounded output).

    Mode 0: a stream of chunks (wire bodies through ``unpack_screen``, or small fields
    that make chunks of one message meet) and ``discard_through`` calls. Mode 1: the
    input chunked by ``chunk_screen`` and delivered in an input-chosen order, with
    losses, duplicates and corrupted pieces: whatever comes back must be the input."""
    inp = Input(data)
    flags = inp.byte()
    limit = _SCREEN_LIMITS[(flags >> 1) % 3]
    asm = ScreenAssembler(limit)
    outcome = [flags & 1]
    if flags & 1 == 0:
        while inp.left() and len(outcome) < 64:
            op = inp.byte()
            if op < 16:
                asm.discard_through(inp.byte())
                outcome.append("discard")
                continue
            if op < 64:                           # a wire body: the codec lets no shorter one by
                body = inp.take(20 + inp.u16() % 1200).ljust(20, b"\0")
            else:
                state, base, count = inp.byte(), inp.byte(), inp.byte() % 6
                index = inp.byte() % 6
                piece = inp.take(inp.u16() % 1200)
                if op & 1:
                    piece = zlib.compress(piece * (1 + op % 8))
                body = frames.pack_screen(state, base, index, count, piece)
            try:
                chunk = frames.unpack_screen(body)
                done = asm.add(chunk)
            except DecodeError as exc:
                outcome.append(str(exc)[:16])
                continue
            if done is not None:
                base, state, message = done
                check(base == chunk.base and state == chunk.state, "message under another name")
                check(len(message) <= limit, "message past the size limit")
                outcome.append("done")
            check(len(asm._pending) <= 4, "more pending messages than allowed")
        return tuple(outcome)
    state, base = 1 + inp.byte(), inp.byte() % 2
    size = 1 + inp.byte() % 64
    repeat = 1 + inp.byte() % 64
    message = inp.take(inp.u16() % 4096) * repeat
    bodies = chunk_screen(state, base, message, size)
    order = list(range(len(bodies)))
    plan = inp.rest()
    delivered, tampered = set(), False
    results = []
    for i, step in enumerate(plan[:3 * len(bodies) + 8]):
        index = order[(i + step) % len(order)]
        body = bodies[index]
        if step & 0xC0 == 0xC0 and len(body) > frames.SCREEN_HEADER_SIZE:
            at = frames.SCREEN_HEADER_SIZE + step % (len(body) - frames.SCREEN_HEADER_SIZE)
            body = body[:at] + bytes([body[at] ^ (step | 1)]) + body[at + 1:]
            tampered = True
        try:
            done = asm.add(frames.unpack_screen(body))
        except DecodeError:
            results.append("refused")
            continue
        delivered.add(index)
        if done is not None:
            results.append("done")
            check(done[:2] == (base, state), "message under another name")
            if not tampered:
                check(done[2] == message[:limit], "reassembled message differs")
    fits = len(message) <= limit and sum(len(b) - frames.SCREEN_HEADER_SIZE for b in bodies) <= limit
    if not tampered and fits:
        if len(delivered) == len(bodies):
            check("done" in results, "every chunk delivered, no message")
        else:
            check("done" not in results, "message done with chunks missing")
    return (1, len(bodies) > 1, tampered) + tuple(results[-3:])


# ============================================================================== channel

_MAX_STEPS = 48
RIG_WINDOW = (40, 12)          # the window the rig's client asks for (a RESIZE may change it)
_ORDERED_TYPES = (codec.FRAME_DATA, codec.FRAME_RESIZE, codec.FRAME_SCREEN, codec.FRAME_CLOSE,
                  codec.FRAME_REPAINT)


class ChannelRig:
    """A client and a server channel as a runtime holds them: each with its session, a fake
    clock, and the fuzz input as a program of network and user actions."""

    def __init__(self, diff_mode: DiffMode):
        ref = _reference_handshake(diff_mode, *RIG_WINDOW)
        cp, sp = ref["client_params"], ref["server_params"]
        self.now = 0.0
        self.server_session = ServerSession(sp.cols, sp.rows)
        self.server = Channel.from_params(Role.SERVER, sp, now=0.0,
                                          screen_source=self.server_session.screen_source)
        self.server_session.attach(self.server)
        self.client_session = ClientSession(cp.cols, cp.rows)
        self.client = Channel.from_params(Role.CLIENT, cp, now=0.0, peer_addr=SERVER_ADDR)
        self.client_session.attach(self.client, 0)
        self.server.attach_streams(streams.StreamSet(is_client=False))
        self.client.attach_streams(streams.StreamSet(is_client=True))
        self.client_addr = CLIENT_ADDR
        self.sent: list[tuple[bool, bytes]] = []      # authentic datagrams delivered: (to server, bytes)
        self.events: set[str] = set()

    # -- delivery -----------------------------------------------------------------
    def deliver(self, to_server: bool, datagram: bytes, addr=None) -> None:
        if to_server:
            self.server.receive_datagram(datagram, addr or self.client_addr, self.now)
        else:
            self.client.receive_datagram(datagram, addr or SERVER_ADDR, self.now)
        self.drain()

    def forge(self, to_server: bool, payload: bytes, addr=None) -> None:
        """An authentic datagram carrying ``payload``: sealed with the sending direction's
        keys by that side's own sealer, so its sequence number is the next one."""
        sender = self.client if to_server else self.server
        _, datagram = sender._tx._sealer.seal(payload[:codec.MAX_PAYLOAD_SIZE])
        self.sent.append((to_server, datagram))
        self.deliver(to_server, datagram, addr)

    def pump(self, mask: int) -> None:
        """What each channel wants to send now, delivered (bit i of ``mask``: lose the i-th)."""
        i = 0
        for to_server in (True, False):
            sender = self.client if to_server else self.server
            for datagram, addr in sender.datagrams_to_send(self.now):
                check(len(datagram) <= codec.MAX_DATAGRAM_SIZE, "oversized datagram sent")
                i += 1
                if i <= 8 and mask >> (i - 1) & 1:
                    continue
                if not to_server and addr != self.client_addr:
                    continue                     # the client left that address
                self.sent.append((to_server, datagram))
                self.deliver(to_server, datagram)

    def tick(self, dt: float) -> None:
        self.now += dt
        for channel in (self.client, self.server):
            timer = channel.get_timer()
            if timer is not None and timer <= self.now:
                channel.handle_timer(self.now)
        timer = self.server_session.get_timer()
        if timer is not None and timer <= self.now:
            self.server_session.handle_timer(self.now)
        self.drain()

    def drain(self) -> None:
        while (event := self.server.next_event()) is not None:
            self.events.add("s" + type(event).__name__)
            self.server_session.on_event(event, self.now)
        while (event := self.client.next_event()) is not None:
            self.events.add("c" + type(event).__name__)
            self.client_session.on_event(event, self.now)

    # -- the program --------------------------------------------------------------
    def _number(self, inp: Input, anchor: int) -> int:
        """A u64 near ``anchor`` (where protocol numbers meet), or anywhere."""
        b = inp.byte()
        if b < 0xF0:
            return max(0, anchor + (b % 40) - 8)
        return int.from_bytes(inp.take(8).ljust(8, b"\0"), "big")

    def _frame(self, inp: Input, to_server: bool) -> bytes:
        """One frame, mostly well formed, numbers mostly near the receiver's counters."""
        receiver = self.server if to_server else self.client
        kind = inp.byte()
        frame_type = kind % 19
        if frame_type >= 13:                      # the forwarded streams' frames
            frame_type = _STREAM_TYPES[frame_type - 13]
        expected = receiver._p.receive.next_expected
        if kind >= 0xF0:                          # anything: type and body as they come
            body = inp.take(inp.u16() % 300)
        elif frame_type == codec.FRAME_DATA:
            body = inp.take(1 + inp.byte()) or b"x"
        elif frame_type in (codec.FRAME_ACK,):
            body = frames.pack_u64(min(self._number(inp, receiver._p.send.next_osn), 2**64 - 1))
        elif frame_type in (codec.FRAME_NAK, codec.FRAME_GONE):
            anchor = receiver._p.send.peer_ack if frame_type == codec.FRAME_NAK else expected
            body = b"".join(struct.pack("!QH", min(self._number(inp, anchor), 2**64 - 1), inp.byte() % 20)
                            for _ in range(1 + inp.byte() % 3))
        elif frame_type == codec.FRAME_PING:
            echo = (receiver._p.clock._last_ts - inp.byte() % 8) & 0xFFFFFFFF if inp.byte() & 1 else 0
            body = struct.pack("!IIH", int(self.now * 1000) & 0xFFFFFFFF, echo, inp.u16())
        elif frame_type == codec.FRAME_RESIZE:           # mostly window sizes people have
            big = inp.byte() == 0xFF
            body = struct.pack("!HH", inp.u16() if big else inp.byte(), inp.u16() if big else inp.byte())
        elif frame_type == codec.FRAME_SCREEN:
            state = self._number(inp, receiver.screen_state + 1)
            base = self._number(inp, receiver.screen_state) if inp.byte() & 1 else 0
            count = 1 + inp.byte() % 3
            text = inp.take(inp.byte())
            piece = zlib.compress(text) if count == 1 else inp.take(inp.byte())
            body = frames.pack_screen(min(state, 2**64 - 1), min(base, 2**64 - 1), inp.byte() % count,
                                      count, piece)
        elif frame_type in (codec.FRAME_STATE_ACK, codec.FRAME_REPAINT):
            body = frames.pack_u64(min(self._number(inp, receiver.screen_state), 2**64 - 1))
        elif frame_type == codec.FRAME_CLOSE:
            body = bytes([inp.byte() % 8, inp.byte()]) + inp.take(inp.byte() % 40)
        elif frame_type == codec.FRAME_PADDING:
            body = bytes(inp.byte() % 64)
        elif frame_type == codec.FRAME_OSN:
            body = frames.pack_u64(min(self._number(inp, expected), 2**64 - 1))
        elif frame_type in _STREAM_CODECS:          # small ids, offsets near the windows
            sid, number = inp.byte() % 8, min(self._number(inp, streams.INITIAL_WINDOW), codec.MAX_SEQ)
            body = {codec.FRAME_STREAM_OPEN: lambda: frames.pack_stream_open(sid, inp.byte() % 4, inp.u16(), "h"),
                    codec.FRAME_STREAM_DATA: lambda: frames.pack_stream_data(sid, number, inp.take(1 + inp.byte())
                                                                             or b"x"),
                    codec.FRAME_STREAM_WINDOW: lambda: frames.pack_stream_window(sid, number, number + inp.u16()),
                    codec.FRAME_STREAM_FIN: lambda: frames.pack_stream_fin(sid, number),
                    codec.FRAME_STREAM_RESET: lambda: frames.pack_stream_reset(sid, inp.byte() % 8, "r"),
                    codec.FRAME_FORWARD: lambda: frames.pack_forward(inp.byte() % 4, inp.byte() % 3, inp.u16(), "h"),
                    }[frame_type]()
        else:
            body = inp.take(inp.byte() % 16)
        return bytes([frame_type]) + len(body).to_bytes(2, "big") + body

    def run(self, inp: Input) -> None:
        steps = 0
        while inp.left() and steps < _MAX_STEPS:
            steps += 1
            op = inp.byte()
            kind = (op & 0x3F) % 12                     # 0x80: towards the server; 0x40: a variant
            to_server = bool(op & 0x80)
            if kind in (0, 1):                          # an authentic datagram, payload as it comes
                self.forge(to_server, inp.take(inp.u16() % (codec.MAX_PAYLOAD_SIZE + 1)),
                           ROAMED_ADDR if op & 0x40 and to_server else None)
            elif kind in (2, 3, 4):                     # an authentic datagram of made-up frames
                payload = b"".join(self._frame(inp, to_server) for _ in range(1 + inp.byte() % 4))
                if op & 0x40:
                    osn = self._number(inp, (self.server if to_server else self.client)._p.receive.next_expected)
                    payload = (bytes([codec.FRAME_OSN, 0, 8]) + frames.pack_u64(min(osn, 2**64 - 1))
                               + bytes([codec.FRAME_DATA, 0, 2]) + b"hi" + payload)
                self.forge(to_server, payload)
            elif kind in (5, 6):
                self.pump(inp.byte())
            elif kind == 7:
                b = inp.byte()
                self.tick(10.0 if b == 0xFF else (b + 1) * 0.004)
            elif kind == 8:                             # the shell writes
                data = inp.take(inp.byte())
                self.server_session.pty_output(data, self.now)
                if op & 0x40:
                    self.server_session.flush()
            elif kind == 9:                             # the user acts
                choice = inp.byte() % 6
                if choice == 0 and self.client.accepts_data:
                    self.client.send_data(inp.take(1 + inp.byte() % 32))
                elif choice == 1:                       # the user's own window: up to 256x80
                    self.client_session.resize(1 + inp.byte(), 1 + inp.byte() % 80)
                elif choice == 2:
                    self.client.request_repaint()
                elif choice == 3:
                    self.client_addr = ROAMED_ADDR if self.client_addr == CLIENT_ADDR else CLIENT_ADDR
                    self.client.path_changed()
                elif choice == 4:
                    self.client.close(now=self.now)
                else:
                    self.server.close(inp.byte() % 6, "bye", now=self.now, exit_status=inp.byte())
                self.drain()
            elif kind == 10:                            # someone else's bytes
                junk = inp.take(inp.u16() % 1400)
                if self.sent and op & 0x40:             # a replayed, cut or bit-flipped real one
                    was_to_server, old = self.sent[inp.byte() % len(self.sent)]
                    cut = inp.byte()
                    if cut & 1:
                        pos = inp.u16() % len(old)
                        old = old[:pos] + bytes([old[pos] ^ (cut | 1)]) + old[pos + 1:]
                    elif cut & 2:
                        old = old[:-(cut >> 2) - 1]
                    self.deliver(was_to_server, old)
                else:
                    self.deliver(to_server, junk)
            else:
                if op & 0x40:
                    self.server.repaint()
                self.tick(0.0)
        for _ in range(3):                              # let the last actions play out
            self.pump(0)
            self.tick(0.05)
        for channel in (self.client, self.server):
            check(channel.state in ChannelState, "channel state")


def _fuzz_channel(diff_mode: DiffMode, data: bytes):
    rig = ChannelRig(diff_mode)
    rig.run(Input(data))
    drops = frozenset(reason.value for reason in rig.client.drops) | frozenset(
        "s" + reason.value for reason in rig.server.drops)
    return frozenset(rig.events), drops, rig.client.state.value, rig.server.state.value


def fuzz_channel_reliable(data: bytes):
    """A client/server channel pair in ``reliable`` mode fed authentic datagrams of fuzzed
    frames both ways, interleaved with real traffic, timers and user actions."""
    return _fuzz_channel(DiffMode.RELIABLE, data)


def fuzz_channel_datagram(data: bytes):
    """As ``channel_reliable``, in ``datagram`` mode."""
    return _fuzz_channel(DiffMode.DATAGRAM, data)


def fuzz_channel_statesync(data: bytes):
    """As ``channel_reliable``, in ``statesync`` mode."""
    return _fuzz_channel(DiffMode.STATESYNC, data)


# ============================================================================= terminal

TERMINAL_SIZES = ((80, 24), (9, 3), (133, 41))


class _Swallowed(FuzzFailure):
    pass


def _strict_feed(model: TerminalModel, data: bytes) -> None:
    """``model.feed``, except that an exception the model catches and counts (its safety
    net for parser bugs: the stream documents that nothing a peer sends can raise) is
    raised here, with its own traceback as the cause."""
    caught = []

    def watch(fn):
        def wrapper(*args):
            try:
                return fn(*args)
            except Exception as exc:             # noqa: BLE001 - recorded, then re-raised
                if not caught:
                    caught.append(exc)
                raise
        return wrapper

    model.stream.feed = watch(model.stream.feed)
    model._feed_fast = watch(model._feed_fast)
    try:
        model.feed(data)
    finally:
        del model.stream.feed, model._feed_fast
    if caught:
        raise _Swallowed(f"TerminalModel.feed swallowed {type(caught[0]).__name__}: {caught[0]}") from caught[0]


def fuzz_terminal_stream(data: bytes):
    """The terminal model fed program output (at three window sizes, in two pieces), the
    renderer on the result, and the reliable mode's query filter fed in pieces (its
    output must not depend on where the pieces were cut)."""
    if not data:
        return ()
    cut = data[0] * len(data) // 256
    outcome = []
    for cols, rows in TERMINAL_SIZES:
        model = TerminalModel(cols, rows)
        _strict_feed(model, data[:cut])
        _strict_feed(model, data[cut:])
        state = model.state
        check((state.cols, state.rows) == (cols, rows) and len(state.lines) == rows, "state shape")
        check(0 <= state.cursor_x <= cols and 0 <= state.cursor_y < rows, "cursor off screen")
        if (cols, rows) == (80, 24):
            full = render_full(state)
            diff = render_diff(_blank_state(cols, rows), state)
            check(isinstance(full, str) and isinstance(diff, str), "render output")
            outcome += [model.number > 2, state.title != "", bool(state.modes), model.take_replies() != b""]
    whole = QueryFilter(64).feed(data)
    pieces = QueryFilter(64)
    step = 1 + data[-1] % 7
    split = b"".join(pieces.feed(data[i:i + step]) for i in range(0, len(data), step))
    check(split == whole, "QueryFilter output depends on how its input was split")
    outcome.append(len(whole) < len(data))
    return tuple(outcome)


@functools.lru_cache(maxsize=8)
def _blank_state(cols: int, rows: int):
    return TerminalModel(cols, rows).state


# ================================================================================ seeds

def _frame(frame_type: int, body: bytes) -> bytes:
    return bytes([frame_type]) + len(body).to_bytes(2, "big") + body


def _codec_seeds():
    payload = codec.encode_frames([(codec.FRAME_PING, frames.pack_ping(5, 3, 1)),
                                   (codec.FRAME_ACK, frames.pack_u64(9)),
                                   (codec.FRAME_OSN, frames.pack_u64(4)), (codec.FRAME_DATA, b"ls -l\r")])
    seeds = [b"", payload, codec.header(1, 7, 9) + bytes(48), codec.header(0, 0xFFFFFFFF, codec.MAX_SEQ) + bytes(48)]
    for frame_type, (lo, hi, step) in _RULES.items():
        seeds.append(_frame(frame_type, bytes(lo)))
        seeds.append(_frame(frame_type, bytes(min(hi, lo + 2 * step))))
    seeds += [datagram for _, datagram in _real_traffic(DiffMode.RELIABLE)[:6]]
    seeds.append(codec.header(1, 7, 9) + codec.encode_frames([(codec.FRAME_PADDING, bytes(1200))]) + bytes(5))
    return seeds


def _frames_seeds():
    bodies = [(codec.FRAME_PING, frames.pack_ping(1, None, 0)), (codec.FRAME_PING, frames.pack_ping(1, 2, 3)),
              (codec.FRAME_ACK, frames.pack_u64(codec.MAX_SEQ + 1)),
              (codec.FRAME_NAK, frames.pack_ranges([(1, 3), (9, 9)])),
              (codec.FRAME_GONE, frames.pack_ranges([(codec.MAX_SEQ, codec.MAX_SEQ)])),
              (codec.FRAME_RESIZE, frames.pack_resize(80, 24)),
              (codec.FRAME_SCREEN, frames.pack_screen(2, 1, 0, 1, zlib.compress(b"hi"))),
              (codec.FRAME_CLOSE, frames.pack_close(1, "shell exited", 130)),
              (codec.FRAME_CLOSE, frames.pack_close(0, "é" * 200)),
              (codec.FRAME_OSN, frames.pack_u64(3))]
    seeds = [codec.encode_frames(bodies[:5]), codec.encode_frames(bodies[5:])]
    for frame_type, body in bodies:
        seeds.append(_frame(frame_type, body))
        seeds.append(bytes([_DECODED_TYPES.index(frame_type)]) + body)
    return seeds


def _handshake_server_seeds():
    ref = _reference_handshake()
    client = _fresh_client(DiffMode.STATESYNC, resume_token=bytes(range(32)), resume_only=True)
    # The auth fields of a real client: what modes 2 and 3 seal (and sign) themselves.
    fields = b"".join([bytes([5]), b"alice", bytes(CLIENT_KEY.verify_key), bytes([32]), bytes(range(32)),
                       bytes([2 | 0x80]), struct.pack("!HH", 100, 30), bytes([1]),
                       bytes([4]), b"TERM", struct.pack("!H", 5), b"xterm"])
    return [bytes([0]) + ref["client_hello"],
            bytes([0]) + ref["client_hello"] + ref["client_auth"],
            bytes([0x40]) + ref["client_hello"] + ref["client_auth"][:40],
            bytes([1]) + ref["client_auth"],
            bytes([1]) + hs.busy_message(5),
            bytes([0]) + client.data_to_send(),
            bytes([0]) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            bytes([2]) + len(fields).to_bytes(2, "big") + fields,
            bytes([3]) + len(fields).to_bytes(2, "big") + fields,
            bytes([3 | 0x10]) + len(fields).to_bytes(2, "big") + fields,
            bytes([3]) + (38).to_bytes(2, "big") + fields[:38] + bytes([0, 0, 80, 0, 24, 0])]


def _handshake_client_seeds():
    ref = _reference_handshake()
    accept = struct.pack("!IH", 7, 50001) + bytes(16) + bytes(32) + bytes([1]) + struct.pack("!Q", 5)
    return [bytes([0]) + ref["server_hello"],
            bytes([0]) + ref["server_hello"] + ref["server_accept"],
            bytes([0x20]) + ref["server_hello"],
            bytes([0]) + hs.busy_message(7),
            bytes([0]) + b"SSH-2.0-OpenSSH_9.6\r\n",
            bytes([1]) + ref["server_accept"],
            bytes([1]) + ref["server_accept"][:20],
            bytes([2, len(accept)]) + accept,
            bytes([2 | 0x08, 12]) + bytes([1]) + b"not allowed",
            bytes([2, len(accept)]) + accept + hs._message(hs.MessageType.ERROR, b"\x01oops")]


def _screen_seeds():
    bodies = chunk_screen(5, 2, b"\x1b[H\x1b[2Jhello world\r\n" * 40, 100)
    bomb = zlib.compress(bytes(4 << 20), 9)               # 4 MiB of zeros in ~4 KiB
    stream = b"".join(bytes([16]) + (len(b) - 20).to_bytes(2, "big") + b for b in bodies)
    bomb_stream = b"".join(bytes([16]) + (len(b) - 20).to_bytes(2, "big") + b
                           for b in chunk_screen(9, 0, bytes(4 << 20), 1100))
    return [bytes([0]) + stream, bytes([0]) + stream[:300] + bytes([3, 5]) + stream[300:],
            bytes([2]) + bomb_stream, bytes([4]) + bomb_stream,
            bytes([0, 65, 7, 3, 1, 0]) + len(bomb).to_bytes(2, "big") + bomb[:1100],
            bytes([0, 66, 7, 3, 2, 1, 0, 4]) + b"abcd" + bytes([66, 7, 3, 2, 0, 0, 4]) + b"efgh",
            bytes([1, 3, 1, 20, 0, 0, 40]) + b"the quick brown fox jumps over the lazy dog" + bytes(range(64)),
            bytes([1, 3, 1, 60, 255, 16, 0]) + bytes(4096) + bytes(range(0, 256, 3))]


@functools.lru_cache(maxsize=None)
def _real_traffic(diff_mode: DiffMode):
    """The datagrams of a short real session (shell output, keys, a resize, a repaint, the
    close), in delivery order: (to server, datagram)."""
    rig = ChannelRig(diff_mode)
    script = [lambda: rig.server_session.pty_output(b"$ ls\r\nREADME.md  moshpit\r\n\x1b[1;32m$ \x1b[m", rig.now),
              lambda: rig.client.send_data(b"ls\r") if rig.client.accepts_data else None,
              lambda: rig.client_session.resize(100, 30),
              lambda: rig.client.request_repaint(),
              lambda: rig.server_session.pty_output(b"\x1b]0;title\x07\x1b[2J\x1b[Hvim\x1b[?1049h", rig.now),
              lambda: rig.server.close(1, "shell exited", now=rig.now, exit_status=3)]
    for action in script:
        action()
        for _ in range(4):
            rig.pump(0)
            rig.tick(0.03)
    return list(rig.sent)


def _opened(diff_mode: DiffMode):
    """The real traffic's payloads, opened: what the forge ops of a seed program carry."""
    ref = _reference_handshake(diff_mode, *RIG_WINDOW)
    keys, conn = ref["client_params"].keys, ref["client_params"].conn_id
    openers = {True: PacketOpener(keys.client_to_server, conn_id=conn, direction=0,
                                  replay=ReplayWindow(max_ahead=2**62)),
               False: PacketOpener(keys.server_to_client, conn_id=conn, direction=1,
                                   replay=ReplayWindow(max_ahead=2**62))}
    out = []
    for to_server, datagram in _real_traffic(diff_mode):
        try:
            out.append((to_server, openers[to_server].open(datagram)[1]))
        except DatagramDropped:
            pass
    return out


def _channel_seeds(diff_mode: DiffMode):
    """Programs for ``ChannelRig.run``: a real session's payloads replayed, and actions."""
    def forge(to_server, payload):
        return bytes([0x80 if to_server else 0]) + len(payload).to_bytes(2, "big") + payload

    opened = _opened(diff_mode)
    replay = b"".join(forge(t, p) for t, p in opened)
    text = b"$ echo hi\r\nhi\r\n$ \x1b[31mred\x1b[m\r\n\x1b[5n...."
    pty = bytes([8, len(text)]) + text
    tick, pump, long_tick = bytes([7, 20]), bytes([5, 0]), bytes([7, 0xFF])
    user = (bytes([9, 0, 4]) + b"hello" + bytes([9, 1, 119, 39]) + bytes([9, 2]) + bytes([9, 3])
            + bytes([9, 2]))
    close = bytes([9, 5, 1, 0])
    # ops of made-up frames (kind 2, 0x40: behind an OSN): keys, a resize, pings, ACKs, a NAK...
    keys = bytes([0xC2, 0, 1, 3]) + b"ls\r\n" + bytes([8])
    resize = bytes([0xC2, 0, 5, 0, 100, 30, 8]) + bytes([0xC2, 0, 5, 0, 0, 24, 8])
    pings = bytes([0x82, 1, 4, 1, 0, 0, 0, 2, 8]) + bytes([0x02, 1, 4, 1, 1, 0, 5, 2, 8])
    nak = bytes([0x82, 0, 3, 0, 8, 2]) + bytes([0x02, 0, 10, 0, 9, 3])
    screen = bytes([0x02, 0, 6, 9, 0, 0, 5]) + b"hello" + bytes([0]) + bytes([0x02, 0, 6, 10, 1, 9, 0, 4]) + b"\x1b[2J"
    state_ack = bytes([0x82, 1, 7, 8, 8, 8]) + bytes([0x82, 0, 8, 8])
    closing = bytes([0x02, 0, 9, 1, 0, 4]) + b"bye!" + bytes([0x82, 0, 9, 0, 0, 0])
    return [replay, pty + pump + tick + pump + tick + pump, user + pump + tick + pump + tick + pump,
            pty + user + keys + resize + pump + tick + close + pump + tick + pump,
            replay[:len(replay) // 2] + pump + tick + user + bytes([0x4A, 0, 0, 3, 1]) + pump,
            keys * 3 + pings + nak + state_ack + pump + tick + pty + pump + screen + tick + pump,
            pty + pump + tick + screen + nak + pump + long_tick + pump + closing + pump + tick]


def _terminal_seeds():
    return [b"hello world\r\n" * 3, b"\x1b[1;31mred\x1b[0m \x1b[38:2::10:20:30mrgb\x1b[m\r\n",
            b"\x1b[?1049h\x1b[2J\x1b[H\x1b[5;10Hx\x1b[?25l\x1b[?1049l", b"\x1b]0;a title\x07\x1b]52;c;aGk=\x07",
            b"\x1b[6n\x1b[c\x1b[>c\x1b[21t\x1bZ\x05\x1bP$qm\x1b\\", b"\x1b[3;20r\x1b[10S\x1b[5T\x1b[r",
            b"\xe4\xb8\xad\xe6\x96\x87 wide \xf0\x9f\x98\x80 emoji \xcc\x81 combining" * 4,
            b"\x1b[2 q\x1b=\x1b>\x1b(0lqqk\x1b(B\x1b#3\x1b#6", b"x\x1b[65535b\x1b[9999;9999H\x1b[99999@",
            b"\x1b[4h\x1b[20h\x1b[?6h\x1b[?7l" + b"abc" * 50, (b"0123456789" * 30 + b"\n") * 6,
            b"\x1b]4;1;?\x07\x1b]10;?\x1b\\\x1b[?1$p\x1b[18t"]


# --------------------------------------------------------------------------- link

_LINK_TYPES = {"op": str, "shell_pid": int, "tty": (str, type(None)), "input_received": int, "ended": bool,
               "attached": bool, "peer": (str, type(None)), "idle": (int, float, type(None)), "level": int,
               "message": str}


def fuzz_link(data: bytes):
    """What a session process (running as its user) says to the listener: a checked
    message with only its own fields, each of its type, or RemoteProtocolError. A log
    record comes out of the listener's sanitising with no control character left."""
    import logging
    from moshpit.linklog import LogIntake
    try:
        message = link.decode_from_session(data)
    except RemoteProtocolError:
        return "refused"
    check(isinstance(message, dict) and message.get("op") in link._FIELDS, f"odd message {message!r}")
    check(set(message) <= link._FIELDS[message["op"]], f"fields not allowed through: {message!r}")
    for name, value in message.items():
        check(isinstance(value, _LINK_TYPES[name]) and not (name != "ended" and name != "attached"
                                                           and isinstance(value, bool)),
              f"{name} = {value!r}")
    check(len(data) <= link.MAX_FROM_SESSION, "an oversized message was taken")
    if message["op"] == link.LOG:
        seen = []

        class Catch(logging.Handler):
            def emit(self, record):
                seen.append(record.getMessage())
        logger = logging.getLogger("moshpit.fuzz.link")
        logger.propagate = False
        logger.handlers[:] = [Catch()]
        logger.setLevel(logging.DEBUG)
        LogIntake("fuzz", logger).take(message["level"], message["message"], 0.0)
        check(len(seen) == 1 and all(ch.isprintable() for ch in seen[0]), f"unsafe log line {seen!r}")
    return message["op"]


def _link_seeds() -> list[bytes]:
    return [b'{"op":"started","shell_pid":4242,"tty":"pts/7"}', b'{"op":"started","shell_pid":1,"tty":null}',
            b'{"op":"heard"}', b'{"op":"ready","input_received":99,"ended":false}',
            b'{"op":"ready","input_received":0,"ended":true}',
            b'{"op":"status","attached":true,"peer":"192.0.2.1:4000","idle":1.5}',
            b'{"op":"status","attached":false,"peer":"[2001:db8::1]:4000","idle":null}',
            b'{"op":"log","level":30,"message":"disk \\u001b[2J full\\n"}',
            b'{"op":"log","level":40,"message":"' + b"x" * 800 + b'"}']


SEEDS = {
    "codec": _codec_seeds,
    "frames": _frames_seeds,
    "handshake_server": _handshake_server_seeds,
    "handshake_client": _handshake_client_seeds,
    "screen_reassembly": _screen_seeds,
    "channel_reliable": lambda: _channel_seeds(DiffMode.RELIABLE),
    "channel_datagram": lambda: _channel_seeds(DiffMode.DATAGRAM),
    "channel_statesync": lambda: _channel_seeds(DiffMode.STATESYNC),
    "terminal_stream": _terminal_seeds,
    "link": _link_seeds,
}

TARGETS = {
    "codec": fuzz_codec,
    "frames": fuzz_frames,
    "handshake_server": fuzz_handshake_server,
    "handshake_client": fuzz_handshake_client,
    "screen_reassembly": fuzz_screen_reassembly,
    "channel_reliable": fuzz_channel_reliable,
    "channel_datagram": fuzz_channel_datagram,
    "channel_statesync": fuzz_channel_statesync,
    "terminal_stream": fuzz_terminal_stream,
    "link": fuzz_link,
}

# Largest input the seeded runner makes for each target (seeds may be longer).
MAX_LEN = {"codec": 1400, "frames": 1300, "handshake_server": 1600, "handshake_client": 600,
           "screen_reassembly": 4200, "channel_reliable": 1500, "channel_datagram": 1500,
           "channel_statesync": 1500, "terminal_stream": 256, "link": 1100}

# Tokens the mutator may insert (escape sequences, frame headers, interesting numbers).
DICTIONARY = {
    "link": [b'"op"', b'"started"', b'"heard"', b'"ready"', b'"status"', b'"log"', b'"level"', b'"message"',
             b'"peer"', b'"idle"', b'"attached"', b'"ended"', b'"input_received"', b'"shell_pid"', b'"tty"',
             b'"pts/', b"true", b"false", b"null", b"\\u001b", b"\\u0000", b"\\ud800", b"1e309", b"-0",
             b"18446744073709551616", b"[", b"{", b"}", b":", b","],
    "terminal_stream": [b"\x1b[", b"\x1b]", b"\x1bP", b"\x1b\\", b"\x07", b"\x1b[?", b";", b":", b"\x9b",
                        b"\x9d", b"m", b"H", b"J", b"K", b"r", b"b", b"@", b"L", b"M", b"P", b"X", b"h", b"l",
                        b"\x1b#8", b"\x1b(0", b"\r\n", b"\xe4\xb8\xad", b"\xcc\x81", b"99999", b"65535",
                        b"\x1b[?1049h", b"\x1b[?2004h", b"\x1b]52;c;", b"\x18", b"\x1a"],
}
