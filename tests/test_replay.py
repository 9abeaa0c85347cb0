"""The anti-replay window: unit cases and a property test against ReplayModel."""

import pytest
from hypothesis import given, strategies as st

from models import ReplayModel
from moshpit.errors import LocalProtocolError
from moshpit.replay import (ReplayWindow, VERDICT_DUPLICATE, VERDICT_FRESH,
                            VERDICT_TOO_FAR_AHEAD, VERDICT_TOO_OLD)


def test_each_number_accepted_once():
    w = ReplayWindow()
    assert w.highest is None
    for seq in (0, 1, 7, 3):
        assert w.check(seq) == VERDICT_FRESH
        assert w.commit(seq) == VERDICT_FRESH
        assert w.check(seq) == VERDICT_DUPLICATE
        assert w.commit(seq) == VERDICT_DUPLICATE
    assert w.highest == 7


def test_check_does_not_commit():
    w = ReplayWindow()
    assert w.check(10) == VERDICT_FRESH
    assert w.check(10) == VERDICT_FRESH
    assert w.highest is None


def test_window_edge_is_exact():
    w = ReplayWindow(bits=2048)
    assert w.window == 1984 >= 1024
    w.commit(10_000)
    assert w.check(10_000 - 1983) == VERDICT_FRESH
    assert w.check(10_000 - 1984) == VERDICT_TOO_OLD


def test_far_ahead_refused_until_window_catches_up():
    w = ReplayWindow(max_ahead=100)
    assert w.check(101) == VERDICT_TOO_FAR_AHEAD
    assert w.commit(100) == VERDICT_FRESH
    assert w.check(200) == VERDICT_FRESH
    assert w.check(201) == VERDICT_TOO_FAR_AHEAD


def test_big_jump_clears_stale_bits():
    w = ReplayWindow(bits=128)
    for seq in range(64):
        w.commit(seq)
    w.commit(64 * 5 + 3)           # wraps the 2-word ring several times
    assert w.check(64 * 5 + 2) == VERDICT_FRESH
    assert w.check(64 * 5 + 3) == VERDICT_DUPLICATE


def test_top_of_the_number_space():
    w = ReplayWindow(max_ahead=2**64 - 1)
    top = 2**64 - 1
    assert w.commit(top) == VERDICT_FRESH
    assert w.commit(top) == VERDICT_DUPLICATE
    assert w.commit(top - 1) == VERDICT_FRESH


@pytest.mark.parametrize("bits", [0, 64, 100, 3000])
def test_bad_size_is_caller_error(bits):
    with pytest.raises(LocalProtocolError):
        ReplayWindow(bits=bits)


ops = st.lists(
    st.tuples(st.sampled_from(["check", "commit"]),
              st.one_of(st.integers(0, 300),            # dense, duplicates likely
                        st.integers(0, 5000),           # around the window edge
                        st.integers(0, 2**21))),        # jumps and far-ahead
    max_size=300)


@given(bits=st.sampled_from([128, 256, 2048]), max_ahead=st.sampled_from([1, 64, 1000, 1 << 20]),
       steps=ops, climb=st.integers(0, 2**40))
def test_matches_reference_model(bits, max_ahead, steps, climb):
    kernel, model = ReplayWindow(bits, max_ahead), ReplayModel(bits, max_ahead)
    # A big first commit (when allowed) moves the whole game to large numbers.
    if climb <= max_ahead:
        assert kernel.commit(climb) == model.commit(climb)
    base = model.highest
    for op, offset in steps:
        seq = max(0, base - 2500 + offset)
        assert getattr(kernel, op)(seq) == getattr(model, op)(seq), (op, seq)
    assert kernel.highest == (model.highest if model.seen else None)
