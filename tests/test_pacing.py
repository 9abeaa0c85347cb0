"""Screen messages: fast after a quiet spell, at most the card's 20 a second under output."""

import pytest
from hypothesis import given, strategies as st

from moshpit.protocol.handshake import DiffMode
from moshpit.protocol import streams
from moshpit.protocol.pacing import FramePacer, StreamPacer
from moshpit.protocol.recovery import STREAM_BURST
from moshpit.protocol.screenflow import ANSWER_FLOOR
from moshpit.protocol.streams import StreamDataReceived, StreamSet
from moshpit.session import BATCH_DELAY, QUIET_DELAY
from simnet import Link, SimNet, random_bytes
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


# --- forwarded streams yield to typing (StreamPacer) --------------------------------------

def test_stream_data_goes_in_full_bursts_until_someone_types_then_one_burst_per_gap():
    pacer = StreamPacer(8, hold=1.0, gap=0.001)
    assert pacer.allowance(5.0) == 8
    pacer.spent(8, 5.0)
    assert pacer.allowance(5.0) == 8                      # nobody types: no pause at all
    pacer.typed()
    assert pacer.allowance(6.0) == 8                      # the first burst after a key...
    pacer.spent(8, 6.0)
    assert pacer.allowance(6.0) == 0                      # ...then a pause of ``gap``
    assert pacer.resume_at == pytest.approx(6.001)
    assert pacer.allowance(6.001) == 8
    pacer.spent(0, 6.001)                                 # nothing sent: no pause owed
    assert pacer.allowance(6.001) == 8
    pacer.spent(3, 6.5)
    assert pacer.allowance(6.5005) == 0
    assert pacer.allowance(7.0) == 8                      # ``hold`` after the key: full speed
    pacer.spent(8, 7.0)
    assert pacer.allowance(7.0) == 8


def stream_datagrams(net: SimNet, side: str, start: float, end: float) -> int:
    addr = net.server.addr if side == "server" else net.client.addr
    return sum(1 for at, src, _, _ in net.tap if src == addr and start <= at < end)


@pytest.mark.parametrize("sender", ["server", "client"])
def test_a_forwarded_transfer_yields_to_keystrokes_and_comes_back_after(sender):
    """A keystroke (received by the server for its -L data, typed at the client for
    its -R data) slows the sender's stream data to a burst a millisecond, for a
    second; the bytes still all arrive, in order."""
    net = SimNet(DiffMode.RELIABLE, seed=3, up=Link(delay=0.005, jitter=0), down=Link(delay=0.005, jitter=0))
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    net.client.channel.attach_streams(client)
    net.server.channel.attach_streams(server)
    src, dst = (server, client) if sender == "server" else (client, server)
    sid = src.open(streams.TCP, "127.0.0.1", 22)
    block = random_bytes(1 << 20, seed=5)
    sent, got = 0, bytearray()

    def transfer():
        nonlocal sent
        offset = sent % len(block)
        sent += src.send(sid, block[offset:] + block[:offset])
        for event in list(iter(dst.next_event, None)):
            if isinstance(event, StreamDataReceived):
                got.extend(event.data)
                dst.consumed(sid, len(event.data))
        return False

    net.run_until(transfer, timeout=0.2)
    free = stream_datagrams(net, sender, 0.1, 0.2)
    typed_at = net.now
    net.client.channel.send_data(b"k")
    net.run_until(transfer, timeout=0.2)
    typing = stream_datagrams(net, sender, typed_at + 0.1, typed_at + 0.2)
    net.run_until(transfer, timeout=1.0)
    after = stream_datagrams(net, sender, typed_at + 1.1, typed_at + 1.2)
    assert bytes(net.server.received) == b"k"
    assert typing <= 0.1 / 0.001 * STREAM_BURST * 1.2          # a burst a millisecond, at most
    assert free > 2 * typing and after > 2 * typing
    assert len(got) > 4 * len(block)
    assert all(got[i:i + len(block)] == block[:len(got) - i] for i in range(0, len(got), len(block)))


def _type_and_echo(pair, keys: bytes, gap: float, output_every: float | None = None) -> list[float]:
    """Keys typed ``gap`` apart whatever the screen shows, each echoed by the 'shell' as
    soon as it gets it (and, with ``output_every``, other output meanwhile); for each
    key, the time from the server's getting it to the client's terminal showing it,
    less the link's delay."""
    start = pair.net.now
    got_at: dict[int, float] = {}
    latencies: dict[int, float] = {}
    typed = 0
    next_output = start
    while len(latencies) < len(keys):
        if typed < len(keys) and pair.net.now >= start + typed * gap:
            pair.net.client.channel.send_data(keys[typed:typed + 1])
            typed += 1
        pair.run(0.0005)
        if output_every is not None and pair.net.now >= next_output:
            pair.pty(b"\x1b[s\x1b[20;1Hflood %.3f\x1b[u" % pair.net.now)    # elsewhere on the screen
            next_output = pair.net.now + output_every
        echo = pair.server.take_pty_input()
        if echo:
            got_at.update((key, pair.net.now) for key in echo)
            pair.pty(echo)
        screen = "".join(pair.terminal.state.text())
        for key, when in got_at.items():
            if key not in latencies and chr(key) in screen:
                latencies[key] = pair.net.now - when - pair.net.links["down"].delay
        assert pair.net.now < start + len(keys) * gap + 1.0, "a key was not echoed"
    return [latencies[key] for key in keys]


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_keys_typed_20_ms_apart_are_echoed_without_waiting_for_the_frame_pacer(mode):
    """At 50 keys a second the pacer alone (20 frames a second) would hold most echoes
    up to 50 ms: a screen that answers input goes as soon as ANSWER_FLOOR allows."""
    pair = Pair(mode)
    for link in pair.net.links.values():
        link.jitter = link.reorder = 0.0
    pair.run(1.0)
    latencies = _type_and_echo(pair, b"abcdefghijklmnopqrstuvwxyz", 0.020)
    assert max(latencies) <= QUIET_DELAY + ANSWER_FLOOR + 0.002, latencies


def test_typing_into_a_flood_adds_at_most_one_frame_per_key():
    """Output nobody typed for is still paced to 20 a second; each keystroke lets one
    more frame go early, no more."""
    pair = Pair(DiffMode.STATESYNC)
    pair.run(1.0)
    before, start = _screen_messages(pair), pair.net.now
    _type_and_echo(pair, b"abcdefghijklmnopqrstuvwxyz", 0.040, output_every=0.003)
    seconds = pair.net.now - start
    assert _screen_messages(pair) - before <= seconds / 0.050 + 2 + 26
    pair.run(0.5)
    assert pair.settled()


def test_messages_sent_without_credit_leave_no_debt():
    """Answers to input go without waiting for credit; the next paced message must
    then wait one interval at most, not one per answer (it held a prompt 1.3 s after
    typing 104 keys fast)."""
    pacer = FramePacer(0.05, burst=2)
    for i in range(100):
        pacer.sent(10.0 + i * 0.02)                       # 50 a second, faster than the rate
    assert pacer.next_allowed() <= 10.0 + 99 * 0.02 + 0.05 + 1e-9


def test_output_after_fast_typing_is_not_held_for_the_answers_sent():
    pair = Pair(DiffMode.STATESYNC)
    for link in pair.net.links.values():
        link.jitter = link.reorder = 0.0
    pair.run(1.0)
    _type_and_echo(pair, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 0.020)
    pair.run(0.005)
    start = pair.net.now
    pair.pty(b"\r\nprompt$ ")                             # output nobody typed for
    while not any("prompt$" in row for row in pair.terminal.state.text()):
        pair.run(0.001)
        assert pair.net.now - start < 1.0
    assert pair.net.now - start <= 0.050 + BATCH_DELAY + pair.net.links["down"].delay + 0.003
