"""Packet protection: round trips, per-direction keys, replay, forgery and garbage."""

import os
import random

import pytest
from hypothesis import given, strategies as st

from moshpit import codec
from moshpit.crypto import DirectionKeys, PacketOpener, PacketSealer
from moshpit.errors import DatagramDropped, DropReason, LocalProtocolError

C2S, S2C = codec.CLIENT_TO_SERVER, codec.SERVER_TO_CLIENT
CONN = 0x5EED0001


def keys():
    return DirectionKeys(os.urandom(32), os.urandom(64))


@pytest.fixture
def link():
    """Both directions of one connection: (client sealer, server opener, server sealer, client opener)."""
    up, down = keys(), keys()
    return (PacketSealer(up, conn_id=CONN, direction=C2S), PacketOpener(up, conn_id=CONN, direction=C2S),
            PacketSealer(down, conn_id=CONN, direction=S2C), PacketOpener(down, conn_id=CONN, direction=S2C))


def dropped(opener, datagram):
    with pytest.raises(DatagramDropped) as info:
        opener.open(datagram)
    return info.value.reason


@given(st.lists(st.binary(max_size=codec.MAX_PAYLOAD_SIZE), max_size=20))
def test_round_trip_in_order(payloads):
    k = keys()
    sealer = PacketSealer(k, conn_id=CONN, direction=S2C)
    opener = PacketOpener(k, conn_id=CONN, direction=S2C)
    for expected_seq, payload in enumerate(payloads):
        seq, datagram = sealer.seal(payload)
        assert seq == expected_seq
        assert len(datagram) == len(payload) + codec.OVERHEAD <= codec.MAX_DATAGRAM_SIZE
        assert payload not in datagram or len(payload) < 8   # the payload is encrypted
        assert opener.open(datagram) == (seq, payload)


def test_accepts_any_buffer_type(link):
    client_seal, server_open, _, _ = link
    for wrap in (bytes, bytearray, memoryview):
        seq, datagram = client_seal.seal(wrap(b"\x01\x00\x01x"))
        assert server_open.open(wrap(datagram)) == (seq, b"\x01\x00\x01x")


def test_replayed_datagram_is_dropped(link):
    client_seal, server_open, _, _ = link
    _, datagram = client_seal.seal(b"payload")
    server_open.open(datagram)
    assert dropped(server_open, datagram) is DropReason.DUPLICATE


def test_reflected_datagram_is_dropped(link):
    _, server_open, server_seal, _ = link
    _, datagram = server_seal.seal(b"sent by the server")
    assert dropped(server_open, datagram) is DropReason.REFLECTED
    # Flipping the direction bit does not help: the MAC covers it, and the keys differ.
    flipped = bytes([datagram[0] ^ 1]) + datagram[1:]
    assert dropped(server_open, flipped) is DropReason.AUTH_FAILED


def test_other_connection_is_dropped_before_crypto():
    k = keys()
    _, datagram = PacketSealer(k, conn_id=1, direction=C2S).seal(b"x")
    assert dropped(PacketOpener(k, conn_id=2, direction=C2S), datagram) is DropReason.WRONG_CONNECTION


def test_forgery_never_moves_the_replay_window(link):
    client_seal, server_open, _, _ = link
    seq, datagram = client_seal.seal(b"genuine")
    forged = datagram[:-1] + bytes([datagram[-1] ^ 0x80])
    assert dropped(server_open, forged) is DropReason.AUTH_FAILED
    assert server_open.replay.highest is None
    assert server_open.open(datagram) == (seq, b"genuine")


@given(st.data())
def test_any_single_byte_change_is_refused(data):
    k = keys()
    _, datagram = PacketSealer(k, conn_id=CONN, direction=C2S, first_seq=100).seal(b"\x01\x00\x05hello")
    opener = PacketOpener(k, conn_id=CONN, direction=C2S)
    i = data.draw(st.integers(0, len(datagram) - 1))
    mutated = bytearray(datagram)
    mutated[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DatagramDropped):
        opener.open(bytes(mutated))
    assert opener.replay.highest is None


def test_too_old_and_too_far_ahead(link):
    client_seal, server_open, _, _ = link
    old = client_seal.seal(b"old")[1]
    for _ in range(3000):
        client_seal.seal(b"")
    server_open.open(client_seal.seal(b"new")[1])
    assert dropped(server_open, old) is DropReason.TOO_OLD
    k = keys()
    far = PacketSealer(k, conn_id=CONN, direction=C2S, first_seq=2**30).seal(b"x")[1]
    assert dropped(PacketOpener(k, conn_id=CONN, direction=C2S), far) is DropReason.TOO_FAR_AHEAD


def test_out_of_order_within_the_window_is_accepted(link):
    client_seal, server_open, _, _ = link
    sent = [client_seal.seal(b"%d" % i) for i in range(50)]
    for seq, datagram in reversed(sent):
        assert server_open.open(datagram) == (seq, b"%d" % seq)


@pytest.mark.parametrize("datagram", [
    b"", b"\x10", bytes(60), bytes(61), bytes(1281),
    random.Random(1).randbytes(61), random.Random(2).randbytes(500), random.Random(3).randbytes(5000),
])
def test_malformed_and_random_datagrams(link, datagram):
    _, server_open, _, _ = link
    assert dropped(server_open, datagram) in (DropReason.MALFORMED, DropReason.REFLECTED,
                                              DropReason.WRONG_CONNECTION, DropReason.TOO_FAR_AHEAD)


@given(st.binary(max_size=1400))
def test_garbage_only_ever_raises_datagram_dropped(data):
    k = keys()
    opener = PacketOpener(k, conn_id=int.from_bytes(data[1:5].ljust(4, b"\0"), "big"),
                          direction=data[0] & 1 if data else 0)
    with pytest.raises(DatagramDropped):
        opener.open(data)
    assert opener.replay.highest is None


def test_non_buffer_input_is_malformed(link):
    _, server_open, _, _ = link
    for junk in (None, "text", 12345):
        assert dropped(server_open, junk) is DropReason.MALFORMED


def test_caller_misuse_is_local_error():
    with pytest.raises(LocalProtocolError):
        DirectionKeys(b"short", os.urandom(64))
    with pytest.raises(LocalProtocolError):
        DirectionKeys(os.urandom(32), os.urandom(32))
    with pytest.raises(LocalProtocolError):
        PacketSealer(keys(), conn_id=2**32, direction=C2S)
    with pytest.raises(LocalProtocolError):
        PacketSealer(keys(), conn_id=1, direction=2)
    with pytest.raises(LocalProtocolError):
        PacketSealer(keys(), conn_id=1, direction=C2S).seal(bytes(codec.MAX_PAYLOAD_SIZE + 1))
    with pytest.raises(LocalProtocolError):
        PacketSealer(keys(), conn_id=1, direction=C2S, first_seq=-1)
    last = PacketSealer(keys(), conn_id=1, direction=C2S, first_seq=2**63 - 1)
    last.seal(b"")
    with pytest.raises(LocalProtocolError, match="exhausted"):
        last.seal(b"")


def test_payload_size_counts_bytes_not_items():
    import array
    wide = memoryview(array.array("Q", bytes(codec.MAX_PAYLOAD_SIZE // 8 * 8 + 8)))
    with pytest.raises(LocalProtocolError):
        PacketSealer(keys(), conn_id=1, direction=C2S).seal(wide)


def test_keys_never_appear_in_repr():
    k = keys()
    assert k.aead_key.hex() not in repr(k) and "redacted" in repr(k)


# --- a run per call -----------------------------------------------------------

@given(st.lists(st.binary(max_size=codec.MAX_PAYLOAD_SIZE), max_size=12), st.integers(0, 1000))
def test_a_sealed_run_is_the_same_as_one_at_a_time(payloads, first):
    k = keys()
    one = PacketSealer(k, conn_id=CONN, direction=S2C, first_seq=first)
    run = PacketSealer(k, conn_id=CONN, direction=S2C, first_seq=first)
    singly = [one.seal(p)[1] for p in payloads]
    assert run.seal_many(payloads) == singly      # GCM-SIV is deterministic: the same bytes
    assert run.next_seq == one.next_seq == first + len(payloads)
    opener = PacketOpener(k, conn_id=CONN, direction=S2C)
    assert opener.open_many(singly) == [(first + i, p) for i, p in enumerate(payloads)]


def test_a_bad_datagram_in_a_run_is_refused_alone(link):
    client_seal, server_open, server_seal, _ = link
    good = client_seal.seal_many([b"one", b"two", b"three"])
    forged = bytearray(good[1])
    forged[-1] ^= 1
    reflected = server_seal.seal(b"from the server")[1]
    results = server_open.open_many([good[0], bytes(forged), b"\x00" * 3, reflected, good[2], good[0]])
    assert results[0] == (0, b"one") and results[4] == (2, b"three")
    assert [r.reason for r in results if isinstance(r, DatagramDropped)] == [
        DropReason.AUTH_FAILED, DropReason.MALFORMED, DropReason.REFLECTED, DropReason.DUPLICATE]
    assert server_open.open(good[1]) == (1, b"two")   # the forgery did not spend its number


def test_a_run_that_would_pass_the_last_sequence_number_is_refused_whole():
    sealer = PacketSealer(keys(), conn_id=CONN, direction=C2S, first_seq=codec.MAX_SEQ - 1)
    with pytest.raises(LocalProtocolError):
        sealer.seal_many([b"a", b"b", b"c"])
    assert sealer.next_seq == codec.MAX_SEQ - 1
    assert len(sealer.seal_many([b"a", b"b"])) == 2


def test_the_keyed_mac_is_hmac_sha512():
    import hmac
    from moshpit.crypto import keyed_hmac_sha512
    key, message = os.urandom(64), os.urandom(300)
    mac = keyed_hmac_sha512(key).copy()
    mac.update(message)
    assert mac.digest() == hmac.new(key, message, "sha512").digest()


# --- the compiled open loop against the model -----------------------------------

_damage = st.one_of(
    st.just(("as sent", None)),
    st.tuples(st.just("flip"), st.tuples(st.integers(0, 1300), st.integers(0, 7))),   # a bit anywhere
    st.tuples(st.just("header bit"), st.integers(0, 13 * 8 - 1)),
    st.tuples(st.just("sealed as"), st.sampled_from(["other direction", "other connection"])),
    st.tuples(st.just("cut"), st.integers(0, 200)),            # truncated
    st.tuples(st.just("grow"), st.integers(1, 1300)),          # padded, maybe past the maximum
    st.tuples(st.just("again"), st.integers(0, 30)),           # an earlier datagram replayed
    st.tuples(st.just("garbage"), st.binary(max_size=100)),
)


@given(st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 3000), _damage), max_size=30),
       st.integers(1, 8))
def test_the_compiled_open_loop_agrees_with_the_model(steps, run):
    """Sealed, skipped ahead, damaged and replayed datagrams, opened in runs: every answer
    (payload or reason) and the replay window afterwards are the model's."""
    from models import OpenerModel
    aead_key, mac_key = os.urandom(32), os.urandom(64)
    k = DirectionKeys(aead_key, mac_key)
    opener = PacketOpener(k, conn_id=CONN, direction=S2C)
    model = OpenerModel(aead_key, mac_key, CONN, S2C)
    sealed, wire, seq = [], [], 0
    for payload, skip, (how, arg) in steps:
        if skip > 2990:
            seq += 1 << 21                                     # now and then too far ahead
        elif skip > 2900:
            seq += skip                                        # or a gap the window holds
        datagram = PacketSealer(k, conn_id=CONN, direction=S2C, first_seq=min(seq, codec.MAX_SEQ)).seal(payload)[1]
        seq += 1
        sealed.append(datagram)
        if how in ("flip", "header bit"):
            at, bit = arg if how == "flip" else divmod(arg, 8)
            damaged = bytearray(datagram)
            damaged[at % len(damaged)] ^= 1 << bit
            datagram = bytes(damaged)
        elif how == "sealed as":
            other = dict(conn_id=CONN ^ 1, direction=S2C) if arg == "other connection" \
                else dict(conn_id=CONN, direction=C2S)
            datagram = PacketSealer(k, first_seq=min(seq, codec.MAX_SEQ), **other).seal(payload)[1]
        elif how == "cut":
            datagram = datagram[:arg]
        elif how == "grow":
            datagram = datagram + bytes(arg)
        elif how == "again":
            datagram = sealed[-1 - arg % len(sealed)]
        elif how == "garbage":
            datagram = arg
        wire.append(datagram)
    got = []
    for i in range(0, len(wire), run):
        got += opener.open_many(wire[i:i + run])
    expected = [model.open(d) for d in wire]
    assert [r if isinstance(r, tuple) else r.reason.value for r in got] == expected
    assert opener.replay.highest == (max((r[0] for r in got if isinstance(r, tuple)), default=None))


def test_what_is_not_a_datagram_at_all_is_refused_as_malformed(link):
    import array
    client_seal, server_open, _, _ = link
    good = client_seal.seal(b"fine")[1]
    strided = memoryview(bytes(200))[::2]                   # a buffer, but not one run of bytes
    results = server_open.open_many([None, "text", 17, strided, array.array("I", [1] * 40), good])
    assert [r.reason for r in results[:5]] == [DropReason.MALFORMED] * 5
    assert results[5] == (0, b"fine")
