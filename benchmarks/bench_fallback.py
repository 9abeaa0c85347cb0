"""Where UDP is blocked: moshpit over its kept TCP connection beside ssh, in one run.

    python benchmarks/bench_fallback.py [--quick] [--keys N] [--mb MB] [--rounds N]

- echo latency (median and p90 of ``--keys`` keystrokes into ``cat``, as bench_e2e.py)
  and ``cat`` of a ``--mb`` MB file, on loopback: moshpit reliable over UDP, the same
  with ``--transport stream`` (its datagrams over the TCP connection), ``mp --ssh
  --transport stream`` (over the ssh connection, relayed by mps --ssh-session), and ssh;
- the move: moshpit (``transport = auto``) behind tests/relay.py's Gateway (127.0.0.2);
  the relay starts dropping UDP both ways (``firewall``: TCP goes on), a key is typed at
  once, and the time to its echo is the time to fall back; ``--hold`` seconds later UDP
  comes back, and the time until mp logs that the session is on UDP again is the time
  to move back (``--rounds`` of each: median and worst).

mosh cannot run where UDP is blocked; it is listed so that the table says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import (BIN, Moshpit, SlowPath, Ssh, Terminal, cat_file, echo_latency, make_file,  # noqa: E402
                       percentiles, ready)


class MoshpitOver(Moshpit):
    """moshpit reliable with a given ``--transport``."""

    def __init__(self, work, transport: str):
        super().__init__(work, "reliable")
        self.transport = transport
        self.name = f"moshpit reliable, {'TCP' if transport == 'stream' else 'UDP'}"

    def connect(self, host: str = "127.0.0.1"):
        return Terminal([str(BIN / "mp"), "-i", str(self.work / ".mp" / "id_ed25519"), "-p", str(self.port),
                         "--host-key-check", "accept-new", "--transport", self.transport, host], self.env)


class MpSshOverSsh(Ssh):
    """mp --ssh, its datagrams over the ssh connection (``--transport stream``), through
    the same kind of sshd as the ssh row."""
    name = "moshpit reliable, ssh conn."

    def connect(self, port: int | None = None):
        ssh = self.work / "ssh"
        command = (f"ssh -i {ssh / 'id'} -p {port or self.port} -o StrictHostKeyChecking=no "
                   f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        return Terminal([str(BIN / "mp"), f"--ssh={command}", f"--server={BIN / 'mps'} -q", "--transport", "stream",
                         f"{os.environ.get('USER', 'root')}@127.0.0.1"], self.env)

    def quit(self, term):
        Moshpit.quit(None, term)


def echo_and_cat(tool, args, big: Path) -> tuple[tuple[float, float], float]:
    tool.start_server()
    try:
        term = tool.connect()
        ready(term)
        echo = percentiles(echo_latency(term, args.keys))
        seconds, _, _ = cat_file(term, big)
        tool.quit(term)
        return echo, seconds
    finally:
        tool.stop_server()


def log_text(tool) -> str:
    path = tool.work / ".config" / "moshpit" / "logs" / "moshpit.log"
    return path.read_text() if path.exists() else ""


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def moves(work: Path, rounds: int, hold: float) -> tuple[list[float], list[float]]:
    """Seconds to the first echo after UDP is dropped, and to mp's "on UDP" after it is back."""
    tool = MoshpitOver(work, "auto")
    tool.start_server(udp_ports=1)
    path = SlowPath("gateway", tool.port, tool.udp, rtt=0)
    fallbacks, returns = [], []
    try:
        term = tool.connect(host="127.0.0.2")
        ready(term)
        for i in range(rounds):
            back = log_text(tool).count("the session goes over UDP now")
            path.proc.stdin.write(b"firewall\n")
            path.proc.stdin.flush()
            path.proc.stdout.readline()
            start = time.perf_counter()
            term.tail = b""
            term.write(b"echo fb-$((%d+1))\r" % i)
            if not term.expect(b"fb-%d" % (i + 1), timeout=30):
                raise RuntimeError("no echo after UDP was dropped")
            fallbacks.append(time.perf_counter() - start)
            time.sleep(hold)                         # on TCP a while: the probes back off
            path.block(False)
            start = time.perf_counter()
            if not wait_for(lambda back=back: log_text(tool).count("the session goes over UDP now") > back, 60):
                raise RuntimeError("the session did not move back to UDP")
            returns.append(time.perf_counter() - start)
            term.drain(0.5)
        tool.quit(term)
    finally:
        path.close()
        tool.stop_server()
    return fallbacks, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke run: small figures")
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds on TCP before UDP comes back")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.mb, args.rounds, args.hold = 10, 1.0, 1, 1.0
    work = Path(tempfile.mkdtemp(prefix="bench-fallback-"))
    big = work / "big.txt"
    make_file(big, args.mb)
    tools = [MoshpitOver(work, "udp"), MoshpitOver(work, "stream"), MpSshOverSsh(work)] + \
        ([] if args.quick else [Ssh(work)])
    print(f"loopback, 80x24 (moshpit's default prediction: nothing shown on loopback); "
          f"echo p50/p90 of {args.keys} keys; cat of {args.mb:g} MB")
    print(f"{'tool':<28}{'echo p50 / p90 ms':>20}{'cat s':>9}")
    for tool in tools:
        try:
            (p50, p90), seconds = echo_and_cat(tool, args, big)
        except (RuntimeError, OSError) as exc:
            print(f"{tool.name:<28}failed: {exc}")
            continue
        print(f"{tool.name:<28}{p50:>9.1f} /{p90:>7.1f}{seconds:>9.2f}", flush=True)
    print(f"{'mosh':<28}(UDP only: cannot run where UDP is blocked)")
    fallbacks, returns = moves(work, args.rounds, args.hold)
    print(f"moshpit auto, {args.rounds} rounds, {args.hold:g} s on TCP each: UDP dropped -> next echo "
          f"(fall back to TCP): median "
          f"{statistics.median(fallbacks):.2f} s, worst {max(fallbacks):.2f} s; UDP back -> on UDP again: "
          f"median {statistics.median(returns):.2f} s, worst {max(returns):.2f} s")


if __name__ == "__main__":
    main()
