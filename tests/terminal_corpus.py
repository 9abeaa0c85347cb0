"""Byte streams that look like what real programs write, for the screen model's tests.

Each entry is (name, cols, rows, bytes). They are built here, not recorded, so
each one states what it exercises.
"""

from __future__ import annotations

import random

CSI = "\x1b["


def vim_like(cols=80, rows=24) -> str:
    out = [f"{CSI}?1049h{CSI}22;0;0t{CSI}H{CSI}2J{CSI}?1h\x1b={CSI}?25l"]
    for y in range(rows - 2):
        out.append(f"{CSI}{y + 1};1H{CSI}34m{y + 1:>3} {CSI}m")
        out.append(f"def function_{y}(arg):  {CSI}32m# comment {y}{CSI}m" if y % 3 else "~")
    out.append(f"{CSI}{rows - 1};1H{CSI}7m main.py [+]{' ' * (cols - 20)}1,1 All{CSI}27m")
    out.append(f"{CSI}{rows};1H-- INSERT --{CSI}K")
    out.append(f"{CSI}1;{rows - 2}r{CSI}{rows - 2};1H\n\n{CSI}r")        # scroll the text region
    out.append(f"{CSI}5;5H{CSI}2Linserted{CSI}3M{CSI}4P{CSI}2@xy{CSI}5X")
    out.append(f"{CSI}3;7H{CSI}?25h{CSI}2 q")
    return "".join(out)


def leave_vim() -> str:
    return f"{CSI}?1l\x1b>{CSI}?1049l{CSI}0 q"


def shell_prompt(i: int) -> str:
    return f"{CSI}1;32muser@host{CSI}0m:{CSI}1;34m~/src{CSI}0m$ ls -la {i}\r\n"


def ls_color(n=40) -> str:
    kinds = ["01;34", "01;32", "0", "01;36", "40;33;01", "30;42", "01;31"]
    rng = random.Random(3)
    lines = []
    for i in range(n):
        entries = []
        for j in range(rng.randrange(1, 6)):
            entries.append(f"\x1b[0m\x1b[{rng.choice(kinds)}mfile_{i}_{j}\x1b[0m")
        lines.append("  ".join(entries) + "\r\n")
    return "".join(lines)


def colours() -> str:
    out = []
    for i in range(8):
        out.append(f"{CSI}{30 + i}m{i}{CSI}{90 + i}m{i}{CSI}{40 + i}m {CSI}{100 + i}m {CSI}m")
    out.append("\r\n")
    for i in range(0, 256, 7):
        out.append(f"{CSI}38;5;{i}m#{CSI}48;5;{255 - i}m.{CSI}m")
    out.append("\r\n")
    for i in range(0, 256, 17):
        out.append(f"{CSI}38;2;{i};{255 - i};128mT{CSI}48:2::{i}:0:{255 - i}mt{CSI}m")
    out.append("\r\n")
    out.append(f"{CSI}1mbold{CSI}22m {CSI}3mitalic{CSI}23m {CSI}4munder{CSI}24m {CSI}7mrev{CSI}27m "
               f"{CSI}9mstrike{CSI}29m {CSI}1;4;7;31;42mall{CSI}m\r\n")
    return "".join(out)


def wrapping(cols=80) -> str:
    return ("x" * (cols - 1) + "Y" + "wrapped line\r\n" + "a" * cols + "\r\n"
            + "b" * (3 * cols + 5) + "\r\n" + f"{CSI}24;{cols}HZ")


def wide_and_combining(cols=80) -> str:
    return ("中文字符 mixed with ASCII 日本語\r\n"
            "e\u0301 a\u0308 n\u0303 combining\r\n"
            + "w" * (cols - 1) + "中 wide at the last column\r\n"
            + "emoji 😀 🎉 and CJK 한국어\r\n")


def scroll_regions(rows=24) -> str:
    out = [f"{CSI}H{CSI}2J"]
    for y in range(rows):
        out.append(f"{CSI}{y + 1};1Hrow {y}")
    out.append(f"{CSI}5;15r{CSI}15;1H\n\n\nnew at bottom{CSI}5;1H\x1bM\x1bMreverse index")
    out.append(f"{CSI}2S{CSI}1T{CSI}r{CSI}20;1H")
    return "".join(out)


def erasing() -> str:
    return ("line one\r\nline two is longer\r\nthree\r\n"
            f"{CSI}2;6H{CSI}K{CSI}1;3H{CSI}1K{CSI}3;1H{CSI}2K{CSI}J\tafter\ttabs\r\n"
            f"{CSI}41m{CSI}2K{CSI}m red erased line\r\n")


def log_lines(n=300) -> str:
    return "".join(f"2026-11-22 01:02:{i % 60:02d} app[{i}]: handled /api/item/{i} in {i % 97} ms\r\n"
                   for i in range(n))


def seq(n=2000) -> str:
    return "".join(f"{i}\n" for i in range(1, n + 1))


CORPUS = [
    ("vim", 80, 24, vim_like()),
    ("vim and back", 80, 24, shell_prompt(1) + ls_color(5) + vim_like() + leave_vim() + shell_prompt(2)),
    ("ls --color", 80, 24, shell_prompt(0) + ls_color()),
    ("colours", 80, 24, colours()),
    ("wrapping", 80, 24, wrapping()),
    ("wide and combining", 80, 24, wide_and_combining()),
    ("scroll regions", 80, 24, scroll_regions()),
    ("erasing", 80, 24, erasing()),
    ("log", 80, 24, log_lines()),
    ("seq", 80, 24, seq()),
    ("narrow window", 20, 6, shell_prompt(1) + wide_and_combining(20) + wrapping(20)),
]
