"""The datagram header and frame codec: round trips, exact layouts, hostile input."""

import pytest
from hypothesis import given, strategies as st

from moshpit import codec
from moshpit.errors import DecodeError, LocalProtocolError

FIXED = {codec.FRAME_ACK: 8, codec.FRAME_PING: 10, codec.FRAME_RESIZE: 4,
         codec.FRAME_STATE_ACK: 8, codec.FRAME_REPAINT: 8, codec.FRAME_OSN: 8, codec.FRAME_ECHO_ACK: 17,
         codec.FRAME_SKIP: 16, codec.FRAME_STREAM_WINDOW: 20, codec.FRAME_STREAM_FIN: 12,
         codec.FRAME_PATH_PROBE: 0}
MINIMUM = {codec.FRAME_STREAM_OPEN: 7, codec.FRAME_STREAM_DATA: 13, codec.FRAME_STREAM_RESET: 5,
           codec.FRAME_FORWARD: 4}


def body_for(frame_type):
    if frame_type in FIXED:
        return st.binary(min_size=FIXED[frame_type], max_size=FIXED[frame_type])
    if frame_type in (codec.FRAME_NAK, codec.FRAME_GONE):
        return st.integers(1, 12).flatmap(lambda n: st.binary(min_size=10 * n, max_size=10 * n))
    if frame_type == codec.FRAME_SCREEN:
        return st.binary(min_size=20, max_size=300)
    if frame_type == codec.FRAME_CLOSE:
        return st.binary(min_size=2, max_size=300)     # code and exit status, then the reason
    if frame_type in MINIMUM:                          # a header, then a host, reason or data
        return st.binary(min_size=MINIMUM[frame_type], max_size=MINIMUM[frame_type] + 255)
    return st.binary(min_size=1, max_size=300)


frame = st.sampled_from(sorted(codec.FRAME_NAMES)).flatmap(
    lambda t: st.tuples(st.just(t), body_for(t)))
frames = st.lists(frame, max_size=6).filter(
    lambda fs: sum(3 + len(b) for _, b in fs) <= codec.MAX_PAYLOAD_SIZE)


@given(frames)
def test_frames_round_trip(fs):
    payload = codec.encode_frames(fs)
    assert len(payload) == sum(3 + len(b) for _, b in fs)
    for buffer_type in (bytes, bytearray, memoryview):
        assert codec.decode_frames(buffer_type(payload)) == fs


@given(st.integers(0, 1), st.integers(0, 2**32 - 1), st.integers(0, 2**63 - 1))
def test_header_round_trip_and_layout(direction, conn_id, seq):
    hdr = codec.header(direction, conn_id, seq)
    assert hdr == bytes([0x10 | direction]) + conn_id.to_bytes(4, "big") + seq.to_bytes(8, "big")
    buf = bytearray(20)
    assert codec.encode_header(buf, direction, conn_id, seq) == codec.HEADER_SIZE
    assert bytes(buf[:13]) == hdr
    datagram = hdr + bytes(codec.AEAD_TAG_SIZE + codec.MAC_SIZE)
    assert codec.decode_header(datagram) == (direction, conn_id, seq)


def test_overhead_is_at_most_64_bytes():
    assert codec.OVERHEAD == codec.HEADER_SIZE + codec.AEAD_TAG_SIZE + codec.MAC_SIZE == 61
    assert codec.MAX_PAYLOAD_SIZE + codec.OVERHEAD == codec.MAX_DATAGRAM_SIZE


@pytest.mark.parametrize("datagram, message", [
    (b"", "shorter than the minimum"),
    (codec.header(0, 1, 1) + bytes(47), "shorter than the minimum"),
    (codec.header(0, 1, 1) + bytes(codec.MAX_DATAGRAM_SIZE), "exceeds the maximum"),
    (b"\x20" + bytes(60), "unsupported protocol version 2"),
    (b"\x00" + bytes(60), "unsupported protocol version 0"),
    (b"\x12" + bytes(60), "reserved header bits"),
    (b"\x10" + bytes(4) + b"\x80" + bytes(55), "top bit set"),
])
def test_bad_headers_are_refused(datagram, message):
    with pytest.raises(DecodeError, match=message):
        codec.decode_header(datagram)


@pytest.mark.parametrize("payload, message", [
    (b"\x01", "truncated frame header"),
    (b"\x01\x00", "truncated frame header"),
    (b"\x01\x00\x05abc", "claims 5 bytes, only 3 remain"),
    (b"\x01\xff\xff", "claims 65535 bytes"),
    (b"\x7f\x00\x01x", "unknown frame type 127"),
    (b"\x00\x00\x01x", "unknown frame type 0"),
    (b"\x05\x00\x03abc", "type 5 cannot have a 3-byte body"),
    (b"\x03\x00\x0b" + bytes(11), "type 3 cannot have a 11-byte body"),
    (b"\x01\x00\x00", "type 1 cannot have a 0-byte body"),
    (b"\x01\x00\x01x" + b"\x05\x00\x04ab", "claims 4 bytes, only 2 remain"),
    (bytes(codec.MAX_PAYLOAD_SIZE + 1), "exceeds the maximum"),
])
def test_bad_payloads_are_refused(payload, message):
    with pytest.raises(DecodeError, match=message):
        codec.decode_frames(payload)


def test_encoding_misuse_is_a_local_error():
    buf = bytearray(10)
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(buf, 0, codec.FRAME_DATA, b"x" * 8)      # does not fit
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(buf, 0, 0x7F, b"x")                      # unknown type
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(buf, 0, codec.FRAME_RESIZE, b"xyz")      # wrong length
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(buf, -1, codec.FRAME_DATA, b"x")
    with pytest.raises(LocalProtocolError):
        codec.encode_header(bytearray(12), 0, 1, 1)
    with pytest.raises(LocalProtocolError):
        codec.header(2, 1, 1)
    with pytest.raises(LocalProtocolError):
        codec.header(0, 1, 2**63)
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(bytearray(2000), 0, codec.FRAME_DATA, bytes(1217))  # body above 1216
    with pytest.raises(LocalProtocolError):
        codec.encode_frame(buf, 2**62, codec.FRAME_DATA, b"x")                # absurd position
    with pytest.raises(LocalProtocolError):
        codec.encode_frames([(codec.FRAME_DATA, bytes(codec.MAX_PAYLOAD_SIZE))])


def test_encode_frames_accepts_any_iterable():
    pairs = [(codec.FRAME_DATA, b"hi"), (codec.FRAME_PADDING, b"")]
    assert codec.encode_frames(iter(pairs)) == codec.encode_frames(pairs) == b"\x01\x00\x02hi\x0b\x00\x00"


def test_none_is_not_a_buffer():
    for call in (lambda: codec.decode_frames(None), lambda: codec.decode_header(None)):
        with pytest.raises(TypeError):
            call()


def test_decoded_frames_do_not_alias_the_input():
    payload = bytearray(codec.encode_frames([(codec.FRAME_DATA, b"hello")]))
    (_, body), = codec.decode_frames(payload)
    payload[3:8] = b"XXXXX"
    assert body == b"hello"


@given(st.binary(max_size=1400))
def test_garbage_raises_only_decode_error(data):
    for decode in (codec.decode_frames, codec.decode_header):
        try:
            decode(data)
        except DecodeError:
            pass


@given(frames, st.data())
def test_mutated_payloads_decode_or_raise_decode_error(fs, data):
    payload = bytearray(codec.encode_frames(fs))
    action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if action == "flip" and payload:
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        del payload[data.draw(st.integers(0, len(payload))):]
    else:
        payload += data.draw(st.binary(min_size=1, max_size=8))
    try:
        decoded = codec.decode_frames(payload)
    except DecodeError:
        return
    # Whatever parses must re-encode to exactly the bytes it came from.
    assert codec.encode_frames(decoded) == bytes(payload)
