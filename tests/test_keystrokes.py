"""The client's keystroke handling, apart from I/O: the escape key and the replay."""

from hypothesis import given, strategies as st

from moshpit.keystrokes import ESCAPE, EscapeKeys, KeystrokeReplay
from moshpit.gevent.client import closed_outcome
from moshpit.protocol.channel import CloseCode
from moshpit.protocol.events import ConnectionClosed

E = bytes([ESCAPE])


def test_escape_commands():
    keys = EscapeKeys()
    assert keys.feed(b"ls" + E + b"^" + E + E + E + b"x").keys == b"ls" + E + E + E + b"x"
    typed = keys.feed(b"a" + E + b"\x1a" + b"b")
    assert (typed.keys, typed.suspends, typed.quit) == (b"ab", 1, False)
    assert keys.feed(b"typed" + E + b".more").quit             # quit: nothing of the read is sent


def test_an_escape_at_the_end_of_a_read_waits_for_the_next():
    keys = EscapeKeys()
    assert keys.feed(b"x" + E).keys == b"x"
    assert keys.feed(b".").quit


@given(st.lists(st.binary(max_size=20).filter(lambda b: bytes([ESCAPE]) not in b), max_size=10))
def test_text_without_the_escape_key_passes_whole_however_it_is_read(pieces):
    keys = EscapeKeys()
    assert b"".join(keys.feed(piece).keys for piece in pieces) == b"".join(pieces)


def test_a_resumed_connection_sends_again_exactly_what_the_server_lacks():
    replay = KeystrokeReplay(kept=8)
    replay.connected(100)
    replay.sent(b"abcdef", in_contact=True)
    assert replay.resumed(102) == (b"cdef", 0)             # the server had 2 of them
    replay.sent(b"cdef", in_contact=True)                 # (sent again on the new connection)
    replay.sent(b"0123456789", in_contact=True)           # in contact: only the last 8 kept
    assert replay.resumed(120) == (b"", 0)
    replay.sent(b"0123456789", in_contact=True)
    assert replay.resumed(120) == (b"23456789", 2)         # 2 let go the server never got: lost
    replay.sent(b"0123456789", in_contact=False)          # silent: everything is kept
    assert replay.resumed(120) == (b"0123456789", 0)


def test_how_a_closed_connection_ends_mp():
    assert closed_outcome(ConnectionClosed(CloseCode.SHELL_EXITED, "exit", by_peer=True, exit_status=3)) == \
        ("exit", 3, True)
    assert closed_outcome(ConnectionClosed(CloseCode.DISPLACED, "x", by_peer=True)) == \
        ("the session was resumed elsewhere", 1, False)
    assert closed_outcome(ConnectionClosed(CloseCode.NORMAL, "client quit", by_peer=False)) == ("", None, True)
    assert closed_outcome(ConnectionClosed(CloseCode.SERVER_SHUTDOWN, "bye", by_peer=True)) == ("bye", 1, True)
