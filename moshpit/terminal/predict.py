"""Keystroke prediction: what the user's terminal shows before the server answers.

A pure object (no I/O, no clock): fed the keystrokes sent, the server's screen
states with the echo acknowledgement that came with them, the smoothed RTT and
``now``; it hands back the state to display (the truth with its predictions
laid over) and the time it next needs to look again.

The design follows Mosh's overlay:

* Printable ASCII is predicted at the cursor, inserted (the rest of the row
  shifts right); backspace removes the cell before the cursor (the rest shifts
  left); left and right arrows move within the row.
* Predictions are grouped in epochs. Anything else typed (CR, a control key,
  another escape sequence) and typing into the last column open a new
  *tentative* epoch: its predictions stay hidden until one of them is
  confirmed. A wrong tentative prediction kills its epoch and those after it;
  a wrong prediction that was shown resets the engine (the next state shows the
  truth) and counts as a glitch.
* A prediction is judged only against a state whose echo acknowledgement
  covers its keystroke (the server had given the keystroke to the shell long
  enough before rendering it for an echo to be there).
* Beyond Mosh: the server says whether the shell's terminal echoes. In
  canonical mode with echo off (a password prompt) nothing is predicted, not
  even for a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from moshpit.terminal.model import ScreenState
from moshpit.terminal.screen import Cell

SHOW_ABOVE = 0.060          # adaptive: start showing predictions at this SRTT...
HIDE_BELOW = 0.040          # ...and stop below this one
UNDERLINE_ABOVE = 0.160     # adaptive: underline unconfirmed cells at this SRTT
SLOW_CONFIRMATION = 0.250   # adaptive: a keystroke unconfirmed this long shows predictions
PASTE_BYTES = 100           # a read larger than this is a paste: not predicted
GLITCH_MEMORY = 3           # glitches that keep underlining on, until this many confirmations

ECHO = 0x01                 # echo-ack flags: the shell's terminal echoes input...
ICANON = 0x02               # ...and is in canonical (line) mode


class Policy(Enum):
    ADAPTIVE = "adaptive"
    ALWAYS = "always"
    NEVER = "never"


@dataclass
class _Cell:
    row: int
    col: int
    cell: Cell                 # what we expect the server to show there
    epoch: int
    keystroke: int             # keystroke bytes sent up to and including the one it answers
    made_at: float


@dataclass
class _Cursor:
    row: int
    col: int
    epoch: int
    keystroke: int
    made_at: float


@dataclass
class Stats:
    predicted: int = 0         # cells predicted
    shown: int = 0             # keystrokes whose prediction was on screen when made
    confirmed: int = 0
    wrong: int = 0             # tentative predictions found wrong (never shown)
    glitches: int = 0          # shown predictions found wrong (the screen was reset)


class PredictionEngine:
    def __init__(self, policy: Policy = Policy.ADAPTIVE):
        self.policy = policy
        self.stats = Stats()
        self.srtt = 0.0
        self._showing = policy is Policy.ALWAYS
        self._cells: list[_Cell] = []
        self._cursor: _Cursor | None = None
        self._epoch = 1                    # the epoch new predictions join: tentative at first
        self._confirmed_epoch = 0          # epochs up to this one are shown
        self._cols = self._rows = 0        # the screen size predictions were made on
        self._sent = 0                     # keystroke bytes sent so far
        self._echo_ack = 0                 # keystroke bytes the newest state accounts for
        self._flags = 0                    # the shell's terminal, once the server has said
        self._glitch_credit = 0
        self._unconfirmed_since: float | None = None
        self._looked_for: float | None = None   # the _unconfirmed_since whose timer has fired

    # --- inputs -------------------------------------------------------------------
    def set_srtt(self, srtt: float) -> None:
        self.srtt = srtt
        if self.policy is Policy.ADAPTIVE:
            if srtt > SHOW_ABOVE:
                self._showing = True
            elif srtt < HIDE_BELOW:
                self._showing = False

    @property
    def wanted(self) -> bool:
        """Whether predictions are to be shown as things stand (the RTT, the policy)."""
        return self.policy is Policy.ALWAYS or self._showing

    def rebase(self, sent: int) -> None:
        """A new connection: the server has had ``sent`` keystroke bytes in all so far."""
        self.reset()
        self._sent = sent
        self._echo_ack = min(self._echo_ack, sent)

    def reset(self) -> None:
        """Forget every prediction (a resize, a paste, a wrong guess on screen)."""
        self._cells.clear()
        self._cursor = None
        self._epoch += 1
        self._confirmed_epoch = self._epoch - 1    # the next epoch starts tentative
        self._unconfirmed_since = None

    def keys(self, data: bytes, truth: ScreenState, now: float) -> None:
        """The user typed ``data`` (already sent); ``truth`` is the newest server state."""
        start = self._sent
        self._sent += len(data)
        if self.policy is Policy.NEVER:
            return
        if len(data) > PASTE_BYTES:
            self.reset()
            return
        if self._flags & ICANON and not self._flags & ECHO:
            return                             # a password prompt: never predict there
        if self._unconfirmed_since is None:
            self._unconfirmed_since = now
        i = 0
        while i < len(data):
            index = start + i + 1
            byte = data[i]
            if byte == 0x1B and data[i + 1:i + 3] in (b"[C", b"[D", b"OC", b"OD"):
                self._arrow(data[i + 2:i + 3] == b"C", truth, index + 2, now)
                i += 3
                continue
            if 0x20 <= byte < 0x7F:
                self._printable(chr(byte), truth, index, now)
            elif byte in (0x7F, 0x08):
                self._backspace(truth, index, now)
            else:
                self._new_epoch(truth, index, now, line_end=byte == 0x0D)
                if byte == 0x1B and data[i + 1:i + 2] in (b"[", b"O"):   # CSI or SS3: skip
                    j = i + 2                                           # to its final byte
                    while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                        j += 1
                    i = j
            i += 1

    def typed_blind(self, data: bytes) -> None:
        """The user typed ``data`` with no screen to guess on (``reliable`` before a
        repaint): only counted, so later echo acknowledgements line up. Nothing else
        is done for it: a keystroke's path is the latency the user feels."""
        self._sent += len(data)
        self.reset()

    def truth(self, truth: ScreenState, echo_ack: int, flags: int, now: float) -> None:
        """A new server state, which accounts for ``echo_ack`` keystroke bytes."""
        self._echo_ack = max(self._echo_ack, echo_ack)
        self._flags = flags
        if flags & ICANON and not flags & ECHO:
            self.reset()                       # a password prompt came up: drop everything
            return
        if self.pending and (truth.cols, truth.rows) != (self._cols, self._rows):
            self.reset()                       # resized: every position is off
            return
        for prediction in [p for p in self._cells if p.keystroke <= self._echo_ack]:
            if prediction not in self._cells:
                continue                       # gone with its epoch meanwhile
            if not (0 <= prediction.row < truth.rows and 0 <= prediction.col < truth.cols):
                self._judge(prediction, False)
                continue
            actual = truth.lines[prediction.row][prediction.col]
            self._judge(prediction, actual.data == prediction.cell.data)
        cursor = self._cursor
        if cursor is not None and cursor.keystroke <= self._echo_ack:
            right = (truth.cursor_y, min(truth.cursor_x, truth.cols - 1)) == (cursor.row, cursor.col)
            if right and flags == ECHO | ICANON and cursor.epoch > self._confirmed_epoch:
                # The kernel echoes (a program like cat now reads the line): a cursor where
                # we said is proof enough for its epoch; the next keys show at once. (Not in
                # raw mode: Enter in vim's normal mode lands there too, then 'dd' is no text.)
                self._confirmed_epoch = cursor.epoch
            if right or cursor.epoch > self._confirmed_epoch:
                self._cursor = None            # confirmed, or a tentative guess dropped quietly
            else:
                self._glitch()
        if not self._cells and self._cursor is None:
            self._unconfirmed_since = None

    # --- output -------------------------------------------------------------------
    def display(self, truth: ScreenState, now: float) -> ScreenState:
        """``truth`` with the predictions that are due to be seen laid over it."""
        if not self._visible(now):
            return truth
        underline = self._underline()
        shown = [p for p in self._cells if p.epoch <= self._confirmed_epoch
                 and p.row < truth.rows and p.col < truth.cols]
        cursor = self._cursor if self._cursor and self._cursor.epoch <= self._confirmed_epoch else None
        if not shown and cursor is None:
            return truth
        lines = list(truth.lines)
        rows: dict[int, list] = {}
        for p in shown:
            row = rows.setdefault(p.row, list(lines[p.row]))
            row[p.col] = p.cell._replace(underscore=True) if underline else p.cell
        for y, row in rows.items():
            lines[y] = tuple(row)
        if cursor is not None and cursor.row < truth.rows and cursor.col <= truth.cols:
            return replace(truth, lines=tuple(lines), cursor_x=cursor.col, cursor_y=cursor.row)
        return replace(truth, lines=tuple(lines))

    def get_timer(self) -> float | None:
        """When adaptive display should look again (a keystroke becoming slow); once
        only for the same guesses: a look that could not draw them (the screen was
        mid-update) must not leave a deadline in the past, which would spin the loop.
        The next drawing shows them (``display`` asks the clock)."""
        if self.policy is Policy.ADAPTIVE and not self._showing and self._unconfirmed_since is not None \
                and self._looked_for != self._unconfirmed_since:
            return self._unconfirmed_since + SLOW_CONFIRMATION
        return None

    def handle_timer(self, now: float) -> None:
        since = self._unconfirmed_since
        if since is not None and now >= since + SLOW_CONFIRMATION:
            self._looked_for = since

    @property
    def visible(self) -> bool:
        """Some guess is (or would be) on screen: its truth must be judged promptly."""
        epoch = self._confirmed_epoch
        return any(p.epoch <= epoch for p in self._cells) or (
            self._cursor is not None and self._cursor.epoch <= epoch)

    @property
    def pending(self) -> int:
        return len(self._cells) + (self._cursor is not None)

    # --- the predictions ---------------------------------------------------------
    def _visible(self, now: float) -> bool:
        if self.policy is Policy.NEVER:
            return False
        if self._showing:
            return True
        return self._unconfirmed_since is not None and now - self._unconfirmed_since >= SLOW_CONFIRMATION

    def _underline(self) -> bool:
        if self.policy is Policy.ALWAYS:
            return True
        return self.srtt > UNDERLINE_ABOVE or self._glitch_credit > 0

    def _position(self, truth: ScreenState) -> tuple[int, int]:
        """Where the cursor will be once everything predicted so far has been echoed."""
        self._cols, self._rows = truth.cols, truth.rows
        if self._cursor is not None:
            return self._cursor.row, self._cursor.col
        return truth.cursor_y, min(truth.cursor_x, truth.cols)

    def _row(self, truth: ScreenState, row: int) -> list[Cell]:
        """The row as predicted so far: the truth with our cells over it."""
        cells = list(truth.lines[row])
        for p in self._cells:
            if p.row == row and p.col < len(cells):
                cells[p.col] = p.cell
        return cells

    def _printable(self, char: str, truth: ScreenState, keystroke: int, now: float) -> None:
        row, col = self._position(truth)
        if col >= truth.cols:                  # a wrap was pending: on to the next row, if any
            if row + 1 >= truth.rows:
                self._new_epoch(truth, keystroke, now)   # a scroll: the program's call
                return
            self._new_epoch(truth, keystroke, now)
            row, col = row + 1, 0
        cells = self._row(truth, row)
        new = [(col, Cell(char, *truth.pen[1:]))]
        # Inserted: the rest of the row, up to its last non-blank cell, moves right.
        end = max((x for x in range(col, truth.cols) if cells[x].data not in (" ", "")), default=col - 1)
        for x in range(col, min(end + 1, truth.cols - 1)):
            new.append((x + 1, cells[x]))
        for x, cell in new:
            self._put(row, x, cell, keystroke, now)
        self._move(row, col + 1, keystroke, now)   # at the last column: a wrap pending
        self.stats.predicted += 1
        if self._epoch <= self._confirmed_epoch:
            self.stats.shown += 1

    def _backspace(self, truth: ScreenState, keystroke: int, now: float) -> None:
        row, col = self._position(truth)
        if col == 0:
            self._new_epoch(truth, keystroke, now)
            return
        cells = self._row(truth, row)
        end = max((x for x in range(col, truth.cols) if cells[x].data not in (" ", "")), default=col - 1)
        blank = Cell(" ", *truth.pen[1:]) if truth.pen.bg != "default" else Cell(" ")
        for x in range(col - 1, end + 1):
            self._put(row, x, cells[x + 1] if x + 1 <= end and x + 1 < truth.cols else blank, keystroke, now)
        self._move(row, col - 1, keystroke, now)

    def _arrow(self, right: bool, truth: ScreenState, keystroke: int, now: float) -> None:
        row, col = self._position(truth)
        target = col + 1 if right else col - 1
        if not 0 <= target < truth.cols:
            self._new_epoch(truth, keystroke, now)
            return
        self._move(row, target, keystroke, now)

    def _new_epoch(self, truth: ScreenState, keystroke: int, now: float, line_end: bool = False) -> None:
        """Something we cannot predict: what follows is tentative until confirmed. Unless
        the terminal itself echoes (ECHO and ICANON: the kernel's line discipline, as
        under ``cat``), whose echo of a key is never in doubt: then it is shown at once."""
        self._epoch += 1
        tentative = any(p.epoch > self._confirmed_epoch for p in self._cells)
        if self._flags == ECHO | ICANON and not tentative:   # (confirming it would show those)
            self._confirmed_epoch = self._epoch
        row, _ = self._position(truth)
        if line_end and row + 1 < truth.rows:
            self._move(row + 1, 0, keystroke, now)   # Enter: most likely the next line
        else:
            self._cursor = None if self._cursor is None else replace(self._cursor, epoch=self._epoch,
                                                                     keystroke=keystroke)

    def _put(self, row: int, col: int, cell: Cell, keystroke: int, now: float) -> None:
        self._cells = [p for p in self._cells if (p.row, p.col) != (row, col)]
        self._cells.append(_Cell(row, col, cell, self._epoch, keystroke, now))

    def _move(self, row: int, col: int, keystroke: int, now: float) -> None:
        self._cursor = _Cursor(row, col, self._epoch, keystroke, now)

    def _judge(self, prediction: _Cell, right: bool) -> None:
        if right:
            self._cells.remove(prediction)
            self.stats.confirmed += 1
            if self._glitch_credit:
                self._glitch_credit -= 1
            if prediction.epoch > self._confirmed_epoch:
                self._confirmed_epoch = prediction.epoch    # its epoch is shown from now on
            return
        if prediction.epoch > self._confirmed_epoch:         # never shown: drop its epoch on
            self.stats.wrong += 1
            self._cells = [p for p in self._cells if p.epoch < prediction.epoch]
            if self._cursor is not None and self._cursor.epoch >= prediction.epoch:
                self._cursor = None
            return
        self._glitch()

    def _glitch(self) -> None:
        self.stats.glitches += 1
        self._glitch_credit = GLITCH_MEMORY
        self.reset()
