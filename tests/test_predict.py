"""The prediction engine against simulated shells: what the user sees settles on the truth."""

import random

from hypothesis import given, settings, strategies as st

from moshpit.terminal.model import TerminalModel
from moshpit.terminal.predict import ECHO, ICANON, Policy, PredictionEngine

RTT = 0.25


class FakeShell:
    """A program on the server's terminal that answers keystrokes in one of several ways."""

    def __init__(self, behaviour: str, cols=40, rows=8):
        self.model = TerminalModel(cols, rows)
        self.behaviour = behaviour
        self.model.feed(b"$ ")
        self.given = 0

    def take(self, data: bytes) -> None:
        self.given += len(data)
        for byte in data:
            if self.behaviour == "silent":
                continue
            if byte in (0x7F, 0x08):
                self.model.feed(b"\b \b" if self.model.state.cursor_x > 2 else b"")
            elif byte == 0x0D:
                self.model.feed(b"\r\n$ ")
            elif 0x20 <= byte < 0x7F:
                char = bytes([byte])
                self.model.feed(char.upper() if self.behaviour == "shouting" else char)

    @property
    def flags(self) -> int:
        return ICANON if self.behaviour == "password" else ECHO | ICANON


def run(keys: list[bytes], behaviour: str, loss: float, seed: int, policy=Policy.ALWAYS):
    """Type ``keys`` 80 ms apart over a 250 ms RTT; states come back with their echo ack."""
    rng = random.Random(seed)
    shell = FakeShell("password" if behaviour == "password" else behaviour)
    engine = PredictionEngine(policy)
    engine.set_srtt(RTT)
    truth = shell.model.state
    engine.truth(truth, 0, shell.flags, 0.0)         # the prompt arrived before any typing
    drawn_wrong = []
    in_flight = []                                   # (arrival time, keys) to the server
    states = []                                      # (arrival time, state, ack, flags) to the client
    now = 0.0
    events = [(i * 0.08, k) for i, k in enumerate(keys)]
    end = len(keys) * 0.08 + 3 * RTT
    while now <= end:
        for at, k in [e for e in events if e[0] <= now]:
            events.remove((at, k))
            engine.keys(k, truth, now)
            in_flight.append((now + RTT / 2, k))
        for at, k in [e for e in in_flight if e[0] <= now]:
            in_flight.remove((at, k))
            shell.take(k)
            if rng.random() >= loss:
                states.append((now + RTT / 2, shell.model.state, shell.given, shell.flags))
        for item in [s for s in states if s[0] <= now]:
            states.remove(item)
            _, truth, ack, flags = item
            engine.truth(truth, ack, flags, now)
        shown = engine.display(truth, now)
        if behaviour == "password":
            drawn_wrong.append(shown.text() != truth.text())
        now += 0.01
    # settle: the newest state arrives whatever was lost
    engine.truth(shell.model.state, shell.given, shell.flags, now)
    return engine, shell.model.state, drawn_wrong


keystrokes = st.lists(st.sampled_from([b"a", b"b", b"x", b" ", b"\x7f", b"\r", b"\x1b[D", b"\x1b[C",
                                       b"\x03", b"hello"]), max_size=40)


@settings(deadline=None)
@given(keys=keystrokes, behaviour=st.sampled_from(["echo", "silent", "shouting"]),
       loss=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 1000))
def test_after_settling_the_user_sees_exactly_the_servers_screen(keys, behaviour, loss, seed):
    engine, final, _ = run(keys, behaviour, loss, seed)
    assert engine.display(final, 100.0) == final
    assert engine.pending == 0


def test_typing_into_an_echoing_shell_is_shown_at_once_after_the_first_confirmation():
    engine = PredictionEngine(Policy.ALWAYS)
    shell = FakeShell("echo")
    truth = shell.model.state
    engine.keys(b"a", truth, 0.0)
    assert engine.display(truth, 0.0) == truth       # the first epoch is tentative
    shell.take(b"a")
    engine.truth(shell.model.state, 1, shell.flags, 0.25)
    truth = shell.model.state
    engine.keys(b"b", truth, 0.3)
    shown = engine.display(truth, 0.3)
    assert shown.text()[0].startswith("$ ab") and (shown.cursor_x, shown.cursor_y) == (4, 0)
    assert shown.lines[0][3].underscore                 # unconfirmed: underlined
    shell.take(b"b")
    engine.truth(shell.model.state, 2, shell.flags, 0.55)
    assert engine.display(shell.model.state, 0.55) == shell.model.state and engine.stats.confirmed == 2


def test_a_wrong_prediction_on_screen_is_taken_back_with_the_next_state():
    engine = PredictionEngine(Policy.ALWAYS)
    shell = FakeShell("echo")
    engine.keys(b"a", shell.model.state, 0.0)
    shell.take(b"a")
    engine.truth(shell.model.state, 1, shell.flags, 0.25)   # confirmed: predictions now shown
    shell.behaviour = "shouting"
    engine.keys(b"b", shell.model.state, 0.3)
    assert engine.display(shell.model.state, 0.3).text()[0].startswith("$ ab")
    shell.take(b"b")
    engine.truth(shell.model.state, 2, shell.flags, 0.55)
    assert engine.display(shell.model.state, 0.55) == shell.model.state   # "$ aB", the truth
    assert engine.stats.glitches == 1


def test_nothing_is_drawn_at_a_password_prompt_not_even_for_a_round_trip():
    keys = [bytes([c]) for c in b"hunter2"] + [b"\r"]
    engine, final, drawn = run(keys, "password", 0.0, 1)
    assert not any(drawn) and engine.stats.predicted == 0


def test_a_paste_is_not_predicted_and_never_means_never():
    engine = PredictionEngine(Policy.ALWAYS)
    shell = FakeShell("echo")
    engine.keys(b"x" * 200, shell.model.state, 0.0)
    assert engine.pending == 0
    never = PredictionEngine(Policy.NEVER)
    never.keys(b"abc", shell.model.state, 0.0)
    assert never.pending == 0 and never.display(shell.model.state, 9.0) == shell.model.state


def test_adaptive_shows_on_a_slow_link_or_a_slow_echo_and_not_on_a_fast_one():
    shell = FakeShell("echo")
    engine = PredictionEngine(Policy.ADAPTIVE)
    engine.set_srtt(0.01)
    engine.keys(b"a", shell.model.state, 0.0)
    shell.take(b"a")
    engine.truth(shell.model.state, 1, shell.flags, 0.01)
    engine.keys(b"b", shell.model.state, 0.02)
    assert engine.display(shell.model.state, 0.03) == shell.model.state     # fast: hidden
    assert engine.get_timer() == 0.02 + 0.25
    assert engine.display(shell.model.state, 0.3).text()[0].startswith("$ ab")   # slow echo: shown
    engine.set_srtt(0.2)
    assert engine.display(shell.model.state, 0.03).lines[0][3].underscore   # slow link: underlined


def test_echo_turned_off_without_a_new_line_still_shows_nothing_typed():
    """Epochs alone would not save this: the epoch is confirmed (echo worked), then the
    program turns echo off and prints a prompt on the same line. The flags that came
    with that state stop prediction before the first secret key."""
    engine = PredictionEngine(Policy.ALWAYS)
    shell = FakeShell("echo")
    engine.truth(shell.model.state, 0, shell.flags, 0.0)
    engine.keys(b"a", shell.model.state, 0.0)
    shell.take(b"a")
    engine.truth(shell.model.state, 1, shell.flags, 0.25)    # confirmed: shown from now on
    shell.behaviour = "password"
    shell.model.feed(b" pass: ")
    engine.truth(shell.model.state, 1, shell.flags, 0.3)     # echo off, with the prompt
    for i, key in enumerate(b"secret"):
        engine.keys(bytes([key]), shell.model.state, 0.4 + i * 0.08)
        assert engine.display(shell.model.state, 0.4 + i * 0.08) == shell.model.state
    assert engine.stats.predicted == 1


def test_keys_after_a_lone_escape_in_the_same_read_are_not_skipped():
    """vim: ESC then a normal-mode key typed fast arrive in one read; the key after a
    bare ESC is a key (counted, so the keystroke numbering stays the server's)."""
    engine = PredictionEngine(Policy.ALWAYS)
    shell = FakeShell("echo")
    engine.keys(b"\x1b0\x1b[3~x", shell.model.state, 0.0)
    assert engine._sent == 7
    assert [p.cell.data for p in engine._cells] == ["0", "x"]       # tentative: hidden until confirmed
    assert engine.display(shell.model.state, 0.0) == shell.model.state


def test_enter_into_a_program_the_kernel_echoes_for_confirms_its_epoch_by_the_cursor():
    """Typing ``cat`` Enter at a raw-mode prompt opens a tentative epoch. Once the
    server shows the cursor where Enter was predicted to take it, with the terminal
    back in echo and canonical mode, the first keys typed into cat show at once
    (in raw mode the same cursor proves nothing: vim's normal mode moves there too)."""
    for flags, shown in ((ECHO | ICANON, True), (0, False)):
        engine = PredictionEngine(Policy.ALWAYS)
        shell = FakeShell("echo")
        engine.truth(shell.model.state, 0, 0, 0.0)              # a readline prompt: raw mode
        engine.keys(b"\r", shell.model.state, 0.0)
        shell.model.feed(b"\r\n")                                # cat runs, reading the next line
        engine.truth(shell.model.state, 1, flags, 0.3)
        engine.keys(b"h", shell.model.state, 1.0)
        assert (engine.display(shell.model.state, 1.0) != shell.model.state) is shown


def test_the_slow_echo_timer_fires_once_for_the_same_guesses():
    """A look that could not draw the guesses (the screen mid-update) must not leave its
    deadline in the past: the loop would wake for it again at once, for as long as the
    echo takes (it spun a CPU through a flood after fast typing)."""
    shell = FakeShell("echo")
    engine = PredictionEngine(Policy.ADAPTIVE)
    engine.set_srtt(0.01)
    engine.keys(b"a", shell.model.state, 0.0)
    shell.take(b"a")
    engine.truth(shell.model.state, 1, shell.flags, 0.01)
    engine.keys(b"b", shell.model.state, 0.02)
    assert engine.get_timer() == 0.02 + 0.25
    engine.handle_timer(0.1)                             # early: still wanted
    assert engine.get_timer() == 0.02 + 0.25
    engine.handle_timer(0.3)
    assert engine.get_timer() is None                    # looked; no deadline left behind
    assert engine.display(shell.model.state, 0.3).text()[0].startswith("$ ab")   # still shown when drawn
    shell.take(b"b")
    engine.truth(shell.model.state, 2, shell.flags, 0.31)
    engine.keys(b"c", shell.model.state, 1.0)            # new guesses: a new look
    assert engine.get_timer() == 1.0 + 0.25
