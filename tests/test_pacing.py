"""Screen messages: fast after a quiet spell, at most the card's 20 a second under output."""

import pytest
from hypothesis import given, strategies as st

from moshpit.protocol.handshake import DiffMode
from moshpit.protocol.pacing import FramePacer
from moshpit.session import BATCH_DELAY, QUIET_DELAY
from test_session import Pair


def test_a_burst_after_a_pause_then_one_per_interval():
    pacer = FramePacer(0.05, burst=2)
    assert pacer.next_allowed() <= 0.0
    pacer.sent(10.0)
    assert pacer.next_allowed() <= 10.0                   # the second of the burst: at once
    pacer.sent(10.001)
    assert pacer.next_allowed() == pytest.approx(10.05, abs=0.0011)   # then the interval
    pacer.sent(10.051)
    assert pacer.next_allowed() == pytest.approx(10.1, abs=0.0011)
    pacer.sent(20.0)                                      # a long pause refills the burst, no more
    assert pacer.next_allowed() <= 20.0
    pacer.sent(20.0)
    assert pacer.next_allowed() == pytest.approx(20.05)


@given(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=300))
def test_however_messages_are_asked_for_no_second_holds_more_than_rate_plus_burst(gaps):
    pacer, now, sent = FramePacer(0.05, burst=2), 0.0, []
    for gap in gaps:
        now = max(now + gap, pacer.next_allowed())
        pacer.sent(now)
        sent.append(now)
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + 1.0) <= 20 + 2


def _screen_messages(pair):
    return pair.net.server.channel.stats["screen_messages"]


def _run_until_sent(pair, count, limit):
    while _screen_messages(pair) < count and pair.net.now < limit:
        pair.run(0.0005)
    return pair.net.now


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_an_echo_after_a_quiet_spell_goes_within_the_short_gathering_delay(mode):
    pair = Pair(mode)
    pair.run(1.0)
    before, start = _screen_messages(pair), pair.net.now
    pair.pty(b"x")                                        # the echo of a keystroke
    sent_at = _run_until_sent(pair, before + 1, start + 0.1)
    assert sent_at - start <= QUIET_DELAY + 0.001
    pair.run(0.004)
    output_at = pair.net.now
    pair.pty(b"\r\nfile1  file2\r\n$ ")                   # output following it: gathered longer
    second = _run_until_sent(pair, before + 2, start + 0.2)
    assert second - output_at >= BATCH_DELAY - 0.001
    assert second - sent_at <= 0.050 + 0.001              # and within the frame interval
    pair.run(0.5)
    assert pair.settled()


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_continuous_output_is_sent_at_most_twenty_times_a_second(mode):
    pair = Pair(mode)
    pair.run(1.0)
    before = _screen_messages(pair)
    for i in range(400):                                  # 2 s of output, a line every 5 ms
        pair.pty(b"line %d\r\n" % i)
        pair.run(0.005)
    assert _screen_messages(pair) - before <= 2 / 0.05 + 2 + 1
    pair.run(0.5)
    assert pair.settled()
