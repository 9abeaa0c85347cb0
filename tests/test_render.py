"""The renderer: repaints and diffs reproduce states exactly, and diffs stay small."""

import random

from hypothesis import given, settings, strategies as st

from moshpit.terminal.model import TerminalModel
from moshpit.terminal.render import render_diff, render_full
from test_terminal_model import random_stream
from terminal_corpus import CORPUS


def apply(state, text: str, cols=None, rows=None):
    """A client model that shows ``state`` (painted from blank), then fed ``text``."""
    model = TerminalModel(state.cols, state.rows)
    model.feed(render_full(state).encode())
    assert model.state == state
    model.resize(cols or state.cols, rows or state.rows)   # the client's window first
    model.feed(text.encode())
    return model.state


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32), shape=st.sampled_from([(80, 24), (12, 4), (30, 7)]))
def test_full_repaint_reproduces_any_state(seed, shape):
    rng = random.Random(seed)
    server = TerminalModel(*shape)
    server.feed(random_stream(rng, rng.randrange(10, 4000)))
    client = TerminalModel(*shape)
    client.feed(render_full(server.state).encode())
    assert client.state == server.state


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32), shape=st.sampled_from([(80, 24), (12, 4), (30, 7)]))
def test_diff_takes_any_state_to_any_later_state(seed, shape):
    rng = random.Random(seed)
    server = TerminalModel(*shape)
    client = TerminalModel(*shape)
    previous = client.state
    for _ in range(rng.randrange(1, 12)):
        server.feed(random_stream(rng, rng.randrange(1, 800)))
        client.feed(render_diff(previous, server.state).encode())
        assert client.state == server.state
        previous = server.state


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_diff_between_unrelated_states(seed):
    rng = random.Random(seed)
    a, b = TerminalModel(40, 10), TerminalModel(40, 10)
    a.feed(random_stream(rng, 1500))
    b.feed(random_stream(rng, 1500))
    assert apply(a.state, render_diff(a.state, b.state)) == b.state


def test_resize_and_alt_screen_switch_repaint_fully():
    a = TerminalModel(80, 24)
    a.feed(b"hello")
    b = TerminalModel(100, 30)
    b.feed(b"hello")
    diff = render_diff(a.state, b.state)
    assert diff.startswith("\x1b[?1049l")
    assert apply(a.state, diff, 100, 30) == b.state
    c = TerminalModel(80, 24)
    c.feed(b"hello\x1b[?1049hfull screen app")
    assert apply(a.state, render_diff(a.state, c.state)) == c.state


def diff_size(before: bytes, after: bytes, cols=80, rows=24) -> int:
    model = TerminalModel(cols, rows)
    model.feed(before)
    old = model.state
    model.feed(after)
    return len(render_diff(old, model.state).encode())


def test_typical_diffs_are_small():
    prompt = b"\x1b[1;32muser@host\x1b[0m:~$ "
    assert diff_size(prompt + b"ls -l", b"a") <= 4              # one echoed key: the key itself
    assert diff_size(prompt, b"x\x08") <= 8                     # a keystroke and a backspace
    assert diff_size(b"", b"\x07") == 1                         # a bell is one byte
    assert diff_size(b"".join(b"line %d\r\n" % i for i in range(30)), b"line 30\r\n") < 24 * 12
    assert diff_size(b"", b"\x1b[7mreverse\x1b[m") < 25


def test_unchanged_state_costs_nothing():
    model = TerminalModel()
    model.feed(CORPUS[0][3].encode())
    assert render_diff(model.state, model.state) == ""


def test_concealed_and_dim_text_stays_so_on_the_client():
    server = TerminalModel(20, 4)
    server.feed(b"pw: \x1b[8mhunter2\x1b[28m \x1b[2mhint\x1b[m")
    full = render_full(server.state)
    assert "\x1b[0;8m" in full and "\x1b[0;2m" in full
    client = TerminalModel(20, 4)
    client.feed(render_diff(client.state, server.state).encode())
    assert client.state == server.state
    assert all(c.concealed for c in client.state.lines[0][4:11])


def test_a_pending_wrap_survives_autowrap_turned_off():
    server = TerminalModel(20, 4)
    server.feed(b"x" * 20 + b"\x1b[?7l")
    assert (server.state.cursor_x, server.state.autowrap) == (20, False)
    client = TerminalModel(20, 4)
    client.feed(render_full(server.state).encode())
    assert client.state == server.state
