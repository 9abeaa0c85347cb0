"""A screen's cells and rows: what the model stores and the renderer draws (no I/O).

``Cell`` is pyte's ``Char`` with the attributes it lacks; ``Row`` a row of them that
knows how far a program has written in it (as tmux counts); ``erasable`` and
``extent`` say which cells an erase could have left, so a renderer writes what the
program wrote and erases the rest.
"""

from __future__ import annotations

from typing import NamedTuple

from pyte.screens import StaticDefaultDict

NAMED_COLOURS = ["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"]


class TerminalString(str):
    """A terminal string (OSC) among the rows kept for the scrollback: passed on, not a row."""


class Cell(NamedTuple):
    """One character and its attributes: pyte's ``Char`` plus the attributes it
    lacks. Concealed text must stay hidden on the client (a password prompt may
    rely on it) and dim is how many prompts grey out hints, so both are state.
    pyte's fields come first and in its order: its own code only ever calls
    ``_replace`` on the cells it is given, so it keeps working on these."""

    data: str
    fg: str = "default"
    bg: str = "default"
    bold: bool = False
    italics: bool = False
    underscore: bool = False
    strikethrough: bool = False
    reverse: bool = False
    blink: bool = False
    dim: bool = False
    concealed: bool = False


BLANK = Cell(" ")
BLANK_REVERSE = Cell(" ", reverse=True)


class Row(StaticDefaultDict):
    """A row of the screen: its cells by column, and ``written``, how far from the left
    a program has written in it, as tmux counts (``cellused``). Writing a character
    extends it; only an erase of the whole row (EL 2, or one that covers the row), or a
    row coming in by a scroll, starts it again from 0; erasing part of a row leaves it.
    It shows nowhere on screen, but tmux's ``capture-pane`` (how Mosh's tests compare
    screens) and its copy mode end a row there: a space the program wrote counts, a cell
    only erased does not, so a renderer that wrote spaces where the program erased (or
    skipped what it wrote) would differ. Rows carry it when they scroll."""

    written = 0


def erasable(cell: Cell) -> bool:
    """Whether an erase (EL, ECH, ED...) can leave ``cell``: a space with no attribute but
    a background. Every other cell on screen was written."""
    return cell.data == " " and cell[1] == "default" and not any(cell[3:])


def extent(cells: tuple, written: int) -> int:
    """Where the written part of a row ends, at least: ``written``, or further if a cell
    past it could not have been left by an erase (the whole row in reverse video, a
    client's predictions laid over a state)."""
    cols = len(cells)
    if written >= cols:
        return cols
    last = cells[-1]
    if erasable(last):
        tail = cells[written:] if written else cells
        if tail.count(last) == len(tail):       # the usual row: one blank to the end
            return written
    for x in range(cols - 1, written - 1, -1):
        if not erasable(cells[x]):
            return x + 1
    return written


def pen_after_sgr(pen: Cell, attrs: tuple[int, ...], default: Cell) -> Cell:
    """The pen after ``CSI attrs m`` (SGR) from ``pen``; ``default`` is what 0 restores.
    Colon forms arrive split by the parser; 256-colour indexes stay indexes ("i196")."""
    if not attrs or attrs == (0,):
        return default
    replace: dict = {}
    params = list(attrs)
    i = 0
    while i < len(params):
        attr = params[i]
        i += 1
        if attr == 0:
            replace.update(default._asdict())
            replace.pop("data")
        elif attr in _FLAG_ON:
            replace[_FLAG_ON[attr]] = True
        elif attr in _FLAG_OFF:
            for name in _FLAG_OFF[attr]:
                replace[name] = False
        elif 30 <= attr <= 37:
            replace["fg"] = NAMED_COLOURS[attr - 30]
        elif 40 <= attr <= 47:
            replace["bg"] = NAMED_COLOURS[attr - 40]
        elif 90 <= attr <= 97:
            replace["fg"] = "bright" + NAMED_COLOURS[attr - 90]
        elif 100 <= attr <= 107:
            replace["bg"] = "bright" + NAMED_COLOURS[attr - 100]
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
    return pen._replace(**replace)


# SGR 21 is a double underline in xterm, tmux and VTE (ECMA-48), not "bold off" as on
# the Linux console; it is kept as an underline, the closest this model has.
_FLAG_ON = {1: "bold", 2: "dim", 3: "italics", 4: "underscore", 5: "blink", 6: "blink",
            7: "reverse", 8: "concealed", 9: "strikethrough", 21: "underscore"}
_FLAG_OFF = {22: ("bold", "dim"), 23: ("italics",), 24: ("underscore",), 25: ("blink",),
             27: ("reverse",), 28: ("concealed",), 29: ("strikethrough",)}
