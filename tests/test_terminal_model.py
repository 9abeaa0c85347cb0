"""The screen model: pyte's gaps fixed, the fast path proven equal, hostile input survived."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from moshpit.terminal.model import TerminalModel
from terminal_corpus import CORPUS

CSI = "\x1b["


def fed(text, cols=80, rows=24, **kw) -> TerminalModel:
    model = TerminalModel(cols, rows, **kw)
    model.feed(text.encode() if isinstance(text, str) else text)
    return model


def row(model, y) -> str:
    return "".join(c.data for c in model.state.lines[y]).rstrip()


# --- pyte's gaps, fixed --------------------------------------------------------

def test_alternate_screen_keeps_the_main_screen():
    m = fed("main text\r\nprompt$ ")
    m.feed(f"{CSI}?1049h{CSI}H{CSI}2Jvim owns this screen".encode())
    assert row(m, 0) == "vim owns this screen" and 1049 in m.state.modes
    m.feed(f"{CSI}?1049l".encode())
    assert [row(m, 0), row(m, 1)] == ["main text", "prompt$"]
    assert (m.state.cursor_x, m.state.cursor_y) == (8, 1)      # restored with the screen
    assert 1049 not in m.state.modes


@pytest.mark.parametrize("mode", [47, 1047])
def test_older_alternate_screen_modes(mode):
    m = fed("main")
    m.feed(f"{CSI}?{mode}h{CSI}Halt".encode())
    assert row(m, 0) == "alt"
    m.feed(f"{CSI}?{mode}l".encode())
    assert row(m, 0) == "main"


def test_colon_and_semicolon_colours():
    m = fed(f"{CSI}38:2::255:0:10ma{CSI}38;2;1;2;3mb{CSI}48:5:196mc{CSI}38;5;42md{CSI}4:0me{CSI}m")
    cells = m.state.lines[0]
    assert cells[0].fg == "ff000a" and cells[1].fg == "010203"
    assert cells[2].bg == "i196" and cells[3].fg == "i42"          # indexes stay indexes
    assert row(m, 0) == "abcde"                                    # nothing printed as text


def test_zero_width_joiners_and_selectors_do_not_drop_text():
    m = fed("a\u200db \u2764\ufe0f end \x01 x\x02y")
    assert row(m, 0).replace("\u200d", "").replace("\ufe0f", "") == "ab \u2764 end  xy"
    assert m.state.lines[0][0].data == "a\u200d"


def test_wide_character_at_the_last_column_wraps():
    m = fed("x" * 79 + "中", cols=80)
    assert row(m, 0) == "x" * 79 and m.state.lines[1][0].data == "中"


def test_queries_are_answered():
    m = fed(f"ab{CSI}6n{CSI}c{CSI}>c{CSI}5n")
    assert m.take_replies() == f"{CSI}1;3R{CSI}?6c{CSI}>1;10;0c{CSI}0n".encode()
    assert m.take_replies() == b""


def test_titles_modes_and_cursor_style():
    m = fed(f"\x1b]0;first\x07\x1b]2;second\x1b\\{CSI}?2004h{CSI}?1000;1006h{CSI}?1h\x1b={CSI}4 q{CSI}?25l")
    s = m.state
    assert s.title == "second"
    assert {1, 2004, 1000, 1006} <= s.modes and s.app_keypad and s.cursor_style == 4
    assert not s.cursor_visible


def test_insert_and_delete_lines_keep_the_column():
    m = fed(f"line1\r\nline2\r\n{CSI}1;4H{CSI}L")
    assert m.state.cursor_x == 3 and row(m, 1) == "line1"


def test_scroll_up_and_down():
    m = fed("a\r\nb\r\nc", rows=3)
    m.feed(f"{CSI}S".encode())
    assert [row(m, y) for y in range(3)] == ["b", "c", ""]
    m.feed(f"{CSI}2T".encode())
    assert [row(m, y) for y in range(3)] == ["", "", "b"]


def test_erase_keeps_only_the_background():
    m = fed(f"{CSI}4;41mx{CSI}K")
    assert m.state.lines[0][5].bg == "red" and not m.state.lines[0][5].underscore


def test_state_number_moves_only_when_the_look_changes():
    m = fed("hello")
    number = m.number
    assert m.feed(b"\rhello") == number          # same characters over themselves
    assert m.feed(f"{CSI}0m".encode()) == number  # the pen is not on screen... but is state
    assert m.feed(b"!") == number + 1
    assert m.feed(b"\x07") == number + 2         # a bell is news even if nothing moved


def test_shrinking_loses_blank_rows_first_then_the_top():
    m = fed("".join(f"line {i}\r\n" for i in range(20)), rows=24)     # cursor on row 20
    m.resize(80, 10)
    assert row(m, 9) == "" and row(m, 8) == "line 19" and m.state.cursor_y == 9


def test_resize_keeps_content_and_alt_buffer():
    m = fed(f"keep me\r\n{CSI}?1049halt")
    m.resize(40, 10)
    assert m.state.cols == 40 and m.state.rows == 10 and row(m, 1) == "alt"   # blank rows went
    m.feed(f"{CSI}?1049l".encode())
    assert row(m, 0) == "keep me"
    with pytest.raises(ValueError):
        m.resize(0, 10)


# --- attributes, the last column, scroll regions (each checked against tmux too) -------

def test_dim_and_concealed_are_kept_and_cleared():
    m = fed(f"{CSI}1;2;8ma{CSI}22mb{CSI}28mc{CSI}8;2md{CSI}0me{CSI}21mf")
    a, b, c, d, e, f = m.state.lines[0][:6]
    assert a.bold and a.dim and a.concealed
    assert not b.bold and not b.dim and b.concealed            # 22: neither bold nor dim
    assert not c.concealed and d.dim and d.concealed
    assert not (e.dim or e.concealed) and m.state.lines[0][6] == m.screen.default_char
    assert f.underscore and not f.bold                          # 21: a (double) underline


def test_moving_up_or_down_cancels_a_pending_wrap():
    m = fed(f"\r\n{CSI}48;5;21m" + "x" * 80 + f"{CSI}m{CSI}A ")
    assert m.state.lines[0][79] == m.screen.default_char        # written there, no wrap
    assert row(m, 2) == "" and (m.state.cursor_x, m.state.cursor_y) == (80, 0)
    m = fed("x" * 80 + f"{CSI}By")
    assert m.state.lines[1][79].data == "y"


def test_a_tab_keeps_a_pending_wrap():
    m = fed("x" * 80 + "\ty")
    assert row(m, 0) == "x" * 80 and row(m, 1) == "y"


def test_without_autowrap_the_cursor_sticks_on_the_last_column():
    m = fed(f"{CSI}?7l{CSI}41m" + "x" * 85)
    assert m.state.cursor_x == 79
    m.feed(f"{CSI}m{CSI}K\b\bz".encode())
    assert row(m, 0) == "x" * 77 + "zx" and m.state.lines[0][79] == m.screen.default_char


@pytest.mark.parametrize("setup, sequence, blank_rows", [
    ("a\r\nb\r\nc", "\n", [2]),                                        # LF at the bottom
    ("a\r\nb\r\nc", f"{CSI}H\x1bM", [0]),                               # RI at the top
    ("a\r\nb\r\nc", f"{CSI}2S", [1, 2]),
    ("a\r\nb\r\nc", f"{CSI}T", [0]),
    ("a\r\nb\r\nc", f"{CSI}2;1H{CSI}L", [1]),
    ("a\r\nb\r\nc", f"{CSI}2;1H{CSI}M", [2]),
    ("a\r\nb\r\nc", f"{CSI}2J", [0, 1, 2]),                              # all, not only what was written
])
def test_what_scrolls_or_is_inserted_in_takes_the_background(setup, sequence, blank_rows):
    m = fed(setup + f"{CSI}44;4m" + sequence, rows=3)
    for y in blank_rows:
        assert all(c.data == " " and c.bg == "blue" and not c.underscore for c in m.state.lines[y])


def test_characters_opened_up_take_the_background():
    m = fed("0123456789" * 8 + f"{CSI}1;3H{CSI}44m{CSI}2@{CSI}1;1H{CSI}3P")
    line = m.state.lines[0]
    assert "".join(c.data for c in line) == " " + ("0123456789" * 8)[2:78] + "   "
    assert [c.bg for c in line[:2] + line[77:]] == ["blue", "default", "blue", "blue", "blue"]


def test_a_wrap_scrolls_in_a_blank_line_not_a_coloured_one():
    m = fed(f"{CSI}3;1H{CSI}44m" + "x" * 81, rows=3)              # as tmux: the wrap does not erase
    assert m.state.lines[2][1] == m.screen.default_char


def test_the_cursor_outside_the_region_moves_freely():
    m = fed(f"{CSI}5;10r{CSI}20;1H\n\nbelow{CSI}2;1H\x1bM\x1bMabove")
    assert row(m, 21) == "below" and row(m, 0) == "above"
    m.feed(f"{CSI}1;1H{CSI}30B1{CSI}24;1H{CSI}30A2".encode())
    assert row(m, 9) == "1" and row(m, 4) == "2"                 # stopped by the region's edges


def test_resetting_the_region_homes_the_cursor():
    m = fed(f"{CSI}5;10r{CSI}7;7H{CSI}rx")
    assert row(m, 0) == "x" and m.state.margins is None


def test_deleting_lines_brings_blank_lines_up_too():
    m = fed(f"a\r\nb\r\n\r\nd{CSI}2;1H{CSI}M")
    assert [row(m, y) for y in range(4)] == ["a", "", "d", ""]


def test_inserted_and_deleted_characters_do_not_come_back_from_past_the_edge():
    m = fed("0123456789" * 8 + f"{CSI}1;1H{CSI}3@{CSI}P")
    assert row(m, 0) == "  " + ("0123456789" * 8)[:77]


def test_restoring_a_cursor_never_saved_resets_the_pen():
    m = fed(f"{CSI}1;41m\x1b8x")
    assert m.state.lines[0][0] == m.screen.default_char._replace(data="x")


# How far a row is written, as tmux counts it (its capture-pane ends a row there; the
# tmux oracle checks these against tmux itself): writing extends it, a blank included;
# erasing part of a row leaves it, erasing the whole row starts it again; cells moved
# by ICH and DCH count where they land; rows take it along when they scroll.
@pytest.mark.parametrize("stream, written", [
    ("abc", 3), ("abc   ", 6), (f"ab{CSI}5Cx", 8), ("中", 2),
    (f"abcdef{CSI}3D{CSI}K", 6), (f"abcdef\r{CSI}K", 0), (f"abcdef{CSI}2K", 0),
    (f"abcdef{CSI}3D{CSI}1K", 6), (f"abcdef{CSI}80G{CSI}1K", 0),
    (f"ab{CSI}44m{CSI}5X", 2), (f"ab\r{CSI}44m{CSI}99X", 0), (f"ab{CSI}44m{CSI}K", 2),
    (f"{CSI}44m{CSI}2Jab", 2), (f"{CSI}44m{CSI}2J", 0), (f"{CSI}44m{CSI}2Kab{CSI}K", 2),
    (f"abcdef\r{CSI}2@", 80), (f"abcdef{CSI}79G{CSI}2@", 6), (f"abcdef\r{CSI}3P", 77),
    (f"abcdef\r{CSI}99P", 0), (f"abc{CSI}99P", 3), ("\x1b#8", 80), (f"x{CSI}9b", 10),
    (f"{CSI}4hab{CSI}4l", 80), ("x" * 80 + f"{CSI}2K", 0),
])
def test_how_far_a_row_is_written(stream, written):
    assert fed(stream).state.written[0] == written


def test_a_row_is_written_at_least_as_far_as_cells_no_erase_leaves():
    """Here (not in tmux) reverse video is in the cells, which only writing can draw."""
    assert fed(f"{CSI}?5h").state.written[0] == 80
    assert fed(f"{CSI}?5h{CSI}?5l").state.written[0] == 0


def test_rows_take_how_far_they_are_written_along_when_they_scroll():
    m = fed(f"one  \r\ntwo\r\n{CSI}44m{CSI}S{CSI}m{CSI}3;1H\n")
    assert m.state.written[:3] == (3, 0, 0)
    m = fed(f"{CSI}3;1Hthree{CSI}1;1H{CSI}2L")
    assert m.state.written[:5] == (0, 0, 0, 0, 5)


# --- hostile input ---------------------------------------------------------------

@pytest.mark.parametrize("attack", [
    f"{CSI}{'9' * 100000}A",                       # pyte: int() of 100k digits raises
    f"{CSI}{';' * 100000}m",
    "\x1b]2;" + "x" * 1_000_000,                  # endless OSC
    "\x1bP" + "q" * 100000 + "\x1b\\",             # DCS (sixel) payload
    "e" + "\u0301" * 10000,                        # endless combining marks
    "\x1b[?1049h" * 1000 + "\x1b[?1049l" * 1000,
    f"{CSI}9999;9999H{CSI}9999@{CSI}9999P{CSI}9999L{CSI}9999M{CSI}9999X{CSI}9999S",
])
def test_hostile_sequences_never_raise_or_grow(attack):
    m = fed(attack)
    assert len(m.state.title) <= 4096
    m.feed(b"\x07\x1b\\")                        # end whatever string was left open
    assert all(len(c.data) <= 33 for line in m.state.lines for c in line)
    m.feed(b"still alive")
    assert "still alive" in "".join(row(m, y) for y in range(24))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data):
    m = TerminalModel(20, 5)
    m.feed(data)
    m.feed(b"\x1b[0m\x1b\\ok")
    assert m.state.rows == 5


def test_invalid_utf8_becomes_replacement_characters():
    m = fed(b"a\xff\xfeb\xc3")
    m.feed(b"\xa9!")                               # a sequence split across feeds
    assert row(m, 0) == "a\ufffd\ufffdb\u00e9!"


# --- the fast path is the slow path, only faster -----------------------------------

PIECES = ["\r\n", "\n", "\r", f"{CSI}31m", f"{CSI}0m", f"{CSI}2J", f"{CSI}H", f"{CSI}5;3H", f"{CSI}K",
          "\t", "\b", f"{CSI}?1049h", f"{CSI}?1049l", f"{CSI}3;10r", f"{CSI}r", "é", "中",
          "\x1b]2;t\x07", f"{CSI}4h", f"{CSI}4l", "\x1b7", "\x1b8", "\x1bM", f"{CSI}2L", f"{CSI}20h",
          f"{CSI}20l", f"{CSI}?7l", f"{CSI}?7h", "\x1b(0", "\x1b(B", f"{CSI}?6h", f"{CSI}?6l", "\x1b[",
          f"{CSI}1;4;38;5;100m", f"{CSI}0;1m", f"{CSI}m", f"{CSI}38:2::1:2:3m", f"{CSI}7m", f"{CSI}00;32m",
          f"{CSI}44m", f"{CSI}48;5;21m", f"{CSI}49m", f"{CSI}2;8m", f"{CSI}22;28m", f"{CSI}A", f"{CSI}2B",
          f"{CSI}S", f"{CSI}T", f"{CSI}M", f"{CSI}P", f"{CSI}2@", f"{CSI}J"]


def random_stream(rng: random.Random, size: int) -> bytes:
    parts = []
    while sum(map(len, parts)) < size:
        if rng.random() < 0.75:
            line = "".join(rng.choice("abcdefghij klmnop0123456789") for _ in range(rng.randrange(1, 200)))
            parts.append(line + rng.choice(["\n", "\r\n", ""]) * rng.randrange(1, 4))
        else:
            parts.append(rng.choice(PIECES))
    return "".join(parts).encode()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(100, 20000),
       shape=st.sampled_from([(80, 24), (10, 3), (20, 5), (132, 50), (1, 1)]))
def test_fast_path_equals_plain_model(seed, size, shape):
    rng = random.Random(seed)
    data = random_stream(rng, size)
    fast, slow = TerminalModel(*shape), TerminalModel(*shape, fast_path=False)
    i = 0
    while i < len(data):
        j = i + rng.randrange(1, 5000)
        fast.feed(data[i:j])
        slow.feed(data[i:j])
        i = j
    assert fast.state == slow.state
    assert fast.take_replies() == slow.take_replies()


@pytest.mark.parametrize("name, cols, rows, text", CORPUS, ids=[c[0] for c in CORPUS])
def test_fast_path_equals_plain_model_on_the_corpus(name, cols, rows, text):
    data = text.encode() * 3
    fast, slow = fed(data, cols, rows), fed(data, cols, rows, fast_path=False)
    assert fast.state == slow.state


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), shape=st.sampled_from([(10, 3), (20, 5), (80, 24)]))
def test_fast_path_equals_plain_model_with_backgrounds_and_line_feeds(seed, shape):
    """A line feed scrolls a line in in the pen's background, a wrap a blank one: the
    row the fast path starts drawing on must be the right one of the two."""
    rng = random.Random(seed)
    cols, _ = shape
    parts = []
    for _ in range(rng.randrange(20, 400)):
        r = rng.random()
        if r < 0.15:
            parts.append(rng.choice([f"{CSI}44m", f"{CSI}48;5;21m", f"{CSI}m", f"{CSI}49m", f"{CSI}1;41m"]))
        elif r < 0.5:
            parts.append("x" * rng.choice([cols, cols - 1, 1, 3, cols + 1, 2 * cols]))
        else:
            parts.append(rng.choice(["\n", "\r\n", "\r", "\n\n"]))
    data = "".join(parts).encode()
    fast, slow = TerminalModel(*shape), TerminalModel(*shape, fast_path=False)
    for i in range(0, len(data), 3000):
        fast.feed(data[i:i + 3000])
        slow.feed(data[i:i + 3000])
    assert fast.state == slow.state


def test_fast_path_actually_skips_on_plain_output():
    m = fed("".join(f"{i}\n" for i in range(10000)).encode())
    assert m.skipped_bytes > 40000
    assert row(m, 23) == "" and row(m, 22).strip() == "9999"



# --- regressions found in review ------------------------------------------------------

@pytest.mark.parametrize("sequence", [
    b"\x1b[1;2A", b"\x1b[?5A", b"\x1b[1;2;3r", b"\x1b[?r", b"\x1b[1;2n", b"\x1b[4J", b"\x1b[5K",
    b"\x1b[" + b":" * 100000 + b"m", b"\x1b[" + b" " * 100000 + b"q", b"\x1b7" * 100000,
    b"\x1b[6n" * 10000,
])
def test_malformed_or_flooding_csi_is_absorbed(sequence):
    m = fed(sequence + b"ok")
    assert "ok" in row(m, 0) + row(m, 1) + row(m, 23)
    assert len(m.screen.savepoints) <= 1 and len(m.screen.replies) <= 64


def test_cursor_save_is_one_slot_and_restores_twice():
    assert row(fed("Progress: \x1b7 10%\x1b8 20%\x1b8 30%"), 0) == "Progress:  30%"


def test_osc_ends_at_escape_and_titles_lose_control_characters():
    m = fed("\x1b]2;x\x1b[2J\x07hello")
    assert m.state.title == "x" and row(m, 0) == "hello"
    assert fed("\x1b]0;a\x01b\x9bc\x07").state.title == "abc"


def test_line_drawing_charset_in_utf8():
    assert row(fed("\x1b(0lqqk\x1b(B"), 0) == "┌──┐"


def test_window_size_is_not_the_programs_to_change():
    m = fed("\x1b[?3h")
    assert m.state.cols == 80


def test_tab_stops_follow_a_resize():
    m = fed("")
    m.resize(120, 24)
    m.feed(b"\x1b[86G\tX")
    assert m.state.lines[0][88].data == "X"


@given(st.lists(st.tuples(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
                          st.integers(0, 12), st.sampled_from([0, 1, 31, 44])), max_size=12),
       st.integers(0, 12), st.integers(0, 5))
def test_plain_text_drawing_places_cells_as_the_general_path_does(runs, x, y):
    from moshpit.terminal.screen import TermScreen
    fast, slow = TermScreen(12, 6), TermScreen(12, 6)
    for screen in (fast, slow):
        screen.cursor.x, screen.cursor.y = x, y
    for text, move, sgr in runs:
        for screen, draw in ((fast, fast._draw_plain), (slow, slow._draw_chars)):
            screen.select_graphic_rendition(sgr)
            draw(text)
            screen.cursor.x = min(screen.cursor.x, move) if move % 3 == 0 else screen.cursor.x
    assert (fast.cursor.x, fast.cursor.y) == (slow.cursor.x, slow.cursor.y)
    assert fast.display == slow.display
    for row in range(6):
        assert [fast.buffer[row][c] for c in range(12)] == [slow.buffer[row][c] for c in range(12)]
    assert fast._last_char == slow._last_char


# --- floods of full-screen operations cost one ----------------------------------------------

_TOKENS = st.sampled_from(["\x1b#8", "\x1b[H\x1b[2J", "\x1b[2J", "x", "yz", "\r\n", "\t", "\x08",
                           "\x1b[31m", "\x1b[44m", "\x1b[m", "\x1b[5;3H", "\x1b[2;5r", "\x07", "中"])


@given(st.lists(_TOKENS, max_size=60))
def test_collapsing_full_screen_floods_changes_nothing_on_screen(tokens):
    data = "".join(tokens).encode()
    whole = TerminalModel(20, 6)
    whole.feed(data)                                   # collapsed within the one feed
    one_by_one = TerminalModel(20, 6)
    for byte in range(len(data)):                      # nothing to collapse byte by byte
        one_by_one.feed(data[byte:byte + 1])
    assert whole.state == one_by_one.state


def test_a_flood_of_alignment_displays_is_one(monkeypatch):
    from moshpit.terminal.screen import TermScreen
    calls = []
    original = TermScreen.alignment_display
    monkeypatch.setattr(TermScreen, "alignment_display", lambda self: calls.append(1) or original(self))
    model = TerminalModel(1000, 500)
    model.feed(b"\x1b#8x" * 3750 + b"\x1b#8" * 5000)  # 35 kB; 8750 full-screen fills unbounded
    assert len(calls) == 1
    assert model.state.lines[0][0].data == "E"


def test_a_budgeted_feed_stops_when_its_work_is_spent_and_ends_where_a_whole_feed_does():
    """Costly output is modelled a budget at a time, so the caller's loop serves others in
    between: each call stops within one slice of the budget, leaves the rest in
    ``backlog``, and the steps together land on exactly the screen one feed gives."""
    flood = b"".join(b"\x1b[4%dm\x1b[9999L%d\x1b[2;3H\x1b#8\x1b[3@" % (i % 8, i) for i in range(3000))
    whole = TerminalModel(200, 60)
    whole.feed(flood)
    stepped = TerminalModel(200, 60)
    budget = 20_000
    stepped.feed(flood, budget=budget)
    steps = 1
    assert stepped.backlog                                # it did stop
    while stepped.backlog:
        work = stepped.screen.work + stepped.parsed
        stepped.feed(b"", budget=budget)
        # One slice may start just under the budget: at most a slice's work past it.
        assert stepped.screen.work + stepped.parsed - work <= 2 * budget
        steps += 1
    assert steps > 3 and stepped.state == whole.state


def test_rows_filled_whole_are_one_object_each_not_a_cell_per_column():
    """DECALN and erases in a background colour fill every cell of a row: stored as a
    uniform row, a flood of them costs rows, not rows x columns (1000x500: 500,000)."""
    from moshpit.terminal.screen import BLANK
    model = TerminalModel(999, 500)
    model.feed(b"\x1b#8\x1b[44m\x1b[10;1H\x1b[J")
    rows = model.screen.buffer
    assert all(len(rows[y]) == 0 for y in range(500) if y != 9)
    assert model.state.lines[0][998].data == "E" and model.state.lines[499][0].bg == "blue"
    model.resize(998, 499)                                # and they resize like any row:
    model.resize(1000, 500)                               # new columns come in blank
    assert model.state.lines[0][997].data == "E"
    assert model.state.lines[0][998] == model.state.lines[0][999] == BLANK


def test_ansi_modes_are_not_taken_for_the_private_modes_pyte_stores_beside_them():
    """pyte keeps DEC private modes shifted left by 5 in the same set as ANSI modes, so
    ANSI mode 96 looked like DECCOLM (the screen became 132 columns wide: found by the
    fuzzer) and ANSI mode 224 like autowrap. Only IRM and LNM are ANSI modes here."""
    model = TerminalModel(80, 24)
    model.feed(b"\x1b[96h\x1b[224l\x1b[800l" + b"x" * 85)
    state = model.state
    assert (state.cols, len(state.lines[0])) == (80, 80)
    assert state.autowrap and state.cursor_visible and state.text()[1].startswith("xxxxx")
    model.feed(b"\x1b[4h\r\x1b[Ay\x1b[4l")                  # IRM still works
    assert model.state.text()[0].startswith("yx")
