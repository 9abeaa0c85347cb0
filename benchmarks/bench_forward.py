"""Port forwarding side by side: mp -L beside ssh -L, in one run, on this machine.

    python benchmarks/bench_forward.py [--quick] [--mb MB] [--rtt MS,...] [--keys N]

For each path (loopback, then each ``--rtt`` through the relays bench_e2e.py uses:
mps's UDP behind a Gateway, ssh's TCP through a delaying relay):

- throughput: MB/s of a download of ``--mb`` MB through ``-L`` (a file server on
  loopback, the client reading as fast as it can), from connect to the last byte;
- echo latency in the same session, idle and then while that download runs in a loop
  (median and p90 of ``--keys`` keystrokes typed into ``cat``, as bench_e2e.py), and
  the download's MB/s while those keys are typed.

mosh forwards nothing; it is listed so that the table says so. moshpit runs with
its defaults (reliable, sessions in processes).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import (BIN, Moshpit, Slow, Ssh, Terminal, echo_latency, free_port,  # noqa: E402
                       percentiles, ready)


PULL = """
import signal, socket, sys, time
total, start = 0, time.perf_counter()
def report(*_):
    print(total / (time.perf_counter() - start) / 1e6, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, report)
while True:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
        while data := sock.recv(1 << 18):
            total += len(data)
"""


class FileServer:
    """``size`` bytes to each connection, from a thread of this process."""

    def __init__(self, size: int):
        self.data = bytes(range(256)) * (size // 256)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn):
        try:
            with conn:
                conn.sendall(self.data)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def download(port: int, timeout: float = 600) -> tuple[int, float]:
    """Bytes read through the forward and the seconds it took."""
    deadline = time.monotonic() + 30
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    start, total = time.perf_counter(), 0
    with sock:
        while data := sock.recv(1 << 18):
            total += len(data)
    return total, time.perf_counter() - start


def connect_forwarding(tool, slow, spec: str) -> Terminal:
    """The tool's client with ``-L spec`` (through ``slow``'s path if given)."""
    if isinstance(tool, Moshpit):
        host = "127.0.0.2" if slow else "127.0.0.1"
        return Terminal([str(BIN / "mp"), "-i", str(tool.work / ".mp" / "id_ed25519"), "-p", str(tool.port),
                         "--host-key-check", "accept-new", "-L", spec, host], tool.env)
    ssh = tool.work / "ssh"
    port = slow.path.port if slow else tool.port
    import os
    return Terminal(["ssh", "-tt", "-i", str(ssh / "id"), "-p", str(port), "-L", spec,
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "LogLevel=ERROR", f"{os.environ.get('USER', 'root')}@127.0.0.1"], tool.env)


def measure(tool, rtt: float, args, files: FileServer) -> dict:
    local = free_port()
    spec = f"{local}:127.0.0.1:{files.port}"
    slow = Slow(tool, rtt) if rtt else None
    if slow:
        slow.__enter__()
    else:
        tool.start_server()
    try:
        term = connect_forwarding(tool, slow, spec)
        ready(term)
        size, seconds = download(local)
        idle = echo_latency(term, args.keys)
        # the download again and again, from a process of its own (not this one's GIL)
        pulling = subprocess.Popen([sys.executable, "-c", PULL, str(local)], stdout=subprocess.PIPE)
        time.sleep(0.5)
        busy = echo_latency(term, args.keys)
        pulling.terminate()
        busy_mbps = float(pulling.communicate(timeout=30)[0] or 0)
        tool.quit(term)
        return {"mbps": size / seconds / 1e6, "busy_mbps": busy_mbps, "bytes": size,
                "idle": percentiles(idle), "busy": percentiles(busy)}
    finally:
        if slow:
            slow.__exit__(None, None, None)
        else:
            tool.stop_server()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke run: moshpit only, small figures")
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--rtt", default="250", help="round trips (ms) to run through the relays; 0: none")
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--tools", default="mp,ssh", help="which of mp, ssh to run")
    args = parser.parse_args()
    rtts = [0.0] + [float(r) for r in args.rtt.split(",") if float(r) > 0]
    if args.quick:
        args.mb, args.keys, rtts = 5.0, 10, [0.0]
    import tempfile
    work = Path(tempfile.mkdtemp(prefix="bench-forward-"))
    names = ["mp"] if args.quick else args.tools.split(",")
    tools = ([Moshpit(work, "reliable")] if "mp" in names else []) + ([Ssh(work)] if "ssh" in names else [])
    files = FileServer(int(args.mb * (1 << 20)))
    print(f"-L download of {args.mb:g} MB; echo p50/p90 in ms ({args.keys} keys), idle and during the download")
    print(f"{'path':>10}  {'tool':<18}{'MB/s':>8}  {'echo idle':>14}  {'echo busy':>14}  {'busy/idle p90':>13}"
          f"  {'MB/s typing':>11}")
    for rtt in rtts:
        for tool in tools:
            try:
                result = measure(tool, rtt, args, files)
            except (RuntimeError, OSError) as exc:
                print(f"{rtt or 'loopback':>10}  {tool.name:<18}failed: {exc}")
                continue
            (i50, i90), (b50, b90) = result["idle"], result["busy"]
            path = f"{rtt:g} ms" if rtt else "loopback"
            print(f"{path:>10}  {tool.name:<18}{result['mbps']:>8.1f}  {i50:>6.1f} /{i90:>6.1f}  "
                  f"{b50:>6.1f} /{b90:>6.1f}  {b90 / max(i90, 1e-3):>12.1f}x  {result['busy_mbps']:>11.1f}", flush=True)
        if not args.quick:
            print(f"{f'{rtt:g} ms' if rtt else 'loopback':>10}  {'mosh':<18}  (forwards no ports)")
    files.close()


if __name__ == "__main__":
    main()
