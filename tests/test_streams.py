"""Forwarded byte streams (protocol/streams.py): alone, and riding real channels on SimNet."""

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from moshpit import codec
from moshpit.protocol import frames, streams
from moshpit.protocol.handshake import DiffMode
from moshpit.protocol.streams import (SEND_BUFFER, StreamClosed, StreamDataReceived, StreamFinished,
                                      StreamOpened, StreamSet)
from moshpit.protocol.wire import parse_payload
from simnet import Link, SimNet, random_bytes


def events_of(side: StreamSet) -> list:
    return list(iter(side.next_event, None))


def carry(src: StreamSet, dst: StreamSet, room: int = 1200, lose=lambda frame: False) -> int:
    """Move what ``src`` has to send into ``dst`` (as the ordered flow would, in order),
    ``lose`` deciding which frames a dead channel took with it. Returns the frame count."""
    count = 0
    while src.wants_to_send():
        batch = src.frames_to_send(room)
        if not batch:
            break
        # round trip through the wire format, as the channel does
        for frame_type, value in parse_payload(codec.encode_frames([(codec.FRAME_OSN, bytes(8)), *batch]),
                                               from_server=not src.is_client, unordered_ok=frozenset())[2]:
            count += 1
            if not lose((frame_type, value)):
                dst.on_frame(frame_type, value)
    return count


class Reader:
    """A far end that writes what arrives to its socket, ``rate`` bytes per call, and tells
    the stream set what it wrote (so windows open again)."""

    def __init__(self, side: StreamSet, rate: int | None = None):
        self.side, self.rate = side, rate
        self.got: dict[int, bytearray] = {}
        self.held: dict[int, int] = {}
        self.events: list = []

    def take(self) -> None:
        for event in events_of(self.side):
            self.events.append(event)
            if isinstance(event, StreamDataReceived):
                self.got.setdefault(event.stream, bytearray()).extend(event.data)
                self.held[event.stream] = self.held.get(event.stream, 0) + len(event.data)
        for sid, held in self.held.items():
            wrote = held if self.rate is None else min(held, self.rate)
            if wrote:
                self.side.consumed(sid, wrote)
                self.held[sid] = held - wrote


def test_a_stream_carries_bytes_exactly_and_ends_with_a_half_close():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sid = client.open(streams.TCP, "localhost", 8080)
    data = random_bytes(1_000_000, seed=3)
    sent, reader = 0, Reader(server)
    while sent < len(data) or client.wants_to_send() or server.wants_to_send():
        sent += client.send(sid, data[sent:sent + 100_000])
        if sent == len(data):
            client.finish(sid)
        carry(client, server)
        reader.take()
        carry(server, client)
    assert isinstance(reader.events[0], StreamOpened) and reader.events[0].host == "localhost"
    assert bytes(reader.got[sid]) == data
    assert isinstance(reader.events[-1], StreamFinished)


def test_the_sender_never_passes_the_window_and_a_far_end_that_never_reads_bounds_memory():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sid = client.open(streams.TCP, "h", 1)
    offered = 0
    for _ in range(200):                            # the server side never consumes
        offered += client.send(sid, bytes(64 << 10))
        carry(client, server)
        carry(server, client)
    received = sum(len(e.data) for e in events_of(server) if isinstance(e, StreamDataReceived))
    assert received == streams.INITIAL_WINDOW       # what the window allowed, no more
    assert client.room(sid) == 0 and client.buffered() <= SEND_BUFFER
    # the socket is read no further: what the far end holds, and a buffer here
    assert offered == streams.INITIAL_WINDOW + SEND_BUFFER
    assert server.violations == 0


def test_a_rewind_after_a_lost_channel_delivers_every_byte_once():
    """A resumed connection loses whatever the old channel held: each side says what it
    received, the other resends from there, and nothing is doubled or missing."""
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sid = client.open(streams.TCP, "h", 1)
    data = random_bytes(600_000, seed=5)
    reader = Reader(server)
    sent = client.send(sid, data)
    drop = {"on": True, "n": 0}

    def lose(frame):                                # the old channel dies mid-transfer
        drop["n"] += 1
        return drop["on"] and drop["n"] > 20
    carry(client, server, lose=lose)
    reader.take()
    carry(server, client, lose=lose)
    drop["on"] = False
    client.rewind()
    server.rewind()
    while sent < len(data) or client.wants_to_send() or server.wants_to_send():
        sent += client.send(sid, data[sent:])
        carry(client, server)
        reader.take()
        carry(server, client)
    assert bytes(reader.got[sid]) == data


def test_an_open_lost_with_its_channel_is_sent_again():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sid = client.open(streams.AGENT)
    client.send(sid, b"request")
    carry(client, server, lose=lambda frame: True)  # all of it lost
    client.rewind()
    carry(client, server)
    got = events_of(server)
    assert [type(e) for e in got] == [StreamOpened, StreamDataReceived] and got[1].data == b"request"


def test_hostile_frames_are_counted_and_dropped():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    # data on a stream never opened
    server.on_frame(codec.FRAME_STREAM_DATA, frames.StreamData(40, 0, b"x"))
    # an open with a server's id, from the client
    server.on_frame(codec.FRAME_STREAM_OPEN, frames.StreamOpen(7, streams.TCP, 1, "h"))
    # a window overrun
    server.on_frame(codec.FRAME_STREAM_OPEN, frames.StreamOpen(0, streams.TCP, 1, "h"))
    server.on_frame(codec.FRAME_STREAM_DATA, frames.StreamData(0, streams.INITIAL_WINDOW, b"x"))
    # a reset storm on ids nobody has
    for sid in range(0, 10_000, 2):
        server.on_frame(codec.FRAME_STREAM_RESET, frames.StreamReset(sid, 0, "bye"))
    assert server.violations == 3
    got = events_of(server)
    assert isinstance(got[0], StreamOpened)
    assert isinstance(got[1], StreamClosed) and got[1].code == streams.ResetCode.FLOW_CONTROL
    assert len(server) == 0 and len(events_of(server)) == 0
    carry(server, client)                           # the overrun stream is reset on the wire too


def test_too_many_streams_are_refused_not_kept():
    server = StreamSet(is_client=False)
    for sid in range(0, 2 * (streams.MAX_STREAMS + 5), 2):   # a peer opening past the bound
        server.on_frame(codec.FRAME_STREAM_OPEN, frames.StreamOpen(sid, streams.TCP, 1, "h"))
    assert len(server) == streams.MAX_STREAMS
    sent = []
    while server.wants_to_send():
        sent += server.frames_to_send(1200)
    resets = [frames.unpack_stream_reset(body) for t, body in sent if t == codec.FRAME_STREAM_RESET]
    assert [r.code for r in resets] == [streams.ResetCode.TOO_MANY] * 5
    assert {r.stream for r in resets} == {2 * i for i in range(streams.MAX_STREAMS, streams.MAX_STREAMS + 5)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=3000)), max_size=40),
       st.integers(64, 1200))
def test_any_interleaving_of_streams_arrives_exactly(writes, room):
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sids = [client.open(streams.TCP, f"h{i}", i) for i in range(4)]
    expected = {sid: bytearray() for sid in sids}
    reader = Reader(server, rate=5000)
    for which, data in writes:
        sid = sids[which]
        taken = client.send(sid, data)
        expected[sid] += data[:taken]
        carry(client, server, room)
        reader.take()
        carry(server, client, room)
    for _ in range(400):
        carry(client, server, room)
        reader.take()
        carry(server, client, room)
    assert {sid: bytes(reader.got.get(sid, b"")) for sid in sids} == {s: bytes(d) for s, d in expected.items()}
    assert client.buffered() == 0                      # every byte received is let go


# --- over real channels ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(DiffMode))
def test_a_transfer_over_lossy_channels_arrives_whole(mode):
    net = SimNet(mode, seed=4, down=Link(loss=0.1, reorder=0.1), up=Link(loss=0.1, reorder=0.1))
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    net.client.channel.attach_streams(client)
    net.server.channel.attach_streams(server)
    sid = server.open(streams.TCP, "127.0.0.1", 22)      # a -R connection, server to client
    data = random_bytes(300_000, seed=9)
    reader = Reader(client)
    sent = 0

    def progress():
        nonlocal sent
        sent += server.send(sid, data[sent:])
        reader.take()
        return len(reader.got.get(sid, b"")) == len(data)
    assert net.run_until(progress, timeout=120)
    assert hashlib.sha256(reader.got[sid]).digest() == hashlib.sha256(data).digest()


def test_keystrokes_go_before_a_bulk_stream():
    """With a stream filling the client's window (its far end reading as fast as it
    comes) and a full send buffer behind it, a keystroke still crosses in about a
    one-way delay: the terminal's queue goes first into each bundle, the streams take
    the room it leaves (one FIFO would put it a quarter megabyte behind)."""
    net = SimNet(DiffMode.RELIABLE, seed=1, up=Link(delay=0.1, jitter=0), down=Link(delay=0.1, jitter=0))
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    net.client.channel.attach_streams(client)
    net.server.channel.attach_streams(server)
    sid = client.open(streams.TCP, "h", 1)
    reader = Reader(server)

    def transfer():
        client.send(sid, bytes(SEND_BUFFER))
        reader.take()
        return False
    net.run_until(transfer, timeout=3.0)
    assert net.client.channel.in_flight > 100          # the window is full of stream data
    typed_at = net.now
    net.client.channel.send_data(b"k")
    assert net.run_until(lambda: transfer() or bytes(net.server.received) == b"k", timeout=5)
    assert net.now - typed_at < 0.15                   # one-way delay, not a window behind


def test_a_forward_request_and_its_answers_reach_the_other_side():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    client.ask_forward(streams.AGENT)
    client.ask_forward(streams.LISTEN, "0.0.0.0", 8022)
    carry(client, server)
    asked = events_of(server)
    assert asked == [streams.ForwardAsked(streams.AGENT, "", 0), streams.ForwardAsked(streams.LISTEN, "0.0.0.0", 8022)]
    server.answer_forward(asked[0], ok=True)
    server.answer_forward(asked[1], ok=False, reason="gateway_ports is off")
    carry(server, client)
    assert events_of(client) == [streams.ForwardAnswered(streams.AGENT, "", 0, True, ""),
                                 streams.ForwardAnswered(streams.LISTEN, "", 8022, False, "gateway_ports is off")]
    assert client.violations == server.violations == 0


def test_a_resume_from_the_same_client_carries_on_and_another_client_ends_the_old_streams():
    server = StreamSet(is_client=False)
    first = StreamSet(is_client=True, epoch=b"\x01" * 8)
    for side in (first, server):
        side.new_channel()
    sid = first.open(streams.TCP, "h", 1)
    first.send(sid, b"before")
    carry(first, server)
    assert [type(e) for e in events_of(server)] == [StreamOpened, StreamDataReceived]
    # the same process resumes: the stream goes on
    for side in (first, server):
        side.new_channel()
    assert not server.wants_to_send()                  # paused until it knows whose channel it is
    first.send(sid, b"after")
    carry(first, server)
    assert events_of(server) == [StreamDataReceived(sid, b"after")]
    # another process takes over: the old stream ends, and the new one's stream 0 is its own
    second = StreamSet(is_client=True, epoch=b"\x02" * 8)
    for side in (second, server):
        side.new_channel()
    new = second.open(streams.TCP, "other", 2)
    second.send(new, b"fresh")
    carry(second, server)
    got = events_of(server)
    assert got[0] == StreamClosed(sid, streams.ResetCode.SESSION_ENDED, "another client took the session over")
    assert isinstance(got[1], streams.ClientChanged)
    assert got[2] == StreamOpened(new, streams.TCP, "other", 2) and got[3] == StreamDataReceived(new, b"fresh")
    carry(server, second)
    assert not [e for e in events_of(second) if isinstance(e, StreamClosed)]   # nothing reset the new one
    assert server.violations == 0


def test_a_stream_closed_both_ways_is_forgotten_on_both_sides():
    client, server = StreamSet(is_client=True), StreamSet(is_client=False)
    sid = client.open(streams.TCP, "h", 1)
    client.send(sid, b"request")
    client.finish(sid)
    reader = Reader(server)
    for _ in range(3):
        carry(client, server)
        reader.take()
        carry(server, client)
    server.send(sid, b"answer")
    server.finish(sid)
    back = Reader(client)
    for _ in range(4):
        carry(server, client)
        back.take()
        carry(client, server)
        reader.take()
    assert bytes(reader.got[sid]) == b"request" and bytes(back.got[sid]) == b"answer"
    assert isinstance(back.events[-1], StreamFinished)
    assert len(client) == 0 and len(server) == 0
    assert client.violations == server.violations == 0
