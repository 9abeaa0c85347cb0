"""pyte's Screen with the gaps a real shell hits filled in.

pyte is in maintenance mode, so its shortcomings are fixed here, in one
subclass, rather than worked around everywhere:

* alternate screen (1049, 1047, 47) with xterm's save/restore semantics, so
  vim, less and htop leave the main screen as it was;
* SGR parsed completely, colon forms included (``38:2::r:g:b``), with 256-colour
  indexes kept as indexes (``"i196"``) rather than flattened to RGB;
* zero-width characters (ZWJ, variation selectors) join the previous cell
  instead of silently dropping the rest of the text run; unprintable
  characters are skipped one at a time; a wide character that does not fit the
  last column wraps first, as xterm and tmux do;
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

import pyte
from pyte import modes as mo
from pyte.screens import Char, StaticDefaultDict
from wcwidth import wcwidth

ALT_SCREEN_MODES = (1049, 1047, 47)
MIRRORED_PRIVATE_MODES = (1, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004)

NAMED_COLOURS = _NAMED = ["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"]


def _private(mode: int) -> int:
    return mode << 5


class TermScreen(pyte.Screen):
    """A pyte Screen that behaves like the terminals moshpit's users run."""

    MAX_REPLIES = 64

    def __init__(self, columns: int, lines: int):
        self.replies: list[str] = []
        self.malformed = 0
        self._last_char = ""
        self._cells: dict = {}                # pen -> {char: Char}: plain text reuses its cells
        self.bell_count = 0
        self.cursor_style = 0
        self.app_keypad = False
        self.alt_screen = False
        self._inactive_buffer = None
        super().__init__(columns, lines)

    # --- lifecycle ------------------------------------------------------------
    def _new_buffer(self):
        return defaultdict(lambda: StaticDefaultDict[int, Char](self.default_char))

    def reset(self) -> None:
        super().reset()
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
        old_columns = self.columns
        super().resize(lines, columns)
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
            if bottom == surplus or any(cell.data.strip() for cell in buffer.get(y, {}).values()):
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

    # --- modes ----------------------------------------------------------------
    def set_mode(self, *modes: int, **kwargs) -> None:
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

    def scroll_up(self, count: int = 1, *args, **kwargs) -> None:
        """SU: scroll the region up, the cursor staying where it is."""
        self._scroll(max(count, 1), up=True)

    def scroll_down(self, count: int = 1, *args, **kwargs) -> None:
        """SD: scroll the region down, the cursor staying where it is."""
        self._scroll(max(count, 1), up=False)

    def _scroll(self, count: int, up: bool) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        count = min(count, bottom - top + 1)
        rows = [self.buffer[y] if y in self.buffer else None for y in range(top, bottom + 1)]
        rows = rows[count:] + [None] * count if up else [None] * count + rows[:-count]
        for y, row in zip(range(top, bottom + 1), rows):
            if row is None:
                self.buffer.pop(y, None)
            else:
                self.buffer[y] = row
        self.dirty.update(range(top, bottom + 1))

    # Erasing: xterm and tmux fill erased cells with the current background only
    # (BCE); pyte copies every attribute (underline, reverse, ...) into them.
    def _erase_with_background(self, erase, *args, **kwargs) -> None:
        pen = self.cursor.attrs
        self.cursor.attrs = self.default_char._replace(bg=pen.bg)
        try:
            erase(*args, **kwargs)
        finally:
            self.cursor.attrs = pen

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        if how in (0, 1, 2):
            self._erase_with_background(super().erase_in_line, how, private)

    def erase_in_display(self, how: int = 0, *args, **kwargs) -> None:
        if how in (0, 1, 2):                    # 3 erases scrollback only: none here
            self._erase_with_background(super().erase_in_display, how, *args, **kwargs)

    def erase_characters(self, count=None) -> None:
        self._erase_with_background(super().erase_characters, count)

    def insert_lines(self, count=None) -> None:
        x = self.cursor.x                       # xterm and tmux keep the column; pyte returns to 0
        super().insert_lines(count)
        self.cursor.x = x

    def delete_lines(self, count=None) -> None:
        x = self.cursor.x
        super().delete_lines(count)
        self.cursor.x = x

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

    def save_cursor_sco(self, *args, **kwargs) -> None:
        if not kwargs.get("private"):
            self.save_cursor()

    def next_line(self) -> None:
        self.carriage_return()
        self.index()

    def repeat_last(self, count: int = 1, *args, **kwargs) -> None:
        if self._last_char:
            self.draw(self._last_char * min(max(count, 1), self.columns * self.lines))

    def back_tab(self, count: int = 1, *args, **kwargs) -> None:
        for _ in range(max(count, 1)):
            stops = [s for s in self.tabstops if s < self.cursor.x]
            self.cursor.x = max(stops) if stops else 0

    def report_secondary_attributes(self) -> None:
        self.write_process_input("\x1b[>1;10;0c")

    # --- text -----------------------------------------------------------------
    def draw(self, data: str) -> None:
        data = data.translate(self.g1_charset if self.charset else self.g0_charset)
        if mo.DECAWM in self.mode and mo.IRM not in self.mode and data.isascii() and data.isprintable():
            self._draw_plain(data)
        else:
            self._draw_chars(data)

    def _draw_chars(self, data: str) -> None:
        """``draw`` one character at a time: widths, combining marks, insert mode, no wrap."""
        cursor = self.cursor
        columns = self.columns
        autowrap = mo.DECAWM in self.mode
        insert = mo.IRM in self.mode
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
                    self.carriage_return()
                    self.linefeed()
                else:
                    cursor.x = columns - width
            if insert:
                self.insert_characters(width)
            line = self.buffer[cursor.y]
            line[cursor.x] = cursor.attrs._replace(data=char)
            self._last_char = char
            if width == 2 and cursor.x + 1 < columns:
                line[cursor.x + 1] = cursor.attrs._replace(data="")
            cursor.x = min(cursor.x + width, columns)
        self.dirty.add(cursor.y)

    def _draw_plain(self, data: str) -> None:
        """``draw`` for printable ASCII with autowrap on: every character is one
        cell wide, so whole runs are placed without measuring each character, and
        cells are shared (a Char is immutable) instead of built one by one."""
        cursor, columns, attrs = self.cursor, self.columns, self.cursor.attrs
        cells = self._cells.get(attrs)
        if cells is None:
            if len(self._cells) > 64:
                self._cells.clear()
            cells = self._cells[attrs] = {}
        start, end = 0, len(data)
        while start < end:
            if cursor.x >= columns:
                self.dirty.add(cursor.y)
                self.carriage_return()
                self.linefeed()
            line = self.buffer[cursor.y]
            x = cursor.x
            run = data[start:start + columns - x]
            for char in run:
                cell = cells.get(char)
                if cell is None:
                    cell = cells[char] = attrs._replace(data=char)
                line[x] = cell
                x += 1
            cursor.x = x
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
        if not attrs or attrs == (0,):
            self.cursor.attrs = self.default_char
            return
        replace = {}
        params = list(attrs)
        i = 0
        while i < len(params):
            attr = params[i]
            i += 1
            if attr == 0:
                replace.update(self.default_char._asdict())
                replace.pop("data")
            elif attr in _FLAG_ON:
                replace[_FLAG_ON[attr]] = True
            elif attr in (21, 22, 23, 24, 25, 27, 29):
                for name in _FLAG_OFF[attr]:
                    replace[name] = False
            elif 30 <= attr <= 37:
                replace["fg"] = _NAMED[attr - 30]
            elif 40 <= attr <= 47:
                replace["bg"] = _NAMED[attr - 40]
            elif 90 <= attr <= 97:
                replace["fg"] = "bright" + _NAMED[attr - 90]
            elif 100 <= attr <= 107:
                replace["bg"] = "bright" + _NAMED[attr - 100]
            elif attr == 39:
                replace["fg"] = "default"
            elif attr == 49:
                replace["bg"] = "default"
            elif attr in (38, 48):
                key = "fg" if attr == 38 else "bg"
                if i < len(params) and params[i] == 5 and i + 1 < len(params):
                    replace[key] = f"i{min(params[i + 1], 255)}"
                    i += 2
                elif i < len(params) and params[i] == 2 and i + 3 < len(params):
                    r, g, b = (min(v, 255) for v in params[i + 1:i + 4])
                    replace[key] = f"{r:02x}{g:02x}{b:02x}"
                    i += 4
                else:
                    break                       # malformed: ignore the rest, as xterm does
        self.cursor.attrs = self.cursor.attrs._replace(**replace)


_FLAG_ON = {1: "bold", 3: "italics", 4: "underscore", 5: "blink", 6: "blink", 7: "reverse",
            9: "strikethrough"}
_FLAG_OFF = {21: ("bold",), 22: ("bold",), 23: ("italics",), 24: ("underscore",), 25: ("blink",),
             27: ("reverse",), 29: ("strikethrough",)}
