"""Mosh's emulation tests, replayed: the same screen directly in tmux and through moshpit.

Mosh's ``src/tests/emulation-*.test`` scripts print escape sequences into a tmux
pane, directly and through mosh, and compare ``tmux capture-pane -e`` of the two.
The streams below print the same kind of thing (written here, not copied): every
SGR colour form, background colour erase, the 80th column, back tabs, cursor
motion, scrolling, rows that wrap across frames; and their neighbours, the
cases the first two exposed.

``capture-pane`` ends each row where tmux counts it written (a space a program
wrote is in the capture, a cell it only erased is not: see ``screen.Row``). The
``statesync`` and ``datagram`` renderer used to lose that. It painted the space a
program had written into the last column as untouched blank (``...M\\e[49m`` in
the direct capture, ``...M`` through moshpit: the cell seemed to keep the
background), and painted rows it found erased in a colour with written spaces
(a repaint, then a diff writing ``done`` and erasing the rest, left ``done\\e[42m``
where tmux had ``done``). Now the model keeps how far each row is written
(``ScreenState.written``) and the renderer writes no further and no less.

tmux is the judge here as in ``test_terminal_tmux``: a repaint of the final
state, and the frames a client paints (a repaint, then diffs between states cut
anywhere, from a screen that showed something else first), must give the same
``TmuxScreen.show`` as the stream itself, the plain capture included. The
property tests need no tmux: a repaint fed to a fresh model, and a diff fed to a
model showing the old state, give the new state exactly, ``written`` included.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings, strategies as st

import tmux_oracle
from moshpit.terminal.model import TerminalModel
from moshpit.terminal.render import render_diff, render_full

ESC = "\x1b"
CSI = ESC + "["


# --- Mosh's emulation tests, as streams (a PTY turns the scripts' \n into \r\n) ---

def _attributes(codes) -> str:
    return f"{CSI}H{CSI}J" + "".join(f"{CSI}{c}mE{CSI}m " for c in codes) + f"{CSI}mend\r\n"


def attributes_256(first: int, last: int) -> str:
    """Each colour of the 256 as a foreground on one cell and a background on the next:
    four cells a colour, so at 80 columns a background cell lands next to the last
    column on every row and a written blank in it (the case Mosh's test exposed)."""
    cells = "".join(f"{CSI}38;5;{i}mE{CSI}m {CSI}48;5;{i}mM{CSI}m " for i in range(first, last + 1))
    return f"{CSI}H{CSI}J{cells}{CSI}mend\r\n"


def truecolour() -> str:
    out = []
    for label, attrs in [("Normal", ""), ("Bold", ";1"), ("Italic", ";3"), ("Underline", ";4"),
                         ("Blink", ";5"), ("Inverse", ";7"), ("Invisible", ";8"),
                         ("Bold, italic and underline", ";1;3;4")]:
        out.append(f"{label}:\r\n")
        for i in range(77):
            r, g, b = 255 - i * 255 // 76, min(i * 510 // 76, 510 - i * 510 // 76), i * 255 // 76
            out.append(f"{CSI}0{attrs}m{CSI}48;2;{r};{g};{b}m{CSI}38;2;{255 - r};{255 - g};{255 - b}mE{CSI}m")
        out.append("\r\n")
    return "".join(out) + f"{CSI}mend\r\n"


def bce() -> str:
    """Erase below in truecolour, 256 colours and 16 colours, a line of text on each."""
    return (f"{CSI}48;2;255;0;255m{CSI}H{CSI}JTrue color\r\n{CSI}48;5;32m{CSI}J256 color\r\n"
            f"{CSI}42m{CSI}J16 color\r\n{CSI}0mdone\r\n{CSI}mend\r\n")


def eightieth_column() -> str:
    return f"{CSI}H{CSI}J" + ("E" * 80 + "\r\n") * 25


def ascii_iso_8859() -> str:
    rows = []
    for start in list(range(0x20, 0x80, 16)) + list(range(0xa0, 0x100, 16)):
        rows.append("".join(f"{c:02x} {chr(c)} " for c in range(start, start + 16) if c != 0x7f))
    return f"{CSI}H{CSI}J" + "\r\n".join(rows) + "\r\n"


def back_tab() -> str:
    return (f"hello, wurld{CSI}Zo\r\nhello, wurld{CSI}2Zo\r\nhello, wurld{CSI}99Z9\r\n"
            f"hello, wurld{CSI}It\r\n{CSI}99I#\r\n")


def cursor_motion() -> str:
    moves = [(1, 1, "A"), (10, 1, "B"), (1, 2, "C"), (1, 4, "D"), (10, 4, "E"), (1, 7, "F"),
             (1, 11, "G"), (10, 11, "H"), (1, 16, "I"), (2, 16, "J"), (1, 22, "K"), (60, 23, "L"),
             (59, 23, "M"), (57, 23, "N"), (54, 23, "O"), (50, 23, "P"), (45, 23, "Q"),
             (39, 23, "R"), (32, 23, "S"), (1, 24, "done")]
    return f"{CSI}H{CSI}J" + "".join(f"{CSI}{y};{x}H{text}" for x, y, text in moves)


def multiline_scroll() -> str:
    return f"{CSI}H{CSI}J" + "".join(f"{i}\r{CSI}{i}{op}" for op in "LM"
                                     for i in [0, 1, 2, 22, 23, 24, 25, 26])


def scroll() -> str:
    return (f"{CSI}H{CSI}J" + "".join(f"\r\ntext {i}" for i in range(1, 25))
            + f"{CSI}4S{CSI}2T\rBad line{CSI}24;1HLast line{CSI}HFirst line\r\n")


def wrap_across_frames() -> str:
    row = "abcd" + "X" * 72 + "1234" + "ABCD" + "x" * 72 + "5678"
    return f"{CSI}H{CSI}J" + row * 10 + "\r\n"


MOSH = [
    ("attributes-vt100", _attributes([0, 1, 4, 5, 7])),
    ("attributes-16color", _attributes(list(range(30, 38)) + list(range(39, 48)) + [49])),
    ("attributes-256color8", attributes_256(0, 7)),
    ("attributes-256color248", attributes_256(8, 255)),
    ("attributes-truecolor", truecolour()),
    ("attributes-bce", bce()),
    ("80th-column", eightieth_column()),
    ("ascii-iso-8859", ascii_iso_8859()),
    ("back-tab", back_tab()),
    ("cursor-motion", cursor_motion()),
    ("multiline-scroll", multiline_scroll()),
    ("scroll", scroll()),
    ("wrap-across-frames", wrap_across_frames()),
]


# --- their neighbours -------------------------------------------------------------------

def backgrounds_to_the_last_column() -> str:
    """A background on the last cell of a row or the one before, then the pen reset and a
    written blank, an erase, or the next row's text (the wrap) after it."""
    out = [f"{CSI}H{CSI}J"]
    for i, colour in enumerate(range(16, 256, 21)):
        out.append("." * (78 + i % 2) + f"{CSI}48;5;{colour}mM")
        out.append([f"{CSI}m ", f"{CSI}mnext row", f"{CSI}m{CSI}K\r\n", f"{CSI}49m\r\n", f"{CSI}m"][i % 5])
    return "".join(out) + f"{CSI}m\r\nend"


def erase_in_colour() -> str:
    """Background colour erase in 16 colours, 256 and truecolour, by EL (each kind), ED
    (each kind) and ECH, over text and over nothing, and text written on top after."""
    return (f"{CSI}44m{CSI}2J{CSI}mblue screen{CSI}3;5H{CSI}41mred\r\n"
            f"{CSI}48;2;0;90;40m{CSI}Kgreen EL{CSI}m\r\n{CSI}48;5;130mbrown{CSI}1K{CSI}m\r\n"
            f"plain {CSI}45m{CSI}2K magenta EL 2{CSI}m\r\n{CSI}10;20H{CSI}46m{CSI}7X{CSI}m"
            f"{CSI}12;30H{CSI}48;5;201m{CSI}1J{CSI}m{CSI}14;1Hnew text  {CSI}43m{CSI}J{CSI}m\r\n"
            f"{CSI}48;2;200;200;0m   spaces\r\n{CSI}m{CSI}20;9H{CSI}42m{CSI}X{CSI}m{CSI}21;1H")


def written_blanks() -> str:
    """Spaces a program wrote (in the default pen and in a background), against cells it
    only erased; cells moved by ICH and DCH, which tmux counts as written."""
    return (f"abc   \r\nabc\r\n{CSI}41m   {CSI}m\r\n" + " " * 80 + f"{CSI}44m{CSI}J{CSI}m  x  \r\n"
            f"{CSI}8;1Habcdef\r{CSI}2@{CSI}9;1Habcdefgh\r{CSI}3P{CSI}10;1H{CSI}45mxyz\r{CSI}9P{CSI}m"
            f"{CSI}11;1Hshort{CSI}2K{CSI}12;1Hwhole row\r{CSI}K{CSI}13;70H{CSI}46m{CSI}99X{CSI}mend")


def wrap_pending(ending: str) -> str:
    """Rows written to the last column, then the wrap left pending in the ways a row
    that is not written to its end can end up with the cursor past it."""
    head = f"{CSI}H{CSI}J{CSI}3;1Hthree{CSI}7;1Hseven{CSI}12;1H{CSI}43m" + "y" * 80 + f"{CSI}m"
    return head + {
        "erased": f"{CSI}5;1H" + "x" * 80 + f"{CSI}41m{CSI}2K",            # the row erased whole
        "line feed": f"{CSI}2;1H" + "x" * 80 + "\n",                       # down onto row 3
        "reverse index": f"{CSI}12;80H{CSI}43my{CSI}m" + (ESC + "M") * 5,    # up onto row 7
        "scrolled": f"{CSI}24;1H" + "z" * 80 + "\n",                       # a blank row scrolled in
    }[ending]


NEIGHBOURS = [
    ("backgrounds to the last column", backgrounds_to_the_last_column()),
    ("erase in colour", erase_in_colour()),
    ("written blanks", written_blanks()),
] + [(f"wrap pending, {ending}", wrap_pending(ending))
     for ending in ["erased", "line feed", "reverse index", "scrolled"]]

CASES = MOSH + NEIGHBOURS


def states(data: bytes, cuts) -> list:
    """The states a server's model goes through, fed ``data`` cut at ``cuts``."""
    model = TerminalModel(80, 24)
    out, last = [], 0
    for cut in sorted(cuts) + [len(data)]:
        model.feed(data[last:cut])
        out.append(model.state)
        last = cut
    return out


def frames(previous, seen: list) -> str:
    """What a client writes: a repaint of the first state, then a diff each. A client
    starts on a terminal that showed something else (a prompt, an ls)."""
    out = render_full(previous) if previous is not None else ""
    for state in seen:
        out += render_diff(previous, state) if previous is not None else render_full(state)
        previous = state
    return out


# --- without tmux: repaints and diffs reproduce every state, written extents included ---

@pytest.mark.parametrize("name, text", CASES, ids=[c[0] for c in CASES])
def test_every_state_of_the_stream_repaints_and_diffs_exactly(name, text):
    data = text.encode()
    seen = states(data, range(1, len(data), max(1, len(data) // 150)))
    client = TerminalModel(80, 24)
    previous = client.state
    for state in seen:
        fresh = TerminalModel(80, 24)
        fresh.feed(render_full(state).encode())
        assert fresh.state == state
        client.feed(render_diff(previous, state).encode())
        assert client.state == state
        previous = state


# --- tmux as the judge -----------------------------------------------------------------

tmux_needed = pytest.mark.skipif(not tmux_oracle.env_ok() and not os.environ.get("CI"),
                                 reason="tmux not installed")


@pytest.fixture(scope="module")
def tmux():
    screen = tmux_oracle.TmuxScreen(80, 24)
    yield screen
    screen.close()


@tmux_needed
@pytest.mark.parametrize("name, text", CASES, ids=[c[0] for c in CASES])
def test_the_screen_through_moshpit_is_the_screen_direct(tmux, name, text):
    data = text.encode()
    direct = tmux.show(data)
    final = states(data, [])[-1]
    assert tmux.show(render_full(final).encode()) == direct
    # Frames as a client paints them, from a screen that showed a prompt and an ls.
    rng = random.Random(name)
    before = TerminalModel(80, 24)
    before.feed(b"user@host:~$ ls --color\r\n\x1b[01;34mdir\x1b[0m  \x1b[42mfile\x1b[0m  x\r\n$ ")
    seen = states(data, rng.sample(range(1, len(data)), min(6, len(data) - 1)))
    assert tmux.show(frames(before.state, seen).encode()) == direct


@tmux_needed
def test_the_two_streams_that_differed_differ_no_more_at_any_frame(tmux):
    """The two Mosh tests ``statesync`` and ``datagram`` failed, cut at many points: a
    repaint of the state there, then one diff to the end."""
    for text in (attributes_256(8, 47), bce()):
        data = text.encode()
        direct = tmux.show(data)
        final = states(data, [])[-1]
        for cut in range(0, len(data), max(1, len(data) // 12)):
            halfway = states(data[:cut], [])[-1]
            assert tmux.show((render_full(halfway) + render_diff(halfway, final)).encode()) == direct


# --- the property, on random colour, text and erase streams -----------------------------

_PIECES = [f"{CSI}m", f"{CSI}0m", f"{CSI}41m", f"{CSI}44m", f"{CSI}49m", f"{CSI}48;5;27m", f"{CSI}48;5;200m",
           f"{CSI}48;2;10;200;30m", f"{CSI}38;5;9m", f"{CSI}1m", f"{CSI}7m", f"{CSI}4m", f"{CSI}27m",
           f"{CSI}K", f"{CSI}1K", f"{CSI}2K", f"{CSI}J", f"{CSI}1J", f"{CSI}2J", f"{CSI}X", f"{CSI}3X",
           f"{CSI}99X", f"{CSI}@", f"{CSI}3@", f"{CSI}P", f"{CSI}4P", f"{CSI}99P", f"{CSI}L", f"{CSI}M",
           f"{CSI}S", f"{CSI}T", "\r\n", "\n", "\r", "\b", "\t", ESC + "M", f"{CSI}A", f"{CSI}B",
           f"{CSI}H", f"{CSI}3;5r", f"{CSI}r", f"{CSI}?7l", f"{CSI}?7h", f"{CSI}?5h", f"{CSI}?5l",
           f"{CSI}4h", f"{CSI}4l", "中", "e\u0301", " ", "   "]


@st.composite
def colour_streams(draw, cols: int, rows: int) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.sampled_from(_PIECES)))
        elif kind == 1:                                   # text, often to the last column
            n = draw(st.sampled_from([1, 3, cols - 1, cols, cols + 1, 2 * cols]))
            parts.append(draw(st.sampled_from("abxyz .")) * n)
        elif kind == 2:                                   # anywhere, the last column most
            x = draw(st.sampled_from([1, 2, cols - 1, cols, cols + 5]))
            parts.append(f"{CSI}{draw(st.integers(1, rows + 1))};{x}H")
        else:
            parts.append(f"{CSI}{draw(st.integers(1, rows))};{draw(st.integers(1, cols))}H")
    return "".join(parts).encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), shape=st.sampled_from([(80, 24), (12, 5), (3, 3), (1, 1)]))
def test_repaint_and_diff_reproduce_colours_text_and_erases_exactly(data, shape):
    cols, rows = shape
    server = TerminalModel(cols, rows)
    client = TerminalModel(cols, rows)
    shown = client.state
    for _ in range(data.draw(st.integers(1, 6))):
        server.feed(data.draw(colour_streams(cols, rows)))
        state = server.state
        fresh = TerminalModel(cols, rows)
        fresh.feed(render_full(state).encode())
        assert fresh.state == state
        client.feed(render_diff(shown, state).encode())
        assert client.state == state
        shown = state
