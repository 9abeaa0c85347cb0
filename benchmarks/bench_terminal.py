"""Screen-model throughput beside plain pyte, and the size of rendered diffs.

    python benchmarks/bench_terminal.py [--quick]

Throughput: MB/s of PTY output fed to an 80x24 model in 64 KiB pieces (the
runtime batches PTY reads up to the 50 ms screen tick), for plain pyte
(``pyte.Screen`` + ``pyte.ByteStream``), our fixed model with its fast path
off, and with it on. Diff sizes: bytes of ``render_diff`` for typical updates.

Hostile output: about 20 kB of the escape sequences that cost a screen model most,
at 200x60 and at the largest window (1000x500), beside tmux taking the same bytes
in a pane of that size (a real terminal emulator, as the peer). For the model: the
whole feed, the longest single step of a budgeted feed (what another session on
the same loop would wait), and ``render_full`` of the result (what ``datagram``
mode pays per frame).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyte

from moshpit.session import FEED_BUDGET
from moshpit.terminal.model import TerminalModel
from moshpit.terminal.render import render_diff, render_full

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from terminal_corpus import ls_color, vim_like  # noqa: E402

CHUNK = 64 * 1024


def workloads(scale: int) -> dict[str, bytes]:
    log = "".join(f"2026-11-22 01:02:{i % 60:02d} host app[{i}]: GET /api/v1/items/{i} 200 in {i % 97} ms\r\n"
                  for i in range(12_000 * scale)).encode()
    seq = "".join(f"{i}\n" for i in range(1, 150_000 * scale)).encode()
    coloured = (ls_color(400) * 20 * scale).encode()
    return {"plain text (cat of a log)": log, "seq": seq, "coloured (ls --color)": coloured}


def rate(feed, data: bytes, budget: float) -> float:
    """MB/s, feeding ``data`` in CHUNK pieces; stops early once ``budget`` seconds pass."""
    start = time.perf_counter()
    fed = 0
    for i in range(0, len(data), CHUNK):
        feed(data[i:i + CHUNK])
        fed += min(CHUNK, len(data) - i)
        if time.perf_counter() - start > budget:
            break
    return fed / (time.perf_counter() - start) / 1e6


def plain_pyte():
    screen = pyte.Screen(80, 24)
    return pyte.ByteStream(screen).feed


def diff_sizes() -> list[tuple[str, int]]:
    out = []

    def measure(name, before: bytes, after: bytes):
        model = TerminalModel(80, 24)
        model.feed(before)
        old = model.state
        model.feed(after)
        out.append((name, len(render_diff(old, model.state).encode())))

    prompt = b"\x1b[1;32muser@host\x1b[0m:\x1b[1;34m~/src\x1b[0m$ "
    screen_of_lines = b"".join(b"line %d of some output\r\n" % i for i in range(40))
    measure("one keystroke echo", prompt + b"git stat", b"u")
    measure("backspace", prompt + b"git statu", b"\x08 \x08")
    measure("a new line scrolled in", screen_of_lines, b"line 40 of some output\r\n")
    measure("full-screen redraw (vim opens)", prompt, vim_like().encode())
    measure("leaving vim", prompt + vim_like().encode(), b"\x1b[?1049l")
    model = TerminalModel(80, 24)
    model.feed(vim_like().encode())
    out.append(("full repaint of a vim screen", len(render_full(model.state).encode())))
    return out


FLOODS = {
    "DECALN + text": b"\x1b#8x" * 4000,
    "REP 9999": b"x\x1b[9999b" * 2000,
    "erase all in colour + text": b"\x1b[44m\x1b[2Jx\x1b[45m" * 1500,
    "insert mode + REP": b"\x1b[4hx\x1b[65535b" * 1000,
    "insert 9999 lines in colour": b"\x1b[44m\x1b[9999L" * 2000,
    "scroll up 9999 in colour": b"\x1b[44m\x1b[9999S" * 2000,
    "back tab 9999": b"\x1b[9999Z" * 3000,
    "line feeds in colour": b"\x1b[44m" + b"\n" * 15000,
}


def model_cost(data: bytes, cols: int, rows: int) -> tuple[float, float, float]:
    """Seconds: the whole feed, the longest budgeted step, render_full of the result."""
    model = TerminalModel(cols, rows)
    start = time.perf_counter()
    model.feed(data)
    whole = time.perf_counter() - start
    stepped, longest = TerminalModel(cols, rows), 0.0
    chunk = data
    while True:
        start = time.perf_counter()
        stepped.feed(chunk, budget=FEED_BUDGET)
        longest = max(longest, time.perf_counter() - start)
        chunk = b""
        if not stepped.backlog:
            break
    start = time.perf_counter()
    render_full(model.state)
    return whole, longest, time.perf_counter() - start


def tmux_cost(data: bytes, cols: int, rows: int) -> float | None:
    """Seconds tmux takes to show ``data`` in a pane of this size (its start-up included)."""
    if shutil.which("tmux") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp, "flood")
        flood.write_bytes(data)
        sock = str(Path(tmp, "sock"))
        tmux = ["tmux", "-S", sock, "-f", "/dev/null"]
        start = time.perf_counter()
        subprocess.run(tmux + ["new-session", "-d", "-x", str(cols), "-y", str(rows),
                               f"cat {flood}; tmux -S {sock} wait-for -S done; sleep 5"], check=True)
        subprocess.run(tmux + ["wait-for", "done"], check=True, timeout=600)
        elapsed = time.perf_counter() - start
        subprocess.run(tmux + ["kill-server"], check=False)
        return elapsed


def hostile_output(sizes) -> None:
    print("hostile output: ~20 kB of costly escape sequences (ms)")
    print(f"{'flood':<30}{'size':>6}{'window':>10}{'moshpit feed':>14}{'longest step':>14}"
          f"{'render_full':>13}{'tmux':>8}")
    for name, data in FLOODS.items():
        for cols, rows in sizes:
            whole, step, render = model_cost(data, cols, rows)
            peer = tmux_cost(data, cols, rows)
            peer_ms = "n/a" if peer is None else f"{peer * 1000:.0f}"
            print(f"{name:<30}{len(data) // 1000:>5}k{f'{cols}x{rows}':>10}{whole * 1000:>14.1f}"
                  f"{step * 1000:>14.1f}{render * 1000:>13.1f}{peer_ms:>8}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    budget = 0.5 if args.quick else 6.0
    loads = workloads(1 if args.quick else 3)

    print(f"screen model throughput, 80x24, {CHUNK // 1024} KiB feeds (MB/s; target >= 20)")
    print(f"{'workload':<28}{'size MB':>9}{'pyte':>9}{'ours slow':>11}{'ours fast':>11}{'vs pyte':>9}")
    for name, data in loads.items():
        plain = rate(plain_pyte(), data, budget)
        slow = rate(TerminalModel(80, 24, fast_path=False).feed, data, budget)
        fast = rate(TerminalModel(80, 24).feed, data, budget * 4)
        print(f"{name:<28}{len(data) / 1e6:>9.1f}{plain:>9.2f}{slow:>11.2f}{fast:>11.1f}{fast / plain:>8.0f}x")
    print()
    print("rendered diff sizes")
    for name, size in diff_sizes():
        print(f"  {name:<36}{size:>6} bytes")
    print()
    hostile_output([(1000, 500)] if args.quick else [(200, 60), (1000, 500)])


if __name__ == "__main__":
    main()
