"""tmux as an independent terminal: what does a real emulator show for these bytes?

``TmuxScreen.show(data)`` plays raw bytes into a fresh tmux pane (output
post-processing off, so nothing is translated) and returns what tmux displays:
every row with its attributes (``capture-pane -e``), the cursor, and whether
the alternate screen is on.

``capture-pane`` only reports a row's cells up to the last one *written*
(tmux's ``cellused``): cells an erase (EL, ECH, ED, a BCE scroll) coloured
beyond that are on screen but missing from the capture, so a repaint that
erases where the program wrote spaces, or the other way round, would look
different to the capture while looking the same to the user (and a renderer
that forgot those cells would go unnoticed). So each stream is played twice,
each time followed by a reveal that makes every cell of every row count as
written without losing what it shows: ICH at column 0 shifts the row right by
one (tmux then counts the whole row; the last column falls off), and DCH at
the second-to-last column pulls the last column in beside the rest. The two
captures together give every cell.

The capture before the reveals is kept too, as it is (``capture-pane -e -N``): it
is how Mosh's own tests compare screens, and what tmux's copy mode copies, so where
each row's written part ends (``ScreenState.written``) must match as well: a space a
program wrote is in it, a cell it only erased is not. Only tmux's underline styles
(``4:2``, ``4:3``...) are made plain underlines in it, as the model keeps them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from wcwidth import wcwidth

_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_RESET = {"fg": "d", "bg": "d", "bold": 0, "dim": 0, "italic": 0, "under": 0, "blink": 0,
          "reverse": 0, "hidden": 0, "strike": 0}
_FLAGS = {1: ("bold", 1), 2: ("dim", 1), 3: ("italic", 1), 4: ("under", 1), 5: ("blink", 1),
          7: ("reverse", 1), 8: ("hidden", 1), 9: ("strike", 1), 23: ("italic", 0),
          24: ("under", 0), 25: ("blink", 0), 27: ("reverse", 0), 28: ("hidden", 0),
          29: ("strike", 0)}
_SETTLE = 0.1                       # what tmux takes to digest what cat wrote, about


def _params(raw: str) -> list[int]:
    """An SGR parameter string -> plain parameters. tmux writes underline styles
    as ``4:N`` (double, curly...): here they are all just underlined."""
    out: list[int] = []
    for group in raw.split(";") if raw else [""]:
        parts = [int(p or 0) for p in group.split(":")]
        if parts[0] == 4 and len(parts) > 1:
            out.append(24 if parts[1] == 0 else 4)
        else:
            out.extend(parts)
    return out


def _apply_sgr(state: dict, params: list[int]) -> None:
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            state.update(_RESET)
        elif p in _FLAGS:
            key, value = _FLAGS[p]
            state[key] = value
        elif p == 22:
            state["bold"] = state["dim"] = 0
        elif 30 <= p <= 37 or 90 <= p <= 97:
            state["fg"] = str(p)
        elif 40 <= p <= 47 or 100 <= p <= 107:
            state["bg"] = str(p)
        elif p == 39:
            state["fg"] = "d"
        elif p == 49:
            state["bg"] = "d"
        elif p in (38, 48):
            key = "fg" if p == 38 else "bg"
            if i + 1 < len(params) and params[i + 1] == 5:
                state[key] = f"5;{params[i + 2] if i + 2 < len(params) else 0}"
                i += 2
            else:
                state[key] = "2;" + ";".join(map(str, params[i + 2:i + 5]))
                i += 4
        i += 1


def _capture_rows(text: str, rows: int) -> list[list]:
    """``capture-pane -e`` output -> per row, the (character, attributes) of each
    cell written out. SGR state runs on from one row to the next, as tmux writes it."""
    state = dict(_RESET)
    out = []
    for line in text.split("\n")[:rows]:
        cells = []
        pos = 0
        while pos < len(line):
            match = _SGR.match(line, pos)
            if match:
                _apply_sgr(state, _params(match.group(1)))
                pos = match.end()
                continue
            cells.append((line[pos], tuple(sorted(state.items()))))
            pos += 1
        out.append(cells)
    return out + [[] for _ in range(rows - len(out))]


def _trimmed(cells: list) -> tuple:
    """Trailing spaces that show nothing are dropped: they are no different from no cell."""
    while cells and cells[-1][0] == " " and _invisible(dict(cells[-1][1])):
        cells.pop()
    return tuple(cells)


def parse_capture(text: str, rows: int) -> tuple:
    """A plain capture -> per row, its cells up to the last visible one."""
    return tuple(_trimmed(cells) for cells in _capture_rows(text, rows))


def _last_column(shifted: list, pulled: list, cols: int) -> list:
    """The last column's cell (and any marks on it), from the two reveals.

    ``shifted`` holds the original columns 0..cols-2 exactly; ``pulled`` holds
    the original cells before column cols-2 and then the last column's (a wide
    character across cols-3..cols-2 lost its right half, not its place)."""
    x = 0
    before = 0                              # cells of ``shifted`` that start before cols-2
    for i, (char, _) in enumerate(shifted):
        width = wcwidth(char)
        if width <= 0:                      # a mark rides on the cell before it
            if before == i:
                before += 1
            continue
        if x >= cols - 2:
            if width == 2:
                return []                   # a wide character covers the last column
            break
        x += width
        before = i + 1
    out = pulled[before:before + 1]
    for cell in pulled[before + 1:]:
        if wcwidth(cell[0]) > 0:
            break
        out.append(cell)
    return out


def merge_reveals(shifted: str, pulled: str, cols: int, rows: int) -> tuple:
    """The two revealing captures -> per row, every cell up to the last visible one.

    ``shifted`` had ICH at column 0 (a blank first cell, then columns 0..cols-2);
    ``pulled`` had DCH at column cols-2 (the last column now at cols-2)."""
    out = []
    for left, right in zip(_capture_rows(shifted, rows), _capture_rows(pulled, rows)):
        cells = left[1:]
        if cols >= 2:
            cells += _last_column(cells, right, cols)
        out.append(_trimmed(cells))
    return tuple(out)


def _reveal(rows: int, shift: bool, cols: int) -> bytes:
    """Bytes that make tmux count every cell of every row as written (see the module doc)."""
    out = ["\x1b[?6l\x1b[m"]                 # absolute rows; erase with the default background
    for y in range(1, rows + 1):
        out.append(f"\x1b[{y};1H\x1b[@" if shift else f"\x1b[{y};{cols - 1}H\x1b[P")
    return "".join(out).encode()


_UNDERLINE_STYLE = re.compile(r"(?<=[\[;])4:([0-9])(?=[;m])")


def plain_capture(text: str) -> str:
    """A capture as it is, but for underline styles, which become plain underlines."""
    return _UNDERLINE_STYLE.sub(lambda m: "24" if m.group(1) == "0" else "4", text)


def _invisible(attrs: dict) -> bool:
    return attrs["bg"] == "d" and not attrs["reverse"] and not attrs["under"] and not attrs["strike"]


def available() -> bool:
    return shutil.which("tmux") is not None


class TmuxScreen:
    def __init__(self, cols: int = 80, rows: int = 24):
        self.cols, self.rows = cols, rows
        self.socket = f"moshpit-test-{uuid.uuid4().hex[:8]}"
        self.dir = Path(tempfile.mkdtemp(prefix="moshpit-tmux-"))
        # One server for all plays: one that exits with its last session races the next.
        self._tmux("start-server", ";", "set-option", "-s", "exit-empty", "off")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=20).stdout

    def _start(self, name: str, script: str) -> None:
        self._tmux("new-session", "-d", "-s", name, "-x", str(self.cols), "-y", str(self.rows),
                   "sh", "-c", f"stty -opost -echo; {script}; exec sleep 120")

    @staticmethod
    def _wait(path: Path) -> None:
        deadline = time.monotonic() + 15
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("tmux did not finish playing the stream")
            time.sleep(0.02)

    def _capture(self, name: str) -> str:
        return self._tmux("capture-pane", "-p", "-e", "-N", "-t", name)

    @staticmethod
    def _settled(look):
        """``look()`` once tmux has digested what cat wrote: two looks a beat apart agree."""
        time.sleep(_SETTLE)
        now = look()
        for _ in range(40):
            time.sleep(0.05)
            again = look()
            if again == now:
                break
            now = again
        return now

    def show(self, data: bytes) -> tuple:
        """Play ``data``; return (rows of cells, cursor, alternate screen on, cursor shown,
        the plain capture: see the module's doc).

        Two panes play it at once: the first stops after the stream so the cursor
        can be read, then reveals by shifting; the second reveals the last column."""
        base = uuid.uuid4().hex[:8]
        shifted, pulled = f"{base}a", f"{base}b"
        d = self.dir
        (d / f"{base}.bin").write_bytes(data)
        (d / f"{base}.shift").write_bytes(_reveal(self.rows, True, self.cols))
        (d / f"{base}.pull").write_bytes(_reveal(self.rows, False, self.cols))
        go = d / f"{base}.go"
        os.mkfifo(go)
        self._start(shifted, f"cat {d}/{base}.bin; touch {d}/{base}.played; read x < {go}; "
                             f"cat {d}/{base}.shift; touch {d}/{base}.shifted")
        self._start(pulled, f"cat {d}/{base}.bin {d}/{base}.pull; touch {d}/{base}.pulled")
        try:
            self._wait(d / f"{base}.played")
            info, plain = self._settled(lambda: (self._tmux(
                "display-message", "-p", "-t", shifted,
                "#{cursor_x} #{cursor_y} #{alternate_on} #{cursor_flag}"), self._capture(shifted)))
            with open(go, "w") as fifo:
                fifo.write("go\n")
            self._wait(d / f"{base}.shifted")
            self._wait(d / f"{base}.pulled")
            left, right = self._settled(lambda: (self._capture(shifted), self._capture(pulled)))
        finally:
            for name in (shifted, pulled):
                self._tmux("kill-session", "-t", name)
        cursor_x, cursor_y, alternate, visible = info.split()
        return (merge_reveals(left, right, self.cols, self.rows), (int(cursor_x), int(cursor_y)),
                alternate == "1", visible == "1", plain_capture(plain))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def env_ok() -> bool:
    return available() and os.name == "posix"
