"""The retransmit ring: unit cases and a property test against RetransmitModel."""

import pytest
from hypothesis import given, strategies as st

from models import RetransmitModel
from moshpit.errors import LocalProtocolError
from moshpit.retransmit import DEFAULT_CAPACITY, RetransmitBuffer


def test_holds_exactly_the_last_512():
    ring = RetransmitBuffer()
    assert ring.capacity == DEFAULT_CAPACITY == 512
    for seq in range(1000):
        ring.store(seq, b"d%d" % seq)
    assert len(ring) == 512
    assert ring.lookup(487) is None
    assert ring.lookup(488) == b"d488"
    assert ring.lookup(999) == b"d999"
    assert ring.lookup(1000) is None
    assert list(ring) == list(range(488, 1000))


def test_gap_in_numbers_evicts_what_falls_out():
    ring = RetransmitBuffer(8)
    for seq in range(8):
        ring.store(seq, b"x")
    ring.store(12, b"y")               # 0..4 are now more than 8 behind 12
    assert list(ring) == [5, 6, 7, 12]
    ring.store(10_000, b"z")
    assert list(ring) == [10_000] and len(ring) == 1


def test_discard_and_cumulative_ack_free_memory():
    ring = RetransmitBuffer(16)
    for seq in range(10):
        ring.store(seq, bytearray(100))
    assert ring.discard(3) is True and ring.discard(3) is False
    assert ring.discard_through(5) == 5            # 0,1,2,4,5
    assert list(ring) == [6, 7, 8, 9]
    assert ring.discard_through(100) == 4
    assert len(ring) == 0 and ring.newest == 9
    ring.store(10, b"after")
    assert list(ring) == [10]


def test_misuse_is_caller_error():
    ring = RetransmitBuffer(4)
    ring.store(5, b"a")
    with pytest.raises(LocalProtocolError):
        ring.store(5, b"again")
    with pytest.raises(LocalProtocolError):
        ring.store(6, None)
    with pytest.raises(LocalProtocolError):
        RetransmitBuffer(500)


def test_top_of_the_number_space():
    ring = RetransmitBuffer(4)
    ring.store(2**64 - 2, b"a")
    ring.store(2**64 - 1, b"b")
    assert ring.discard_through(2**64 - 1) == 2
    assert len(ring) == 0


ops = st.lists(st.one_of(
    st.tuples(st.just("store"), st.integers(0, 40)),      # step past the newest
    st.tuples(st.just("lookup"), st.integers(0, 120)),    # offset below the newest
    st.tuples(st.just("discard"), st.integers(0, 120)),
    st.tuples(st.just("discard_through"), st.integers(0, 120)),
), max_size=200)


@given(capacity=st.sampled_from([1, 2, 8, 64]), steps=ops)
def test_matches_reference_model(capacity, steps):
    ring, model = RetransmitBuffer(capacity), RetransmitModel(capacity)
    newest = -1
    for op, arg in steps:
        if op == "store":
            seq = newest + 1 + arg
            payload = b"%d" % seq
            ring.store(seq, payload)
            assert model.store(seq, payload)
            newest = seq
            continue
        seq = max(0, newest - arg + 5)
        assert getattr(ring, op)(seq) == getattr(model, op)(seq), (op, seq)
        assert len(ring) == len(model)
    assert list(ring) == model.held()


def test_datagrams_are_copied_into_slabs_that_are_let_go_once_acknowledged():
    ring = RetransmitBuffer(512)
    sent = bytearray(b"x" * 1200)
    ring.store(0, sent)
    sent[:] = b"y" * 1200                            # the caller's buffer is reused
    assert ring.lookup(0) == b"x" * 1200 and ring.slabs_held == 1
    for seq in range(1, 512):
        ring.store(seq, b"%d" % seq)
    assert ring.slabs_held == 512 // 16
    assert ring.discard_through(495) == 496 and ring.slabs_held == 1
    assert ring.lookup(500) == b"500" and ring.lookup(495) is None
    ring.discard_through(511)
    assert ring.slabs_held == 0 and len(ring) == 0
    ring.store(512, b"")                             # an empty datagram is held, and is not None
    assert ring.lookup(512) == b""


def test_a_datagram_larger_than_a_slot_is_a_caller_error():
    ring = RetransmitBuffer(8, slot_size=100)
    ring.store(1, bytes(100))
    with pytest.raises(LocalProtocolError):
        ring.store(2, bytes(101))
    assert ring.lookup(2) is None and ring.lookup(1) == bytes(100)
