"""One datagram's payload, decoded whole into typed frame values (no state, no I/O).

Every frame is decoded before any is acted on: one bad frame and nothing of the
datagram counts. The direction rules live here too: a frame only the other side
sends, an ordered frame outside a bundle (unless this flow takes it unordered),
or an OSN frame out of place is a ``DecodeError``, which the channel counts as
malformed and drops.
"""

from __future__ import annotations

from moshpit import codec as F
from moshpit.errors import DecodeError
from moshpit.protocol import frames

# Encoded sizes, for filling a datagram to its budget.
FRAME_OVERHEAD = F.FRAME_HEADER_SIZE
PING_SIZE = FRAME_OVERHEAD + 10
ACK_SIZE = FRAME_OVERHEAD + 8
OSN_SIZE = FRAME_OVERHEAD + 8
RANGE_SIZE = 10

# Frames that travel in an ordered bundle (after an OSN frame) when their flow is reliable.
STREAM_FRAMES = frozenset({F.FRAME_STREAM_OPEN, F.FRAME_STREAM_DATA, F.FRAME_STREAM_WINDOW,
                           F.FRAME_STREAM_FIN, F.FRAME_STREAM_RESET, F.FRAME_FORWARD})
ORDERED = frozenset({F.FRAME_DATA, F.FRAME_RESIZE, F.FRAME_SCREEN, F.FRAME_CLOSE, F.FRAME_REPAINT,
                     F.FRAME_ECHO_ACK, F.FRAME_SKIP}) | STREAM_FRAMES
SERVER_ONLY = frozenset({F.FRAME_SCREEN, F.FRAME_ECHO_ACK, F.FRAME_SKIP})        # never from a client
CLIENT_ONLY = frozenset({F.FRAME_RESIZE, F.FRAME_REPAINT, F.FRAME_STATE_ACK,     # never from a server
                         F.FRAME_PATH_PROBE})

_DECODERS = {
    F.FRAME_PING: frames.unpack_ping,
    F.FRAME_ACK: frames.unpack_u64, F.FRAME_STATE_ACK: frames.unpack_u64, F.FRAME_REPAINT: frames.unpack_u64,
    F.FRAME_OSN: frames.unpack_u64,
    F.FRAME_NAK: frames.unpack_ranges, F.FRAME_GONE: frames.unpack_ranges,
    F.FRAME_RESIZE: frames.unpack_resize,
    F.FRAME_SCREEN: frames.unpack_screen,
    F.FRAME_CLOSE: frames.unpack_close,
    F.FRAME_ECHO_ACK: frames.unpack_echo_ack,
    F.FRAME_SKIP: frames.unpack_skip,
    F.FRAME_STREAM_OPEN: frames.unpack_stream_open, F.FRAME_STREAM_DATA: frames.unpack_stream_data,
    F.FRAME_STREAM_WINDOW: frames.unpack_stream_window, F.FRAME_STREAM_FIN: frames.unpack_stream_fin,
    F.FRAME_STREAM_RESET: frames.unpack_stream_reset, F.FRAME_FORWARD: frames.unpack_forward,
}


def parse_payload(payload: bytes, *, from_server: bool, unordered_ok: frozenset):
    """(immediate frames, OSN or None, ordered frames after the OSN), each frame a
    ``(type, value)``. ``from_server``: who sent it. ``unordered_ok``: the ordered
    frame types this flow takes outside a bundle (CLOSE always; the screen's frames
    where the screen travels unreliably)."""
    immediate: list = []
    ordered: list = []
    osn = None
    not_from_sender = CLIENT_ONLY if from_server else SERVER_ONLY
    for frame_type, body in F.decode_frames(payload):
        decode = _DECODERS.get(frame_type)
        value = decode(body) if decode is not None else body
        if frame_type in not_from_sender:
            raise DecodeError(f"frame type {frame_type} is not sent in this direction")
        if frame_type == F.FRAME_OSN:
            if osn is not None or not isinstance(value, int) or value > F.MAX_SEQ:
                raise DecodeError("unexpected OSN frame")
            osn = value
        elif osn is not None:
            if frame_type not in ORDERED:
                raise DecodeError(f"frame type {frame_type} after OSN")
            ordered.append((frame_type, value))
        elif frame_type in ORDERED and frame_type not in unordered_ok:
            # (a CLOSE outside a bundle is an answer to ours, or a last word: act at once)
            raise DecodeError(f"ordered frame type {frame_type} without an OSN")
        else:
            immediate.append((frame_type, value))
    if osn is not None and not ordered:
        raise DecodeError("OSN with no ordered frames")
    return immediate, osn, ordered
