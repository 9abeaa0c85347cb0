"""Sessions end to end over the simulated network: what the user's terminal shows
is what the server's screen holds, in every diff mode, under loss."""

import random

import pytest

from moshpit.protocol.handshake import DiffMode
from moshpit.clientsession import ClientSession
from moshpit.session import ServerSession
from moshpit.terminal.model import TerminalModel
from simnet import Link, SimNet
from terminal_corpus import CORPUS


class Pair:
    """A server session with a scripted 'PTY', a client session and a model of the user's terminal."""

    def __init__(self, mode, loss=0.0, seed=0):
        self.server = ServerSession(80, 24)
        self.client = ClientSession(80, 24)
        self.terminal = TerminalModel(80, 24)       # what the user's real terminal would show
        self.net = SimNet(mode, seed=seed, screen_source=self.server.screen_source,
                          event_hook=self._event, down=Link(loss=loss, duplicate=0.05, reorder=0.1),
                          up=Link(loss=loss, duplicate=0.05, reorder=0.1))
        self.server.attach(self.net.server.channel)
        self.client.attach(self.net.client.channel, 0)

        self.written: bytearray | None = None

    def _event(self, endpoint, event):
        if endpoint is self.net.server:
            self.server.on_event(event, self.net.now)
        else:
            self.client.on_event(event, self.net.now)
            out = self.client.take_output()
            if self.written is not None:
                self.written += out
            self.terminal.feed(out)

    def record(self) -> bytearray:
        """Keep every byte written to the user's terminal from now on."""
        self.written = bytearray()
        return self.written

    def pty(self, data: bytes):
        self.server.pty_output(data, self.net.now)

    def run(self, seconds):
        deadline = self.net.now + seconds
        while self.net.now < deadline:
            timer = self.server.get_timer()
            self.net.step(min(deadline, timer) if timer is not None else deadline)
            self.server.handle_timer(self.net.now)
            self.server.pump()                          # as the runtime does each turn

    def settled(self):
        return self.terminal.state == self.server.model.state


@pytest.mark.parametrize("mode", list(DiffMode))
@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_the_users_terminal_shows_the_servers_screen(mode, loss):
    pair = Pair(mode, loss=loss, seed=3)
    rng = random.Random(4)
    for _name, cols, rows, text in CORPUS:
        if (cols, rows) != (80, 24):
            continue
        data = text.encode()
        i = 0
        while i < len(data):
            j = i + rng.randrange(1, 3000)
            pair.pty(data[i:j])
            pair.run(rng.choice([0.001, 0.02, 0.1]))
            i = j
    deadline = pair.net.now + 60
    while not pair.settled() and pair.net.now < deadline:
        pair.run(0.5)
    assert pair.settled(), mode


def test_keystrokes_and_terminal_replies_reach_the_pty():
    pair = Pair(DiffMode.STATESYNC)
    pair.net.client.channel.send_data(b"ls\r")
    pair.pty(b"\x1b[6n")                              # a program asks where the cursor is
    pair.run(1.0)
    assert pair.server.take_pty_input() == b"\x1b[1;1Rls\r"     # the reply first: it was owed first


def test_resize_reaches_the_screen_model():
    pair = Pair(DiffMode.STATESYNC)
    pair.client.resize(100, 30)
    pair.run(1.0)
    assert (pair.server.model.state.cols, pair.server.model.state.rows) == (100, 30)


def test_output_for_an_absent_client_is_bounded_then_marked_and_repainted():
    from moshpit.protocol.recovery import UNSENT_CEILING
    from moshpit.session import HISTORY_BYTES
    pair = Pair(DiffMode.RELIABLE)
    seen = pair.record()
    pair.pty(b"hello\r\n")
    pair.run(1.0)
    assert pair.settled()
    pair.net.links["down"].up = pair.net.links["up"].up = False   # the client is gone (lid closed)
    line = b"".join(b"%07d a line of output from a busy program\r\n" % i for i in range(20000))
    for _ in range(12):                               # about 12 MB, 240,000 lines, while nobody listens
        pair.pty(line)
        pair.run(0.05)
    channel = pair.net.server.channel
    assert channel.pending_output <= UNSENT_CEILING
    assert len(pair.server.log) <= HISTORY_BYTES
    pair.net.links["down"].up = pair.net.links["up"].up = True    # back: marked, then repainted
    pair.run(15.0)
    assert pair.settled()
    assert seen.count(b"[moshpit: ") == 1
    kept = seen[:seen.index(b"\x1b[r\x1b[?6l")]      # the stream as it was, up to the marker
    assert kept.startswith(b"hello\r\n0000000 a line")
    missed = pair.server.log.end_lines - kept.count(b"\n")
    assert b"[moshpit: %d lines not shown]" % missed in seen
    assert pair.client.shown == (pair.server.log.end, pair.server.log.end_lines)


@pytest.mark.parametrize("mode, loss", [(DiffMode.RELIABLE, 0.0), (DiffMode.RELIABLE, 0.3),
                                        (DiffMode.STATESYNC, 0.05), (DiffMode.DATAGRAM, 0.05)])
def test_output_during_an_outage_reaches_the_scrollback_whole_afterwards(mode, loss):
    from transcript import judge_numbers, transcript_lines
    pair = Pair(mode, loss=loss, seed=5)
    seen = pair.record()
    for i in range(1, 1501):
        if i == 300:
            pair.net.links["down"].up = pair.net.links["up"].up = False
        if i == 1100:
            pair.net.links["down"].up = pair.net.links["up"].up = True
        pair.pty(b"%d\r\n" % i)
        pair.run(0.01)
    pair.run(30.0)
    assert pair.settled()
    verdict = judge_numbers(transcript_lines(bytes(seen)), 1, 1500)
    assert verdict.once == 1500 and not verdict.repeated and not verdict.out_of_order, verdict
    if mode is DiffMode.RELIABLE:                     # the stream itself: each byte once, nothing else
        assert seen == b"".join(b"%d\r\n" % i for i in range(1, 1501))


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_a_frame_rendered_while_output_is_pending_is_labelled_with_the_state_it_shows(mode):
    # The source flushes pending PTY output before it renders, which makes the state
    # newer while the channel is asking; the message must still name what it holds.
    from moshpit.protocol.events import ScreenUpdate
    from simnet import SERVER_ADDR
    pair = Pair(mode)
    pair.pty(b"first\r\n")
    pair.run(0.5)
    assert pair.settled()
    pair.pty(b"second\r\n")
    pair.server.flush()                               # a new state the channel has not sent...
    pair.pty(b"third")                                # ...and more output, still pending
    server, client = pair.net.server.channel, pair.net.client.channel
    now = pair.net.now + 1.0                          # the frame is due
    for datagram, _ in server.datagrams_to_send(now):
        client.receive_datagram(datagram, SERVER_ADDR, now)
    updates = [e for e in iter(client.next_event, None) if isinstance(e, ScreenUpdate)]
    assert updates
    for update in updates:
        pair.client.on_event(update, now)
        assert pair.client.displayed == pair.server._states[update.state]


def test_a_requested_repaint_shows_output_not_yet_modelled():
    """After `fg` (or a resume) a reliable client asks for a repaint and draws it on a
    cleared terminal; output the server sent on but had not yet fed to its model must be
    in it, or the last lines vanish until the program prints again."""
    pair = Pair(DiffMode.RELIABLE)
    pair.pty(b"$ echo marker\r\n")
    pair.run(0.5)
    assert pair.settled()
    up = pair.net.links["up"]
    up.delay, up.jitter, up.reorder = 0.001, 0.0, 0.0  # the request lands within the batch delay
    pair.pty(b"marker-42\r\n$ ")                     # sent on, gathered, not modelled yet
    pair.net.client.channel.request_repaint()
    pair.net.step(pair.net.now + 0.004)
    assert pair.net.server.channel.stats["repaint_requests"] == 1
    pair.terminal = TerminalModel(80, 24)             # the user's terminal, about to be repainted
    pair.run(1.0)
    assert "marker-42" in pair.terminal.state.text()[1] and pair.settled()


def test_output_while_the_channel_closes_is_kept_on_screen_not_raised():
    """A close (the client quit, or broke the protocol) leaves the channel CLOSING while
    the shell may still print: that output must not raise into the PTY reader."""
    from moshpit.protocol.channel import CloseCode
    pair = Pair(DiffMode.RELIABLE)
    pair.pty(b"before\r\n")
    pair.run(0.2)
    pair.net.server.channel.close(CloseCode.PROTOCOL_ERROR, "bad client", now=pair.net.now)
    pair.pty(b"after\r\n")                             # would raise LocalProtocolError
    pair.server.flush()
    assert "after" in pair.server.model.state.text()[1]


def test_a_flood_of_resizes_is_applied_at_most_every_resize_interval():
    """Each RESIZE re-lays the whole screen (and at 1000x500 keeps a big state): a client
    alternating sizes must not buy that work per datagram. The newest size wins."""
    from moshpit.protocol.events import Resized
    from moshpit.session import RESIZE_INTERVAL
    server = ServerSession(80, 24)
    sizes = []
    now = 100.0
    for i in range(50):                                   # 50 RESIZEs within 50 ms
        server.on_event(Resized(1000 - i % 2, 500), now + i * 0.001)
        sizes.append(server.window)
    assert sizes[0] == (1000, 500) and set(sizes) == {(1000, 500)}   # the first at once, then held
    assert server.get_timer() == now + RESIZE_INTERVAL
    server.handle_timer(now + RESIZE_INTERVAL)
    assert server.window == (999, 500) and server.get_timer() is None   # the newest, once
    assert server.model.number <= 6


def test_kept_states_are_bounded_by_cells_not_only_by_count():
    from moshpit.protocol.events import Resized
    from moshpit.session import KEPT_CELLS
    server = ServerSession(80, 24)
    now = 0.0
    for i in range(20):
        now += 1.0
        server.on_event(Resized(1000 - i % 2, 500), now)
        server.pty_output(b"x", now)
        server.flush()
    kept = sum(s.cols * s.rows for s in server._states.values())
    assert kept <= KEPT_CELLS + 1000 * 500 and len(server._states) <= 3
    assert server._kept_cells == kept


@pytest.mark.parametrize("mode", list(DiffMode))
def test_costly_output_is_modelled_a_budget_at_a_time_and_the_client_still_sees_all_of_it(mode):
    """A flood of expensive escape sequences is fed to the model one FEED_BUDGET per
    step (the timer is due at once meanwhile, so the loop serves others in between);
    the client ends on the truth. A reliable repaint rendered mid-flood must show
    everything the raw stream carried, so it takes the rest at once."""
    from moshpit.session import FEED_BUDGET
    pair = Pair(mode)
    flood = b"".join(b"\x1b[4%dm\x1b[9999L%05d\x1b[3@" % (i % 8, i) for i in range(20000))
    model = pair.server.model
    pair.pty(flood + b"\x1b[m\r\nthe end")
    work = model.screen.work + model.parsed
    pair.server.flush()
    assert pair.server.backlogged and pair.server.get_timer() <= pair.net.now
    assert model.screen.work + model.parsed - work < 2 * FEED_BUDGET
    if mode is DiffMode.RELIABLE:                      # a repaint inside the raw stream
        pair.server.screen_source(0, pair.server.model.number)
        assert not pair.server.backlogged and any("the end" in row for row in pair.server.model.state.text())
        return
    steps = 0
    while pair.server.backlogged:
        pair.server.handle_timer(pair.net.now)
        steps += 1
    assert steps >= 3
    pair.run(2.0)
    assert any("the end" in row for row in pair.server.model.state.text()) and pair.settled()


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_the_first_screen_clears_what_the_terminal_showed_before(mode):
    """A diff from a blank screen would leave the user's old terminal contents (their
    shell, a host-key notice) wherever the remote screen is blank."""
    pair = Pair(mode)
    pair.terminal.feed(b"local text the user had on screen\r\n$ mp host")
    pair.pty(b"$ ")
    pair.run(0.5)
    assert pair.settled()


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
def test_an_older_screen_completing_after_a_newer_one_does_not_turn_the_screen_back(mode):
    """Two messages sent back to back: the first in two chunks, the second in one, so
    the second completes first. The first, applied then, would show an older screen
    while the server, told the newer one arrived, sends nothing more."""
    from moshpit.protocol.events import ScreenUpdate
    from moshpit.terminal.render import render_full

    class Channel:
        diff_mode = mode

        def __init__(self):
            self.applied = []

        def screen_applied(self, state):
            self.applied.append(state)

        def request_repaint(self):
            raise AssertionError("nothing was missing")

    older, newer = TerminalModel(80, 24), TerminalModel(80, 24)
    older.feed(b"$ echo hi\r\n")
    newer.feed(b"$ echo hi\r\nhi\r\n$ ")
    client, channel = ClientSession(80, 24), Channel()
    client.attach(channel, 0)
    client.on_event(ScreenUpdate(0, 13, render_full(newer.state).encode()), 0.0)
    client.on_event(ScreenUpdate(0, 12, render_full(older.state).encode()), 0.0)
    assert client.truth.text() == newer.state.text()
    assert channel.applied == [13]


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
@pytest.mark.parametrize("loss", [0.0, 0.1])
def test_a_burst_reaches_the_scrollback_whole_in_the_screen_modes(mode, loss):
    from transcript import judge_numbers, transcript_lines
    pair = Pair(mode, loss=loss, seed=7)
    seen = pair.record()
    pair.pty(b"$ seq 1 20000\r\n")
    pair.run(0.2)
    pair.pty(b"".join(b"%d\r\n" % i for i in range(1, 20001)) + b"$ ")
    pair.run(30.0)
    assert pair.settled()
    verdict = judge_numbers(transcript_lines(bytes(seen)), 1, 20000)
    assert verdict.once == 20000 and not verdict.repeated and not verdict.out_of_order, verdict
    assert not verdict.markers


def test_the_alternate_screen_adds_nothing_to_the_scrollback():
    from transcript import transcript_lines
    pair = Pair(DiffMode.STATESYNC)
    seen = pair.record()
    pair.pty(b"before\r\n")
    pair.run(0.5)
    pair.pty(b"\x1b[?1049h" + b"".join(b"vim-row-%d\r\n" % i for i in range(200)))
    pair.run(0.5)
    pair.pty(b"\x1b[?1049l" + b"after\r\n")
    pair.run(1.0)
    assert pair.settled()
    lines = transcript_lines(bytes(seen))
    assert not any("vim-row" in line for line in lines)
    assert [line for line in lines if line in ("before", "after")] == ["before", "after"]


@pytest.mark.parametrize("mode", [DiffMode.STATESYNC, DiffMode.DATAGRAM])
@pytest.mark.parametrize("allowed", [0, 64])
def test_clipboard_writes_reach_the_terminal_in_the_screen_modes_as_in_reliable(mode, allowed):
    # The client's own limit decides, as in reliable (0: none; a read: never), and a write
    # is not a row of the scrollback.
    from transcript import transcript_lines
    pair = Pair(mode)
    pair.client = ClientSession(80, 24, clipboard_max_bytes=allowed)
    pair.client.attach(pair.net.client.channel, 0)
    seen = pair.record()
    pair.pty(b"1\r\n2\r\n\x1b]52;c;aGVsbG8=\x07\x1b]52;c;?\x07\x1b]52;c;" + b"QUFB" * 100 + b"\x07"
             + b"".join(b"%d\r\n" % i for i in range(3, 41)))
    pair.run(1.0)
    assert pair.settled()
    assert (b"\x1b]52;c;aGVsbG8=\x07" in seen) == bool(allowed)
    assert b"52;c;?" not in seen and b"QUFBQUFB" not in seen      # a read; too long
    assert transcript_lines(bytes(seen))[:17] == [str(i) for i in range(1, 18)]   # no row for it


def test_a_partial_write_records_only_the_stream_it_completes():
    """mp records how far the stream is on the terminal (its session file) as each
    part of a write lands: a kill in a blocked write then doubles at most what one
    event carried, never the written part of the whole buffer."""
    from moshpit.protocol.events import DataReceived
    pair = Pair(DiffMode.RELIABLE)
    client = ClientSession(80, 24, shown=(0, 0))
    client.attach(pair.net.client.channel, 0)
    client.on_event(DataReceived(b"one\r\n"), 0.0)
    client.on_event(DataReceived(b"two\r\n"), 0.0)
    assert client.take_output() == b"one\r\ntwo\r\n"
    assert client.wrote(0) is None and client.wrote(3) is None
    assert client.wrote(2) == (5, 1)                       # "one\r\n" is on the terminal
    assert client.wrote(4) is None
    assert client.wrote(1) == (10, 2)


def test_in_screen_modes_rows_count_as_shown_only_once_the_whole_output_is_written():
    """There the rows that scrolled off are written at the next take_output, after the
    events that brought them: only the end of that output completes them."""
    from moshpit.protocol.events import DataReceived
    pair = Pair(DiffMode.STATESYNC)
    client = ClientSession(80, 24, shown=(0, 0))
    client.attach(pair.net.client.channel, 0)
    client.on_event(DataReceived(b"one\r\n"), 0.0)
    client.on_event(DataReceived(b"two\r\n"), 0.0)
    out = client.take_output()
    assert b"one" in out and b"two" in out
    assert client.wrote(len(out) - 1) is None
    assert client.wrote(1) == (10, 2)
