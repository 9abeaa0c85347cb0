"""The transcript judge (tests/transcript.py): what reaches the scrollback, and the verdict on a run."""

from transcript import judge_numbers, transcript_lines


def numbers(values) -> bytes:
    return b"".join(b"%d\r\n" % n for n in values)


def test_numbers_scrolling_past_the_screen_are_judged():
    shown = [n for n in range(1, 101) if n != 50]
    shown.insert(shown.index(70), 70)            # 70 twice, 50 never
    data = b"$ seq 1 100\r\n" + numbers(shown) + b"[moshpit: 3 lines not shown]\r\n$ "
    lines = transcript_lines(data, 80, 24)
    assert lines[0] == "$ seq 1 100" and lines[-1] == "$"
    verdict = judge_numbers(lines, 1, 100)
    assert (verdict.expected, verdict.once, verdict.missing, verdict.repeated) == (100, 98, [50], 1)
    assert not verdict.out_of_order
    assert verdict.markers == ["[moshpit: 3 lines not shown]"] and verdict.hidden == 3


def test_out_of_order_is_noticed():
    verdict = judge_numbers(transcript_lines(numbers([1, 2, 4, 3, 5])), 1, 5)
    assert verdict.out_of_order and verdict.once == 5


def test_xterm_rules_for_the_scrollback():
    # A scroll region below the top row and the alternate screen keep no history;
    # SU (CSI S) and autowrap at the bottom do.
    region = b"\x1b[5;24r\x1b[24;1H" + numbers(range(1, 31)) + b"\x1b[r"
    assert judge_numbers(transcript_lines(region), 1, 30).once == 19    # rows 5..23 still hold 12..30
    alternate = b"\x1b[?1049h" + numbers(range(1, 31)) + b"\x1b[?1049l"
    assert judge_numbers(transcript_lines(alternate), 1, 30).once == 0
    su = b"1\r\n2\x1b[2S"
    assert transcript_lines(su)[:2] == ["1", "2"]
    wrapped = b"\x1b[24;1H" + b"x" * 81
    assert transcript_lines(wrapped)[0] == "" and transcript_lines(wrapped)[-2] == "x" * 80
