"""pyte's Screen with the gaps a real shell hits filled in.

pyte is in maintenance mode, so its shortcomings are fixed here, in one
subclass, rather than worked around everywhere:

* alternate screen (1049, 1047, 47) with xterm's save/restore semantics, so
  vim, less and htop leave the main screen as it was;
* SGR parsed completely, colon forms included (``38:2::r:g:b``), with 256-colour
  indexes kept as indexes (``"i196"``) rather than flattened to RGB, and with the
  attributes pyte's ``Char`` has no field for (dim, concealed) kept in ``Cell``;
* zero-width characters (ZWJ, variation selectors) join the previous cell
  instead of silently dropping the rest of the text run; unprintable
  characters are skipped one at a time; a wide character that does not fit the
  last column wraps first, as xterm and tmux do;
* erasing as xterm and tmux do (BCE): what an erase leaves, what scrolls or is
  inserted in and what ICH and DCH open up takes the pen's background and
  nothing else, and ED erases whole rows, not only the cells they hold;
* scroll regions as xterm and tmux keep them: the cursor outside the region
  moves freely (pyte pulls it in), IL/DL/ICH/DCH lose nothing, resetting the
  region homes the cursor;
* the last column as xterm and tmux keep it: a wrap left pending survives a
  tab and is cancelled by a move up or down, and without autowrap the cursor
  sticks on the last column;
* cursor-position, status and device-attribute queries answered into
  ``replies`` (the caller writes them to the PTY), so programs that ask do not
  hang;
* the modes a client must mirror (application cursor keys and keypad,
  bracketed paste, mouse reporting, focus events, cursor style) are tracked,
  and so is the bell.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from itertools import compress, repeat
from operator import is_not
from typing import Any

import pyte
from pyte import charsets as cs
from pyte import modes as mo
from wcwidth import wcwidth

from moshpit.terminal.cells import (BLANK, BLANK_REVERSE as _BLANK_REVERSE, NAMED_COLOURS, Cell, Row,  # noqa: F401
                                    TerminalString, erasable, extent, pen_after_sgr)

ALT_SCREEN_MODES = (1049, 1047, 47)
MIRRORED_PRIVATE_MODES = (1, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004)



def _private(mode: int) -> int:
    return mode << 5


# The cost meter (``TermScreen.work``) counts in units of about half a microsecond
# here: what parsing one character costs, or making one uniform row. Cells set in
# one C-level dict update and rows moved in one scroll are cheaper, this many a unit.
CELLS_PER_UNIT = 6
ROWS_MOVED_PER_UNIT = 4


def _uniform_row(cell: Cell) -> Row:
    """A row every cell of which is ``cell``, made in O(1): the cells are the row's
    default, none stored. Filling or erasing a whole row then costs the same at 1000
    columns as at 80 (a flood of full-screen erases must not cost cells x repeats)."""
    return Row(cell)


def _without_none(keys, values):
    """``(key, value)`` pairs for the values that are not None, built in C."""
    return compress(zip(keys, values, strict=True), map(is_not, values, repeat(None)))


class TermScreen(pyte.Screen):
    """A pyte Screen that behaves like the terminals moshpit's users run."""

    MAX_REPLIES = 64
    # pyte's state, as this class uses it (pyte is taken as untyped: see pyproject.toml)
    lines: int
    columns: int
    cursor: Any
    margins: Any
    buffer: Any
    savepoints: list
    mode: set

    def __init__(self, columns: int, lines: int):
        self.work = 0           # a cost meter (see CELLS_PER_UNIT)
        self.replies: list[str] = []
        self.malformed = 0
        self._last_char = ""
        self._cells: dict = {}                # pen -> {char: Cell}: plain text reuses its cells
        self.bell_count = 0
        self.cursor_style = 0
        self.app_keypad = False
        self.alt_screen = False
        self._inactive_buffer: Any = None
        # Rows that scroll off the top of the main screen, for the scrollback of a client
        # that is sent screen states (None: not kept). Each is the row as it left: a
        # buffer row (a dict of cells, no longer in the buffer) or None for a blank one.
        self.scrolled: list | None = None
        self.scrolled_count = 0         # rows scrolled off so far, kept or not
        self.scrolled_unseen = 0        # the next this many are blanks standing in for rows
                                        # the fast path has already kept (see TerminalModel._skip)
        super().__init__(columns, lines)
        self.buffer = self._new_buffer()          # of Rows, which know how far they are written

    # --- lifecycle ------------------------------------------------------------
    @property
    def default_char(self) -> Cell:
        """A blank cell (pyte builds a ``Char``, which would drop our attributes)."""
        return _BLANK_REVERSE if mo.DECSCNM in self.mode else BLANK

    def _new_buffer(self):
        return defaultdict(lambda: Row(self.default_char))

    def reset(self) -> None:
        super().reset()
        self.cursor.attrs = self.default_char     # pyte's Cursor starts with a Char
        self.cursor_style = 0
        self.app_keypad = False
        self.alt_screen = False
        self._inactive_buffer = None
        self.savepoints = []

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Resize as xterm does: a shorter screen loses blank rows below the cursor
        first and only then rows from the top (pyte always cuts the top)."""
        lines = lines or self.lines
        columns = columns or self.columns
        if lines < self.lines:
            from_top = self._shrink(self.buffer, self.lines, lines, self.cursor.y)
            if self._inactive_buffer is not None:
                self._shrink(self._inactive_buffer, self.lines, lines, 0)
            self.cursor.y = max(0, self.cursor.y - from_top)
            self.lines = lines
        if self._inactive_buffer is not None:
            for row in self._inactive_buffer.values():
                for x in [x for x in row if x >= columns]:
                    del row[x]
        if columns > self.columns:             # new columns come in blank, not in a row's fill
            for buffer in (self.buffer, self._inactive_buffer or {}):
                for row in buffer.values():
                    self._materialize(row)
        old_columns = self.columns
        super().resize(lines, columns)
        if columns < old_columns:              # what was written past the edge is gone
            for buffer in (self.buffer, self._inactive_buffer or {}):
                for row in buffer.values():
                    row.written = min(row.written, columns)
        self.cursor.x = min(self.cursor.x, self.columns)
        if columns != old_columns:
            self.tabstops = set(range(8, self.columns, 8))   # stale stops would point off screen
        self._ensure_origin_margins()

    @staticmethod
    def _shrink(buffer, old_lines: int, new_lines: int, keep_below: int) -> int:
        """Lose ``old_lines - new_lines`` rows: blank ones at the bottom (below row
        ``keep_below``) first, then from the top. Returns how many went from the top."""
        surplus = old_lines - new_lines
        bottom = 0
        for y in range(old_lines - 1, keep_below, -1):
            row = buffer.get(y)
            if bottom == surplus or (row is not None and (
                    row.default.data.strip() or any(cell.data.strip() for cell in row.values()))):
                break
            bottom += 1
        for y in range(old_lines - bottom, old_lines):
            buffer.pop(y, None)
        top = surplus - bottom
        if top:
            rows = {y - top: row for y, row in buffer.items() if top <= y < old_lines - bottom}
            buffer.clear()
            buffer.update(rows)
        return top

    def _ensure_origin_margins(self) -> None:
        # pyte asserts margins exist whenever origin mode is on; keep that true.
        if mo.DECOM in self.mode and self.margins is None:
            self.margins = pyte.screens.Margins(0, self.lines - 1)

    def set_margins(self, top=None, bottom=None) -> None:
        super().set_margins(top, bottom)
        self._ensure_origin_margins()

    def set_scroll_region(self, top=None, bottom=None, *args) -> None:
        """DECSTBM. Resetting the region homes the cursor as setting one does, and a
        missing bottom is the screen's (xterm, tmux); pyte's ``set_margins``, which
        its resize also calls, does neither."""
        if not top and bottom is None:
            self.set_margins()
            self.cursor_position()
        else:
            self.set_margins(top, self.lines if bottom is None else bottom)

    # --- modes ----------------------------------------------------------------
    # ANSI (not DEC private) modes a terminal acts on: insert and newline mode. pyte keeps
    # private modes shifted into the same set, so ``CSI 96 h`` (ANSI mode 96) would be
    # taken for DECCOLM (3 << 5) and resize the screen, ``CSI 224 l`` for autowrap off.
    ANSI_MODES = frozenset({mo.IRM, mo.LNM})

    def set_mode(self, *modes: int, **kwargs) -> None:
        if not kwargs.get("private"):
            modes = tuple(m for m in modes if m in self.ANSI_MODES)
        if kwargs.get("private"):
            for mode in modes:
                if mode in ALT_SCREEN_MODES:
                    self._enter_alt_screen(mode)
                elif mode == 1048:
                    self.save_cursor()
        if kwargs.get("private"):
            modes = tuple(m for m in modes if m != 3)   # DECCOLM: the window decides the width
        shifted = [m << 5 for m in modes] if kwargs.get("private") else list(modes)
        if mo.DECOM in shifted and self.margins is None:
            self.margins = pyte.screens.Margins(0, self.lines - 1)   # pyte asserts on None
        super().set_mode(*[m for m in modes if not (kwargs.get("private") and m in ALT_SCREEN_MODES)],
                         **kwargs)

    def reset_mode(self, *modes: int, **kwargs) -> None:
        if not kwargs.get("private"):
            modes = tuple(m for m in modes if m in self.ANSI_MODES)
        if kwargs.get("private"):
            modes = tuple(m for m in modes if m != 3)
            for mode in modes:
                if mode in ALT_SCREEN_MODES:
                    self._leave_alt_screen(mode)
                elif mode == 1048:
                    self.restore_cursor()
        super().reset_mode(*[m for m in modes if not (kwargs.get("private") and m in ALT_SCREEN_MODES)],
                           **kwargs)

    def _swap_buffers(self) -> None:
        hidden = self._inactive_buffer if self._inactive_buffer is not None else self._new_buffer()
        self._inactive_buffer = self.buffer
        self.buffer = hidden
        self.dirty.update(range(self.lines))

    def _enter_alt_screen(self, mode: int) -> None:
        if self.alt_screen:
            return
        if mode == 1049:
            self.save_cursor()
        self._swap_buffers()
        if mode == 1049:
            self.buffer.clear()
        self.alt_screen = True

    def _leave_alt_screen(self, mode: int) -> None:
        if not self.alt_screen:
            return
        if mode in (1049, 1047):
            self.buffer.clear()
        self._swap_buffers()
        self.alt_screen = False
        if mode == 1049:
            self.restore_cursor()

    def private_mode(self, mode: int) -> bool:
        return _private(mode) in self.mode

    @property
    def mirrored_modes(self) -> frozenset:
        found = {m for m in MIRRORED_PRIVATE_MODES if _private(m) in self.mode}
        if self.alt_screen:
            found.add(1049)
        return frozenset(found)

    def set_keypad_application(self) -> None:
        self.app_keypad = True

    def set_keypad_numeric(self) -> None:
        self.app_keypad = False

    def set_cursor_style(self, style: int = 0) -> None:
        if 0 <= style <= 6:
            self.cursor_style = style

    # --- moving and scrolling ---------------------------------------------------
    # pyte clamps vertical moves to the scroll region wherever the cursor is, so a
    # line feed below the region (a status line) jumps into it; xterm and tmux
    # stop at the region's edge only from inside (or, going down, from above) it.
    # A cursor waiting to wrap stays on the last column when it moves up or down.
    def cursor_up(self, count=None) -> None:
        top = self.margins.top if self.margins is not None else 0
        limit = top if self.cursor.y >= top else 0
        self.cursor.y = max(self.cursor.y - (count or 1), limit)
        self.cursor.x = min(self.cursor.x, self.columns - 1)

    def cursor_down(self, count=None) -> None:
        bottom = self.margins.bottom if self.margins is not None else self.lines - 1
        limit = bottom if self.cursor.y <= bottom else self.lines - 1
        self.cursor.y = min(self.cursor.y + (count or 1), limit)
        self.cursor.x = min(self.cursor.x, self.columns - 1)

    def index(self) -> None:
        """IND/LF: scroll at the bottom margin, the new line in the pen's background;
        elsewhere one line down, to the screen's bottom (a pending wrap stays)."""
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            self._shift_rows(top, bottom, 1, up=True, save=True)
            if self.cursor.attrs.bg != "default":
                self.erase_rows((bottom,))
        elif self.cursor.y < self.lines - 1:
            self.cursor.y += 1

    def reverse_index(self) -> None:
        """RI: the mirror of ``index``."""
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == top:
            self._shift_rows(top, bottom, 1, up=False)
            if self.cursor.attrs.bg != "default":
                self.erase_rows((top,))
        elif self.cursor.y > 0:
            self.cursor.y -= 1

    def _wrap(self) -> None:
        """Autowrap to the next line. A line this scrolls in stays blank: tmux erases
        with the pen's background only on an explicit line feed."""
        self.cursor.x = 0
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            self._shift_rows(top, bottom, 1, up=True, save=True)
        elif self.cursor.y < self.lines - 1:
            self.cursor.y += 1

    def scroll_up(self, count: int = 1, *args, **kwargs) -> None:
        """SU: scroll the region up, the cursor staying where it is."""
        self._scroll(max(count, 1), up=True, save=True)

    def scroll_down(self, count: int = 1, *args, **kwargs) -> None:
        """SD: scroll the region down, the cursor staying where it is."""
        self._scroll(max(count, 1), up=False)

    def _scroll(self, count: int, up: bool, top: int | None = None, save: bool = False) -> None:
        """Scroll the region (from row ``top`` down, if given) by ``count`` rows; the
        rows that come in are erased in the pen's background."""
        region_top, bottom = self.margins or (0, self.lines - 1)
        top = region_top if top is None else top
        count = min(count, bottom - top + 1)
        if count <= bottom - top:                 # else every row goes: nothing to move
            self._shift_rows(top, bottom, count, up, save)
        self.erase_rows(range(bottom - count + 1, bottom + 1) if up else range(top, top + count))

    def _shift_rows(self, top: int, bottom: int, count: int, up: bool, save: bool = False) -> None:
        """Move rows ``top..bottom`` up (or down) by ``count``; the rows that come in are
        blank. Done with C-level dict operations: pyte moves one row at a time. ``save``:
        a scroll a terminal keeps in its scrollback, if it moves the main screen's top row."""
        buffer, ys = self.buffer, range(top, bottom + 1)
        self.work += 1 + len(ys) // ROWS_MOVED_PER_UNIT
        rows = list(map(buffer.pop, ys, repeat(None)))
        if save and up and top == 0 and not self.alt_screen:
            self._save_rows(rows[:count])
        rows = rows[count:] + [None] * count if up else [None] * count + rows[:-count]
        buffer.update(_without_none(ys, rows))
        self.dirty.update(ys)

    def set_clipboard(self, value: str) -> None:
        """OSC 52 (``selection;data``): a program writes (or asks to read) the clipboard.
        Kept in order with the rows that scroll off, for a client sent screen states; its
        own filter decides what reaches the user's terminal (a write within its limit)."""
        if self.scrolled is not None:
            self.scrolled.append(TerminalString(f"\x1b]52;{value}\x07"))

    def _save_rows(self, rows: list) -> None:
        self.scrolled_count += len(rows)
        if self.scrolled is None:
            return
        skip = min(self.scrolled_unseen, len(rows))
        self.scrolled_unseen -= skip
        self.scrolled.extend(rows[skip:])

    # IL and DL scroll the part of the region from the cursor down, and keep the
    # column (pyte returns to column 0, and its DL leaves a row in place when the
    # row meant to replace it is blank).
    def insert_lines(self, count=None) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if top <= self.cursor.y <= bottom:
            self._scroll(count or 1, up=False, top=self.cursor.y)

    def delete_lines(self, count=None) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if top <= self.cursor.y <= bottom:
            self._scroll(count or 1, up=True, top=self.cursor.y)

    # ICH and DCH: pyte's shift a cell past the right edge and back again.
    def insert_characters(self, count=None) -> None:
        self._shift_cells(count or 1, right=True)
        self._shifted_written(count or 1, right=True)

    def delete_characters(self, count=None) -> None:
        self._shift_cells(count or 1, right=False)
        self._shifted_written(count or 1, right=False)

    def _shifted_written(self, count: int, right: bool) -> None:
        """What ICH and DCH do to the row's written extent, as tmux has it: cells moved
        count as written where they land (so ICH makes the whole row written, DCH all but
        the cells opened at the end); an erase of the whole row (a DCH of every cell, or
        ICH on a one-column screen) starts it again."""
        x, columns = self.cursor.x, self.columns
        if x >= columns:
            return
        line = self.buffer[self.cursor.y]
        moved = columns - x - min(count, columns - x)
        if moved > 0:
            line.written = columns if right else max(line.written, columns - count)
        elif x == 0 and (columns == 1 or not right):
            line.written = 0

    def _shift_cells(self, count: int, right: bool) -> None:
        """Shift the cells from the cursor to the right edge by ``count``; the cells
        opened up are erased in the pen's background."""
        x, columns = self.cursor.x, self.columns
        if x >= columns:
            return
        count = min(count, columns - x)
        line = self.buffer[self.cursor.y]
        self._materialize(line)
        xs = range(x, columns)
        self.work += 1 + 2 * len(xs) // CELLS_PER_UNIT          # a pop and an update a cell
        cells = list(map(line.pop, xs, repeat(None)))             # None: never written
        cells = [None] * count + cells[:-count] if right else cells[count:] + [None] * count
        line.update(_without_none(xs, cells))
        self.dirty.add(self.cursor.y)
        start = x if right else columns - count
        self._erase_cells(start, start + count)

    # --- erasing ----------------------------------------------------------------
    # xterm and tmux fill erased cells with the current background only (BCE),
    # and that includes lines scrolled or inserted in and cells opened by ICH and
    # DCH; pyte copies every attribute (underline, reverse, ...) into erased cells
    # and leaves the rest blank.
    def _blank(self):
        """What an erase leaves in a cell now."""
        bg = self.cursor.attrs.bg
        return self.default_char if bg == "default" else self.default_char._replace(bg=bg)

    def _materialize(self, line) -> None:
        """Store a uniform row's cells and make its default the blank again, before an
        operation that takes cells out of the row (which must leave blanks, not fill)."""
        fill = line.default
        if fill is not BLANK and fill is not _BLANK_REVERSE:
            cells = dict.fromkeys(range(self.columns), fill)
            cells.update(line)
            line.update(cells)
            line.default = self.default_char

    def alignment_display(self) -> None:
        """DECALN: the screen full of E in the default pen, margins reset, cursor home (as
        the DEC manual and tmux). Uniform rows: pyte's cell-by-cell loop took 1.3 s at
        1000x500, and a program may send thousands."""
        fill = self.default_char._replace(data="E")
        self.work += self.lines
        for y in range(self.lines):
            self.buffer[y] = row = _uniform_row(fill)
            row.written = self.columns
        self.dirty.update(range(self.lines))
        self.margins = None
        self.cursor.x = self.cursor.y = 0

    def erase_rows(self, rows) -> None:
        """Blank whole rows, in the pen's background."""
        blank = self._blank()
        self.dirty.update(rows)
        self.work += len(rows)
        if blank is self.default_char:
            for y in rows:
                self.buffer.pop(y, None)
            return
        for y in rows:
            self.buffer[y] = _uniform_row(blank)

    def _erase_cells(self, start: int, end: int) -> None:
        if start < end and self.cursor.attrs.bg != "default":
            self.buffer[self.cursor.y].update(dict.fromkeys(range(start, end), self._blank()))

    def _erase_span(self, start: int, end: int) -> None:
        """Erase cells ``start..end-1`` of the cursor's row, every one of them explicitly
        (an erase with the default pen over a uniform row must still blank its cells)."""
        y = self.cursor.y
        self.dirty.add(y)
        start, end = max(start, 0), min(end, self.columns)
        self.work += 1 + max(end - start, 0) // CELLS_PER_UNIT
        blank = self._blank()
        if start == 0 and end == self.columns:
            self.buffer[y] = _uniform_row(blank)
        elif start < end:
            self.buffer[y].update(dict.fromkeys(range(start, end), blank))

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        x = self.cursor.x
        if how == 0:
            self._erase_span(x, self.columns)
        elif how == 1:
            self._erase_span(0, x + 1)
        elif how == 2:
            self._erase_span(0, self.columns)

    def erase_in_display(self, how: int = 0, *args, **kwargs) -> None:
        """ED: whole rows are erased (pyte recolours only the cells a row holds)."""
        y = self.cursor.y
        if how == 0:
            self.erase_rows(range(y + 1, self.lines))
            self.erase_in_line(0)
        elif how == 1:
            self.erase_rows(range(y))
            self.erase_in_line(1)
        elif how == 2:
            self.erase_rows(range(self.lines))     # 3 erases scrollback only: none here

    def erase_characters(self, count=None) -> None:
        x = self.cursor.x
        self._erase_span(x, x + (count or 1))

    def bell(self, *args) -> None:
        self.bell_count += 1

    # --- replies ----------------------------------------------------------------
    def write_process_input(self, data: str) -> None:
        if len(self.replies) < self.MAX_REPLIES:    # a flood of queries earns no flood of memory
            self.replies.append(data)

    # --- cursor saving: one slot, as in xterm (pyte keeps an unbounded stack) ---
    def save_cursor(self) -> None:
        super().save_cursor()
        del self.savepoints[:-1]

    def restore_cursor(self) -> None:
        saved = list(self.savepoints)
        super().restore_cursor()
        self.savepoints = saved                     # DECRC can restore the same point twice
        self.cursor = copy.copy(self.cursor)        # ...so do not move the saved one around
        if not saved:                               # nothing saved: the power-on pen (xterm, tmux)
            self.cursor.attrs = self.default_char
            self.charset, self.g0_charset, self.g1_charset = 0, cs.LAT1_MAP, cs.VT100_MAP

    def save_cursor_sco(self, *args, **kwargs) -> None:
        if not kwargs.get("private"):
            self.save_cursor()

    def next_line(self) -> None:
        self.carriage_return()
        self.index()

    def repeat_last(self, count: int = 1, *args, **kwargs) -> None:
        """REP, as tmux has it: to the end of the line at most, never wrapping. A narrow
        character's run is placed in one dict update: ``x ESC[9999b`` drew up to a
        screenful cell by cell, 1.2 ms a time at 1000x500."""
        char = self._last_char
        count = min(max(count, 1), self.columns - self.cursor.x)
        if not char or count <= 0:
            return
        if wcwidth(char) != 1:
            self.draw(char * count)
            return
        cell = self.cursor.attrs._replace(data=char)
        x = self.cursor.x
        self.work += 1 + count // CELLS_PER_UNIT
        line = self.buffer[self.cursor.y]
        if mo.IRM in self.mode:
            self._shift_cells(count, right=True)
            if x < self.columns - 1:            # tmux inserts a cell a character
                line.written = self.columns
        line.update(dict.fromkeys(range(x, x + count), cell))
        line.written = max(line.written, x + count)
        # Without autowrap the cursor sticks on the last column (see _draw_chars).
        self.cursor.x = x + count if mo.DECAWM in self.mode else min(x + count, self.columns - 1)
        self.dirty.add(self.cursor.y)

    def tab(self) -> None:
        """HT. From the last column, or a wrap pending past it, it goes nowhere (tmux);
        pyte steps back onto the last column, cancelling the wrap."""
        if self.cursor.x < self.columns - 1:
            super().tab()

    def back_tab(self, count: int = 1, *args, **kwargs) -> None:
        """CBT: back ``count`` stops, or to column 0 (one pass: ``ESC[9999Z`` looped 9999
        times over every stop, 21 ms each at 1000 columns)."""
        stops = sorted(s for s in self.tabstops if s < self.cursor.x)
        count = max(count, 1)
        self.cursor.x = stops[-count] if count <= len(stops) else 0

    def report_secondary_attributes(self) -> None:
        self.write_process_input("\x1b[>1;10;0c")

    # --- text -----------------------------------------------------------------
    def draw(self, data: str) -> None:
        data = data.translate(self.g1_charset if self.charset else self.g0_charset)
        if mo.DECAWM in self.mode and data.isascii() and data.isprintable():
            self._draw_plain(data)
        else:
            self._draw_chars(data)

    def _draw_chars(self, data: str) -> None:
        """``draw`` one character at a time: widths, combining marks, insert mode, no wrap."""
        cursor = self.cursor
        columns = self.columns
        autowrap = mo.DECAWM in self.mode
        insert = mo.IRM in self.mode
        # Without autowrap the cursor sticks on the last column (xterm, tmux): there
        # is no pending wrap, so BS and CUB count from that column.
        right = columns if autowrap else columns - 1
        for char in data:
            width = wcwidth(char)
            if width < 0:
                continue                       # unprintable: skip it, keep the rest
            if width == 0:
                self._combine(char)
                continue
            if cursor.x == columns or (width == 2 and cursor.x == columns - 1):
                if autowrap:
                    self.dirty.add(cursor.y)
                    self._wrap()
                else:
                    cursor.x = columns - width
            if insert:
                self.insert_characters(width)
            line = self.buffer[cursor.y]
            line[cursor.x] = cursor.attrs._replace(data=char)
            self._last_char = char
            if width == 2 and cursor.x + 1 < columns:
                line[cursor.x + 1] = cursor.attrs._replace(data="")
            if line.written < cursor.x + width:
                line.written = min(cursor.x + width, columns)
            cursor.x = min(cursor.x + width, right)
        self.dirty.add(cursor.y)

    def _draw_plain(self, data: str) -> None:
        """``draw`` for printable ASCII with autowrap on: every character is one
        cell wide, so whole runs are placed without measuring each character, and
        cells are shared (a Cell is immutable) instead of built one by one. In insert
        mode each row's run opens its room with one shift, not one per character."""
        cursor, columns, attrs = self.cursor, self.columns, self.cursor.attrs
        insert = mo.IRM in self.mode
        cells = self._cells.get(attrs)
        if cells is None:
            if len(self._cells) > 64:
                self._cells.clear()
            cells = self._cells[attrs] = {}
        start, end = 0, len(data)
        while start < end:
            if cursor.x >= columns:
                self.dirty.add(cursor.y)
                self._wrap()
            line = self.buffer[cursor.y]
            x = cursor.x
            run = data[start:start + columns - x]
            if insert:
                self._shift_cells(len(run), right=True)
                if x < columns - 1:             # tmux inserts a cell a character
                    line.written = columns
            for char in run:
                cell = cells.get(char)
                if cell is None:
                    cell = cells[char] = attrs._replace(data=char)
                line[x] = cell
                x += 1
            cursor.x = x
            if line.written < x:
                line.written = x
            start += len(run)
        if data:
            self._last_char = data[-1]
        self.dirty.add(cursor.y)

    def _combine(self, char: str) -> None:
        """Attach a zero-width character to the cell before the cursor."""
        x, y = self.cursor.x, self.cursor.y
        if not x:
            return                              # nothing before it on this line: tmux drops it
        line = self.buffer[y]
        x = min(x, self.columns) - 1
        if not line[x].data and x:              # the stub of a wide character
            x -= 1
        if not line[x].data:
            return
        last = line[x]
        if len(last.data) < 32:                 # bound what one cell can hold
            line[x] = last._replace(data=last.data + char)
            self.dirty.add(y)

    # --- rendition ------------------------------------------------------------
    def select_graphic_rendition(self, *attrs: int, **_) -> None:
        self.cursor.attrs = pen_after_sgr(self.cursor.attrs, attrs, self.default_char)

