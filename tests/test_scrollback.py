"""The rows that scroll off the server's screen, kept for the client's scrollback: the fast
path keeps the same rows as plain drawing, and the client's writes put exactly those rows
into a terminal's scrollback, above the screen it shows."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from moshpit.terminal.model import TerminalModel
from moshpit.terminal.render import render_diff, render_full
from moshpit.terminal.scrollback import insert_rows, render_row
from test_terminal_model import random_stream
from transcript import transcript_lines

ROWS_OF_TEXT = st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200),
                        min_size=0, max_size=400)


def kept_rows(data: str, fast: bool, cols: int = 80, rows: int = 24, pieces: int = 1) -> tuple:
    model = TerminalModel(cols, rows, fast_path=fast)
    model.keep_scrolled(True)
    got = []
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        model.feed(data[i:i + step].encode())
        got += model.take_scrolled()
    return got, model.state


@given(ROWS_OF_TEXT, st.sampled_from(["\r\n", "\n"]), st.integers(1, 4), st.sampled_from([(80, 24), (20, 5)]))
def test_the_fast_path_keeps_the_rows_plain_drawing_keeps(lines, newline, pieces, size):
    data = "$ cat file\r\n" + newline.join(lines) + newline + "$ "
    fast, fast_state = kept_rows(data, True, *size, pieces=pieces)
    slow, slow_state = kept_rows(data, False, *size, pieces=pieces)
    assert fast == slow
    assert fast_state == slow_state


def test_the_fast_path_still_skips_a_plain_flood_while_keeping_its_rows():
    data = "".join(f"{i}\r\n" for i in range(1, 20001))
    model = TerminalModel(80, 24)
    model.keep_scrolled(True)
    model.feed(data.encode())
    got = model.take_scrolled()
    assert got == [str(i) for i in range(1, 19978)]          # the rest is on the screen
    assert model.skipped_bytes > len(data) * 0.9              # and was never drawn


def test_coloured_rows_and_colour_changes_inside_a_flood_are_kept_exactly():
    rng = random.Random(5)
    words = ["plain", "\x1b[31mred\x1b[0m", "\x1b[1;44mbold on blue", "\x1b[m", "\r", "tab\tbed", "ünï"]
    data = "".join(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 12))) + "\r\n"
                   for _ in range(300))
    fast, fast_state = kept_rows(data, True)
    slow, slow_state = kept_rows(data, False)
    assert fast == slow and fast_state == slow_state


def test_the_alternate_screen_keeps_nothing():
    model = TerminalModel(80, 24)
    model.keep_scrolled(True)
    model.feed(b"\x1b[?1049h" + b"".join(b"%d\r\n" % i for i in range(100)) + b"\x1b[?1049l")
    assert model.take_scrolled() == []


def test_rows_written_in_land_in_the_scrollback_above_the_screen_in_order():
    shown_model = TerminalModel(80, 24)
    shown_model.feed(b"".join(b"row %d\r\n" % i for i in range(40)) + b"$ ")
    shown = shown_model.state
    rows = [render_row(shown.lines[0]), "\x1b[31mred\x1b[0m line", "", "x" * 80, "ok"]
    text, after = insert_rows(shown, rows)
    from moshpit.terminal.render import render_diff
    written = render_full(shown) + text + render_diff(after, shown, scroll=False)
    lines = transcript_lines(written.encode())
    assert lines[:5] == ["row 17", "red line", "", "x" * 80, "ok"]
    assert lines[5:] == [line.rstrip() for line in shown.text()]
    assert "\x1b[24H\n\x1b[1H\x1b[2K" in text                    # the first was the top row already:
    assert "row 17" not in text                               # pushed as it was, not written again


@pytest.mark.parametrize("alt", [False, True])
def test_rows_written_while_the_alternate_screen_is_shown_go_to_the_main_screens_scrollback(alt):
    model = TerminalModel(80, 24)
    model.feed(b"shell\r\n" + (b"\x1b[?1049hvim" if alt else b""))
    shown = model.state
    text, after = insert_rows(shown, ["one", "two"])
    from moshpit.terminal.render import render_diff
    written = render_full(shown) + text + render_diff(after, shown, scroll=False)
    lines = transcript_lines(written.encode())
    assert lines[:2] == ["one", "two"]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32), shape=st.sampled_from([(80, 24), (12, 4), (30, 7)]))
def test_the_screen_drawn_again_below_inserted_rows_is_the_screen_exactly(seed, shape):
    """After rows go into the scrollback the screen is blank and drawn again by a diff
    from there, whose blank rows count as cleared (painted as strings where they can
    be): the terminal must end up showing exactly the screen, whatever it holds."""
    rng = random.Random(seed)
    server = TerminalModel(*shape)
    server.feed(random_stream(rng, rng.randrange(10, 3000)))
    shown = server.state
    if 1049 in shown.modes:
        return                                    # (the scrollback is the main screen's)
    client = TerminalModel(*shape)
    client.feed(render_full(shown).encode())
    text, after = insert_rows(shown, ["one", "two", "three"])
    client.feed(text.encode())
    assert client.state.lines == after.lines
    client.feed(render_diff(after, shown, scroll=False).encode())
    assert client.state == shown
