"""Judge what a client wrote to the user's terminal: what could the person scroll back to?

A client that sends screen states (mosh, moshpit statesync) can skip lines that
scrolled past while the link was slow or down; a stream client shows them all.
``transcript_lines`` replays the raw bytes on an xterm-like screen with
scrollback; ``judge_numbers`` counts a ``seq`` run in the result.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import pyte
from pyte.screens import Margins, StaticDefaultDict
from wcwidth import wcwidth

MARKER = re.compile(r"\[moshpit: (\d+) lines? not shown\]")
_ALT_SCREENS = (1049, 1047, 47)


class ScrollbackScreen(pyte.HistoryScreen):
    """pyte's HistoryScreen with xterm's rules for what reaches the scrollback.

    pyte saves a line whenever ``index()`` scrolls at the bottom margin, even
    inside a scroll region that does not start at the top row, has no alternate
    screen and ignores SU (``CSI n S``). xterm saves a line only when it leaves
    the main screen's top row, SU included; the alternate screen (where mosh
    draws) keeps no history. Only ``top`` history is used (no paging here).
    """

    def __init__(self, columns: int, lines: int, history: int = 200_000):
        self.alternate = None                    # the main screen's buffer while the alternate is shown
        super().__init__(columns, lines, history=history)

    def _saves(self) -> bool:
        top, bottom = self.margins or Margins(0, self.lines - 1)
        return self.alternate is None and top == 0 and self.cursor.y == bottom

    def index(self) -> None:
        if self._saves():
            self.history.top.append(self.buffer[0])
        pyte.Screen.index(self)                  # not HistoryScreen.index: it saves from any region

    def scroll_up(self, count: int | None = None) -> None:
        """SU: the region's lines move up ``count`` rows; the cursor stays."""
        x, y = self.cursor.x, self.cursor.y
        top, bottom = self.margins or Margins(0, self.lines - 1)
        for _ in range(min(count or 1, bottom - top + 1)):
            self.cursor.y = bottom
            self.index()
        self.cursor.x, self.cursor.y = x, y

    def scroll_down(self, count: int | None = None) -> None:
        """SD: the region's lines move down ``count`` rows (what falls off the bottom is gone)."""
        x, y = self.cursor.x, self.cursor.y
        top, bottom = self.margins or Margins(0, self.lines - 1)
        for _ in range(min(count or 1, bottom - top + 1)):
            self.cursor.y = top
            pyte.Screen.reverse_index(self)
        self.cursor.x, self.cursor.y = x, y

    def _blank(self):
        return defaultdict(lambda: StaticDefaultDict(self.default_char))

    def set_mode(self, *modes: int, **kwargs) -> None:
        alt = kwargs.get("private") and [m for m in modes if m in _ALT_SCREENS]
        if alt and self.alternate is None:
            if 1049 in alt:
                self.save_cursor()
            self.alternate, self.buffer = self.buffer, self._blank()
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs) -> None:
        alt = kwargs.get("private") and [m for m in modes if m in _ALT_SCREENS]
        if alt and self.alternate is not None:
            self.buffer, self.alternate = self.alternate, None
            self.dirty.update(range(self.lines))
            if 1049 in alt:
                self.restore_cursor()
        super().reset_mode(*modes, **kwargs)

    def reset(self) -> None:
        self.alternate = None
        super().reset()

    def line_text(self, line) -> str:
        """One row as text, as ``Screen.display`` renders it (wide characters' stubs skipped)."""
        out, wide = [], False
        for x in range(self.columns):
            if wide:
                wide = False
                continue
            char = line[x].data
            wide = bool(char) and wcwidth(char[0]) == 2
            out.append(char)
        return "".join(out)


class _Stream(pyte.ByteStream):
    csi = dict(pyte.ByteStream.csi, S="scroll_up", T="scroll_down")


def transcript_lines(data: bytes, cols: int = 80, rows: int = 24, history: int = 200_000) -> list[str]:
    """Every line in the scrollback, oldest first, then the visible screen's rows (rstripped)."""
    screen = ScrollbackScreen(cols, rows, history)
    _Stream(screen).feed(data)
    saved = [screen.line_text(line).rstrip() for line in screen.history.top]
    return saved + [row.rstrip() for row in screen.display]


@dataclass
class NumbersVerdict:
    """How a run of numbers ``first..last``, one a line, reached the person."""
    expected: int
    once: int                                    # numbers on exactly one line
    missing: list[int] = field(default_factory=list)
    repeated: int = 0                            # numbers on more than one line
    out_of_order: bool = False                   # a number's line below a larger number's line
    markers: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        """Lines the markers say were not shown."""
        return sum(int(MARKER.search(line)[1]) for line in self.markers)


def judge_numbers(lines: list[str], first: int, last: int) -> NumbersVerdict:
    """Count the lines whose whole text is a number in ``first..last``; note the gap markers."""
    seen: dict[int, int] = {}
    previous, out_of_order, markers = None, False, []
    for line in lines:
        if MARKER.search(line):
            markers.append(line)
            continue
        if not re.fullmatch(r"0|[1-9][0-9]*", line):
            continue
        number = int(line)
        if not first <= number <= last:
            continue
        seen[number] = seen.get(number, 0) + 1
        if previous is not None and number < previous:
            out_of_order = True
        previous = number
    return NumbersVerdict(
        expected=last - first + 1,
        once=sum(1 for count in seen.values() if count == 1),
        missing=[n for n in range(first, last + 1) if n not in seen],
        repeated=sum(1 for count in seen.values() if count > 1),
        out_of_order=out_of_order,
        markers=markers)
