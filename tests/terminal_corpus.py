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


_ATTRIBUTES = [(1, 22, "bold"), (2, 22, "dim"), (3, 23, "italic"), (4, 24, "underline"),
               (5, 25, "blink"), (7, 27, "reverse"), (8, 28, "concealed"), (9, 29, "strike")]


def sgr_attributes() -> str:
    """Every attribute on and off alone and over a background, all at once, and every
    colour form (16, 256, truecolour in both spellings) with the 39/49 resets."""
    out = []
    for on, off, name in _ATTRIBUTES:
        out.append(f"{CSI}{on}m{name}{CSI}{off}m|{CSI}{on};44m {name} on blue {CSI}{off}mstill blue{CSI}m\r\n")
    out.append(f"{CSI}1;2mbold+dim{CSI}22mneither {CSI}1;2;3;4;5;7;8;9mall{CSI}0mnone\r\n")
    out.append(f"{CSI}21mdouble underline{CSI}24m {CSI}4:3mcurly{CSI}4:0m plain\r\n")
    out.append("".join(f"{CSI}{30 + i};{47 - i}m{i}{CSI}{90 + i};{107 - i}m{i}" for i in range(8)))
    out.append(f"{CSI}39mfg reset{CSI}49mbg reset{CSI}m\r\n")
    out.append("".join(f"{CSI}38;5;{i};48;5;{255 - i}m{i % 10}" for i in range(0, 256, 5)))
    out.append(f"{CSI}39m*{CSI}49m*{CSI}m\r\n")
    out.append("".join(f"{CSI}38;2;{i};{255 - i};7;48:2::{255 - i}:{i}:99m{i % 10}" for i in range(0, 256, 9)))
    out.append(f"{CSI}m\r\n{CSI}1;3;38;5;208mbold italic orange {CSI}39mdefault colour, still bold italic{CSI}m")
    return "".join(out)


def concealed(cols=80) -> str:
    """A password prompt and a hidden answer (SGR 8), on colours, across a wrap, then revealed."""
    return (f"Password: {CSI}8mhunter2{CSI}28m <- hidden\r\n"
            f"{CSI}8;41mred and hidden{CSI}m {CSI}7;8mreverse hidden{CSI}m {CSI}8;4mhidden underline{CSI}m\r\n"
            f"{CSI}8m" + "secret " * (cols // 7 + 2) + f"{CSI}28mvisible again{CSI}m\r\n"
            f"{CSI}8mabc{CSI}0mdef {CSI}2;8mdim hidden{CSI}22mhidden{CSI}28m shown\r\n")


def last_column(cols=80, rows=24) -> str:
    """Print up to and into the last column with each attribute, leave the wrap
    pending, then reset or change the pen and go on: printing (which wraps),
    moving up or down (which cancels the wrap) and printing, tabbing, erasing."""
    pens = ["48;5;21", "48;5;196;38;5;231", "48;2;10;120;10", "44", "7", "1;2", "4", "8;45", "9;3"]
    out = [f"{CSI}H{CSI}2J"]
    for i, pen in enumerate(pens):
        out.append(f"{CSI}{pen}m" + "".join(chr(65 + (i + k) % 26) for k in range(cols - 1)))
        out.append([f"{CSI}m ", f"{CSI}0m#", f"{CSI}49m.", f"{CSI}48;5;{230 - i}m@"][i % 4])  # last column
        out.append([f"{CSI}mnext", f"{CSI}48;5;93mnew bg", f"{CSI}m\r\n", f"{CSI}27;22;24;28;29m\r\n"][i % 4])
        out.append("\r\n" if i % 4 < 2 else "")
    # The wrap left pending, the pen reset, then up (or down) and a blank into the last column.
    out.append(f"{CSI}48;5;52m" + "u" * (2 * cols) + f"{CSI}m{CSI}A {CSI}B{CSI}1;33m!{CSI}m\r\n")
    out.append(f"{CSI}48;5;88m" + "v" * cols + f"{CSI}m\tw\r\n")               # a tab keeps the wrap
    out.append(f"{CSI}48;5;124m" + "x" * cols + f"{CSI}m{CSI}A{CSI}K{CSI}B{CSI}2Ky\r\n")
    out.append(f"{CSI}{rows};{cols - 3}H{CSI}46mend{CSI}m!")     # bottom right: the wrap scrolls
    return "".join(out)


def last_column_no_wrap(cols=80) -> str:
    """The same with autowrap off: the cursor sticks on the last column, the last
    character written there wins, and BS / CUB count from that column."""
    out = [f"{CSI}?7l"]
    for i, pen in enumerate(["48;5;21", "1;2;31", "8;44", "7;48:2::200:100:0"]):
        out.append(f"{CSI}{pen}m" + "".join(chr(97 + k % 26) for k in range(cols + 5)))
        out.append(f"{CSI}m#\b\b{CSI}48;5;{100 + i}m<>{CSI}m{CSI}D{CSI}D+\r\n")
    # Erase where the cursor sticks: the last column itself.
    out.append(f"{CSI}45m" + "n" * (cols + 2) + f"{CSI}m{CSI}K\r\n")
    out.append(f"{CSI}46m" + "o" * (cols + 2) + f"{CSI}m{CSI}X\r\n")
    out.append(f"{CSI}42m" + "p" * cols + f"{CSI}41m{CSI}P{CSI}m\r\n")
    out.append(f"{CSI}?7h" + "wrapping again " * (cols // 15 + 1) + "\r\n")
    return "".join(out)


def scroll_region_colours(rows=24) -> str:
    """Scroll regions with a background set: lines that scroll or are inserted in
    take it (BCE), at both edges and with every way to scroll; the cursor outside
    the region moves freely; resetting the region homes the cursor."""
    top, bottom = rows // 4, rows - rows // 4      # 1-based, room above and below; rows >= 12
    out = [f"{CSI}H{CSI}2J"]
    for y in range(rows):
        out.append(f"{CSI}{y + 1};1H{CSI}{31 + y % 7}mrow {y:02d} " + "=" * (y % 9) + f"{CSI}m")
    out.append(f"{CSI}{top};{bottom}r{CSI}{bottom};1H{CSI}44m\nLF at the bottom\x1bDIND\x1bENEL{CSI}m")
    out.append(f"{CSI}{top};4H{CSI}48;5;22m\x1bMRI at the top\x1bM{CSI}m")
    out.append(f"{CSI}48;5;94m{CSI}2S{CSI}48;2;60;0;90m{CSI}T{CSI}m")
    out.append(f"{CSI}{top + 3};6H{CSI}45m{CSI}2Linserted{CSI}{top + 6};3H{CSI}3M{CSI}mdeleted")
    out.append(f"{CSI}{top + 1};10H{CSI}46m{CSI}3@{CSI}8P{CSI}m<-ICH/DCH")
    out.append(f"{CSI}{rows - 1};1H{CSI}43mstatus\nbelow\n\n{CSI}m")              # below: no scroll
    out.append(f"{CSI}2;1H{CSI}42mabove\x1bM\x1bM\x1bM{CSI}m^")                  # above: no scroll
    out.append(f"{CSI}1;5H{CSI}9B*{CSI}{rows};7H{CSI}30A*")                     # stop at the edges
    out.append(f"{CSI}{top + 2};1H{CSI}2M{CSI}{top};{bottom}r{CSI}{bottom};1H{CSI}4M")  # DL over blanks
    out.append(f"{CSI}2;2H{CSI}rhome")                                         # DECSTBM reset homes
    return "".join(out)


def erase_colours() -> str:
    """ED and friends with a background: the whole screen, not only the cells written."""
    return (f"some text\r\nmore text{CSI}48;5;17m{CSI}2J{CSI}5;5Hon blue{CSI}m"
            f"{CSI}10;10H{CSI}48;5;53m{CSI}J{CSI}m{CSI}12;1Hbelow{CSI}3;20H{CSI}41m{CSI}1J{CSI}m"
            f"{CSI}15;30H{CSI}42m{CSI}5X{CSI}1K{CSI}m{CSI}20;1H{CSI}43m{CSI}2K{CSI}m end")


def log_lines(n=300) -> str:
    return "".join(f"2026-11-22 01:02:{i % 60:02d} app[{i}]: handled /api/item/{i} in {i % 97} ms\r\n"
                   for i in range(n))


def seq(n=2000) -> str:
    return "".join(f"{i}\n" for i in range(1, n + 1))


def repeats_and_back_tabs(cols=80) -> str:
    """REP as tmux has it: to the line's end only, also from a pending wrap, in insert
    mode and without autowrap; CBT past every stop (both bounded against floods)."""
    return (f"ab{CSI}9999b|\r\n" + "x" * cols + f"{CSI}3b|\r\n"
            f"0123456789\r{CSI}4h{CSI}3Cq{CSI}2b{CSI}4l\r\n"
            f"{CSI}?7l{CSI}{cols - 3}Gw{CSI}9b{CSI}?7h\r\n{CSI}{cols // 2}G{CSI}2Z<{CSI}9999Z>")


def filled_rows(cols=80) -> str:
    """Rows filled whole (DECALN, erase with a background) and then cut into: cells
    inserted, deleted, erased; lines scrolled and inserted over a background."""
    return (f"\x1b#8{CSI}8;5H{CSI}3@{CSI}9;5H{CSI}4P{CSI}10;5H{CSI}44m{CSI}6X{CSI}m{CSI}11;9H{CSI}1K"
            f"{CSI}12;{cols - 10}H{CSI}0K{CSI}13;1H{CSI}2K{CSI}14;3H{CSI}45m{CSI}9999@{CSI}m"
            f"{CSI}16;1H{CSI}46m{CSI}2J{CSI}m{CSI}17;4Hx{CSI}2@{CSI}18;4H{CSI}3P{CSI}19;5H{CSI}K"
            f"{CSI}3;20r{CSI}20;1H{CSI}42m{CSI}9999S{CSI}5;1H{CSI}2L{CSI}9999M{CSI}r{CSI}m"
            f"{CSI}22;1H{CSI}43m\n\n\n{CSI}mend")


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
    ("sgr attributes", 80, 24, sgr_attributes()),
    ("concealed", 80, 24, concealed()),
    ("concealed narrow", 20, 6, concealed(20)),
    ("last column", 80, 24, last_column()),
    ("last column narrow", 20, 6, last_column(20, 6)),
    ("last column no autowrap", 80, 24, last_column_no_wrap()),
    ("scroll region colours", 80, 24, scroll_region_colours()),
    ("scroll region colours small", 30, 12, scroll_region_colours(12)),
    ("erase colours", 80, 24, erase_colours()),
    ("repeats and back tabs", 80, 24, repeats_and_back_tabs()),
    ("repeats and back tabs narrow", 20, 6, repeats_and_back_tabs(20)),
    ("filled rows", 80, 24, filled_rows()),
    ("filled rows narrow", 20, 24, filled_rows(20)),
    ("alignment", 80, 24, f"{CSI}31;44mpen{CSI}5;10r{CSI}8;8H\x1b#8{CSI}1;1Hx{CSI}24;80Hy\n{CSI}2;2H"
                          f"\x1b#8\x1b#8\x1b#8z{CSI}J{CSI}12;1H{CSI}3K"),
]
