"""tmux as an independent oracle: our repaint and our diff must look exactly like the original."""

import os
import random

import pytest

import tmux_oracle
from moshpit.terminal.model import TerminalModel
from moshpit.terminal.render import render_diff, render_full
from terminal_corpus import CORPUS

if not tmux_oracle.available():
    if os.environ.get("CI"):
        raise RuntimeError("tmux is required in CI (ci/ci.sh installs it)")
    pytest.skip("tmux not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def tmux_screens():
    screens = {}
    yield lambda cols, rows: screens.setdefault((cols, rows), tmux_oracle.TmuxScreen(cols, rows))
    for screen in screens.values():
        screen.close()


def model_of(data: bytes, cols: int, rows: int, seed: int = 0) -> TerminalModel:
    model = TerminalModel(cols, rows)
    rng = random.Random(seed)
    i = 0
    while i < len(data):                   # in the uneven pieces a PTY hands over
        j = i + rng.randrange(1, 700)
        model.feed(data[i:j])
        i = j
    return model


@pytest.mark.parametrize("name, cols, rows, text", CORPUS, ids=[c[0] for c in CORPUS])
def test_repaint_and_diff_look_like_the_original(tmux_screens, name, cols, rows, text):
    tmux = tmux_screens(cols, rows)
    data = text.encode()
    original = tmux.show(data)
    assert any(original[0]), "a case that leaves the screen blank proves nothing"
    final = model_of(data, cols, rows).state
    assert tmux.show(render_full(final).encode()) == original
    # From a state halfway through, the diff must land on the same screen.
    halfway = model_of(data[: len(data) // 2], cols, rows, seed=1).state
    assert tmux.show((render_full(halfway) + render_diff(halfway, final)).encode()) == original
