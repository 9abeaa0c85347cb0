"""Scrollback for a client that is sent screen states (``statesync``, ``datagram``).

The server keeps the rows that scroll off the top of its screen and sends them as
lines, in order, on the session's reliable stream; the client writes each into the
user's terminal's own scrollback, above what the terminal shows. A terminal keeps a
row when a line feed at the bottom of the main screen pushes it off the top, so a
row goes in by being the top row at such a line feed: written over the top row
(unless it is there already, as when the screen shown is the one it scrolled off),
then pushed. What the terminal shows is then drawn again from what is left.

A row travels as a line: text and SGR that draw it from column 0 of a cleared row
(``render_row``), without line feeds.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from moshpit.terminal.screen import BLANK

if TYPE_CHECKING:
    from moshpit.terminal.model import ScreenState

CSI = "\x1b["
_PEN = BLANK[1:]


def render_row(cells: tuple) -> str:
    """A row as a line: what draws it from column 0 of a cleared row, ending in the default
    pen, with moves only within the row (it is written wherever the row then is)."""
    text = "".join([cell.data for cell in cells])
    if len(text) == len(cells) and text.isascii() and text.isprintable() \
            and all(cell[1:] == _PEN for cell in set(cells)):
        return text.rstrip(" ")                 # the usual row: plain text
    from moshpit.terminal import render         # (render imports the model, which imports us)
    painter = render._Painter(len(cells), 1, 0, 0, BLANK)
    render._paint_row(painter, 0, None, cells, cleared=True)
    painter.set_pen(BLANK)
    return _ABSOLUTE.sub(_relative, painter.text())


_ABSOLUTE = re.compile(r"\x1b\[(?:1(?:;(\d+))?)?H")     # the painter's moves on its one row


def _relative(move: re.Match) -> str:
    column = int(move.group(1) or 1)
    return "\r" if column == 1 else f"\r{CSI}{column - 1}C"


def insert_rows(shown: ScreenState, lines: list[str], known: bool = True) -> tuple[str, ScreenState]:
    """Write ``lines`` into the scrollback of a terminal showing ``shown`` (a ScreenState;
    not ``known``: the terminal shows something else, as before the first paint).

    Rows of ``shown`` that are the first lines already are pushed as they are. The rest
    are written from the top of a screen blanked row by row (an erase of the whole
    screen goes to the scrollback in some terminals), as plain lines a terminal takes at
    full speed, and line feeds at the bottom push them all up. Returns the text and what
    the terminal shows afterwards: the rows of ``shown`` not pushed, then blank ones;
    the cursor at the bottom left in the default pen, full-screen margins, autowrap off
    (a line wider than the terminal stays on its row), the main screen. Draw the screen
    again from that with ``render_diff``."""
    rows = shown.rows
    alt = 1049 in shown.modes
    out = [f"{CSI}?1049l" if alt else "", f"{CSI}r{CSI}?6l{CSI}?7l{CSI}0m"]
    screen = list(shown.lines) if known and not alt else [None] * rows   # None: not known
    blank = (BLANK,) * shown.cols
    same = 0
    while same < min(len(lines), rows) and (row := screen[same]) is not None and render_row(row) == lines[same]:
        same += 1
    if same:
        out.append(f"{CSI}{rows}H" + "\n" * same)
        screen = screen[same:] + [blank] * same
    rest = lines[same:]
    if rest:
        out.extend(f"{CSI}{y + 1}H{CSI}2K" for y in range(rows))
        out.append(f"{CSI}H" + "\r\n".join(rest) + f"{CSI}0m")
        on_screen = min(len(rest), rows)       # the last lines, not yet pushed
        out.append(f"{CSI}{rows}H" + "\n" * on_screen)
        screen = [blank] * rows
    after = replace(shown, lines=tuple(row if row is not None else blank for row in screen),
                    cursor_x=0, cursor_y=rows - 1, pen=BLANK, margins=None, autowrap=False,
                    modes=shown.modes - {1049, 6})
    return "".join(out), after


def marker_line(count: int) -> str:
    """The one line that stands in the scrollback for lines that never reached it."""
    return f"[moshpit: {count} lines not shown]"
