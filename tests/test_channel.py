"""The UDP channel, driven in memory with a fake clock over a lossy simulated network."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from moshpit import codec
from moshpit.errors import DropReason, LocalProtocolError
from moshpit.protocol.channel import Channel, ChannelConfig, ChannelState, CloseCode, Role
from moshpit.protocol.events import (AddressChanged, AddressValidated, ConnectionClosed, DataReceived,
                                     PeerReachable, PeerSilent, Resized, ScreenUpdate, StreamGap)
from moshpit.protocol.handshake import DiffMode
from simnet import CLIENT_ADDR, SERVER_ADDR, Link, SimNet, handshake, random_bytes

LOSSY = dict(duplicate=0.05, reorder=0.1)


def events(endpoint, kind):
    return [e for _, e in endpoint.events if isinstance(e, kind)]


def lose_bundle_forever(net_holder, osn, direction=1):
    """A black hole for one ordered bundle (by OSN) and every resend of it."""
    def black_hole(datagram):
        return net_holder[0].peek.osn(datagram, direction) == osn
    return black_hole


# --- reliable stream -----------------------------------------------------------

@pytest.mark.parametrize("loss", [0.0, 0.1, 0.3])
def test_reliable_output_is_byte_exact_under_loss(loss):
    net = SimNet(DiffMode.RELIABLE, seed=11, down=Link(loss=loss, **LOSSY), up=Link(loss=loss, **LOSSY))
    data = random_bytes(100_000)
    for i in range(0, len(data), 4096):     # a PTY hands over output in pieces
        net.server_output(data[i:i + 4096])
    assert net.run_until(lambda: len(net.client.received) >= len(data), timeout=60)
    assert bytes(net.client.received) == data
    assert net.server.channel.stats["datagrams_abandoned"] == 0
    assert not events(net.client, StreamGap)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.floats(0.0, 0.3), size=st.integers(1, 30_000))
def test_reliable_is_exact_for_any_seeded_network(seed, loss, size):
    link = dict(loss=loss, duplicate=0.1, reorder=0.2, jitter=0.02)
    net = SimNet(DiffMode.RELIABLE, seed=seed, down=Link(**link), up=Link(**link))
    data = random_bytes(size, seed)
    net.server_output(data)
    assert net.run_until(lambda: len(net.client.received) >= size, timeout=60)
    assert bytes(net.client.received) == data


def test_keystrokes_arrive_exactly_in_every_mode():
    for mode in DiffMode:
        net = SimNet(mode, seed=5, down=Link(loss=0.3, **LOSSY), up=Link(loss=0.3, **LOSSY))
        typed = bytes(random.Random(2).choice(b"abcdefgh\r\x7f") for _ in range(500))
        for i in range(len(typed)):
            net.client.channel.send_data(typed[i:i + 1])
            net.run_for(0.02)
        assert net.run_until(lambda: len(net.server.received) >= len(typed), timeout=30)
        assert bytes(net.server.received) == typed, mode


def test_resize_is_delivered_in_order():
    net = SimNet(seed=1, up=Link(loss=0.3, **LOSSY))
    for cols in range(80, 90):
        net.client.channel.send_resize(cols, 24)
    assert net.run_until(lambda: len(events(net.server, Resized)) == 10, timeout=20)
    assert [e.cols for e in events(net.server, Resized)] == list(range(80, 90))


def test_rtt_estimate_converges():
    net = SimNet(seed=3, down=Link(delay=0.040, jitter=0.0), up=Link(delay=0.040, jitter=0.0))
    for _ in range(40):
        net.client.channel.send_data(b"x")
        net.run_for(0.1)
    for channel in (net.client.channel, net.server.channel):
        assert channel.srtt == pytest.approx(0.080, abs=0.005)
        assert 0.05 <= channel.rto <= 0.2


def test_unfillable_gap_is_abandoned_then_repainted():
    # One bundle of output is lost every time it is sent: after ten NAKs the client
    # gives it up (StreamGap), asks for a repaint and gets a full screen.
    holder = []
    net = SimNet(DiffMode.RELIABLE, seed=4, down=Link(black_hole=lose_bundle_forever(holder, 3)))
    holder.append(net)
    net.screen(b"the screen as it is now")
    net.server_output(random_bytes(20_000))
    assert net.run_until(lambda: events(net.client, ScreenUpdate), timeout=60)
    gap, = events(net.client, StreamGap)
    assert gap.first == gap.last == 3
    assert net.client_screen.text == b"the screen as it is now"
    assert net.server.channel.stats["repaint_requests"] == 1
    assert 20_000 - 1200 < len(net.client.received) < 20_000          # one bundle's worth missing


def test_keystrokes_are_never_skipped():
    # The same black hole on the client's keystrokes: the server keeps NAKing and
    # never delivers past the hole. When the hole heals, everything arrives in order.
    holder = []
    link = Link(black_hole=lose_bundle_forever(holder, 2, direction=0))
    net = SimNet(DiffMode.STATESYNC, seed=5, up=link)
    holder.append(net)
    for key in b"echo rm -rf ~/important\r":
        net.client.channel.send_data(bytes([key]))
        net.run_for(0.05)
    net.run_for(120)                             # far past ten NAKs
    assert bytes(net.server.received) == b"ec"   # nothing after the hole, ever
    assert not events(net.server, StreamGap)
    link.black_hole = None
    assert net.run_until(lambda: net.server.received == b"echo rm -rf ~/important\r", timeout=10)


def test_ring_never_evicts_an_unacknowledged_bundle():
    holder = []
    config = ChannelConfig(retransmit_capacity=16, min_window=4, initial_window=8, max_window=12)
    net = SimNet(DiffMode.RELIABLE, seed=6, config=config,
                 down=Link(black_hole=lose_bundle_forever(holder, 1)))
    holder.append(net)
    net.server_output(random_bytes(100_000))
    peak = 0
    while len(net.client.received) < 100_000 - 1200 and net.now < 60:
        net.step(net.now + 60)
        peak = max(peak, net.server.channel.in_flight)
    assert peak <= 15                          # within the ring, always
    assert net.server.channel.stats["gone_sent"] == 0
    assert len(events(net.client, StreamGap)) == 1


# --- statesync and datagram ----------------------------------------------------

def churn(net, steps=150, seed=9):
    r = random.Random(seed)
    text = b"prompt$ "
    for _ in range(steps):
        cut = r.randrange(max(1, len(text) - 200), len(text) + 1)
        text = (text[:cut] + r.randbytes(r.randrange(1, 120)))[-4000:]
        net.screen(text)
        net.run_for(r.choice([0.001, 0.01, 0.03]))
    return text


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_screen_converges_under_half_loss(mode):
    net = SimNet(mode, seed=21, down=Link(loss=0.5, **LOSSY), up=Link(loss=0.5, **LOSSY))
    final = churn(net)
    assert net.run_until(lambda: net.client_screen.text == final, timeout=30)
    assert net.client_screen.state == net.server_screen.current
    assert net.server.channel.screen_acked == net.server_screen.current or net.run_until(
        lambda: net.server.channel.screen_acked == net.server_screen.current, timeout=10)
    # Intermediate states were skipped, not all sent.
    assert net.server.channel.stats["screen_messages"] < net.server_screen.current


def test_statesync_sends_diffs_from_the_acknowledged_state():
    def bytes_down(mode):
        net = SimNet(mode, seed=2)
        text = random_bytes(3000, 3)
        for i in range(60):
            text += b"%d " % i             # small changes at the end of a big screen
            net.screen(text)
            net.run_for(0.06)
        net.run_until(lambda: net.client_screen.text == text, timeout=10)
        bases = {base for base, _ in net.server_screen.diffs_made}
        return sum(len(d) for _, src, _, d in net.tap if src == SERVER_ADDR), bases

    statesync, bases = bytes_down(DiffMode.STATESYNC)
    datagram, full_bases = bytes_down(DiffMode.DATAGRAM)
    assert full_bases == {0} and len(bases) > 10
    assert statesync * 3 < datagram


def test_client_without_the_base_asks_for_a_repaint():
    net = SimNet(DiffMode.STATESYNC, seed=1)
    net.screen(b"first")
    net.run_until(lambda: net.client_screen.text == b"first", timeout=5)
    net.client_screen.held.clear()           # the client lost its copy (say, a restart)
    net.client_screen.held[0] = b""
    net.client_screen.state = 0
    net.server.channel._p.screens_out.acked = 1      # while the server still diffs from state 1
    net.screen(b"first and second")
    assert net.run_until(lambda: net.client_screen.text == b"first and second", timeout=5)
    assert net.client_screen.missing_base >= 1
    assert net.server.channel.stats["repaint_requests"] >= 1


# --- attacks: replay, reflection, forgery ---------------------------------------

def test_replayed_reflected_and_forged_datagrams_are_counted_and_ignored():
    net = SimNet(DiffMode.RELIABLE, seed=8)
    net.server_output(b"hello")
    net.run_until(lambda: net.client.received == b"hello", timeout=5)
    from_server = [d for _, src, _, d in net.tap if src == SERVER_ADDR]
    from_client = [d for _, src, _, d in net.tap if src == CLIENT_ADDR]
    for d in from_server:
        net.inject(d, SERVER_ADDR, net.client)           # replay to the client
        net.inject(d, CLIENT_ADDR, net.server)           # reflect back at the server
    for d in from_client:
        net.inject(d, CLIENT_ADDR, net.server)           # replay to the server
    forged = codec.header(0, net.server.channel.conn_id, 10**6) + random_bytes(200)
    net.inject(forged, CLIENT_ADDR, net.server)
    other_conn = codec.header(0, net.server.channel.conn_id ^ 1, 10**6) + random_bytes(200)
    net.inject(other_conn, CLIENT_ADDR, net.server)
    net.inject(b"\x10garbage", CLIENT_ADDR, net.server)
    net.run_for(1.0)
    client_drops, server_drops = net.client.channel.drops, net.server.channel.drops
    assert client_drops[DropReason.DUPLICATE] >= len(from_server)
    assert server_drops[DropReason.REFLECTED] == len(from_server)
    assert server_drops[DropReason.DUPLICATE] >= len(from_client)
    assert server_drops[DropReason.AUTH_FAILED] == 1
    assert server_drops[DropReason.WRONG_CONNECTION] == 1
    assert server_drops[DropReason.MALFORMED] == 1
    assert net.client.received == b"hello"               # nothing delivered twice
    assert not events(net.server, AddressChanged)[1:]    # only the first adoption
    print("drops at the client:", dict(client_drops), "at the server:", dict(server_drops))


# --- roaming ---------------------------------------------------------------------

def test_roaming_client_keeps_its_stream():
    net = SimNet(DiffMode.RELIABLE, seed=12, down=Link(loss=0.1, **LOSSY), up=Link(loss=0.1, **LOSSY))
    data = random_bytes(60_000)
    net.server_output(data[:30_000])
    net.run_until(lambda: len(net.client.received) > 10_000, timeout=30)
    new_addr = ("127.0.0.1", 41999)
    net.move_client(new_addr)
    net.server_output(data[30_000:])
    assert net.run_until(lambda: len(net.client.received) >= len(data), timeout=60)
    assert bytes(net.client.received) == data
    assert net.server.channel.peer_addr == new_addr and net.server.channel.addr_validated
    assert [e.new for e in events(net.server, AddressChanged)][-1] == new_addr
    assert [e.addr for e in events(net.server, AddressValidated)][-1] == new_addr


def test_roaming_needs_a_fresh_authentic_datagram():
    net = SimNet(DiffMode.RELIABLE, seed=13)
    net.run_for(0.5)
    old = [d for _, src, _, d in net.tap if src == CLIENT_ADDR][-1]
    attacker = ("127.0.0.66", 6666)
    net.inject(old, attacker, net.server)                                # a replay
    net.inject(codec.header(0, net.server.channel.conn_id, 2**40) + bytes(100), attacker, net.server)
    net.run_for(0.5)
    assert net.server.channel.peer_addr == CLIENT_ADDR
    assert len(events(net.server, AddressChanged)) == 1                  # the initial adoption


def test_spoofed_address_gets_at_most_three_times_what_it_sent():
    # An on-path attacker holds back a genuine client datagram and replays it first
    # from a victim's address: the server moves there, but unvalidated, it sends the
    # victim at most 3x the bytes it received from it.
    net = SimNet(DiffMode.RELIABLE, seed=14)
    net.run_for(0.5)
    net.links["up"].up = False
    net.client.channel.send_data(b"k")
    net.run_for(0.01)
    captured = net.tap[-1][3]
    victim = ("127.0.0.99", 9999)
    net.inject(captured, victim, net.server)
    net.server_output(random_bytes(50_000))                # plenty the server would like to send
    net.run_for(0.3)
    to_victim = sum(len(d) for _, src, dst, d in net.tap if src == SERVER_ADDR and dst == victim)
    assert net.server.channel.peer_addr == victim and not net.server.channel.addr_validated
    assert 0 < to_victim <= 3 * len(captured)
    net.links["up"].up = True                              # the real client speaks again
    net.run_until(lambda: net.server.channel.peer_addr == CLIENT_ADDR, timeout=5)
    assert net.run_until(lambda: len(net.client.received) >= 50_000, timeout=30)


# --- liveness -----------------------------------------------------------------------

def test_silence_is_reported_with_its_duration_and_contact_returns():
    net = SimNet(DiffMode.STATESYNC, seed=15)
    net.run_for(1.0)
    net.links["up"].up = net.links["down"].up = False
    net.run_for(10.0)
    silent = events(net.client, PeerSilent)
    assert silent and 6.5 <= silent[0].seconds < 7.5
    gaps = [b.seconds - a.seconds for a, b in zip(silent, silent[1:])]
    assert len(silent) >= 3 and gaps == pytest.approx([1.0] * len(gaps))   # once a second
    net.links["up"].up = net.links["down"].up = True
    assert net.run_until(lambda: events(net.client, PeerReachable), timeout=5)
    assert events(net.client, PeerReachable)[0].silent_for > 9


def test_idle_channel_sleeps_between_keepalives():
    net = SimNet(DiffMode.STATESYNC, seed=16)
    net.screen(b"$ ")
    net.run_for(2.0)
    before = dict(net.sent)
    fired = {"client": 0, "server": 0}
    for ep in (net.client, net.server):
        original = ep.channel.handle_timer

        def counted(now, original=original, name=ep.name):
            fired[name] += 1
            original(now)
        ep.channel.handle_timer = counted
    net.run_for(30.0)
    for side in ("client", "server"):
        assert 8 <= net.sent[side] - before[side] <= 11    # one keepalive every 3 s, nothing else
        assert fired[side] <= 11                           # and no timer fires in between
    for channel in (net.client.channel, net.server.channel):
        assert channel.get_timer() - net.now > 0.5


# --- closing --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(DiffMode))
def test_shell_exit_reaches_the_client_after_its_output(mode):
    net = SimNet(mode, seed=17, down=Link(loss=0.2, **LOSSY), up=Link(loss=0.2, **LOSSY))
    if mode is DiffMode.RELIABLE:
        net.server_output(b"bye\r\n")
    net.screen(b"bye")
    net.server.channel.close(CloseCode.SHELL_EXITED, "shell exited with status 3", now=net.now,
                             exit_status=3)
    assert net.run_until(lambda: net.client.channel.closed and net.server.channel.closed, timeout=10)
    closed, = events(net.client, ConnectionClosed)
    assert (closed.code, closed.reason, closed.by_peer) == (1, "shell exited with status 3", True)
    assert closed.exit_status == 3                       # for the client to exit with, as ssh does
    assert not events(net.server, ConnectionClosed)[0].timed_out
    if mode is DiffMode.RELIABLE:
        assert net.client.received == b"bye\r\n"
    else:
        assert net.client_screen.text == b"bye"


def test_a_close_reason_reaches_the_user_printable():
    net = SimNet(seed=19)
    net.run_for(0.5)
    net.server.channel.close(CloseCode.SERVER_SHUTDOWN, "bye\x1b]0;title\x07\r\nmp: fake line", now=net.now)
    assert net.run_until(lambda: net.client.channel.closed, timeout=5)
    closed, = events(net.client, ConnectionClosed)
    assert closed.reason == "bye?]0;title???mp: fake line"


def test_close_times_out_when_the_peer_is_gone():
    net = SimNet(seed=18)
    net.run_for(0.5)
    net.links["up"].up = net.links["down"].up = False
    net.client.channel.close(now=net.now)
    net.run_for(5)
    closed, = events(net.client, ConnectionClosed)
    assert closed.timed_out and net.client.channel.state is ChannelState.CLOSED
    assert net.client.channel.get_timer() is None


def test_caller_misuse_is_local_error():
    client_params, server_params, _ = handshake(DiffMode.STATESYNC)
    server = Channel.from_params(Role.SERVER, server_params, now=0, screen_source=lambda b, s: b"")
    client = Channel.from_params(Role.CLIENT, client_params, now=0, peer_addr=SERVER_ADDR)
    with pytest.raises(LocalProtocolError):
        server.send_resize(80, 24)
    with pytest.raises(LocalProtocolError):
        client.screen_changed(3)
    server.screen_changed(5)
    with pytest.raises(LocalProtocolError):
        server.screen_changed(4)
    with pytest.raises(LocalProtocolError):
        Channel.from_params(Role.SERVER, server_params, now=0)      # no screen source


def test_resumed_connection_ignores_the_displaced_one():
    from moshpit.protocol.sessions import PortPool, SessionRegistry
    import nacl.signing
    registry = SessionRegistry(PortPool(range(50000, 50010)))
    key = nacl.signing.SigningKey.generate()
    first = handshake(registry=registry, client_key=key)
    old = SimNet(DiffMode.RELIABLE, seed=30, params=first)
    old.client.channel.send_data(b"typed before the laptop slept")
    old.run_until(lambda: old.server.received, timeout=5)
    second = handshake(registry=registry, client_key=key, token=first[0].resume_token)
    assert second[2].resumed and second[0].session_id == first[0].session_id
    new = SimNet(DiffMode.RELIABLE, seed=31, params=second)
    for _, src, _, datagram in old.tap:
        if src == CLIENT_ADDR:
            new.inject(datagram, CLIENT_ADDR, new.server)   # the old client still talking
    new.client.channel.send_data(b"typed after resuming")
    assert new.run_until(lambda: new.server.received == b"typed after resuming", timeout=5)
    assert new.server.channel.drops[DropReason.WRONG_CONNECTION] == sum(
        1 for _, src, _, _ in old.tap if src == CLIENT_ADDR)


def test_a_screen_acknowledgement_goes_out_at_once_whenever_it_is_made():
    # A runtime may apply a screen after its send step; the STATE_ACK must still leave
    # at once (a timer now), not wait for the next keepalive: the server diffs from it.
    from moshpit.protocol.events import ScreenUpdate
    client_params, server_params, _ = handshake(DiffMode.STATESYNC)
    client = Channel.from_params(Role.CLIENT, client_params, now=0.0, peer_addr=SERVER_ADDR)
    server = Channel.from_params(Role.SERVER, server_params, now=0.0,
                                 screen_source=lambda base, state: b"screen %d" % state)
    for data, _ in client.datagrams_to_send(0.0):
        server.receive_datagram(data, CLIENT_ADDR, 0.0)
    server.screen_changed(1)
    for data, _ in server.datagrams_to_send(0.1):
        client.receive_datagram(data, SERVER_ADDR, 0.1)
    client.datagrams_to_send(0.1)                       # the send step came first...
    update = next(e for e in iter(client.next_event, None) if isinstance(e, ScreenUpdate))
    client.screen_applied(update.state)                 # ...and the screen after it
    assert client.get_timer() <= 0.1
    client.handle_timer(0.1)
    for data, _ in client.datagrams_to_send(0.1):
        server.receive_datagram(data, CLIENT_ADDR, 0.1)
    assert server.screen_acked == 1
    assert client.get_timer() > 0.1                     # and then it sleeps again


def test_a_run_of_datagrams_is_taken_whole_but_a_forgery_in_it_is_dropped_alone():
    """One read's datagrams go in together (opened in one call); a forged one among them
    is counted and dropped, and the genuine ones around it are delivered in order."""
    client_params, server_params, _ = handshake()
    client = Channel.from_params(Role.CLIENT, client_params, now=0.0, peer_addr=SERVER_ADDR)
    server = Channel.from_params(Role.SERVER, server_params, now=0.0, screen_source=lambda b, s: b"")
    sent = []
    for i, keys in enumerate((b"one ", b"two ", b"three")):
        client.send_data(keys)
        sent += [d for d, _ in client.datagrams_to_send(0.001 * (i + 1))]
    assert len(sent) == 3
    forged = bytearray(sent[1])
    forged[20] ^= 0x40
    server.receive_datagrams([sent[0], bytes(forged), sent[2]], CLIENT_ADDR, 0.01)
    got = b"".join(e.data for e in iter(server.next_event, None) if isinstance(e, DataReceived))
    assert got == b"one " and server.drops[DropReason.AUTH_FAILED] == 1
    server.receive_datagrams([sent[1]], CLIENT_ADDR, 0.02)
    got = b"".join(e.data for e in iter(server.next_event, None) if isinstance(e, DataReceived))
    assert got == b"two three"
    assert server.stats["datagrams_received"] == 3


def test_a_reliable_repaint_of_a_state_already_held_is_still_delivered():
    # A SKIP's marker changes what the terminal shows without a new screen state: the
    # repaint that follows it must reach the client even when the state number has not
    # moved (it was dropped as old, and the screen stayed blank).
    net = SimNet(DiffMode.RELIABLE, seed=2)
    net.screen(b"the screen as it is")
    for _ in range(2):
        net.client.channel.request_repaint()
        assert net.run_until(lambda: net.server.channel.stats["repaint_requests"] >= 1, timeout=5)
        net.run_for(1.0)
    updates = events(net.client, ScreenUpdate)
    assert len(updates) == 2 and updates[0].state == updates[1].state


def test_output_in_flight_is_cut_back_while_the_rtt_shows_a_queue():
    # A queue on the path (bufferbloat) shows as an RTT above the path's own; what is
    # sent beyond what keeps the path busy only waits there, and a Ctrl-C's answer with it.
    down, up = Link(delay=0.05, jitter=0.0), Link(delay=0.05, jitter=0.0)
    net = SimNet(DiffMode.RELIABLE, seed=6, down=down, up=up)
    channel = net.server.channel

    def most_in_flight(seconds):
        most = 0
        for _ in range(int(seconds / 0.05)):
            if channel.pending_output < 1_000_000:
                net.server_output(random_bytes(1_000_000))
            net.run_for(0.05)
            most = max(most, channel.in_flight)
        return most
    assert most_in_flight(5) >= 0.9 * channel._p.send.window.cwnd          # no queue: the whole window
    down.delay = up.delay = 0.25                              # the RTT goes from 0.1 s to 0.5 s
    most_in_flight(5)
    assert channel.rtt.srtt > 0.4 and channel.rtt.min_rtt < 0.15
    assert most_in_flight(3) <= 0.35 * channel._p.send.window.cwnd          # about (0.1 + 0.02) / 0.5 of it
