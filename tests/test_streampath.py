"""The session's datagrams over a byte stream (protocol/streampath.py): the framing, and
channels that move onto the kept TCP connection and back, on SimNet."""

import pytest
from hypothesis import given, strategies as st

from moshpit import codec
from moshpit.errors import RemoteProtocolError
from moshpit.protocol.handshake import DiffMode
from moshpit.protocol.streampath import LENGTH_SIZE, Deframer, StreamAddress, frame, is_stream
from moshpit.protocol.transport import (FALLBACK_AFTER, FIRST_PROBE, PROBE_INTERVAL, PROBE_PATIENCE, PathChooser,
                                        Step, Transport)
from simnet import SERVER_ADDR, STREAM, Link, SimNet, random_bytes

datagrams = st.lists(st.binary(min_size=1, max_size=codec.MAX_DATAGRAM_SIZE), max_size=12)


@given(datagrams, st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=40))
def test_framed_datagrams_come_out_whole_however_the_stream_cuts_them(sent, cuts):
    data = frame(sent)
    deframer, got, at, i = Deframer(), [], 0, 0
    while at < len(data):
        size = cuts[i % len(cuts)]
        got += deframer.feed(data[at:at + size])
        assert deframer.pending <= LENGTH_SIZE + codec.MAX_DATAGRAM_SIZE
        at, i = at + size, i + 1
    assert got == sent and deframer.pending == 0


@pytest.mark.parametrize("length", [0, codec.MAX_DATAGRAM_SIZE + 1, 0xFFFF])
def test_a_frame_length_no_datagram_has_is_the_peers_error(length):
    with pytest.raises(RemoteProtocolError):
        Deframer().feed(length.to_bytes(2, "big") + bytes(10))


def test_frame_refuses_what_no_frame_can_hold():
    with pytest.raises(ValueError):
        frame([b""])
    with pytest.raises(ValueError):
        frame([bytes(codec.MAX_DATAGRAM_SIZE + 1)])


def test_a_stream_address_is_never_a_socket_address():
    assert is_stream(StreamAddress("tcp", 1)) and not is_stream(("127.0.0.1", 1))
    assert not is_stream(("tcp", 1))              # only the type tells, never the value


def osns_on(net: SimNet, dst, direction: int) -> list[int]:
    """The OSNs of the datagrams put on the wire towards ``dst`` (an address)."""
    found = []
    for _, _, to, data in net.tap:
        if to == dst:
            osn = net.peek.osn(data, direction)
            if osn is not None:
                found.append(osn)
    return found


@pytest.mark.parametrize("mode", list(DiffMode))
def test_udp_blocked_mid_session_the_stream_carries_every_keystroke_once(mode):
    """Keys typed and output flowing; UDP dies both ways with bundles in flight; the
    client moves to the stream. Every keystroke arrives once, in order, the output
    whole; on the stream no bundle goes twice (TCP resends, not us), and the server
    takes the stream without an address challenge."""
    net = SimNet(mode, seed=11, down=Link(loss=0.05), up=Link(loss=0.05))
    output = random_bytes(200_000, seed=3)
    typed = bytearray()
    for i in range(60):
        key = bytes([0x61 + i % 26])
        net.client.channel.send_data(key)
        typed += key
        if mode is DiffMode.RELIABLE and i < 40:
            net.server_output(output[i * 5000:(i + 1) * 5000])
        net.run_for(0.02)
        if i == 30:                                   # the firewall closes, mid-typing
            net.links["up"].up = net.links["down"].up = False
            net.run_for(0.05)
            net.client.channel.use_path(STREAM)
    assert net.run_until(lambda: bytes(net.server.received) == bytes(typed), timeout=10)
    assert net.server.channel.peer_addr == STREAM and net.server.channel.addr_validated
    if mode is DiffMode.RELIABLE:
        assert net.run_until(lambda: bytes(net.client.received) == output, timeout=10)
    keys_on_stream = osns_on(net, STREAM, 0)
    output_on_stream = osns_on(net, STREAM, 1)           # (the screen modes' screens are not bundles)
    assert keys_on_stream and (output_on_stream or mode is not DiffMode.RELIABLE)
    for sent in (keys_on_stream, output_on_stream):
        assert len(sent) == len(set(sent)), "a bundle went twice on the stream"


def test_back_to_udp_when_it_works_again():
    """From the stream back to UDP: the server follows the client's first datagram
    there, proves the address, and the session goes on (nothing lost either way)."""
    net = SimNet(DiffMode.RELIABLE, seed=2)
    net.client.channel.use_path(STREAM)
    net.client.channel.send_data(b"on-stream ")
    assert net.run_until(lambda: net.server.channel.peer_addr == STREAM, timeout=2)
    net.client.channel.use_path(SERVER_ADDR)
    net.client.channel.send_data(b"on-udp")
    net.server_output(b"hello over udp")
    assert net.run_until(lambda: bytes(net.server.received) == b"on-stream on-udp"
                         and bytes(net.client.received) == b"hello over udp", timeout=5)
    assert net.run_until(lambda: net.server.channel.addr_validated, timeout=2)
    assert net.server.channel.peer_addr != STREAM
    assert net.server.channel.stats["address_changes"] == 2


def test_on_a_stream_a_silent_peer_is_not_answered_with_resends():
    """A stalled stream (a dead NAT mapping under TCP): the channel resends nothing into
    it, however long the silence; it says the peer is silent, as on UDP, and the
    runtime reconnects."""
    net = SimNet(DiffMode.RELIABLE, seed=5)
    net.client.channel.use_path(STREAM)
    net.run_for(0.5)
    net.links["stream"].up = False
    before = len(net.tap)
    for i in range(5):
        net.client.channel.send_data(b"k%d" % i)
        net.run_for(0.1)
    net.run_for(8)
    sent = osns_on(net, STREAM, 0)
    assert len(sent) == len(set(sent))
    assert len(net.tap) - before < 40                     # keepalives and ACKs, no resend storm
    assert any(type(event).__name__ == "PeerSilent" for _, event in net.client.events)


# --- the client's choice of path (protocol/transport.py) -----------------------------------

def test_auto_starts_on_udp_and_falls_back_when_nothing_answers_within_the_limit():
    chooser = PathChooser(Transport.AUTO, 0.0, stream=True)
    assert chooser.first_steps() == [] and not chooser.on_stream
    assert chooser.get_timer() == FALLBACK_AFTER
    assert chooser.handle_timer(FALLBACK_AFTER) == [Step.USE_STREAM]
    assert chooser.on_stream


def test_auto_stays_on_udp_that_answers_and_udp_never_moves():
    chooser = PathChooser(Transport.AUTO, 0.0, stream=True)
    assert chooser.heard_udp(0.1) == []
    assert chooser.get_timer() is None and chooser.handle_timer(10.0) == []
    plain = PathChooser(Transport.UDP, 0.0, stream=True)
    assert plain.get_timer() is None and plain.udp_silent(5.0) == [] and not plain.stream_up
    forced = PathChooser(Transport.STREAM, 0.0, stream=True)
    assert forced.first_steps() == [Step.USE_STREAM]
    assert forced.udp_silent(1.0) == [] and forced.get_timer() is None     # never probes


def test_on_the_stream_udp_is_probed_and_an_answer_moves_back():
    chooser = PathChooser(Transport.AUTO, 0.0, stream=True)
    chooser.heard_udp(0.1)
    assert chooser.udp_silent(30.0) == [Step.USE_STREAM]           # mid-session silence
    assert chooser.heard_udp(30.2) == []                            # a late one from before: not an answer
    assert chooser.get_timer() == 30.0 + FIRST_PROBE
    assert chooser.handle_timer(31.0) == [Step.PROBE_UDP]
    assert chooser.handle_timer(31.0 + PROBE_PATIENCE) == [Step.RECALL]   # no answer: call the server back
    probes = []
    now = 32.0
    while now < 60:
        now = chooser.get_timer()
        probes += [now] if Step.PROBE_UDP in chooser.handle_timer(now) else []
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps and max(gaps) == PROBE_INTERVAL                      # backing off, to a limit
    chooser.handle_timer(chooser.get_timer())
    assert chooser.heard_udp(now + 0.2) == [Step.USE_UDP] and not chooser.on_stream
    assert chooser.get_timer() is None


def test_without_a_stream_nothing_moves():
    chooser = PathChooser(Transport.AUTO, 0.0, stream=False)
    assert chooser.get_timer() is None and chooser.udp_silent(3.0) == []
    chooser = PathChooser(Transport.AUTO, 0.0, stream=True)
    chooser.stream_lost()
    assert chooser.handle_timer(FALLBACK_AFTER) == [] and chooser.udp_silent(3.0) == []


def test_a_probe_is_answered_over_udp_and_the_client_brings_the_server_back():
    """The client on the stream (UDP was blocked); UDP opens again; a probe goes over
    it: the server answers there but stays on the stream; the client, answered, moves
    back, and the server follows its first datagram there; typing goes on."""
    net = SimNet(DiffMode.RELIABLE, seed=8)
    net.links["up"].up = net.links["down"].up = False
    net.client.channel.use_path(STREAM)
    net.client.channel.send_data(b"one ")
    assert net.run_until(lambda: bytes(net.server.received) == b"one ", timeout=2)
    net.links["up"].up = net.links["down"].up = True
    probed_at = net.now
    net._transmit(net.client, net.client.channel.probe_datagram(net.now), SERVER_ADDR)
    assert net.run_until(lambda: any(at >= probed_at and to == net.client.addr   # answered over UDP
                                     for at, _, to, _ in net.tap), timeout=1)
    assert net.server.channel.peer_addr == STREAM                                 # and not moved
    net.client.channel.use_path(SERVER_ADDR)
    net.client.channel.send_data(b"two")
    assert net.run_until(lambda: bytes(net.server.received) == b"one two", timeout=2)
    assert net.server.channel.peer_addr == net.client.addr
    assert net.run_until(lambda: net.server.channel.addr_validated, timeout=2)


def test_where_udp_works_one_way_only_probes_never_take_the_output_off_the_stream():
    """UDP from the client reaches the server, nothing comes back (a firewall that lets
    UDP out only): every probe arrives, and the output goes on over the stream, none of
    it sent where it is lost."""
    net = SimNet(DiffMode.RELIABLE, seed=9)
    net.links["down"].up = False                     # server -> client UDP: lost
    net.client.channel.use_path(STREAM)
    output = random_bytes(120_000, seed=4)
    for i in range(24):
        net.server_output(output[i * 5000:(i + 1) * 5000])
        if i % 4 == 0:
            net._transmit(net.client, net.client.channel.probe_datagram(net.now), SERVER_ADDR)
        net.run_for(0.05)
        assert net.server.channel.peer_addr == STREAM
    assert net.run_until(lambda: bytes(net.client.received) == output, timeout=5)
    sent_over_udp = [data for _, src, to, data in net.tap if to == net.client.addr]
    assert len(sent_over_udp) == 6 and all(net.peek.osn(data, 1) is None for data in sent_over_udp)
    assert net.server.channel.stats["address_changes"] == 1                    # onto the stream only


def test_the_spec_vector_frames_and_deframes():
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    (block,) = re.findall(r"```stream-vector\n(.*?)```", text, re.S)
    fields = dict(line.split(": ", 1) for line in block.strip().splitlines())
    sent = [bytes.fromhex(d) for d in fields["datagrams"].split()]
    stream = bytes.fromhex(fields["stream"])
    assert frame(sent) == stream
    assert Deframer().feed(stream) == sent
