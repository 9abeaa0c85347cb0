"""The client session: channel events in, the bytes for the user's terminal out (no I/O).

It takes the same calls as ``ServerSession`` for the same acts: ``attach`` a
(new or resumed) channel, ``on_event``, ``get_timer``/``handle_timer``; then
``keys`` for what the user typed and ``take_output`` for what to write.

What the terminal shows is the server's screen (``truth``) with the prediction
engine's guesses laid over it; the overlay is the same in every mode. How the truth
arrives is the view's business, one per kind of diff mode:

- ``StreamView`` (``reliable``): the raw output stream, written as it comes. The
  truth is a model fed that stream, kept only while predictions are wanted (it costs
  the stream's throughput otherwise) and brought in step by a repaint when they start
  to be.
- ``ScreenView`` (``statesync``, ``datagram``): numbered screen states, drawn as
  diffs, and the rows that scrolled off the server's screen, put into the terminal's
  scrollback above it.
"""

from __future__ import annotations

from collections import deque

from moshpit.protocol.channel import Channel
from moshpit.protocol.events import DataReceived, EchoAcknowledged, OutputSkipped, ScreenUpdate
from moshpit.protocol.handshake import DiffMode
from moshpit.terminal.model import ScreenState, TerminalModel, clamp_window
from moshpit.terminal.predict import Policy, PredictionEngine
from moshpit.terminal.queries import QueryFilter
from moshpit.terminal.render import render_diff, render_full
from moshpit.terminal.scrollback import insert_rows, marker_line

UNFED_LIMIT = 256 * 1024       # reliable, predicting: raw output modelled at the latest after this


def missed_lines_marker(count: int, rows: int) -> str:
    """Scroll what the terminal shows into its scrollback, then one line saying how many
    lines are missing there (full-screen margins, so the scrolled rows are kept)."""
    bottom = f"\x1b[{rows};1H"
    return (f"\x1b[r\x1b[?6l\x1b[0m{bottom}" + "\n" * rows
            + f"\x1b[H\x1b[2K{marker_line(count)}{bottom}\n")


class ClientSession:
    """What the user's terminal shows, and the bytes that keep it so."""

    def __init__(self, cols: int = 80, rows: int = 24, clipboard_max_bytes: int = 0,
                 predict: Policy = Policy.NEVER, shown: tuple[int, int] | None = (0, 0)):
        """``shown``: (bytes, lines) of the server's output stream this terminal already
        has (a resumed session's, from an earlier client), or None if not known."""
        self.cols, self.rows = clamp_window(cols, rows)
        self.shown = shown            # the stream's position, as written here
        self._marks: deque[tuple[int, tuple[int, int]]] = deque()   # (output position, shown)
        self._taken = self._written = 0                  # output bytes taken, and written
        self.queries = QueryFilter(clipboard_max_bytes)   # nothing the server sends may ask the terminal
        self.displayed = ScreenState.blank(cols, rows)     # what the real terminal shows
        self.truth = self.displayed                       # the server's screen, as far as we know
        self.output = bytearray()                         # for the real terminal
        self.at_line_start = True     # the cursor is in the first column, so far as we know
        self.engine = None if predict is Policy.NEVER else PredictionEngine(predict)
        self.echo_ack, self.echo_flags = 0, 0             # flags unknown until the server says
        self.channel: Channel | None = None
        self._view: StreamView | ScreenView | None = None

    @property
    def view(self) -> StreamView | ScreenView:
        assert self._view is not None, "attach() first"
        return self._view

    def attach(self, channel: Channel, input_received: int) -> None:
        """A new or resumed connection, whose server has had this many keystroke bytes
        (and, in ``reliable``, goes on with the output from ``shown``, or says SKIP)."""
        if self._view is None:
            self._view = StreamView(self) if channel.diff_mode is DiffMode.RELIABLE else ScreenView(self)
        self.channel = channel
        if self.engine is not None:
            self.engine.rebase(input_received)
        self.echo_ack = input_received
        self._view.attached()

    # --- events from the channel -------------------------------------------------------
    def on_event(self, event, now: float) -> None:
        view = self.view
        if isinstance(event, DataReceived):
            if self.shown is not None:
                self.shown = (self.shown[0] + len(event.data), self.shown[1] + event.data.count(b"\n"))
            view.data(event.data, now)
            if view.writes_at_once:
                self._mark()
        elif isinstance(event, OutputSkipped):
            # The stream jumps ahead. Lines we never had are marked with one line in the
            # scrollback, never a silent gap; the position is the server's from here on.
            if self.shown is not None and event.lines > self.shown[1]:
                view.missed(event.lines - self.shown[1])
            self.shown = (event.offset, event.lines)
        elif isinstance(event, ScreenUpdate):
            view.screen(event, now)
        elif isinstance(event, EchoAcknowledged):
            view.echo_acknowledged(event, now)

    # --- the user's side -----------------------------------------------------------------
    def keys(self, data: bytes, now: float) -> None:
        """The user typed ``data`` (already handed to the channel)."""
        if self.engine is None:
            return
        self._set_srtt()
        if self.view.ready_for_keys(data, now):
            self.engine.keys(data, self.truth, now)
            self.show_predictions(now)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = clamp_window(cols, rows)
        if self.engine is not None:
            self.engine.reset()
        assert self.channel is not None, "attach() first"
        self.channel.send_resize(self.cols, self.rows)

    def redraw(self) -> None:
        """The terminal lost what it showed (a stop and ``fg``, a status bar taken away):
        draw it again, from the truth held here or, where the stream is the screen, by
        asking the server for a repaint."""
        self.view.redraw()

    def take_output(self) -> bytes:
        self.view.before_output()
        self._mark()
        data = bytes(self.output)
        self._taken += len(data)
        self.output.clear()
        return data

    def _mark(self) -> None:
        """Once the output so far is on the terminal, the stream is shown up to here."""
        if self.shown is not None and (not self._marks or self._marks[-1][1] != self.shown):
            self._marks.append((self._taken + len(self.output), self.shown))

    def wrote(self, count: int) -> tuple[int, int] | None:
        """``count`` more bytes of what ``take_output`` gave are on the terminal: the
        stream position (``shown``) they complete, if they complete one. Recorded as a
        partial write goes, a kill between a write and its record doubles at most
        what one event carried, not a whole blocked write's worth."""
        self._written += count
        done = None
        while self._marks and self._marks[0][0] <= self._written:
            done = self._marks.popleft()[1]
        return done

    # --- timers --------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        return None if self.engine is None else self.engine.get_timer()

    def handle_timer(self, now: float) -> None:
        """The prediction timer (or the RTT) moved: show or hide what it says."""
        if self.engine is None:
            return
        self.engine.handle_timer(now)
        self._set_srtt()
        if self.view.ready_for_timer():
            self.show_predictions(now)

    def _set_srtt(self) -> None:
        assert self.engine is not None and self.channel is not None
        self.engine.set_srtt(self.channel.rtt.srtt or 0.0)

    # --- the prediction overlay (for the views) -------------------------------------------
    def judge(self, acked: int, flags: int, now: float) -> None:
        """The server has echoed ``acked`` keystrokes with its terminal's ``flags``:
        the engine confirms or drops its guesses against the truth."""
        self.echo_ack, self.echo_flags = max(self.echo_ack, acked), flags
        if self.engine is None:
            return
        self.engine.truth(self.truth, self.echo_ack, self.echo_flags, now)
        self.show_predictions(now)

    def show_predictions(self, now: float) -> None:
        if not self.view.settled:
            return                     # the truth is behind, or mid-sequence: nothing may go in
        assert self.engine is not None
        shown = self.engine.display(self.truth, now)
        if shown != self.displayed:
            self.output += render_diff(self.displayed, shown, scroll=False).encode()
            self.displayed = shown

    def lift_predictions(self) -> None:
        """Put back the truth where predictions are drawn, before server bytes follow."""
        if self.displayed != self.truth:
            self.output += render_diff(self.displayed, self.truth, scroll=False).encode()
            self.displayed = self.truth

    def show_truth(self, state: ScreenState) -> None:
        self.displayed = self.truth = state
        self.at_line_start = state.cursor_x == 0


class _ScreenStates:
    """The server's numbered screens as built here: the newest, in a model ready for the
    next diff, and the older ones still held as diff bases."""

    def __init__(self) -> None:
        self.model: TerminalModel | None = None     # holds state ``number``, ready to feed
        self.number = -1
        self._held: dict[int, ScreenState] = {}

    def model_for(self, event: ScreenUpdate, cols: int, rows: int) -> TerminalModel | None:
        """A model holding the update's base (None: we no longer have it)."""
        if event.base == 0:
            return TerminalModel(cols, rows)
        if event.base == self.number and self.model is not None:
            return self.model                       # the usual case: diff on the last state
        base = self._held.get(event.base)
        if base is None:
            return None
        model = TerminalModel(base.cols, base.rows)
        model.feed(render_full(base).encode())
        return model

    def applied(self, event: ScreenUpdate, model: TerminalModel) -> None:
        self.model, self.number = model, event.state
        self._held[event.state] = model.state
        for old in [s for s in self._held if s < event.base]:
            del self._held[old]

    @property
    def at_rest(self) -> bool:
        return self.model is None or self.model.at_rest


class StreamView:
    """``reliable``: the raw stream is the terminal's; a model follows it only while
    predictions are wanted."""

    writes_at_once = True            # an event's stream bytes are in the output when it returns

    def __init__(self, session: ClientSession):
        self._s = session
        self._states = _ScreenStates()
        self._in_step = False         # the model has (or _unfed holds) every byte written
        self._unfed = bytearray()
        self._resync_asked = False

    def attached(self) -> None:
        self._in_step = self._resync_asked = False
        self._unfed.clear()

    @property
    def settled(self) -> bool:
        return not self._unfed and self._states.at_rest

    def data(self, data: bytes, now: float) -> None:
        """The raw stream, less queries; predictions lifted off while it is written."""
        s = self._s
        data = s.queries.feed(data)
        if data:
            s.at_line_start = data.endswith(b"\n")   # no model to ask: a good guess
        if not self._in_step:
            s.output += data
            self._want_model()
            return
        s.lift_predictions()
        s.output += data
        self._unfed += data            # modelled when needed, in one piece (the fast path's way)
        self._states.number = -1                          # ahead of every numbered state now
        # Hidden (tentative) guesses can wait: under `cat` the echo ack of the Enter that
        # started it queues behind the output, and modelling each datagram on its own
        # cost 0.5 s of CPU per MB.
        assert s.engine is not None                      # (in step: predictions are on)
        if s.engine.visible or len(self._unfed) >= UNFED_LIMIT:
            self._catch_up(now)

    def missed(self, lines: int) -> None:
        """After the screen we showed, which a repaint then replaces."""
        self._s.lift_predictions()
        self._s.output += missed_lines_marker(lines, self._s.rows).encode()

    def screen(self, event: ScreenUpdate, now: float) -> None:
        """A repaint inside the raw stream: it draws the truth over whatever was shown."""
        s = self._s
        assert s.channel is not None
        model = self._states.model_for(event, s.cols, s.rows)
        if model is None:
            s.channel.request_repaint()
            return
        s.lift_predictions()
        self._unfed.clear()                           # the repaint supersedes it
        s.output += event.data
        model.feed(event.data)
        s.show_truth(model.state)
        self._states.applied(event, model)
        s.channel.screen_applied(event.state)
        self._in_step = s.engine is not None          # the repaint brought the model in step
        self._resync_asked = False
        s.judge(s.echo_ack, s.echo_flags, now)

    def echo_acknowledged(self, event: EchoAcknowledged, now: float) -> None:
        """In the stream, after the output it accounts for: it applies at once."""
        s = self._s
        s.echo_ack = max(s.echo_ack, event.keystrokes)
        s.echo_flags = event.flags
        if self._in_step:
            self._catch_up(now)
        else:
            s.judge(event.keystrokes, event.flags, now)

    def ready_for_keys(self, data: bytes, now: float) -> bool:
        if not self._in_step:
            assert self._s.engine is not None
            self._s.engine.typed_blind(data)              # counted, not drawn: no model yet
            self._want_model()
            return False
        if self._unfed:
            self._catch_up(now)                           # the truth the guesses build on
        return True

    def ready_for_timer(self) -> bool:
        engine = self._s.engine
        assert engine is not None
        if not engine.wanted and self._in_step and not engine.pending:
            self._in_step = False                         # stop paying for the model
            self._states.model = None
            self._unfed.clear()
            return False
        if not self._in_step:
            self._want_model()
            return False
        return True

    def before_output(self) -> None:
        pass

    def redraw(self) -> None:
        if self._s.channel is not None:
            self._s.channel.request_repaint()             # the stream has no screen to redraw from

    def _catch_up(self, now: float) -> None:
        """Feed the model what the terminal has had, then judge and show."""
        s = self._s
        if self._unfed:
            model = self._states.model
            assert model is not None                      # (in step: the model is kept)
            model.feed(bytes(self._unfed))
            self._unfed.clear()
            s.truth = s.displayed = model.state
        s.judge(s.echo_ack, s.echo_flags, now)

    def _want_model(self) -> None:
        """Predictions are wanted but the model is behind: ask for a repaint."""
        s = self._s
        if s.engine is not None and s.engine.wanted and not self._resync_asked and s.channel is not None:
            self._resync_asked = True
            s.channel.request_repaint()


class ScreenView:
    """``statesync``/``datagram``: the newest screen state, drawn as a diff, with the
    rows that scrolled off it put into the scrollback above."""

    writes_at_once = False           # scrolled-off rows wait for the next take_output

    def __init__(self, session: ClientSession):
        self._s = session
        self._states = _ScreenStates()
        self._acks: list[tuple[int, int, int]] = []       # echo acks waiting for their state
        self._painted = False                             # the terminal has had a full paint
        self._partial_line = bytearray()                  # a scrolled-off row not all here yet
        self._rows_waiting: list[str] = []                # ...and those here, not yet written

    def attached(self) -> None:
        self._acks.clear()

    @property
    def settled(self) -> bool:
        return self._states.at_rest

    def data(self, data: bytes, now: float) -> None:
        """The stream is the rows that scrolled off the server's screen, a line each. They
        go into the terminal's scrollback together, once per batch of events
        (``take_output``), or before the next screen is drawn."""
        *complete, rest = (bytes(self._partial_line) + data).split(b"\n")
        self._partial_line[:] = rest
        for line in complete:
            if line.startswith(b"\x1b]"):       # a terminal string (a clipboard write), not a row:
                self._s.output += self._s.queries.feed(line)   # passed as reliable mode passes it
            else:
                self._rows_waiting.append(line.decode("utf-8", "replace"))

    def missed(self, lines: int) -> None:
        self._partial_line.clear()        # (a line cut short by the skip)
        self._rows_waiting.append(marker_line(lines))

    def screen(self, event: ScreenUpdate, now: float) -> None:
        s = self._s
        assert s.channel is not None
        if self._states.model is not None and event.state <= self._states.number:
            # An older screen completing after a newer one (a message in two chunks, the
            # next in one): applied, it would turn the screen back while the server,
            # told of the newer one, has nothing more to send.
            return
        model = self._states.model_for(event, s.cols, s.rows)
        if model is None:
            s.channel.request_repaint()                   # we no longer have what it builds on
            return
        model.feed(event.data)
        new = model.state
        # The first paint clears whatever the terminal showed (a diff from a blank
        # screen would leave it where the remote screen is blank); then diffs.
        after = self._insert_waiting_rows()
        paint = render_diff(after or s.displayed, new, scroll=False) if self._painted else render_full(new)
        s.output += paint.encode()
        self._painted = True
        s.show_truth(new)
        self._states.applied(event, model)
        s.channel.screen_applied(event.state)
        self._take_acks()
        s.judge(s.echo_ack, s.echo_flags, now)

    def echo_acknowledged(self, event: EchoAcknowledged, now: float) -> None:
        """It names the screen state that shows the echo: it waits for that state."""
        self._acks.append((event.state, event.keystrokes, event.flags))
        self._take_acks()
        self._s.judge(self._s.echo_ack, self._s.echo_flags, now)

    def ready_for_keys(self, data: bytes, now: float) -> bool:
        return True

    def ready_for_timer(self) -> bool:
        return True

    def redraw(self) -> None:
        self._s.output += render_full(self._s.displayed).encode()

    def before_output(self) -> None:
        after = self._insert_waiting_rows()
        if after is not None:                 # the screen shown, drawn again below them
            self._s.output += render_diff(after, self._s.displayed, scroll=False).encode()

    def _take_acks(self) -> None:
        """Echo acks whose state has been applied take effect."""
        s = self._s
        applied = self._states.number
        ready = [a for a in self._acks if a[0] <= applied or applied < 0]
        if not ready:
            return
        self._acks = [a for a in self._acks if a not in ready]
        newest = max(ready, key=lambda a: a[1])
        s.echo_ack = max(s.echo_ack, newest[1])
        s.echo_flags = ready[-1][2]

    def _insert_waiting_rows(self) -> ScreenState | None:
        """Write the rows waiting into the scrollback above the screen shown; returns what
        the terminal shows then (to draw the screen from), or None if none were waiting."""
        if not self._rows_waiting:
            return None
        text, after = insert_rows(self._s.displayed, self._rows_waiting, known=self._painted)
        self._rows_waiting = []
        self._s.output += text.encode()
        return after
