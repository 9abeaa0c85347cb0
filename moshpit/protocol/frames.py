"""Typed frame bodies over the codec: pack what we send, check what we receive.

The codec guarantees each body's length; this module checks the values inside
(counts, ranges, UTF-8) and raises :class:`DecodeError` for anything a correct
peer would never send, so the channel can drop the whole datagram uncounted by
any other path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from moshpit import codec
from moshpit.errors import DecodeError

_U64 = struct.Struct("!Q")
_RANGE = struct.Struct("!QH")
_PING = struct.Struct("!IIH")
_RESIZE = struct.Struct("!HH")
_SCREEN = struct.Struct("!QQHH")
_ECHO_ACK = struct.Struct("!QQB")

NO_ECHO = 0xFFFF
MAX_RANGE_COUNT = 0xFFFF
SCREEN_HEADER_SIZE = _SCREEN.size


@dataclass(frozen=True, slots=True)
class Ping:
    timestamp: int            # sender's clock, ms mod 2**32
    echo: int | None          # the newest peer timestamp received, if any
    echo_delay: int           # ms the echoed timestamp was held before this send


@dataclass(frozen=True, slots=True)
class ScreenChunk:
    state: int
    base: int
    index: int
    count: int
    chunk: bytes


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(body: bytes) -> int:
    value, = _U64.unpack(body)
    if value > codec.MAX_SEQ + 1:
        raise DecodeError(f"number {value} out of range")
    return value


def pack_ping(timestamp: int, echo: int | None, echo_delay: int) -> bytes:
    if echo is None:
        return _PING.pack(timestamp & 0xFFFFFFFF, 0, NO_ECHO)
    return _PING.pack(timestamp & 0xFFFFFFFF, echo & 0xFFFFFFFF, min(echo_delay, NO_ECHO - 1))


def unpack_ping(body: bytes) -> Ping:
    timestamp, echo, delay = _PING.unpack(body)
    if delay == NO_ECHO:
        return Ping(timestamp, None, 0)
    return Ping(timestamp, echo, delay)


def pack_ranges(ranges) -> bytes:
    """``[(first, last), ...]`` inclusive -> NAK/GONE body; long ranges are split."""
    parts = []
    for first, last in ranges:
        while first <= last:
            count = min(last - first + 1, MAX_RANGE_COUNT)
            parts.append(_RANGE.pack(first, count))
            first += count
    return b"".join(parts)


def unpack_ranges(body: bytes) -> list[tuple[int, int]]:
    ranges = []
    for first, count in _RANGE.iter_unpack(body):
        if count == 0:
            raise DecodeError("empty sequence range")
        last = first + count - 1
        if last > codec.MAX_SEQ:
            raise DecodeError("sequence range runs past MAX_SEQ")
        ranges.append((first, last))
    return ranges


def pack_resize(cols: int, rows: int) -> bytes:
    return _RESIZE.pack(cols, rows)


def unpack_resize(body: bytes) -> tuple[int, int]:
    cols, rows = _RESIZE.unpack(body)
    if not (cols and rows):
        raise DecodeError("window size of zero")
    return cols, rows


def pack_screen(state: int, base: int, index: int, count: int, chunk: bytes) -> bytes:
    return _SCREEN.pack(state, base, index, count) + chunk


def unpack_screen(body: bytes) -> ScreenChunk:
    state, base, index, count = _SCREEN.unpack_from(body)
    if count == 0 or index >= count:
        raise DecodeError(f"screen chunk {index} of {count}")
    if base >= state:
        raise DecodeError(f"screen state {state} diffed from a newer base {base}")
    return ScreenChunk(state, base, index, count, bytes(body[SCREEN_HEADER_SIZE:]))


MAX_REASON_BYTES = 256


def pack_close(code: int, reason: str, exit_status: int = 0) -> bytes:
    """``exit_status``: the shell's, as a shell reports it (0..255, 128+N for signal N)."""
    text = reason.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return bytes([code, exit_status & 0xFF]) + text


def unpack_close(body: bytes) -> tuple[int, int, str]:
    """(code, exit status, reason)."""
    if len(body) < 2:
        raise DecodeError("CLOSE shorter than its code and exit status")
    try:
        return body[0], body[1], bytes(body[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("CLOSE reason is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class EchoAck:
    state: int                # the screen state that accounts for them (0 in a reliable stream)
    keystrokes: int           # keystroke bytes the shell had been given, long enough to echo
    flags: int                # the shell's terminal: ECHO (1), ICANON (2)


def pack_echo_ack(state: int, keystrokes: int, flags: int) -> bytes:
    return _ECHO_ACK.pack(state, keystrokes, flags)


def unpack_echo_ack(body: bytes) -> EchoAck:
    state, keystrokes, flags = _ECHO_ACK.unpack(body)
    if flags > 3:
        raise DecodeError("unknown echo-ack flags")
    return EchoAck(state, keystrokes, flags)


@dataclass(frozen=True, slots=True)
class Skip:
    offset: int               # the stream offset the output continues from
    lines: int                # newlines in the stream before it (so the receiver can count what it missed)


_SKIP = struct.Struct("!QQ")


def pack_skip(offset: int, lines: int) -> bytes:
    return _SKIP.pack(offset, lines)


def unpack_skip(body: bytes) -> Skip:
    offset, lines = _SKIP.unpack(body)
    if lines > offset:
        raise DecodeError("more lines than bytes before a skip")
    return Skip(offset, lines)


# --- forwarded byte streams (streams.py) --------------------------------------------------
MAX_HOST_BYTES = 255
_STREAM_OPEN = struct.Struct("!IBH")
_STREAM_DATA = struct.Struct("!IQ")
_STREAM_WINDOW = struct.Struct("!IQQ")
_STREAM_FIN = struct.Struct("!IQ")
_STREAM_RESET = struct.Struct("!IB")
_FORWARD = struct.Struct("!BBH")
STREAM_DATA_HEADER_SIZE = _STREAM_DATA.size


@dataclass(frozen=True, slots=True)
class StreamOpen:
    stream: int
    kind: int                 # streams.AGENT, streams.TCP
    port: int                 # TCP: where to connect (or, from the server, the listener's port)
    host: str


@dataclass(frozen=True, slots=True)
class StreamData:
    stream: int
    offset: int               # of data[0] in the stream
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamWindow:
    stream: int
    received: int             # every byte below this offset arrived
    limit: int                # the sender may send bytes below this offset


@dataclass(frozen=True, slots=True)
class StreamFin:
    stream: int
    size: int                 # the stream's final length


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Forward:
    """A forwarding request (client to server) or its answer (server to client)."""
    kind: int                 # streams.AGENT, streams.LISTEN
    status: int               # request: 0; answer: streams.FORWARD_OK or a refusal code
    port: int                 # LISTEN: the server port asked for
    host: str                 # LISTEN: the bind address; an answer: the refusal's reason


def _text(body: bytes, what: str) -> str:
    if len(body) > MAX_HOST_BYTES:
        raise DecodeError(f"{what} longer than {MAX_HOST_BYTES} bytes")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


def _short(text: str) -> bytes:
    return text.encode("utf-8")[:MAX_HOST_BYTES].decode("utf-8", "ignore").encode("utf-8")


def pack_stream_open(stream: int, kind: int, port: int, host: str) -> bytes:
    return _STREAM_OPEN.pack(stream, kind, port) + _short(host)


def unpack_stream_open(body: bytes) -> StreamOpen:
    stream, kind, port = _STREAM_OPEN.unpack_from(body)
    return StreamOpen(stream, kind, port, _text(body[_STREAM_OPEN.size:], "host"))


def pack_stream_data(stream: int, offset: int, data: bytes) -> bytes:
    return _STREAM_DATA.pack(stream, offset) + data


def unpack_stream_data(body: bytes) -> StreamData:
    stream, offset = _STREAM_DATA.unpack_from(body)
    data = bytes(body[_STREAM_DATA.size:])
    if offset + len(data) > codec.MAX_SEQ:
        raise DecodeError("stream offset out of range")
    return StreamData(stream, offset, data)


def pack_stream_window(stream: int, received: int, limit: int) -> bytes:
    return _STREAM_WINDOW.pack(stream, received, limit)


def unpack_stream_window(body: bytes) -> StreamWindow:
    stream, received, limit = _STREAM_WINDOW.unpack(body)
    if received > limit or limit > codec.MAX_SEQ:
        raise DecodeError("stream window below what was received")
    return StreamWindow(stream, received, limit)


def pack_stream_fin(stream: int, size: int) -> bytes:
    return _STREAM_FIN.pack(stream, size)


def unpack_stream_fin(body: bytes) -> StreamFin:
    stream, size = _STREAM_FIN.unpack(body)
    if size > codec.MAX_SEQ:
        raise DecodeError("stream size out of range")
    return StreamFin(stream, size)


def pack_stream_reset(stream: int, code: int, reason: str) -> bytes:
    return _STREAM_RESET.pack(stream, code) + _short(reason)


def unpack_stream_reset(body: bytes) -> StreamReset:
    stream, code = _STREAM_RESET.unpack_from(body)
    return StreamReset(stream, code, _text(body[_STREAM_RESET.size:], "reason"))


def pack_forward(kind: int, status: int, port: int, text: str) -> bytes:
    return _FORWARD.pack(kind, status, port) + _short(text)


def unpack_forward(body: bytes) -> Forward:
    kind, status, port = _FORWARD.unpack_from(body)
    return Forward(kind, status, port, _text(body[_FORWARD.size:], "forward text"))
