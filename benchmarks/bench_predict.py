"""Keystroke prediction at a 250 ms round trip: moshpit beside mosh, the same traces.

    python benchmarks/bench_predict.py [--quick] [--tools mp,mosh]

Real servers and clients, a login shell on a real PTY, the client on a PTY driven
like a person (a key every 100 ms). UDP goes through the impairment relay of
``tests/relay.py`` in its own process, 125 ms each way (the key exchange of
moshpit goes direct: only the session's path is slow). Traces:

- prose typed into ``cat``;
- a bash command line edited with backspaces and arrow keys;
- vim (``-u NONE``) in insert mode, then a few normal-mode commands;
- a ``read -s`` password prompt.

Then, in ``reliable``, ``cat`` of a large file with and without prediction:
seconds and the client's CPU, the price of the model of the raw stream that
prediction keeps there.

Per trace and tool: the share of line-editing keystrokes whose effect is on the
user's screen within 5 ms, the median time until it is, rows of text shown that
the same tool without prediction never showed, even in part, for that trace
(wrong guesses),
underlined cells left 2 s after the trace, and password characters drawn. moshpit runs ``--predict adaptive`` in
each diff mode, and ``--predict never`` (the baseline for wrong cells and the
cost of prediction); mosh runs ``MOSH_PREDICTION_DISPLAY=adaptive``.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import BIN, Moshpit, Terminal, cpu_ticks, free_port, make_file  # noqa: E402

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
from moshpit.terminal.model import TerminalModel  # noqa: E402

ONE_WAY = 0.125
GAP = 0.10                      # between keys: a brisk typist
LEFT, RIGHT, BS, ESC = b"\x1b[D", b"\x1b[C", b"\x7f", b"\x1b"

PROSE = b"The quick brown fox jumps over the lazy dog, and then it sits down to rest a while."
TRACES = {
    "prose into cat": (b"cat\r", list(PROSE), b"\r\x04"),
    "bash line editing": (b"", list(b"echo hello wrold") + [BS] * 4 + list(b"orld") + [LEFT] * 6
                          + list(b"big ") + [RIGHT] * 2 + list(b" again"), b"\x15\r"),
    "vim insert, then normal": (b"vim -u NONE -N /tmp/mp-bench-predict.txt\r",
                                [b"i"] + list(b"one two three four") + [ESC] + list(b"0wwxbdwu"),
                                b"\x1b:q!\r"),
    "password (read -s)": (b"read -s -p 'pass: ' secret; echo; echo done-$((6*7))\r",
                           list(b"hunter2-correct-horse"), b"\r"),
}


class Relay:
    """tests/relay.py in a process of its own: the clients' UDP, delayed each way."""

    SCRIPT = ("import sys, gevent; sys.path.insert(0, {tests!r}); from relay import Relay\n"
              "r = Relay(('127.0.0.1', {port}), front=('127.0.0.1', {front}), delay={delay})\n"
              "print('ready', flush=True); gevent.wait()\n")

    def __init__(self, server_port: int, front: int):
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT.format(
            tests=str(TESTS), port=server_port, front=front, delay=ONE_WAY)],
            stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the relay did not start")
        self.port = front

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


class MpSession:
    def __init__(self, work: Path, mode: str, predict: str):
        self.name = f"moshpit {mode}" + ("" if predict == "adaptive" else f", predict {predict}")
        self.mode = mode
        self.tool = Moshpit(work, mode)
        keys, auth = self.tool.make_keys()
        tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
        env = dict(self.tool.env, MOSHPITS_AUTHORIZED_KEYS_FILE=str(auth))
        self.server = subprocess.Popen(
            [BIN / "mps", "-e", "-q", "-p", keys / "host_key", "--bind", "127.0.0.1", "--port", str(tcp),
             "--udp-ports", f"{udp}-{udp}"], env=env, stderr=subprocess.PIPE, cwd=work)
        if b"listening" not in self.server.stderr.readline():
            raise RuntimeError("mps did not start")
        # The client reaches the server at 127.0.0.2: TCP forwarded as is, UDP through the
        # relay on the same port number (tests/relay.py Gateway).
        self.gateway = subprocess.Popen([sys.executable, "-c", (
            "import sys, gevent; sys.path.insert(0, {tests!r}); from relay import Gateway\n"
            "g = Gateway({tcp}, {udp}, delay={delay}); print('ready', flush=True); gevent.wait()\n"
        ).format(tests=str(TESTS), tcp=tcp, udp=udp, delay=ONE_WAY)], stdout=subprocess.PIPE, text=True)
        if self.gateway.stdout.readline().strip() != "ready":
            raise RuntimeError("the gateway did not start")
        self.term = Terminal([str(BIN / "mp"), "-i", str(keys / "id_ed25519"), "-p", str(tcp),
                              "--host-key-check", "accept-new", "--diff-mode", mode, "--predict", predict,
                              "127.0.0.2"], self.tool.env)

    def close(self):
        self.term.write(b"\x1e.")
        time.sleep(0.3)
        self.term.close()
        for proc in (self.gateway, self.server):
            proc.terminate()
            proc.wait(10)


class MoshSession:
    def __init__(self, work: Path, predict: str):
        self.name = "mosh 1.4" + ("" if predict == "adaptive" else f", predict {predict}")
        port = free_port(socket.SOCK_DGRAM)
        env = dict(os.environ, HOME=str(work), LANG="C.UTF-8")
        out = subprocess.run(["mosh-server", "new", "-i", "127.0.0.1", "-p", str(port), "--", "/bin/bash", "-l"],
                             env=env, capture_output=True, text=True, cwd=work)
        found = re.search(r"MOSH CONNECT (\d+) (\S+)", out.stdout)
        if not found:
            raise RuntimeError(f"mosh-server did not start: {out.stdout} {out.stderr}")
        self.relay = Relay(int(found[1]), free_port(socket.SOCK_DGRAM))
        self.term = Terminal(["mosh-client", "127.0.0.1", str(self.relay.port)],
                             dict(env, MOSH_KEY=found[2], MOSH_PREDICTION_DISPLAY=predict))

    def close(self):
        self.term.write(b"exit\r")
        time.sleep(0.5)
        self.term.close()
        self.relay.close()


class Screen:
    """The user's terminal, played from what the client wrote."""

    def __init__(self, term: Terminal):
        self.term = term
        self.model = TerminalModel(80, 24)
        self.drawn: set[str] = set()       # every row text shown (wrong guesses: rows never
                                            # shown by the same trace without prediction)

    def pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.term.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.term.fd, 1 << 16)
        except OSError:
            return False
        self.term.total += len(data)
        self.model.feed(data)
        self.drawn.update(row.rstrip() for row in self.model.state.text())
        return True

    def settle(self, quiet: float = 0.5) -> None:
        while self.pump(quiet):
            pass

    def wait_for(self, text: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in row for row in self.model.state.text()):
                return True
            self.pump(0.05)
        return False


def edited_line(keys: list[bytes]) -> str | None:
    """The line a line editor shows after ``keys`` (insert, backspace, arrows); None once
    a key leaves that model (vim's ESC)."""
    line, cursor = "", 0
    for key in keys:
        if key == BS:
            if cursor:
                line, cursor = line[:cursor - 1] + line[cursor:], cursor - 1
        elif key == LEFT:
            cursor = max(0, cursor - 1)
        elif key == RIGHT:
            cursor = min(len(line), cursor + 1)
        elif len(key) == 1 and 0x20 <= key[0] < 0x7F:
            line, cursor = line[:cursor] + key.decode() + line[cursor:], cursor + 1
        else:
            return None
    return line


def run_trace(session, name: str, screen: "Screen") -> dict:
    """Type a trace; for each key that edits the line, seconds until the user's screen
    shows the line as it should be after it (vim's insert key and ESC: not timed)."""
    setup, keys, finish = TRACES[name]
    keys = [k if isinstance(k, bytes) else bytes([k]) for k in keys]
    screen.settle(1.0)
    session.term.write(b"clear; echo TRACE-$((6*7))\r")
    if not screen.wait_for("TRACE-42"):
        raise RuntimeError(f"the session did not come up: {screen.model.state.text()[:6]}")
    screen.settle(1.0)
    if setup:
        session.term.write(setup)
        screen.settle(1.5)
    first_edit = 1 if keys[0] == b"i" else 0                 # vim: the line starts after "i"
    if first_edit:
        session.term.write(keys[0])
        screen.settle(1.0)
    row, col = screen.model.state.cursor_y, screen.model.state.cursor_x
    screen.drawn.clear()
    times, leaked, pending = [], 0, []
    timed = not name.startswith("password")

    def check(now):
        text = "".join(screen.model.state.text()[row:])[col:]   # a long line wraps on
        for item in list(pending):
            if text.startswith(item[1]):
                times.append(now - item[0])
                pending.remove(item)

    for k in range(first_edit, len(keys)):
        expected = edited_line(keys[first_edit:k + 1])
        started = time.perf_counter()
        session.term.write(keys[k])
        if timed and expected is not None:
            pending.append((started, expected))
        while time.perf_counter() - started < GAP:
            if screen.pump(max(0.0, GAP - (time.perf_counter() - started))):
                check(time.perf_counter())
        if name.startswith("password"):
            rows = [r for r in screen.model.state.text() if r.startswith("pass: ")]
            leaked = max(leaked, max((len(r[6:].strip()) for r in rows), default=0))
    deadline = time.perf_counter() + 2.0
    while pending and time.perf_counter() < deadline:
        if screen.pump(0.05):
            check(time.perf_counter())
    times += [float("inf")] * len(pending)                   # never shown as expected
    screen.settle(2.0)
    underlined = sum(cell.underscore for line in screen.model.state.lines for cell in line)
    session.term.write(finish)
    screen.settle(1.0)
    return {"times": times, "drawn": screen.drawn, "underlined": underlined, "leaked": leaked}


def cat_cost(session, screen: Screen, big: Path) -> tuple[float, int]:
    """Seconds for ``cat`` of ``big`` to reach the user's screen, and the client's CPU
    ticks meanwhile: what keeping a model of the raw stream costs while predicting."""
    screen.settle(0.5)
    ticks = cpu_ticks(session.term.pid)
    started = time.perf_counter()
    session.term.write(b"cat %s; echo CAT-DONE-$((6*7))\r" % str(big).encode())
    if not screen.wait_for("CAT-DONE-42", timeout=300):
        raise RuntimeError("cat did not finish")
    return time.perf_counter() - started, cpu_ticks(session.term.pid) - ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", default="mp,mosh")
    args = parser.parse_args()
    traces = list(TRACES)[:1] + list(TRACES)[3:] if args.quick else list(TRACES)
    work = Path(tempfile.mkdtemp(prefix="mp-predict-"))
    work.chmod(0o700)
    big = work / "big.txt"
    make_file(big, 1.0 if args.quick else 10.0)
    costs = []
    makers = []                  # each tool without prediction first: the wrong-cell baseline
    if "mp" in args.tools:
        for mode in ["reliable"] if args.quick else ["reliable", "statesync", "datagram"]:
            makers += [lambda mode=mode, p=p: MpSession(work, mode, p) for p in ("never", "adaptive")]
    if "mosh" in args.tools and not args.quick:
        if shutil.which("mosh-server"):
            makers += [lambda p=p: MoshSession(work, p) for p in ("never", "adaptive")]
        else:
            print("mosh is not installed: skipped (apt-get install mosh)")
    print(f"250 ms RTT (relay, {ONE_WAY * 1000:.0f} ms each way); a key every {GAP * 1000:.0f} ms\n")
    print("| trace | tool | keys shown < 5 ms | median | wrong rows | underlined after | password chars drawn |")
    print("|---|---|---|---|---|---|---|")
    baseline: dict[str, set] = {}
    try:
        for make in makers:
            session = make()
            screen = Screen(session.term)      # one for the session: screen modes send diffs
            try:
                for name in traces:
                    result = run_trace(session, name, screen)
                    times = result["times"] or [float("nan")]
                    fast = sum(t < 0.005 for t in times) / len(times)
                    if "never" in session.name:              # for the same tool with prediction:
                        baseline[name] = {row[:i] for row in result["drawn"]   # every prefix (a
                                          for i in range(len(row) + 1)}       # frame may skip some)
                    wrong = (len(result["drawn"] - baseline[name])
                             if name in baseline and "never" not in session.name else "-")
                    median = "-" if not result["times"] else f"{statistics.median(times) * 1000:.1f} ms"
                    print(f"| {name} | {session.name} | {'-' if not result['times'] else f'{fast:.1%}'} | {median} "
                          f"| {wrong} | {result['underlined']} | {result['leaked']} |", flush=True)
                if getattr(session, "mode", None) == "reliable":
                    costs.append((session.name, *cat_cost(session, screen, big)))
            except Exception as exc:                       # one tool failing must not hide the rest
                print(f"| | {session.name} | failed: {exc} | | | | |", flush=True)
            finally:
                session.close()
        if costs:
            print(f"\nthe cost of predicting in reliable: cat of {big.stat().st_size / 1e6:.0f} MB at 250 ms RTT\n")
            print("| tool | seconds | client CPU (ticks of 1/100 s) |")
            print("|---|---|---|")
            for name, seconds, ticks in costs:
                print(f"| {name} | {seconds:.2f} s | {ticks} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
