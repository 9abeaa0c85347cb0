"""The server session: the screen model joined to the channel, loop-agnostic.

It takes PTY output and hands the channel what its diff mode needs: an output
stream (through an ``OutputLog``, as the path has room: see ``pump``) of the raw
bytes in ``reliable`` mode and of the rows that scroll off the screen in the
others, and numbered screen states always (for ``statesync``/``datagram`` diffs and
for repaints). Its client counterpart, with the same calls for the same acts, is
``clientsession.ClientSession``. Neither does I/O or reads a clock: the runtime
passes ``now`` and arms their timers.
"""

from __future__ import annotations

from collections import deque

from moshpit.outputlog import OutputLog
from moshpit.protocol.channel import Channel
from moshpit.protocol.events import DataReceived, Resized
from moshpit.protocol.handshake import DiffMode
from moshpit.terminal.model import ScreenState, TerminalModel, clamp_window
from moshpit.terminal.predict import ECHO, ICANON
from moshpit.terminal.render import render_diff, render_full
from moshpit.terminal.scrollback import marker_line

BATCH_DELAY = 0.008            # gather PTY output this long before re-reading the screen...
QUIET_DELAY = 0.002            # ...or only this long when it follows a quiet spell or input (an echo)
QUIET_AFTER = 0.050            # output this long after the last is "after a quiet spell"
BATCH_LIMIT = 256 * 1024       # ...or this much, whichever comes first
KEPT_STATES = 64               # screen states kept as possible diff bases...
KEPT_CELLS = 1_000_000         # ...and their cells in all: two 1000x500 screens, 500 of 80x24
RESIZE_INTERVAL = 0.1          # a window size is applied at most this often (a RESIZE re-lays
                               # the whole screen; a flood of them must not cost more)
HISTORY_BYTES = 1 << 20        # the output stream kept for an absent client, at most this...
HISTORY_LINES = 50_000         # ...and this many lines (trimmed a PTY read at a time)
LINES_AHEAD = 256 << 10        # screen modes: scrolled-off rows kept and not yet sent, at most;
                               # past it no more are kept (one marker line stands for them)
                               # until the client has taken all but a quarter of it
RESUME_SLACK = 64 << 10        # output kept after the client acknowledged it: a client killed
                               # mid-write may have shown a little less than it acknowledged
ECHO_WAIT = 0.050              # keystrokes count as echoed this long after the shell got them (Mosh)
FEED_BUDGET = 50_000           # screen-model work per step (the model's cost units, ~20-50 ms):
                               # costly output is modelled a step at a time, the loop free between


class ServerSession:
    """One shell's screen, shared by whichever connection is attached."""

    def __init__(self, cols: int = 80, rows: int = 24, *, history_bytes: int = HISTORY_BYTES,
                 history_lines: int = HISTORY_LINES):
        self.model = TerminalModel(*clamp_window(cols, rows))
        self.channel: Channel | None = None
        self.log = OutputLog(history_bytes, history_lines)   # the stream down, numbered: the
        self._log_lines = False               # raw output (reliable), or the scrollback's lines
        self._unkept_from = 0                 # screen modes: rows scrolled off before keeping stopped
        self._sent = self._sent_lines = 0     # the attached channel has the stream up to here
        self._states: dict[int, ScreenState] = {self.model.number: self.model.state}
        self._kept_cells = self.model.state.cols * self.model.state.rows
        self._window_wanted: tuple[int, int] | None = None   # a RESIZE not applied yet
        self._resized_at = float("-inf")
        self._pending = bytearray()
        self._pending_since: float | None = None
        self._gather = BATCH_DELAY            # how long the pending output is gathered
        self._last_output_at = float("-inf")
        self.pty_input = bytearray()          # keystrokes and terminal replies for the PTY
        self.input_received = 0               # keystroke bytes from all connections so far
        self.tty_flags = ECHO | ICANON        # the shell's terminal, as the runtime last read it
        self._input_times: deque[tuple[int, float]] = deque()   # (input_received, when)
        self._echo_acked = 0
        self._flags_sent: int | None = None

    def attach(self, channel: Channel, resumed: bool = False,
               shown: tuple[int, int] | None = None) -> None:
        """A (new or resumed) connection takes over. ``shown``: (bytes, lines) of the output
        stream the client's terminal already has, if it knows. The stream goes on from there
        when the log still holds it (every line once, nothing repainted over it); else the
        client is told what it missed (and, in ``reliable``, repainted). A first connection
        gets the stream from the start (a shell's first prompt may precede it). The screen
        modes' stream is the scrollback's rows, so a resumed one still gets a full screen.

        Build the channel with ``screen_source=session.screen_source``."""
        self.channel = channel
        self._flags_sent = None               # the new connection learns the terminal's flags
        self.flush()
        channel.screen_changed(self.model.number)
        lines = not channel.send_reliable
        if lines != self._log_lines:          # the stream changes kind: start it afresh
            self.log = OutputLog(self.log.max_bytes, self.log.max_lines)
            self._log_lines = lines
            self.model.keep_scrolled(lines)
        log = self.log
        if not resumed:
            shown = (0, 0)
        if shown is not None and log.start <= shown[0] <= log.end and shown[1] <= shown[0]:
            self._sent, self._sent_lines = shown
        else:
            self._skip(channel)
        if resumed and lines:
            channel.repaint()                 # the screen, from scratch
        self.pump()

    def _skip(self, channel: Channel) -> None:
        """Go on from the newest output: the client lacks what lies between (or cannot
        say what it has). The skip tells the client the stream's position, so a client
        that knew its own can count the lines it missed. In ``reliable`` a repaint then
        shows the screen as it is now (the screen modes send screens anyway)."""
        self.flush(complete=True)
        log = self.log
        channel.send_skip(log.end, log.end_lines)
        self._sent, self._sent_lines = log.end, log.end_lines
        if channel.send_reliable:
            channel.repaint()

    def pump(self) -> None:
        """Hand the channel what of the stream it has room for. The rest waits here. In
        ``reliable`` the PTY is read no further meanwhile (``holding_output``), so what is
        queued before a Ctrl-C is about what the path carries in a moment, not megabytes;
        the scrollback's lines (screen modes) never hold the shell up, and are skipped,
        marked, past what the log keeps."""
        channel = self.channel
        if channel is None or not channel.accepts_data:
            return
        log = self.log
        if self._sent < log.start and not (channel.pending_output or channel.in_flight):
            self._skip(channel)               # the client was away longer than the log reaches
        room = channel.output_room            # (decided once it has all that was queued: once)
        if room and log.start <= self._sent < log.end:
            data = log.read(self._sent, room)
            channel.send_data(data)
            self._sent += len(data)
            self._sent_lines += data.count(b"\n")
        # What the client surely has, less a margin, need not be kept for a resume.
        unacked = channel.pending_output + channel.in_flight * channel.config.max_datagram_size
        log.release(self._sent - unacked - RESUME_SLACK)

    def _keep_scrolled_rows(self) -> None:
        """Screen modes: the rows that scrolled off go into the log (the runtime pumps it).
        While the client is far behind (a flood), none are kept at all, which also spares
        the model the work; then one marker line tells how many went unkept."""
        if rows := self.model.take_scrolled():
            self.log.append(("\n".join(rows) + "\n").encode())
        screen = self.model.screen
        ahead = self.log.end - self._sent + (self.channel.pending_output if self.channel else 0)
        if screen.scrolled is not None and ahead > LINES_AHEAD:
            self.model.keep_scrolled(False)
            self._unkept_from = screen.scrolled_count
        elif screen.scrolled is None and ahead <= LINES_AHEAD // 4:
            self.model.keep_scrolled(True)
            if missed := screen.scrolled_count - self._unkept_from:
                self.log.append((marker_line(missed) + "\n").encode())

    @property
    def holding_output(self) -> bool:
        """reliable: output waits for the path. Read no more from the PTY (the program
        waits, as for a slow terminal) unless the client is away (the log takes it)."""
        return (self._sent < self.log.end and not self._log_lines and self.channel is not None
                and self.channel.accepts_data)

    # --- PTY side ---------------------------------------------------------------
    def pty_output(self, data: bytes, now: float) -> None:
        if not data:
            return
        if self.tty_flags != self._flags_sent:   # a password prompt turning echo off, say
            self._acknowledge_echo(now)
        if not self._log_lines:
            self.log.append(data)
            self.pump()                       # the raw stream goes out at once (echo latency)
        self._pending += data
        if self._pending_since is None:
            self._pending_since = now
            answer = bool(self._input_times) and self._input_times[-1][1] > self._last_output_at
            quiet = answer or now - self._last_output_at >= QUIET_AFTER    # an echo, say
            self._gather = QUIET_DELAY if quiet else BATCH_DELAY
        self._last_output_at = now
        if len(self._pending) >= BATCH_LIMIT:
            self.flush()

    @property
    def backlogged(self) -> bool:
        """The model has output still to take: read no more from the PTY until it has."""
        return bool(self.model.backlog)

    def get_timer(self) -> float | None:
        if self.model.backlog:
            return 0.0                        # due now: the next step of a costly feed
        deadlines = [t for t in (None if self._pending_since is None else self._pending_since + self._gather,
                                 None if self._window_wanted is None else self._resized_at + RESIZE_INTERVAL,
                                 self._input_times[0][1] + ECHO_WAIT if self._input_times else None)
                     if t is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        if self.model.backlog or (self._pending_since is not None
                                  and now >= self._pending_since + self._gather):
            self.flush()
        if self._window_wanted is not None and now >= self._resized_at + RESIZE_INTERVAL:
            self._apply_window(now)
        self._acknowledge_echo(now)

    def _acknowledge_echo(self, now: float) -> None:
        """Tell the client how many keystrokes the shell has had ECHO_WAIT to echo, and
        whether its terminal echoes: prediction judges its guesses by it."""
        acked = self._echo_acked
        while self._input_times and self._input_times[0][1] + ECHO_WAIT <= now:
            acked = self._input_times.popleft()[0]
        channel = self.channel
        if (acked == self._echo_acked and self.tty_flags == self._flags_sent) or channel is None \
                or channel.closed:
            return
        self.flush()                          # the state it names must hold that output
        channel.send_echo_ack(acked, self.tty_flags, now)
        self._echo_acked, self._flags_sent = acked, self.tty_flags

    def flush(self, complete: bool = False) -> None:
        """Feed gathered output to the screen model (in one piece: the fast path likes
        that), up to FEED_BUDGET of work unless ``complete``; the timer takes the rest."""
        if self._pending or self.model.backlog:
            self.model.feed(bytes(self._pending), budget=None if complete else FEED_BUDGET)
            self._pending.clear()
            self.pty_input += self.model.take_replies()
            if self._log_lines:
                self._keep_scrolled_rows()
        self._pending_since = None
        number = self.model.number
        if number not in self._states:
            self._keep_state(number, self.model.state)
        if self.channel is not None and not self.channel.closed:
            self.channel.screen_changed(number)

    def _keep_state(self, number: int, state: ScreenState) -> None:
        """Keep ``state`` as a diff base, forgetting the oldest while more than KEPT_STATES
        or KEPT_CELLS are held, except the newest and the one the client acknowledged."""
        self._states[number] = state
        self._kept_cells += state.cols * state.rows
        keep = {number, self.channel.screen_acked if self.channel is not None else number}
        for old in sorted(self._states):
            if len(self._states) <= KEPT_STATES and self._kept_cells <= KEPT_CELLS:
                break
            if old not in keep:
                gone = self._states.pop(old)
                self._kept_cells -= gone.cols * gone.rows

    def screen_source(self, base: int, state: int) -> bytes:
        """What the channel sends: a diff from ``base``, or a full repaint from 0. A
        repaint inside the raw stream must show everything the stream has carried."""
        self.flush(complete=self.channel is not None and self.channel.diff_mode is DiffMode.RELIABLE)
        target = self._states.get(state, self.model.state)
        old = self._states.get(base) if base else None
        if old is None:
            return render_full(target).encode()
        return render_diff(old, target).encode()

    # --- channel side -------------------------------------------------------------
    def on_event(self, event, now: float) -> None:
        if isinstance(event, DataReceived):
            self.pty_input += event.data
            self.input_received += len(event.data)
            self._input_times.append((self.input_received, now))
        elif isinstance(event, Resized):
            self._window_wanted = clamp_window(event.cols, event.rows)
            if now >= self._resized_at + RESIZE_INTERVAL:
                self._apply_window(now)       # else the timer applies the newest one

    def _apply_window(self, now: float) -> None:
        self.flush()
        assert self._window_wanted is not None
        self.model.resize(*self._window_wanted)
        self.flush()
        self._window_wanted, self._resized_at = None, now

    @property
    def window(self) -> tuple[int, int]:
        """(columns, rows) the shell's terminal has: the client's, within the model's limits."""
        return self.model.screen.columns, self.model.screen.lines

    def take_pty_input(self) -> bytes:
        data = bytes(self.pty_input)
        self.pty_input.clear()
        return data
