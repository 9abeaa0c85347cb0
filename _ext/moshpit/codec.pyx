# cython: language_level=3
"""Datagram header and frame encoding: the wire format of moshpit's UDP channel.

A datagram is ``header | sealed payload | MAC``; the payload, once opened, is a
sequence of typed, length-prefixed frames. This module only lays bytes out and
reads them back with full bounds checking; it knows nothing of keys. Every
malformed input raises :class:`moshpit.errors.DecodeError` and nothing else;
misuse by the caller (a buffer too small, an unknown frame type to encode)
raises :class:`moshpit.errors.LocalProtocolError`.

>>> from moshpit import codec
>>> hdr = codec.header(codec.SERVER_TO_CLIENT, 0x01020304, 7)
>>> hdr.hex()
'11010203040000000000000007'
>>> codec.encode_frames([(codec.FRAME_DATA, b"hi"), (codec.FRAME_RESIZE, bytes([0, 80, 0, 24]))]).hex()
'010002686905000400500018'
>>> codec.decode_frames(bytes.fromhex('010002686905000400500018'))
[(1, b'hi'), (5, b'\\x00P\\x00\\x18')]
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memmove

from moshpit.errors import DecodeError, LocalProtocolError

# --- datagram layout -------------------------------------------------------

VERSION = 1
"""Protocol version carried in the high nibble of the first header byte."""

CLIENT_TO_SERVER = 0
SERVER_TO_CLIENT = 1

HEADER_SIZE = C_HEADER_SIZE
"""version/direction (1) + connection id (4) + sequence number (8)."""

AEAD_TAG_SIZE = C_TAG_SIZE
"""AES-256-GCM-SIV tag, appended to the ciphertext."""

MAC_SIZE = C_MAC_SIZE
"""HMAC-SHA-512 truncated to 256 bits (as HMAC-SHA-512/256 in RFC 4868)."""

OVERHEAD = C_MIN_DATAGRAM
"""Bytes a datagram carries beyond its plaintext payload: 61."""

MAX_DATAGRAM_SIZE = C_MAX_DATAGRAM
"""Largest datagram accepted or produced; anything bigger is dropped unread."""

MAX_PAYLOAD_SIZE = MAX_DATAGRAM_SIZE - OVERHEAD
"""Largest plaintext payload (all frames together): 1219 bytes."""

MIN_DATAGRAM_SIZE = OVERHEAD

MAX_SEQ = 2**63 - 1
"""Sequence numbers are 64-bit fields whose top bit must be zero, so that
``seq + 1`` never overflows anywhere."""
"""A datagram with an empty payload."""

FRAME_HEADER_SIZE = C_FRAME_HEADER_SIZE
"""type (1) + body length (2, big-endian)."""

cdef Py_ssize_t _MAX_PAYLOAD = C_MAX_DATAGRAM - C_MIN_DATAGRAM
cdef uint64_t _MAX_SEQ = (<uint64_t>1 << 63) - 1

# --- frame registry --------------------------------------------------------

FRAME_DATA = 0x01         # reliable byte stream chunk
FRAME_ACK = 0x02          # u64: every sequence number below this was received
FRAME_NAK = 0x03          # n x (u64 first, u16 count): please resend these
FRAME_PING = 0x04         # u32 timestamp ms, u32 echoed timestamp ms, u16 echo delay ms
FRAME_RESIZE = 0x05       # u16 columns, u16 rows
FRAME_SCREEN = 0x06       # u64 state, u64 base state, u16 index, u16 count, chunk
FRAME_STATE_ACK = 0x07    # u64: newest screen state the receiver holds
FRAME_REPAINT = 0x08      # u64: state the receiver holds; send a full repaint
FRAME_CLOSE = 0x09        # u8 code + u8 exit status + UTF-8 reason
FRAME_GONE = 0x0A         # n x (u64 first, u16 count): cannot be resent, skip them
FRAME_PADDING = 0x0B      # ignored; lets a client earn a bigger anti-amplification budget
FRAME_OSN = 0x0C          # u64: ordered sequence number of the ordered frames that follow
FRAME_ECHO_ACK = 0x0D     # u64 screen state, u64 keystroke bytes it accounts for, u8 tty flags
FRAME_SKIP = 0x0E         # u64 stream offset, u64 lines: output from here on; the lines before it are not sent
FRAME_STREAM_OPEN = 0x0F  # u32 stream, u8 kind, u16 port, UTF-8 host (forwarding: streams.py)
FRAME_STREAM_DATA = 0x10  # u32 stream, u64 offset, data
FRAME_STREAM_WINDOW = 0x11  # u32 stream, u64 received, u64 limit
FRAME_STREAM_FIN = 0x12   # u32 stream, u64 final size
FRAME_STREAM_RESET = 0x13  # u32 stream, u8 code, UTF-8 reason
FRAME_FORWARD = 0x14      # u8 kind, u8 status, u16 port, UTF-8 host or reason
FRAME_PATH_PROBE = 0x15   # empty: a probe of a path not in use; answer it there, do not move there

FRAME_NAMES = {
    FRAME_DATA: "DATA", FRAME_ACK: "ACK", FRAME_NAK: "NAK", FRAME_PING: "PING",
    FRAME_RESIZE: "RESIZE", FRAME_SCREEN: "SCREEN", FRAME_STATE_ACK: "STATE_ACK",
    FRAME_REPAINT: "REPAINT", FRAME_CLOSE: "CLOSE", FRAME_GONE: "GONE",
    FRAME_PADDING: "PADDING", FRAME_OSN: "OSN", FRAME_ECHO_ACK: "ECHO_ACK", FRAME_SKIP: "SKIP",
    FRAME_STREAM_OPEN: "STREAM_OPEN", FRAME_STREAM_DATA: "STREAM_DATA", FRAME_STREAM_WINDOW: "STREAM_WINDOW",
    FRAME_STREAM_FIN: "STREAM_FIN", FRAME_STREAM_RESET: "STREAM_RESET", FRAME_FORWARD: "FORWARD",
    FRAME_PATH_PROBE: "PATH_PROBE",
}

cdef enum:
    _MAX_TYPE = 0x15
    _ANY = 1216  # the largest body that fits a payload: 1280 - 61 - 3

# Body length rules per frame type: minimum, maximum, and the step the length
# must advance by above the minimum (1 = any length in range). Index 0 unused.
cdef int _MIN_LEN[_MAX_TYPE + 1]
cdef int _MAX_LEN[_MAX_TYPE + 1]
cdef int _STEP[_MAX_TYPE + 1]


cdef void _rule(int t, int lo, int hi, int step) noexcept:
    _MIN_LEN[t] = lo
    _MAX_LEN[t] = hi
    _STEP[t] = step


_rule(0, 1, 0, 1)  # type 0 is reserved: min > max means never valid
_rule(FRAME_DATA, 1, _ANY, 1)
_rule(FRAME_ACK, 8, 8, 1)
_rule(FRAME_NAK, 10, _ANY, 10)
_rule(FRAME_PING, 10, 10, 1)
_rule(FRAME_RESIZE, 4, 4, 1)
_rule(FRAME_SCREEN, 20, _ANY, 1)
_rule(FRAME_STATE_ACK, 8, 8, 1)
_rule(FRAME_REPAINT, 8, 8, 1)
_rule(FRAME_CLOSE, 2, _ANY, 1)
_rule(FRAME_GONE, 10, _ANY, 10)
_rule(FRAME_PADDING, 0, _ANY, 1)
_rule(FRAME_OSN, 8, 8, 1)
_rule(FRAME_ECHO_ACK, 17, 17, 1)
_rule(FRAME_SKIP, 16, 16, 1)
_rule(FRAME_STREAM_OPEN, 7, 7 + 255, 1)
_rule(FRAME_STREAM_DATA, 13, _ANY, 1)
_rule(FRAME_STREAM_WINDOW, 20, 20, 1)
_rule(FRAME_STREAM_FIN, 12, 12, 1)
_rule(FRAME_STREAM_RESET, 5, 5 + 255, 1)
_rule(FRAME_FORWARD, 4, 4 + 255, 1)
_rule(FRAME_PATH_PROBE, 0, 0, 1)


cdef inline bint _body_length_ok(int frame_type, Py_ssize_t n) noexcept:
    if frame_type <= 0 or frame_type > _MAX_TYPE:
        return False
    if n < _MIN_LEN[frame_type] or n > _MAX_LEN[frame_type]:
        return False
    return (n - _MIN_LEN[frame_type]) % _STEP[frame_type] == 0


def frame_body_ok(int frame_type, Py_ssize_t length):
    """Whether a body of ``length`` bytes is valid for ``frame_type``.

    >>> frame_body_ok(FRAME_RESIZE, 4), frame_body_ok(FRAME_RESIZE, 5), frame_body_ok(0x7F, 1)
    (True, False, False)
    """
    return _body_length_ok(frame_type, length)


# --- header ----------------------------------------------------------------

cpdef Py_ssize_t encode_header(unsigned char[::1] out, int direction,
                               uint32_t conn_id, uint64_t seq) except -1:
    """Write the 13-byte header at the start of ``out``; return its size.

    Byte 0 is ``version << 4 | direction``; then the connection id and the
    sequence number, big-endian. Bytes 1..12 double as the AEAD nonce.

    >>> buf = bytearray(13)
    >>> encode_header(buf, CLIENT_TO_SERVER, 0xCAFEBABE, 2**63 - 1)
    13
    >>> buf.hex()
    '10cafebabe7fffffffffffffff'
    """
    if direction != 0 and direction != 1:
        raise LocalProtocolError(f"direction must be 0 or 1, not {direction}")
    if out is None or out.shape[0] < C_HEADER_SIZE:
        raise LocalProtocolError("output buffer missing or smaller than a header")
    if seq > _MAX_SEQ:
        raise LocalProtocolError(f"sequence number {seq} above MAX_SEQ")
    store_header(&out[0], direction, conn_id, seq)
    return C_HEADER_SIZE


cpdef bytes header(int direction, uint32_t conn_id, uint64_t seq):
    """The header as ``bytes`` (see :func:`encode_header`); built on the stack, one allocation."""
    if direction != 0 and direction != 1:
        raise LocalProtocolError(f"direction must be 0 or 1, not {direction}")
    if seq > _MAX_SEQ:
        raise LocalProtocolError(f"sequence number {seq} above MAX_SEQ")
    cdef unsigned char buf[C_HEADER_SIZE]
    store_header(buf, direction, conn_id, seq)
    return (<char *>buf)[:C_HEADER_SIZE]


cpdef tuple decode_header(const unsigned char[::1] datagram):
    """Check a whole datagram's size and header; return ``(direction, conn_id, seq)``.

    Raises :class:`DecodeError` for a datagram shorter than an empty sealed one,
    longer than ``MAX_DATAGRAM_SIZE``, of another version, with reserved bits
    set, or with a sequence number above ``MAX_SEQ``.

    >>> decode_header(bytes.fromhex('11010203040000000000000007') + bytes(48))
    (1, 16909060, 7)
    >>> decode_header(b'\\x21' + bytes(60))
    Traceback (most recent call last):
    ...
    moshpit.errors.DecodeError: unsupported protocol version 2
    """
    if datagram is None:
        raise TypeError("datagram must be a bytes-like object, not None")
    cdef Py_ssize_t n = datagram.shape[0]
    cdef const unsigned char *p = &datagram[0] if n else NULL
    cdef int problem = header_problem(p, n)
    if problem == TOO_SHORT:
        raise DecodeError(f"datagram of {n} bytes is shorter than the minimum {C_MIN_DATAGRAM}")
    if problem == TOO_LONG:
        raise DecodeError(f"datagram of {n} bytes exceeds the maximum {C_MAX_DATAGRAM}")
    if problem == BAD_VERSION:
        raise DecodeError(f"unsupported protocol version {p[0] >> 4}")
    if problem == RESERVED_BITS:
        raise DecodeError("reserved header bits set")
    if problem == SEQ_TOP_BIT:
        raise DecodeError("sequence number has its top bit set")
    cdef int first = p[0]
    cdef uint64_t seq = load_u64(p + 5)
    return (first & 1, load_u32(p + 1), seq)


# --- frames ----------------------------------------------------------------

cpdef Py_ssize_t encode_frame(unsigned char[::1] out, Py_ssize_t pos, int frame_type,
                              const unsigned char[::1] body) except -1:
    """Append one frame to ``out`` at ``pos``; return the position after it.

    ``out`` is a preallocated writable buffer (``bytearray``); nothing is
    allocated here.

    >>> buf = bytearray(16)
    >>> end = encode_frame(buf, 0, FRAME_ACK, (5).to_bytes(8, 'big'))
    >>> end, bytes(buf[:end]).hex()
    (11, '0200080000000000000005')
    """
    if out is None or body is None:
        raise LocalProtocolError("encode_frame needs a buffer and a body, not None")
    cdef Py_ssize_t n = body.shape[0]
    if not _body_length_ok(frame_type, n):
        raise LocalProtocolError(f"invalid frame: type {frame_type}, body of {n} bytes")
    if pos < 0 or pos > out.shape[0] - C_FRAME_HEADER_SIZE - n:
        raise LocalProtocolError("frame does not fit the output buffer")
    cdef unsigned char *p = &out[pos]
    p[0] = <unsigned char>frame_type
    store_u16(p + 1, <uint16_t>n)
    if n:
        memmove(p + C_FRAME_HEADER_SIZE, &body[0], n)
    return pos + C_FRAME_HEADER_SIZE + n


def encode_frames(frames):
    """Encode ``(type, body)`` pairs into one payload, checked against ``MAX_PAYLOAD_SIZE``."""
    frames = list(frames)  # walked twice: sized, then written
    cdef Py_ssize_t total = 0
    for _, body in frames:
        total += C_FRAME_HEADER_SIZE + len(body)
    if total > _MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {total} bytes exceeds {_MAX_PAYLOAD}")
    buf = bytearray(total)
    cdef Py_ssize_t pos = 0
    for frame_type, body in frames:
        pos = encode_frame(buf, pos, frame_type, body)
    return bytes(buf)


cpdef list decode_frames(const unsigned char[::1] payload):
    """Split a payload into ``[(type, body_bytes), ...]`` in wire order.

    Raises :class:`DecodeError` for an oversized payload, a truncated frame
    header, a length that runs past the end, an unknown type, or a body length
    the type does not allow. Nothing is returned unless the whole payload is good.

    >>> decode_frames(b'')
    []
    >>> decode_frames(bytes.fromhex('0100056869'))
    Traceback (most recent call last):
    ...
    moshpit.errors.DecodeError: frame at offset 0 claims 5 bytes, only 2 remain
    """
    if payload is None:
        raise TypeError("payload must be a bytes-like object, not None")
    cdef Py_ssize_t n = payload.shape[0]
    if n > _MAX_PAYLOAD:
        raise DecodeError(f"payload of {n} bytes exceeds the maximum {_MAX_PAYLOAD}")
    cdef list frames = []
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t length
    cdef int frame_type
    cdef const unsigned char *p
    while pos < n:
        if n - pos < C_FRAME_HEADER_SIZE:
            raise DecodeError(f"truncated frame header at offset {pos}")
        p = &payload[pos]
        frame_type = p[0]
        length = load_u16(p + 1)
        if length > n - pos - C_FRAME_HEADER_SIZE:
            raise DecodeError(f"frame at offset {pos} claims {length} bytes, "
                              f"only {n - pos - C_FRAME_HEADER_SIZE} remain")
        if frame_type == 0 or frame_type > _MAX_TYPE:
            raise DecodeError(f"unknown frame type {frame_type} at offset {pos}")
        if not _body_length_ok(frame_type, length):
            raise DecodeError(f"frame type {frame_type} cannot have a {length}-byte body")
        frames.append((frame_type, (<const char *>p)[C_FRAME_HEADER_SIZE:C_FRAME_HEADER_SIZE + length]))
        pos += C_FRAME_HEADER_SIZE + length
    return frames
