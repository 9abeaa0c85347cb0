"""Receive-side tracking: ordering, NAK schedule, abandonment; property test against SeqTrackModel."""

import pytest
from hypothesis import given, strategies as st

from models import SeqTrackModel
from moshpit.errors import LocalProtocolError
from moshpit.seqtrack import (SeqTracker, VERDICT_ACCEPTED, VERDICT_DUPLICATE,
                              VERDICT_STALE)


def test_delivers_in_order_through_reordering():
    t = SeqTracker()
    for seq in (3, 1, 4, 0, 2):
        assert t.ingest(seq, b"%d" % seq, 0.0) == VERDICT_ACCEPTED
    assert t.pop_ready() == [b"0", b"1", b"2", b"3", b"4"]
    assert t.pop_ready() == []
    assert t.ingest(2, b"2", 0.0) == VERDICT_STALE
    assert t.next_expected == 5 and t.highest == 4 and t.missing == 0


def test_duplicates_inside_the_window_are_refused():
    t = SeqTracker()
    t.ingest(5, b"five", 0.0)
    assert t.ingest(5, b"five", 0.0) == VERDICT_DUPLICATE
    assert t.missing == 5


def test_payload_none_fills_a_number_without_delivering():
    t = SeqTracker()
    t.ingest(1, b"one", 0.0)
    t.ingest(0, None, 0.0)
    assert t.pop_ready() == [b"one"]


def test_nak_schedule_floor_doubling_and_abandonment():
    t = SeqTracker(nak_floor=0.05, max_retries=10, max_interval=1e9)
    t.ingest(0, b"a", 0.0)
    t.ingest(3, b"d", 0.0)                      # 1 and 2 missing
    sent, now = [], 0.0
    while t.next_deadline() is not None:
        now = t.next_deadline()
        naks = t.due_naks(now)
        if naks:
            assert naks == [(1, 2)]               # coalesced into one range
            sent.append(round(now, 6))
    # first at the 50 ms floor, each retry twice as far as the one before
    gaps = [round(b - a, 6) for a, b in zip([0.0] + sent, sent)]
    assert gaps == [0.05 * 2**k for k in range(10)]
    assert t.pop_abandoned() == [(1, 2)]
    assert t.pop_ready() == [b"a", b"d"]
    assert round(now - sent[-1], 6) == 0.05 * 2**10  # abandoned one interval after the last NAK


def test_rto_raises_the_floor_and_interval_is_capped():
    t = SeqTracker(nak_floor=0.05, max_interval=1.0, rto=0.3)
    t.ingest(1, b"b", 10.0)
    assert t.next_deadline() == pytest.approx(10.3)
    assert t.due_naks(10.3) == [(0, 0)]
    assert t.next_deadline() == pytest.approx(10.9)     # 0.3 * 2
    t.due_naks(10.9)
    assert t.next_deadline() == pytest.approx(11.9)     # 1.2 capped at 1.0


def test_late_arrival_after_a_nak_fills_the_gap():
    t = SeqTracker()
    t.ingest(1, b"b", 0.0)
    assert t.due_naks(0.05) == [(0, 0)]
    assert t.ingest(0, b"a", 0.06) == VERDICT_ACCEPTED
    assert t.pop_ready() == [b"a", b"b"]
    assert t.next_deadline() is None and t.due_naks(100.0) == []


def test_far_jump_abandons_what_cannot_be_buffered():
    t = SeqTracker(capacity=8)
    t.ingest(0, b"a", 0.0)
    t.ingest(2, b"c", 0.0)                      # 1 missing
    t.ingest(1_000_000, b"z", 0.0)
    assert t.pop_ready() == [b"a", b"c"]
    assert t.pop_abandoned() == [(1, 1), (3, 1_000_000 - 8)]
    assert t.missing == 7                       # the last 7 before the jump are still awaited
    assert t.next_expected == 1_000_000 - 7


def test_abandoned_number_arriving_late_is_stale():
    t = SeqTracker(max_retries=0)
    t.ingest(0, b"a", 0.0)
    t.ingest(2, b"c", 0.0)
    t.ingest(4, b"e", 0.0)
    t.ingest(3, b"d", 0.0)
    t.due_naks(1.0)                             # 1 abandoned at once (no retries)
    assert t.ingest(1, b"b", 1.1) == VERDICT_STALE
    assert t.pop_ready() == [b"a", b"c", b"d", b"e"]


def test_give_up_abandons_only_missing_numbers():
    t = SeqTracker()
    t.ingest(0, b"a", 0.0)
    t.ingest(4, b"e", 0.0)                      # 1, 2, 3 missing
    t.ingest(2, b"c", 0.0)
    assert t.give_up(1, 2) == 1                 # 2 was received: only 1 given up
    assert t.pop_abandoned() == [(1, 1)]
    assert t.pop_ready() == [b"a", b"c"]        # 3 still missing, so 4 waits
    assert t.give_up(3, 100) == 1
    assert t.pop_ready() == [b"e"] and t.missing == 0
    assert t.give_up(0, 2**64 - 1) == 0         # nothing missing: a late GONE is harmless
    assert t.give_up(5, 2) == 0


def test_top_of_the_number_space():
    top = 2**63 - 1
    t = SeqTracker(start=top - 2)
    t.ingest(top, b"z", 0.0)
    t.ingest(top - 2, b"x", 0.0)
    assert t.pop_ready() == [b"x"] and t.next_deadline() == 0.05
    t.ingest(top - 1, b"y", 0.0)
    assert t.pop_ready() == [b"y", b"z"] and t.missing == 0
    with pytest.raises(LocalProtocolError):
        t.ingest(top + 1, b"beyond", 0.0)


def test_unlimited_retries_never_give_a_gap_up():
    t = SeqTracker(max_retries=-1, max_interval=1.0)
    t.ingest(1, b"after", 0.0)
    now, naks = 0.0, 0
    while now < 3600:                       # an hour of NAKs at most once a second
        now = t.next_deadline()
        naks += len(t.due_naks(now))
    assert t.pop_abandoned() == [] and t.pop_ready() == [] and t.missing == 1
    assert naks > 3500
    t.ingest(0, b"before", now)
    assert t.pop_ready() == [b"before", b"after"]


def test_bad_parameters_are_caller_errors():
    with pytest.raises(LocalProtocolError):
        SeqTracker(capacity=1000)
    with pytest.raises(LocalProtocolError):
        SeqTracker(nak_floor=0)
    with pytest.raises(LocalProtocolError):
        SeqTracker(max_retries=-2)


ops = st.lists(st.one_of(
    st.tuples(st.just("ingest"), st.integers(-4, 40), st.booleans()),
    st.tuples(st.just("ingest_far"), st.integers(0, 3000), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 400), st.booleans()),
    st.tuples(st.just("rto"), st.integers(0, 500), st.booleans()),
    st.tuples(st.just("give_up"), st.integers(-10, 60), st.booleans()),
), max_size=250)


@given(capacity=st.sampled_from([2, 8, 32, 1024]), retries=st.integers(-1, 4),
       start=st.sampled_from([0, 7, 2**40, 2**63 - 3000]), steps=ops)
def test_matches_reference_model(capacity, retries, start, steps):
    kw = dict(capacity=capacity, start=start, max_retries=retries, max_interval=0.5)
    t, m = SeqTracker(**kw), SeqTrackModel(**kw)
    now = 0.0
    for op, arg, flag in steps:
        if op in ("ingest", "ingest_far"):
            seq = max(0, m.top + arg if op == "ingest" else m.next + arg - 1500)
            if seq > 2**63 - 1:
                continue
            payload = None if flag else b"%d" % seq
            assert t.ingest(seq, payload, now) == m.ingest(seq, payload, now), seq
        elif op == "give_up":
            first = max(0, m.next + arg)
            last = first + (3 if flag else 0)
            assert t.give_up(first, last) == m.give_up(first, last)
        elif op == "tick":
            now += arg / 1000
            assert t.due_naks(now) == m.due_naks(now)
        else:
            t.rto = m.rto = arg / 1000
        assert t.next_deadline() == m.next_deadline()
        assert t.pop_ready() == m.pop_ready()
        assert t.pop_abandoned() == m.pop_abandoned()
        assert (t.next_expected, t.missing) == (m.next, len(m.missing))


@given(order=st.permutations(range(60)))
def test_any_arrival_order_delivers_everything_once_in_order(order):
    t = SeqTracker(capacity=64)
    got = []
    for seq in order:
        t.ingest(seq, seq, 0.0)
        got += t.pop_ready()
    assert got == list(range(60))
