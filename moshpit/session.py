"""Server and client sessions: the screen model joined to the channel, loop-agnostic.

The server session takes PTY output and hands the channel what its diff mode
needs: the raw bytes in ``reliable`` mode, numbered screen states always (for
``statesync``/``datagram`` diffs and for repaints). The client session turns
channel events into the bytes to write to the user's terminal. Neither does
I/O or reads a clock: the runtime passes ``now`` and arms their timers.
"""

from __future__ import annotations

from moshpit.protocol.channel import Channel
from moshpit.protocol.events import DataReceived, Resized, ScreenUpdate
from moshpit.protocol.handshake import DiffMode
from moshpit.terminal.model import MAX_COLUMNS, MAX_ROWS, ScreenState, TerminalModel
from moshpit.terminal.queries import QueryFilter
from moshpit.terminal.render import render_diff, render_full

BATCH_DELAY = 0.008            # gather PTY output this long before re-reading the screen
BATCH_LIMIT = 256 * 1024       # ...or this much, whichever comes first
KEPT_STATES = 64               # screen states kept as possible diff bases...
KEPT_CELLS = 1_000_000         # ...and their cells in all: two 1000x500 screens, 500 of 80x24
RESIZE_INTERVAL = 0.1          # a window size is applied at most this often (a RESIZE re-lays
                               # the whole screen; a flood of them must not cost more)
MAX_BACKLOG = 4 << 20          # reliable output waiting to be sent; beyond it, a repaint instead
FEED_BUDGET = 50_000           # screen-model work per step (the model's cost units, ~20-50 ms):
                               # costly output is modelled a step at a time, the loop free between


def clamp_window(cols: int, rows: int) -> tuple[int, int]:
    """A window size the screen model holds: a client may ask for up to 65535x65535."""
    return max(1, min(cols, MAX_COLUMNS)), max(1, min(rows, MAX_ROWS))


class ServerSession:
    """One shell's screen, shared by whichever connection is attached."""

    def __init__(self, cols: int = 80, rows: int = 24):
        self.model = TerminalModel(*clamp_window(cols, rows))
        self.channel: Channel | None = None
        self._states: dict[int, ScreenState] = {self.model.number: self.model.state}
        self._kept_cells = self.model.state.cols * self.model.state.rows
        self._window_wanted: tuple[int, int] | None = None   # a RESIZE not applied yet
        self._resized_at = float("-inf")
        self._pending = bytearray()
        self._pending_since: float | None = None
        self.pty_input = bytearray()          # keystrokes and terminal replies for the PTY
        self.input_received = 0               # keystroke bytes from all connections so far

    def attach(self, channel: Channel, resumed: bool = False) -> None:
        """A (new or resumed) connection takes over; it starts from a full repaint.

        Build the channel with ``screen_source=session.screen_source``."""
        self.channel = channel
        self.flush()
        channel.screen_changed(self.model.number)
        if resumed:
            channel.repaint()                 # reliable mode: the stream alone would not show it

    # --- PTY side ---------------------------------------------------------------
    def pty_output(self, data: bytes, now: float) -> None:
        if not data:
            return
        channel = self.channel
        overflow = False
        if channel is not None and channel.accepts_data:
            if channel.pending_output + len(data) <= MAX_BACKLOG:
                channel.send_data(data)       # the raw stream goes out at once (echo latency)
            else:
                overflow = True
        self._pending += data
        if self._pending_since is None:
            self._pending_since = now
        if overflow:                          # the client is away: bound what we hold
            self.flush()                      # (the model now has this output too)
            channel.discard_unsent_output()
            channel.repaint()
        elif len(self._pending) >= BATCH_LIMIT:
            self.flush()

    @property
    def backlogged(self) -> bool:
        """The model has output still to take: read no more from the PTY until it has."""
        return bool(self.model.backlog)

    def get_timer(self) -> float | None:
        if self.model.backlog:
            return 0.0                        # due now: the next step of a costly feed
        deadlines = [t for t in (None if self._pending_since is None else self._pending_since + BATCH_DELAY,
                                 None if self._window_wanted is None else self._resized_at + RESIZE_INTERVAL)
                     if t is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        if self.model.backlog or (self._pending_since is not None
                                  and now >= self._pending_since + BATCH_DELAY):
            self.flush()
        if self._window_wanted is not None and now >= self._resized_at + RESIZE_INTERVAL:
            self._apply_window(now)

    def flush(self, complete: bool = False) -> None:
        """Feed gathered output to the screen model (in one piece: the fast path likes
        that), up to FEED_BUDGET of work unless ``complete``; the timer takes the rest."""
        if self._pending or self.model.backlog:
            self.model.feed(bytes(self._pending), budget=None if complete else FEED_BUDGET)
            self._pending.clear()
            self.pty_input += self.model.take_replies()
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
        elif isinstance(event, Resized):
            self._window_wanted = clamp_window(event.cols, event.rows)
            if now >= self._resized_at + RESIZE_INTERVAL:
                self._apply_window(now)       # else the timer applies the newest one

    def _apply_window(self, now: float) -> None:
        self.flush()
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


class ClientSession:
    """What the user's terminal shows, and the bytes that keep it so."""

    def __init__(self, cols: int = 80, rows: int = 24, clipboard_max_bytes: int = 0):
        self.cols, self.rows = clamp_window(cols, rows)
        self.queries = QueryFilter(clipboard_max_bytes)   # reliable mode: nothing may ask the terminal
        self.displayed = ScreenState.blank(cols, rows)     # what the real terminal shows
        self._held: dict[int, ScreenState] = {}
        self._model: TerminalModel | None = None          # holds state _model_state, ready to feed
        self._model_state = -1
        self.output = bytearray()                         # for the real terminal
        self.at_line_start = True     # the cursor is in the first column, so far as we know

    def on_event(self, event, channel: Channel) -> None:
        if isinstance(event, DataReceived):
            self.output += self.queries.feed(event.data)  # reliable: the raw stream, less queries
            if event.data:
                self.at_line_start = event.data.endswith(b"\n")   # no model to ask: a good guess
        elif isinstance(event, ScreenUpdate):
            self._apply(event, channel)

    def _apply(self, event: ScreenUpdate, channel: Channel) -> None:
        if event.base == 0:
            model = TerminalModel(self.cols, self.rows)
        elif event.base == self._model_state and self._model is not None:
            model = self._model                           # the usual case: diff on the last state
        else:
            base = self._held.get(event.base)
            if base is None:
                channel.request_repaint()                 # we no longer have what it builds on
                return
            model = TerminalModel(base.cols, base.rows)
            model.feed(render_full(base).encode())
        if channel.diff_mode is DiffMode.RELIABLE:
            self.output += event.data                     # a repaint inside the raw stream
        model.feed(event.data)
        new = model.state
        if channel.diff_mode is not DiffMode.RELIABLE:
            self.output += render_diff(self.displayed, new).encode()
        self.displayed = new
        self.at_line_start = new.cursor_x == 0
        self._model, self._model_state = model, event.state
        self._held[event.state] = new
        for old in [s for s in self._held if s < event.base]:
            del self._held[old]
        channel.screen_applied(event.state)

    def resize(self, cols: int, rows: int, channel: Channel) -> None:
        self.cols, self.rows = clamp_window(cols, rows)
        channel.send_resize(self.cols, self.rows)

    def take_output(self) -> bytes:
        data = bytes(self.output)
        self.output.clear()
        return data
