"""The screen model: bytes in, numbered immutable screen states out. No I/O.

``TerminalModel`` wraps the fixed pyte screen (``TermScreen``) and parser
(``TermStream``) behind a small interface, numbers its visible states, collects
the replies the terminal owes the program, and takes a fast path through long
runs of plain text: lines that would scroll off before a run ends are never
drawn (see ``moshpit.vtscan``), which is where ``cat`` and ``seq`` spend their
bytes. Tests prove the fast path equal to feeding the same bytes to the plain
fixed screen.
"""

from __future__ import annotations

import codecs
import re
from itertools import repeat
from dataclasses import dataclass, field

from pyte import modes as mo

from wcwidth import wcwidth

from moshpit import vtscan
from moshpit.terminal.scrollback import render_row
from moshpit.terminal.screen import BLANK, Cell, TermScreen, erasable, extent
from moshpit.terminal.stream import TermStream

_SGR = re.compile("\x1b\\[[0-9:;]*m")
MAX_COLUMNS = 1000
MAX_ROWS = 500


def clamp_window(cols: int, rows: int) -> tuple[int, int]:
    """A window size the model holds: a client may ask for up to 65535x65535."""
    return max(1, min(cols, MAX_COLUMNS)), max(1, min(rows, MAX_ROWS))


class Line(tuple):
    """A row of a ``ScreenState``: its cells, and ``written``, how far from the left the
    program wrote in the row rather than only erased (``screen.Row.written``, and at
    least up to the last cell no erase can leave). It shows nowhere, but tmux's
    capture-pane (how Mosh's tests compare screens) and its copy mode end a row there,
    so a client must reproduce it too (see ``render``). The rows of a state carry it
    wherever they are moved; a row built from cells alone says nothing (``written`` is
    missing), and a renderer then leaves the terminal's as it is."""

    written: int

    @classmethod
    def of(cls, cells, written: int) -> "Line":
        line = cls(cells)
        line.written = written
        return line


@dataclass(frozen=True, eq=True)
class ScreenState:
    """Everything a client must reproduce, as immutable values; equal states look the same."""

    cols: int
    rows: int
    lines: tuple                 # rows x tuple of Cell (data, fg, bg, flags)
    cursor_x: int
    cursor_y: int
    cursor_visible: bool
    title: str
    modes: frozenset             # mirrored private modes (see TermScreen.mirrored_modes)
    app_keypad: bool
    cursor_style: int
    bell_count: int = field(compare=False)   # a bell is an event, not a look
    pen: Cell                    # current SGR attributes (for a reliable-mode repaint)
    margins: tuple | None        # scroll region (top, bottom), 0-based, or None
    autowrap: bool
    # Per row, how far it is written (``Line.written``), or None for a row that does not
    # say (one built from cells alone). Taken from the rows, so it moves with them.
    written: tuple = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "written", tuple(getattr(line, "written", None) for line in self.lines))

    @classmethod
    def blank(cls, cols: int = 80, rows: int = 24) -> "ScreenState":
        return TerminalModel(cols, rows).state

    def text(self) -> list[str]:
        """The characters on screen, one string per row (wide-character stubs left out)."""
        return ["".join(cell.data for cell in line) for line in self.lines]


# Operations that rewrite every cell and home the cursor (DECALN; home then erase all).
# What lies between two of the same kind, if it is only text, cursor-moving controls and
# SGR, shows nowhere afterwards: the second overwrites its cells and its cursor, and
# only the pen it left matters. So a flood (alternating with text or not) costs one
# operation, not one per repeat: at 1000x500, 15 kB of "ESC # 8 x" took 16 s before.
_OVERWRITTEN = re.compile(r"(\x1b#8|\x1b\[H\x1b\[2J)((?:[^\x00-\x1f\x7f\x1b]|[\r\n\x08\t]"
                          r"|\x1b\[[0-9:;]*m)*?)(?=\1)")
_REPEATED_FULL_SCREEN = re.compile(r"(\x1b\[2J)\1+")     # erase all, again: the same
# Erase all (which leaves the cursor where it is), then only text, SGR and cursor-moving
# controls, then erase all again: the first erase shows nowhere, the text in between
# still moves the cursor. ``ESC[44m ESC[2J x`` a few thousand times took 7 s at 1000x500.
_ERASED_AGAIN = re.compile(r"\x1b\[2J(?=(?:[^\x00-\x1f\x7f\x1b]|[\r\n\x08\t]|\x1b\[[0-9:;]*m)*?\x1b\[2J)")


def _collapse(text: str) -> str:
    if "\x1b#8" in text or "\x1b[2J" in text:
        text = _OVERWRITTEN.sub(lambda m: "".join(_SGR.findall(m.group(2))), text)
        text = _REPEATED_FULL_SCREEN.sub(r"\1", text)
        text = _ERASED_AGAIN.sub("", text)
    return text


FEED_SLICE = 1024        # characters in a budgeted feed's first slice; the meter is read
MIN_SLICE = 256          # after each slice and the next is sized to what is left
MAX_SLICE = 1 << 16


class TerminalModel:
    """A terminal that remembers what it shows. Feed it PTY output; read ``state``."""

    def __init__(self, cols: int = 80, rows: int = 24, *, fast_path: bool = True):
        self._check_size(cols, rows)
        self.screen = TermScreen(cols, rows)
        self.stream = TermStream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.fast_path = fast_path
        self.backlog = ""                     # decoded output a budgeted feed left for later
        self.number = 1
        self.skipped_bytes = 0
        self._rows_cache: list = [None] * rows
        self._state = self._snapshot(all_dirty=True)

    @staticmethod
    def _check_size(cols: int, rows: int) -> None:
        if not (1 <= cols <= MAX_COLUMNS and 1 <= rows <= MAX_ROWS):
            raise ValueError(f"window size {cols}x{rows} out of range")

    # --- input ----------------------------------------------------------------
    def feed(self, data: bytes, budget: int | None = None) -> int:
        """Take PTY output; return the state number afterwards.

        With a ``budget`` (in the screen's cost units: row operations, and characters
        parsed), stop once it is spent and keep the rest in ``backlog`` for the next
        call (``feed(b"", budget)`` goes on): the caller's loop then serves others in
        between, however costly the output. Without one, take everything."""
        text = self.backlog + self._decoder.decode(data)
        self.backlog = ""
        if budget is None:
            self._feed_text(text)
            return self._update()
        meter = self._meter
        start, pos, size = meter(), 0, FEED_SLICE
        while pos < len(text):
            left = budget - (meter() - start)
            if left <= 0:
                self.backlog = text[pos:]
                break
            before = meter()
            run_start, run_end = vtscan.plain_run(text, pos)
            if run_start == pos and run_end - pos > 4 * self.screen.columns:
                piece = text[pos:run_end]       # a long plain run: whole, for the fast path
            else:
                piece = text[pos:pos + size]
            self._feed_text(piece)
            pos += len(piece)
            # Size the next slice by what this one cost a character: plain text runs
            # in big slices (the fast path needs rows of it), costly sequences in small
            # ones. Growth is gradual: output that was cheap can turn costly (a screen
            # that has filled starts to scroll).
            per_char = max((meter() - before) / len(piece), 1 / 64)
            size = int(min(max(left / per_char, MIN_SLICE), 4 * size, MAX_SLICE))
        return self._update()

    def _meter(self) -> int:
        return self.screen.work + self.parsed

    @property
    def at_rest(self) -> bool:
        """Between sequences: no escape sequence or UTF-8 character half fed, nothing
        left to feed. Only here may a client insert its own sequences into the stream."""
        return bool(not self.backlog and self.stream._taking_plain_text
                    and not self._decoder.getstate()[0])

    @property
    def parsed(self) -> int:
        """Characters the parser has taken so far (a fast-path skip takes none)."""
        return self.stream.parsed

    def _feed_text(self, text: str) -> None:
        text = _collapse(text)
        try:
            if self.fast_path and len(text) > 4 * self.screen.columns:
                self._feed_fast(text)
            else:
                self.stream.feed(text)
        except Exception:                     # a pyte bug must not take the session down
            self.screen.malformed += 1
            self.stream._initialize_parser()
            self.stream._taking_plain_text = True

    def _feed_fast(self, text: str) -> None:
        screen = self.screen
        pos, n = 0, len(text)
        while pos < n:
            if not self.stream._taking_plain_text:
                self.stream.feed(text[pos])     # mid-sequence: one character at a time
                pos += 1
                continue
            start, end = vtscan.plain_run(text, pos)
            if start > pos:
                self.stream.feed(text[pos:start])
                pos = start
                continue                        # the parser may now be mid-sequence
            if end - start >= 2 * screen.columns and self._simple_modes():
                start = (self._skip(text, start, end) if screen.scrolled is None or screen.alt_screen
                         else self._skip_keeping(text, start, end))
            if end > start:
                self.stream.feed(text[start:end])
            pos = end

    def _skip(self, text: str, start: int, end: int) -> int:
        """Skip what of the plain run ``text[start:end]`` scrolls off before it ends,
        keeping only what it did to the pen (its SGR sequences); return where
        drawing must begin."""
        screen = self.screen
        cut, x, y = vtscan.skip_point(text, start, end, screen.cursor.x, screen.cursor.y,
                                      screen.columns, screen.lines)
        if cut <= start or x < 0:
            return start
        # The row the cursor stands on at ``cut`` stays on screen. A line feed that
        # scrolled it in filled it with the pen's background; a wrap left it blank.
        line_fed = text[cut - 1] == "\n" and (x > 0 or self._at_line_start(text, start, cut - 1))
        pens = _SGR.findall(text, start, cut)
        for i in range(len(pens) - 1, -1, -1):
            if _resets_pen(pens[i]):
                pens = pens[i:]                  # nothing before a reset matters
                break
        if pens:
            self.stream.feed("".join(pens))
        screen.buffer.clear()
        screen.dirty.update(range(screen.lines))
        screen.cursor.x, screen.cursor.y = x, y
        if line_fed:
            screen.erase_rows((y,))
        self.skipped_bytes += cut - start
        screen.scrolled_count += text.count("\n", start, cut)   # about the rows that went
        return cut

    def _skip_keeping(self, text: str, start: int, end: int) -> int:
        """The fast path when the rows that scroll off are kept (``keep_scrolled``): only
        over the flood it is made for (printable ASCII and CR LF in the default pen), where
        each such row is a slice of the text; anything else is drawn, exactly. First the
        run is drawn up to a line feed that scrolls at the bottom, so that every row from
        there on starts blank; the rows above it scroll off as they are."""
        screen = self.screen
        q = start
        for _ in range(screen.lines + 1):
            q = text.find("\n", q, end) + 1
            if q <= 0:
                return start                     # too short to skip anything
        self.stream.feed(text[start:q])
        if screen.cursor.x or screen.cursor.y != screen.lines - 1 or screen.cursor.attrs[1:] != BLANK[1:]:
            return q
        cut, x, y = vtscan.skip_point(text, q, end, 0, screen.lines - 1, screen.columns, screen.lines)
        segment = text[q:cut]
        crlf = segment.count("\r\n")
        if cut <= q or x < 0 or "\x1b" in segment or segment.count("\r") != crlf \
                or segment.count("\n") != crlf:
            return q
        kept: list = [screen.buffer.get(row) for row in range(screen.lines - 1)]
        pieces = segment.split("\r\n")
        if not pieces[-1]:
            pieces.pop()                         # it ended with a line feed, not a wrap
        cols = screen.columns
        for piece in pieces:
            if not piece:
                kept.append("")
            else:
                kept.extend(piece[i:i + cols].rstrip(" ") for i in range(0, len(piece), cols))
        screen.buffer.clear()
        screen.dirty.update(range(screen.lines))
        screen.cursor.x, screen.cursor.y = x, y
        assert screen.scrolled is not None               # (the fast path keeps rows only when asked)
        screen.scrolled.extend(kept)
        screen.scrolled_count += len(kept)
        screen.scrolled_unseen = screen.lines - 1   # the blank rows now above the cursor
        self.skipped_bytes += cut - q
        return cut

    def keep_scrolled(self, keep: bool) -> None:
        """Keep the rows that scroll off the top of the main screen (for ``take_scrolled``),
        or stop keeping them. The fast path then skips only what it can keep."""
        self.screen.scrolled = [] if keep else None
        self.screen.scrolled_unseen = 0

    def take_scrolled(self) -> list[str]:
        """The rows that scrolled off since the last call, in order, each rendered as a
        line to write on a cleared row (see ``moshpit.terminal.scrollback``), and among
        them the clipboard writes (OSC 52) made meanwhile, as the terminal strings they are."""
        rows = self.screen.scrolled
        if not rows:
            return []
        self.screen.scrolled = []
        cols = self.screen.columns
        out = []
        for row in rows:
            if row is None:
                out.append("")
            elif isinstance(row, str):          # a fast-path row, or a TerminalString
                out.append(row)
            else:
                out.append(render_row(_pair_wide_cells(tuple(map(row.get, range(cols), repeat(row.default))))))
        return out

    def _at_line_start(self, text: str, start: int, i: int) -> bool:
        """Whether the cursor stood in column 0 when the plain run ``text[start:]``
        reached ``i``: only a line feed at column 0 scrolls a line in at the cut with
        x == 0 (a line feed at a pending wrap is followed by a wrap that scrolls)."""
        j = i - 1
        while j >= start:
            c = text[j]
            if c == "\r":
                return True
            if c == "m":
                k = text.rfind("\x1b", start, j)
                if k >= 0 and _SGR.fullmatch(text, k, j + 1):
                    j = k - 1                    # an SGR sequence: no cursor movement
                    continue
            if c != "\n":
                return False                     # a character: the cursor is past column 0
            j -= 1
        return self.screen.cursor.x == 0

    def _simple_modes(self) -> bool:
        """The fast path's cursor arithmetic holds: full-screen scrolling, autowrap,
        no insert, no newline mode, no origin mode, plain charset."""
        s = self.screen
        return (s.margins is None or (s.margins.top == 0 and s.margins.bottom == s.lines - 1)) \
            and mo.DECAWM in s.mode and mo.IRM not in s.mode and mo.LNM not in s.mode \
            and mo.DECOM not in s.mode and not s.charset and s.cursor.y < s.lines \
            and s.cursor.x <= s.columns

    def resize(self, cols: int, rows: int) -> int:
        self._check_size(cols, rows)
        if (cols, rows) != (self.screen.columns, self.screen.lines):
            self.screen.resize(rows, cols)
            self._rows_cache = [None] * rows
            self.screen.dirty.update(range(rows))
        return self._update()

    def take_replies(self) -> bytes:
        """What the terminal must answer the program (cursor position, device attributes)."""
        replies, self.screen.replies = self.screen.replies, []
        return "".join(replies).encode("utf-8")

    # --- state ----------------------------------------------------------------
    @property
    def state(self) -> ScreenState:
        return self._state

    def _update(self) -> int:
        new = self._snapshot()
        if new != self._state or new.bell_count != self._state.bell_count:
            self._state = new
            self.number += 1
        return self.number

    def _snapshot(self, all_dirty: bool = False) -> ScreenState:
        s = self.screen
        cols, rows = s.columns, s.lines
        dirty = range(rows) if all_dirty else s.dirty
        cache = self._rows_cache
        buffer = s.buffer
        for y in dirty:
            if 0 <= y < rows:
                if y in buffer:
                    line = buffer[y]
                    fill = line.default
                    if line:
                        cells = _pair_wide_cells(Line(map(line.get, range(cols), repeat(fill))))
                        if type(cells) is not Line:
                            cells = Line(cells)
                        cells.written = extent(cells, line.written)
                        cache[y] = cells
                    else:                                # a uniform row (blank, or DECALN's E)
                        written = min(line.written, cols) if erasable(fill) else cols
                        cache[y] = Line.of(repeat(fill, cols), written)
                else:
                    fill = s.default_char
                    cache[y] = Line.of(repeat(fill, cols), 0 if erasable(fill) else cols)
        s.dirty.clear()
        margins = None
        if s.margins is not None and (s.margins.top, s.margins.bottom) != (0, rows - 1):
            margins = (s.margins.top, s.margins.bottom)
        return ScreenState(
            cols=cols, rows=rows, lines=tuple(cache),
            cursor_x=min(s.cursor.x, cols), cursor_y=min(s.cursor.y, rows - 1),
            cursor_visible=not s.cursor.hidden, title=s.title[:1024], modes=s.mirrored_modes,
            app_keypad=s.app_keypad, cursor_style=s.cursor_style, bell_count=s.bell_count,
            pen=s.cursor.attrs, margins=margins, autowrap=mo.DECAWM in s.mode)



def _resets_pen(sgr: str) -> bool:
    """Whether an SGR sequence starts with a full reset (``ESC[m``, ``ESC[0;1m``...)."""
    first = sgr[2:-1].split(";", 1)[0]
    return first == "" or first.strip("0") == ""


def _pair_wide_cells(cells: tuple) -> tuple:
    """Make every wide character sit on two cells, as real terminals insist.

    pyte lets a write land on half of a wide character, leaving a wide
    character without its right half or a right half without its character;
    xterm and tmux blank the broken pair instead, and so does the snapshot,
    with a blank of no colour (tmux's).
    """
    text = "".join([c.data for c in cells])
    if len(text) == len(cells) and text.isascii():
        return cells                        # one ASCII character per cell: nothing to pair
    if all(len(c.data) == 1 and c.data < "\u1100" for c in cells):
        return cells                        # no wide characters, no stubs: nothing to pair
    out = list(cells)
    cols = len(out)
    x = 0
    while x < cols:
        data = out[x].data
        if data == "":
            out[x] = BLANK                                # a right half on its own
        elif wcwidth(data[0]) == 2:
            if x + 1 < cols and out[x + 1].data == "":
                x += 2
                continue
            out[x] = BLANK                                # a left half on its own
        x += 1
    return tuple(out)
