"""Escape sequences that turn one screen state into another, as few bytes as we can.

``render_full(state)`` paints a state onto any terminal; ``render_diff(old, new)``
turns ``old`` into ``new`` on a terminal that shows ``old``. The output is both
what the client writes to its real terminal and the synchronisation format of
``statesync``/``datagram``: the client feeds it to its own ``TerminalModel``,
and ``apply(old, render_diff(old, new)) == new`` holds exactly (tested).

What keeps it small (Mosh's ``Display::new_frame`` is the model): unchanged
rows and cells are skipped, short unchanged gaps are written through rather
than jumped, blank tails become EL, SGR is emitted only on change, and each
cursor move takes the shortest of CUP, CR, CUF/CUB and backspaces.

What a row shows is not all: a terminal also counts how far each row was written
(``model.Line.written``; tmux's capture-pane and copy mode end a row there, and
Mosh's tests compare captures). So the output writes each row as far as the
program did and no further: cells past that are erased into place (EL, ECH, never
written spaces), the last written cell is written even when it is a blank, and a
row written further than it should be is erased whole first (only a whole-row
erase takes that back). A pending wrap is left without writing a row to its end
that the program did not.
"""

from __future__ import annotations

from dataclasses import replace
from operator import itemgetter

from moshpit.terminal.model import ScreenState
from moshpit.terminal.screen import (BLANK, MIRRORED_PRIVATE_MODES, Cell, NAMED_COLOURS as _NAMED,
                                     erasable, extent)

ESC = "\x1b"
CSI = ESC + "["
_NAMED_INDEX = {name: i for i, name in enumerate(_NAMED)}
_DEFAULT_PEN = BLANK
_FLAG_CODES = (("bold", "1"), ("dim", "2"), ("italics", "3"), ("underscore", "4"), ("blink", "5"),
               ("reverse", "7"), ("concealed", "8"), ("strikethrough", "9"))
_DATA = itemgetter(0)       # a cell's character(s)
_WRITE_THROUGH = 4          # unchanged cells shorter than this are rewritten, not jumped


def _colour(value: str, base: int) -> list[str]:
    """SGR parameters for a colour; ``base`` 30 for foreground, 40 for background."""
    if value == "default":
        return []
    if value in _NAMED_INDEX:
        return [str(base + _NAMED_INDEX[value])]
    if value.startswith("bright") and value[6:] in _NAMED_INDEX:
        return [str(base + 60 + _NAMED_INDEX[value[6:]])]
    if value.startswith("i"):
        return [str(base + 8), "5", value[1:]]
    if len(value) == 6:
        return [str(base + 8), "2", str(int(value[0:2], 16)), str(int(value[2:4], 16)),
                str(int(value[4:6], 16))]
    return []


def sgr(cell: Cell) -> str:
    """The full SGR sequence for a cell's attributes, starting from a reset."""
    params = ["0"] + [code for field, code in _FLAG_CODES if getattr(cell, field)]
    params += _colour(cell.fg, 30) + _colour(cell.bg, 40)
    return CSI + (";".join(params) if len(params) > 1 else "") + "m"


def _same_pen(a: Cell, b: Cell) -> bool:
    return a[1:] == b[1:]


_erased = erasable    # a cell an erase leaves behind: a space with at most a background colour


def _written(line: tuple) -> int | None:
    """How far a row is written (``model.Line.written``); None if the row does not say."""
    return getattr(line, "written", None)


def _tail(line: tuple) -> tuple[int, Cell]:
    """Where the run of identical erased cells that ends the row begins, and its pen."""
    cols = len(line)
    last = line[cols - 1]
    if not _erased(last):
        return cols, last
    start = cols - 1
    while start > 0 and line[start - 1] == last:
        start -= 1
    return start, last


class _Painter:
    """Tracks what the terminal's cursor and pen are while output is produced."""

    def __init__(self, cols: int, rows: int, x: int | None, y: int | None, pen: Cell | None):
        self.cols, self.rows = cols, rows
        self.x, self.y = x, y             # None: unknown (after a wrap-pending write)
        self.pen = pen                    # None: unknown
        self.written = 0                  # how far the row being painted is written
        self.out: list[str] = []

    def emit(self, text: str) -> None:
        self.out.append(text)

    def set_pen(self, cell: Cell) -> None:
        if self.pen is None or not _same_pen(self.pen, cell):
            self.emit(sgr(cell))
            self.pen = cell

    def move(self, x: int, y: int) -> None:
        if self.x == x and self.y == y:
            return
        options = [f"{CSI}{y + 1};{x + 1}H" if x else (f"{CSI}{y + 1}H" if y else f"{CSI}H")]
        if self.y == y and self.x is not None:
            if x == 0:
                options.append("\r")
            elif x > self.x:
                n = x - self.x
                options.append(f"{CSI}C" if n == 1 else f"{CSI}{n}C")
            else:
                n = self.x - x
                options.append("\b" * n if n <= 3 else f"{CSI}{n}D")
        self.emit(min(options, key=len))
        self.x, self.y = x, y

    def write_cells(self, line: tuple, start: int, end: int) -> None:
        """Write cells ``start..end-1`` of ``line`` from the cursor, which is at ``start``."""
        x = start
        after_wide = False
        while x < end:
            cell = line[x]
            if cell.data == "":
                if not after_wide:        # an orphan stub: step over it
                    self.emit(f"{CSI}C")
                after_wide = False
                x += 1
                continue
            self.set_pen(cell)
            self.emit(cell.data)
            after_wide = x + 1 < self.cols and line[x + 1].data == ""
            x += 1
        end_x = x + (1 if after_wide else 0)
        if end_x > self.written:
            self.written = end_x
        if end_x >= self.cols:
            self.x = self.y = None        # wrap pending: positions are unreliable now
        else:
            self.x = end_x

    def text(self) -> str:
        return "".join(self.out)


def _row_changes(old: tuple | None, new: tuple, cols: int) -> list[list[int]]:
    """Spans ``[start, end)`` of ``new`` to write, never splitting a wide character;
    short unchanged gaps between spans are absorbed (written through)."""
    spans: list[list[int]] = []
    x = 0
    while x < cols:
        if old is not None and old[x] == new[x]:
            x += 1
            continue
        start = x
        if start > 0 and (new[start].data == "" or (old is not None and old[start].data == "")):
            start -= 1
        end = cols if old is None else x + 1
        while old is not None and end < cols and old[end] != new[end]:
            end += 1
        while end < cols and (new[end].data == "" or (old is not None and old[end].data == "")):
            end += 1
        if spans and start - spans[-1][1] < _WRITE_THROUGH:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
        x = end
    return spans


def _gaps(line: tuple, start: int, end: int, base: Cell) -> list[list[int]]:
    """On a row that holds ``base`` throughout: the stretches of ``line[start:end]`` that
    differ from it, split where it shows through."""
    spans: list[list[int]] = []
    x = start
    while x < end:
        if line[x] == base:
            x += 1
            continue
        run_end = x + 1
        while run_end < end and line[run_end] != base:
            run_end += 1
        if spans and x - spans[-1][1] < _WRITE_THROUGH:
            spans[-1][1] = run_end
        else:
            spans.append([x, run_end])
        x = run_end
    return spans


def _paint_plain_row(p: _Painter, y: int, line: tuple, written: int) -> bool:
    """Paint a cleared row of printable ASCII in one pen as one string, if it is one.
    Cell by cell, a full 1000x500 screen took 320 ms to render, once per frame in
    ``datagram`` mode; this looks at each distinct cell object once (rows share them).
    Nothing is written past ``written`` (or the last cell no erase leaves): the rest,
    erased cells in the pen's background, is erased; the whole row, if nothing is
    written in it."""
    first = line[0]
    cols = len(line)
    if line.count(first) == cols:                        # one cell throughout: blank, erased, E
        text = first.data * cols
        shown = 0 if first.data == " " else cols         # where the last cell not a blank ends
    else:
        text = "".join(map(_DATA, line))
        if any(not _same_pen(cell, first) for cell in dict(zip(map(id, line), line, strict=True)).values()):
            return False
        shown = -1
    if len(text) != cols or not (text.isascii() and text.isprintable()):
        return False
    # (Printable ASCII: the only white space is the blank, so strip() strips blanks, fast.)
    if first[1] == "default" and not any(first[3:]):    # a pen an erase leaves: blanks may be erased
        end = max(written, len(text.rstrip()) if shown < 0 else shown)
    else:
        end = cols
    start = 0
    default = _same_pen(first, _DEFAULT_PEN)
    if default:                                          # blanks show as they are: skip them
        start = end - len(text[:end].lstrip())
        if start == end and end:
            start = end - 1                              # spaces only: the last one is enough
    if start < end:
        p.move(start, y)
        p.set_pen(first)
        p.emit(text[start:end])
        if end >= p.cols:
            p.x = p.y = None                             # wrap pending
        else:
            p.x = end
    if end < p.cols and not default:                     # the rest: erased in the background
        p.move(end, y)
        p.set_pen(first)
        p.emit(f"{CSI}K")
    return True


def _erase_row(p: _Painter, y: int, tail: int, cell: Cell) -> Cell:
    """Erase row ``y`` whole, in the background of the erased cells that end it from
    ``tail`` on (``_tail``); return the cell it then holds throughout. Only this takes
    back what is written in a row."""
    if tail == p.cols:
        cell = BLANK
    if p.y == y:
        p.set_pen(cell)
        p.emit(f"{CSI}2K")
    else:
        p.move(0, y)
        p.set_pen(cell)
        p.emit(f"{CSI}K")
    return cell


def _paint_row(p: _Painter, y: int, old: tuple | None, new: tuple, cleared: bool,
               old_written: int | None = None, new_written: int | None = None) -> None:
    """Turn row ``y`` from ``old`` (``cleared``: blank, nothing written) written
    ``old_written`` cells far into ``new`` written ``new_written`` far (``model.Line``;
    None: as far as the cells show, and for ``new``, no less than the terminal's; a
    ``Line`` says at least as far as its last cell no erase leaves).

    A terminal counts a row written as far as characters were written in it, and only
    an erase of the whole row takes that back (tmux; its capture-pane ends a row there).
    So nothing is written past ``new_written``: cells there are erased into place (EL,
    ECH), and the last cell before it is written, if the row is not written so far yet;
    a row written further than ``new`` is erased whole and painted again."""
    cols = p.cols
    if cleared:
        if _paint_plain_row(p, y, new, new_written or 0):
            return
        old_written = 0
    elif old_written is None:
        assert old is not None                        # (not cleared: there was a row)
        old_written = extent(old, 0)
    if new_written is None:
        new_written = max(extent(new, 0), old_written)
    base = BLANK if cleared else None     # a cell the row holds throughout, if it does
    tail, tail_pen = _tail(new)           # cells from ``tail`` on: erased, one background
    if old_written > new_written:
        base = _erase_row(p, y, tail, tail_pen)
        old_written = 0
    p.written = old_written
    if base is not None:
        spans = _gaps(new, 0, tail, base)
        use_el = tail < cols and tail_pen != base
        old = (base,) * cols
    else:
        assert old is not None
        use_el = tail < cols and any(c != tail_pen for c in old[tail:])
        spans = _row_changes(old, new, cols)
        if use_el:
            spans = [[s, min(e, tail)] for s, e in spans if s < tail]
    for start, end in spans:
        _write_with_erases(p, new, start, end, y, new_written, old)
    if use_el:
        p.move(tail, y)
        p.set_pen(tail_pen)               # EL fills with the background, as xterm does
        p.emit(f"{CSI}K")
        if tail == 0:
            p.written = 0                 # the whole row: nothing written in it now
    if p.written < new_written:           # written as far as the program wrote it
        x = new_written - 1
        if x > 0 and new[x].data == "":
            x -= 1
        p.move(x, y)
        p.write_cells(new, x, new_written)


_MIN_ECH = 6        # a run of erased cells this long is cheaper as ECH than as spaces


def _write_with_erases(p: _Painter, line: tuple, start: int, end: int, y: int,
                       written: int, shown: tuple) -> None:
    """Write ``line[start:end]``, turning long runs of erased cells into ECH + a jump.
    From ``written`` on, nothing is written: what differs from ``shown`` is erased into
    place (every cell there is an erased one, in some background)."""
    erase_from, erase_to = max(start, written), end
    end = min(end, written)
    x = start
    while x < end:
        run = x
        while run < end and _erased(line[run]) and line[run] == line[x]:
            run += 1
        if run - x >= _MIN_ECH:
            p.move(x, y)
            p.set_pen(line[x])                # ECH fills with the background, as xterm does
            p.emit(f"{CSI}{run - x}X")
            if x == 0 and run >= p.cols:
                p.written = 0                 # the whole row: nothing written in it now
            x = run
            continue
        seg_end = x + 1
        while seg_end < end:
            probe = seg_end
            while probe < end and _erased(line[probe]) and line[probe] == line[seg_end]:
                probe += 1
            if probe - seg_end >= _MIN_ECH:
                break
            seg_end = max(probe, seg_end + 1)
        seg_end = min(seg_end, end)
        p.move(x, y)
        p.write_cells(line, x, seg_end)
        x = seg_end
    _erase_into_place(p, line, erase_from, erase_to, y, shown)


def _erase_into_place(p: _Painter, line: tuple, start: int, end: int, y: int, shown: tuple) -> None:
    """Make cells ``start..end-1`` show ``line``'s erased cells by erasing (ECH, or EL to
    the end of the row) the runs of them that differ from ``shown``."""
    x = start
    while x < end:
        cell = line[x]
        if cell == shown[x]:
            x += 1
            continue
        run = x + 1
        while run < end and line[run] == cell:
            run += 1
        p.move(x, y)
        p.set_pen(cell)                       # erases fill with the background, as xterm does
        if run >= p.cols:
            p.emit(f"{CSI}K")
        else:
            p.emit(f"{CSI}{run - x}X" if run - x > 1 else f"{CSI}X")
        if x == 0 and run >= p.cols:
            p.written = 0
        x = run


def _modes(old: frozenset, new: frozenset) -> str:
    on = sorted(m for m in new - old if m != 1049)
    off = sorted(m for m in old - new if m != 1049)
    out = ""
    if on:
        out += f"{CSI}?{';'.join(map(str, on))}h"
    if off:
        out += f"{CSI}?{';'.join(map(str, off))}l"
    return out


def _finish(p: _Painter, old: ScreenState | None, new: ScreenState) -> None:
    """Everything after the cells: title, modes, margins, cursor, autowrap, pen."""
    if old is None or old.title != new.title:
        p.emit(f"{ESC}]2;{new.title}\x07")
    if old is None or old.app_keypad != new.app_keypad:
        p.emit(f"{ESC}=" if new.app_keypad else f"{ESC}>")
    if old is None or old.cursor_style != new.cursor_style:
        p.emit(f"{CSI}{new.cursor_style} q")
    if old is None or old.margins != new.margins:
        top, bottom = new.margins if new.margins else (0, new.rows - 1)
        p.emit(f"{CSI}{top + 1};{bottom + 1}r" if new.margins else f"{CSI}r")
        p.x = p.y = None                  # DECSTBM homes the cursor
    x, y = new.cursor_x, new.cursor_y
    if x >= new.cols:
        _leave_wrap_pending(p, new, y)
    else:
        p.move(x, y)
    if old is None or old.autowrap != new.autowrap:
        # Only now: a wrap can be left pending (above) only with autowrap on.
        p.emit(f"{CSI}?7{'h' if new.autowrap else 'l'}")
    p.set_pen(new.pen)
    if old is None or old.cursor_visible != new.cursor_visible:
        p.emit(f"{CSI}?25{'h' if new.cursor_visible else 'l'}")


def _rewrite_last_cell(p: _Painter, line: tuple, y: int) -> None:
    start = p.cols - 1
    if start > 0 and line[start].data == "":
        start -= 1
    p.move(start, y)
    p.write_cells(line, start, p.cols)


def _leave_wrap_pending(p: _Painter, state: ScreenState, y: int) -> None:
    """Leave the cursor past the end of row ``y``, a wrap pending, as a write into the
    last column does, without writing where the program did not (``ScreenState.written``):
    on the row itself if it is written to the end; on a row that holds one erased cell
    throughout and nothing written, by a write and an erase of the whole row (the wrap
    stays pending); else from the nearest row written to the end, with line feeds (or
    reverse indexes) to ``y``, which keep it pending, crossing no scroll margin."""
    cols, rows = state.cols, state.rows
    lines = state.lines

    def written(r: int) -> int:
        w = _written(lines[r])
        return extent(lines[r], 0) if w is None else w

    def full(r: int) -> bool:
        return written(r) >= cols

    line = lines[y]
    if full(y):
        _rewrite_last_cell(p, line, y)
        return
    first = line[0]
    if erasable(first) and line.count(first) == cols and written(y) == 0:
        _rewrite_last_cell(p, line, y)
        p.set_pen(first)
        p.emit(f"{CSI}2K")
        return
    top, bottom = state.margins or (0, rows - 1)
    for distance in range(1, rows):
        r = y - distance                  # line feeds down from r: none at the bottom margin
        if r >= 0 and full(r) and not r <= bottom < y:
            _rewrite_last_cell(p, lines[r], r)
            p.emit("\n" * distance)
            return
        r = y + distance                  # reverse indexes up from r: none at the top margin
        if r < rows and full(r) and not y < top <= r:
            _rewrite_last_cell(p, lines[r], r)
            p.emit("\x1bM" * distance)
            return
    _rewrite_last_cell(p, line, y)        # no way without writing the row to its end


def render_full(state: ScreenState) -> str:
    """Paint ``state`` from scratch onto whatever the terminal shows."""
    p = _Painter(state.cols, state.rows, None, None, None)
    p.emit(f"{CSI}?1049h" if 1049 in state.modes else f"{CSI}?1049l")
    p.emit(_all_modes(state.modes))
    p.emit(f"{CSI}r{CSI}?6l{CSI}4l{CSI}?7h{CSI}0m{CSI}H{CSI}2J")
    p.x, p.y, p.pen = 0, 0, _DEFAULT_PEN
    for y, line in enumerate(state.lines):
        _paint_row(p, y, None, line, True, 0, _written(line))
    _finish(p, None, state)
    return p.text()


def _all_modes(modes: frozenset) -> str:
    """Every mirrored mode set or reset explicitly: the terminal's own state is unknown."""
    return _modes(frozenset(MIRRORED_PRIVATE_MODES) - modes, frozenset()) + _modes(frozenset(), modes)


def render_diff(old: ScreenState, new: ScreenState, scroll: bool = True) -> str:
    """Turn a terminal showing ``old`` into one showing ``new``. ``scroll``: a screen
    that moved up may be scrolled (line feeds at the bottom, which push its top rows
    into the terminal's scrollback); without it, rows are only ever painted (the
    scrollback is fed otherwise: see ``moshpit.terminal.scrollback``)."""
    if (old.cols, old.rows) != (new.cols, new.rows) or (1049 in old.modes) != (1049 in new.modes):
        return render_full(new)
    p = _Painter(new.cols, new.rows, old.cursor_x if old.cursor_x < old.cols else None,
                 old.cursor_y, old.pen)
    if p.x is None:
        p.y = None
    p.emit(_modes(old.modes, new.modes))
    if new.bell_count > old.bell_count:
        p.emit("\x07")
    if old.margins is not None:
        p.emit(f"{CSI}r")                 # paint with full-screen addressing...
        p.x = p.y = None
        old = replace(old, margins=None)  # ...and restore the margins at the end
    if not old.autowrap:
        p.emit(f"{CSI}?7h")
        old = replace(old, autowrap=True)
    old_lines = _scroll_first(p, old, new) if scroll else old.lines
    for y, new_line in enumerate(new.lines):
        old_line = old_lines[y]
        if old_line is new_line:
            continue
        written, old_written = _written(new_line), _written(old_line)
        if old_line == new_line and (written is None or written == old_written):
            continue
        # A blank row nothing is written in is a cleared one, whatever cleared it (the
        # scrollback's insert blanks the screen): its plain rows paint as strings.
        cleared = not old_written and old_line.count(BLANK) == len(old_line)
        _paint_row(p, y, old_line, new_line, cleared, old_written, written)
    _finish(p, old, new)
    return p.text()


def _scroll_first(p: _Painter, old: ScreenState, new: ScreenState) -> tuple:
    """If ``new`` looks like ``old`` scrolled up by k lines, scroll the terminal with
    k line feeds at the bottom first (a few bytes instead of a repaint of every
    row); return the rows the terminal then shows, for the row diff that follows."""
    rows = new.rows
    if rows < 3:
        return old.lines
    unshifted = sum(1 for y in range(rows) if old.lines[y] == new.lines[y])
    best_k, best = 0, unshifted
    for k in range(1, rows // 2 + 1):
        if new.lines[0] != old.lines[k]:
            continue
        matched = sum(1 for y in range(rows - k) if new.lines[y] == old.lines[y + k])
        if matched > best + 1:
            best_k, best = k, matched
    if not best_k:
        return old.lines
    p.move(0, rows - 1)
    p.set_pen(_DEFAULT_PEN)                   # new lines take the background (BCE): keep it default
    p.emit("\n" * best_k)                     # full-screen margins here: LF at the bottom scrolls
    blank = (BLANK,) * new.cols
    return old.lines[best_k:] + (blank,) * best_k
