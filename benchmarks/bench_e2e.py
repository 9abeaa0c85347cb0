"""moshpit end to end, side by side with mosh and ssh on this machine (loopback, real processes).

    python benchmarks/bench_e2e.py [--quick] [--tools mp,mosh,ssh,pty] [--tables T,...] [--keys N]
                                   [--file-mb MB] [--idle SECONDS] [--memory-sessions N]
                                   [--fair-keys N] [--fair-mb MB] [--rtt MS,...]

Each tool runs a login shell for a client on a real PTY, driven like a person:

- echo latency: single keystrokes typed into ``cat`` (the remote PTY echoes
  them), one at a time, 50 to 150 ms apart, from the write to the client's PTY
  until the key shows up in what the client writes back; median and 90th
  percentile. Then at typing speed: up to 104 keys typed 20 ms apart whatever
  the screen shows (key repeat, a fast digraph), each timed the same way.
- ``cat`` of a large text file (1M lines of 64 bytes by default, as in
  ANCHORS.md): seconds from the command to its end marker on the client's
  terminal, the bytes that crossed the loopback interface meanwhile
  (``/proc/net/dev``, IP and UDP/TCP headers included), and the CPU seconds
  (utime+stime) the server-side and the client processes used for it. A second
  table gives the CPU the whole machine spent during it (``/proc/stat``: every
  process and the kernel) and the two floors that sets, beside ssh's time: that
  CPU over the cores, and the busier side's CPU alone (a side's processes summed;
  moshpit's is its session process, mps and its fork server idle meanwhile).
- fairness: session B types into ``cat`` (as for echo latency) alone, then
  while session A, on the same server, runs ``cat`` of the large file in a loop
  (its client's terminal read as fast as it comes); B's median and p90 in both.
  moshpit runs each diff mode with sessions in processes (mps's default) and,
  for comparison, ``reliable`` with sessions in-process.
- server memory per extra session, from 1 to ``--memory-sessions`` sessions:
  the growth of PSS and private dirty memory (``/proc/PID/smaps_rollup``) summed
  over every server-side process (mps, its fork server and session processes;
  each mosh-server; sshd's per-connection processes), divided by the sessions
  added. Shells are not counted.
- idle CPU: clock ticks (1/100 s) that the server-side and client processes
  use over ``--idle`` seconds of a connected session with nothing happening.
- roaming (as root, with iproute2): server and client on two network
  namespaces joined by a veth pair; the client's address is replaced (the new
  one added, the old one removed) and ``echo`` typed at once: seconds from the
  change to the echo shown, median of ``--roams`` moves. ssh is left out: a TCP
  connection stays bound to the address that went.
- interrupt and scrollback, through a slow path (``--rtt``, 250 ms by default; a
  relay process from tests/relay.py: mps behind its Gateway, mosh-client through
  a Relay, ssh through a delaying TCP relay holding at most 1 MB each way):
  ``cat`` of a large file, Ctrl-C after 2 s of output and a command typed at
  once: seconds until its output shows and what the terminal received after
  the Ctrl-C; and ``seq 1 20000``, then 1500 lines 10 ms apart across an 8 s
  outage, judged by what an 80x24 xterm's scrollback would hold
  (tests/transcript.py): lines once, missing, repeated, gap markers. mps's
  key exchange (TCP) is not delayed, only its UDP. mosh-client draws on the
  alternate screen, which keeps no scrollback, so the scrollback table adds mosh
  with ``MOSH_NO_TERM_INIT=1`` (the main screen) to show what its frames carry.

mosh runs with ``MOSH_PREDICTION_DISPLAY=never`` (prediction off, as the
anchors were measured); moshpit with its default (adaptive: predictions shown
only on a slow link, so never on loopback). ``pty`` is the floor: a
shell on a local PTY. Tools that are not installed are skipped. ``--quick``
is the CI smoke run (moshpit only, small figures; interrupt and scrollback
only when named in ``--tables``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import netns  # noqa: E402  (two network namespaces: tests/netns.py)
from transcript import NumbersVerdict, judge_numbers, transcript_lines  # noqa: E402
TICKS = os.sysconf("SC_CLK_TCK")


# --- a client on a PTY, read without keeping everything --------------------------------

class Terminal:
    """A program on a PTY; remembers only how much it wrote and a tail to search."""

    def __init__(self, argv, env, cols=80, rows=24):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.total = 0
        self.tail = b""
        self.record: bytearray | None = None   # everything it wrote, when a table judges it
        self.watch, self.seen = None, False       # has ``watch`` shown since it was set?

    def pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError:
            return False
        self.total += len(data)
        if self.watch is not None and not self.seen:
            self.seen = self.watch in self.tail[-len(self.watch):] + data
        self.tail = (self.tail + data)[-4096:]
        if self.record is not None:
            self.record += data
        return True

    def drain(self, quiet: float = 0.3) -> None:
        while self.pump(quiet):
            pass

    def expect(self, needle: bytes, timeout: float = 30.0) -> bool:
        """Wait for ``needle`` in output that arrives from now on."""
        self.tail = b""
        deadline = time.monotonic() + timeout
        while needle not in self.tail:
            if time.monotonic() > deadline:
                return False
            self.pump(0.2)
        return True

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.fd)


# --- process figures from /proc ----------------------------------------------------------

def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])          # utime + stime
    except (OSError, IndexError):
        return 0


def smaps_kb(pid: int) -> tuple[int, int]:
    """(PSS, private dirty) in kB, or zeros for a process that is gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                found[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        return 0, 0
    return found.get("Pss", 0), found.get("Private_Dirty", 0)


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def machine_cpu_ticks() -> int:
    """Every CPU's busy ticks so far, the kernel's included (all of /proc/stat's first
    line but idle and iowait): what a run cost the machine, whichever process paid."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4]


def pids_of(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def loopback_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])                   # received on lo = sent on lo
    return 0


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the tools ---------------------------------------------------------------------------

class Tool:
    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.env = dict(os.environ, HOME=str(work), LANG="C.UTF-8", TERM="xterm-256color")

    def start_server(self) -> None: ...
    def connect(self) -> Terminal: ...
    def server_pids(self) -> set[int]: return set()
    def client_pids(self, term: Terminal) -> set[int]: return {term.pid}
    def quit(self, term: Terminal) -> None: term.close()
    def stop_server(self) -> None: ...


class LocalPty(Tool):
    name = "local pty (floor)"

    def connect(self):
        return Terminal(["/bin/bash", "-l"], self.env)


class Moshpit(Tool):
    def __init__(self, work, mode, processes=True):
        super().__init__(work)
        self.mode = mode
        self.processes = processes
        self.name = f"moshpit {mode}" + ("" if processes else " (sessions in-process)")

    def make_keys(self) -> tuple[Path, Path]:
        """A host key, a client key and its authorized_keys; returns (keys dir, authorized_keys)."""
        keys = self.work / ".mp"
        keys.mkdir(mode=0o700, exist_ok=True)
        for path, host in ((keys / "host_key", ["--host"]), (keys / "id_ed25519", [])):
            if not path.exists():
                subprocess.run([BIN / "mp-keygen", "generate", *host, "--no-passphrase", "-f", path],
                               env=self.env, check=True, capture_output=True)
        auth = keys / "authorized_keys"
        auth.write_text((keys / "id_ed25519.pub").read_text())
        auth.chmod(0o600)
        return keys, auth

    def start_server(self, udp_ports: int = 64):
        keys, auth = self.make_keys()
        self.port = free_port()
        self.udp = udp = free_port(socket.SOCK_DGRAM)
        env = dict(self.env, MOSHPITS_AUTHORIZED_KEYS_FILE=str(auth), MOSHPITS_MAX_SESSIONS_PER_KEY="0",
                   MOSHPITS_SESSION_PROCESSES="true" if self.processes else "false")
        self.server = subprocess.Popen(
            [BIN / "mps", "-e", "-q", "-p", keys / "host_key", "--bind", "127.0.0.1", "--port", str(self.port),
             "--udp-ports", f"{udp}-{udp + udp_ports - 1}"], env=env, stderr=subprocess.PIPE, cwd=self.work)
        lines = []
        while not lines or b"listening" not in lines[-1]:
            lines.append(self.server.stderr.readline())
            if not lines[-1] or len(lines) > 10:
                self.server.kill()
                self.server.wait()
                raise RuntimeError(f"mps did not start: {b''.join(lines)!r}")

    def connect(self, host: str = "127.0.0.1"):
        return Terminal([str(BIN / "mp"), "-i", str(self.work / ".mp" / "id_ed25519"), "-p", str(self.port),
                         "--host-key-check", "accept-new", "--diff-mode", self.mode, host], self.env)

    def server_pids(self):
        """mps, its fork server and its session processes (not the shells)."""
        return {self.server.pid} | {p for p in descendants(self.server.pid) if comm(p).startswith("mps-")}

    def quit(self, term):
        term.write(b"\x1e.")
        time.sleep(0.3)
        term.close()

    def stop_server(self):
        self.server.terminate()
        self.server.wait(10)


class Mosh(Tool):
    name = "mosh"

    def __init__(self, work, alternate_screen=True):
        super().__init__(work)
        self.started: set[int] = set()              # our mosh-servers (others may run on this machine)
        if not alternate_screen:                    # mosh-client draws on the main screen
            self.env["MOSH_NO_TERM_INIT"] = "1"
            self.name = "mosh (MOSH_NO_TERM_INIT=1)"

    def connect(self, via=None):
        """``via(port)``, if given, puts a relay in front of the new server and returns its port."""
        port = free_port(socket.SOCK_DGRAM)
        out = subprocess.run(["mosh-server", "new", "-i", "127.0.0.1", "-p", str(port), "--", "/bin/bash", "-l"],
                             env=self.env, capture_output=True, text=True, cwd=self.work)
        found = re.search(r"MOSH CONNECT (\d+) (\S+)", out.stdout)
        if not found:
            raise RuntimeError(f"mosh-server did not start: {out.stdout} {out.stderr}")
        self.started.update(int(pid) for pid in re.findall(r"detached, pid = (\d+)", out.stderr))
        term = Terminal(["mosh-client", "127.0.0.1", str(via(int(found[1])) if via else found[1])],
                        dict(self.env, MOSH_KEY=found[2], MOSH_PREDICTION_DISPLAY="never"))
        term.mosh_port = found[1]
        return term

    def server_pids(self):
        return pids_of("^mosh-server new")

    def quit(self, term):
        term.write(b"exit\r")
        time.sleep(0.5)
        term.close()

    def stop_server(self):
        for pid in pids_of("^mosh-server new") & self.started:
            os.kill(pid, signal.SIGTERM)
        self.started.clear()


class Ssh(Tool):
    name = "ssh"

    def start_server(self):
        ssh = self.work / "ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        for name in ("host", "id"):
            if not (ssh / name).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh / name], check=True)
        shutil.copy(ssh / "id.pub", ssh / "authorized_keys")
        os.makedirs("/run/sshd", exist_ok=True)
        self.port = free_port()
        config = ssh / "sshd_config"
        config.write_text(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {ssh / 'host'}\n"
                          f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
                          f"PermitRootLogin yes\nPidFile none\nAcceptEnv LANG\n")
        self.server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start")

    def connect(self, port: int | None = None):
        ssh = self.work / "ssh"
        return Terminal(["ssh", "-tt", "-i", str(ssh / "id"), "-p", str(port or self.port),
                         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                         "-o", "LogLevel=ERROR", "-o", "SendEnv=LANG",
                         f"{os.environ.get('USER', 'root')}@127.0.0.1"], self.env)

    def server_pids(self):
        return {p for p in pids_of("^sshd: ") if p != self.server.pid}

    def quit(self, term):
        term.write(b"exit\r")
        time.sleep(0.3)
        term.close()

    def stop_server(self):
        self.server.terminate()
        self.server.wait(10)


# --- the measurements --------------------------------------------------------------------

def ready(term: Terminal) -> None:
    term.write(b"echo READY-$((40+2))\r")
    if not term.expect(b"READY-42", timeout=30):
        raise RuntimeError("the session did not come up")
    term.drain()


def echo_latency(term: Terminal, keys: int) -> list[float]:
    rng = random.Random(keys)
    term.write(b"cat\r")
    term.drain(0.5)
    samples = []
    for i in range(keys):
        key = bytes([ord("a") + i % 26])
        term.tail = b""
        start = time.perf_counter()
        term.write(key)
        while key not in term.tail:
            if not term.pump(5.0):
                raise RuntimeError("a keystroke was not echoed")
        samples.append((time.perf_counter() - start) * 1000)
        if i % 50 == 49:
            term.write(b"\r")
        term.drain(rng.uniform(0.05, 0.15))         # typing at about 10 keys a second
    term.write(b"\r\x04")
    term.drain(0.5)
    return samples


ESCAPE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-~]|[ -~])")


def fast_echo_latency(term: Terminal, keys: int, gap: float = 0.020) -> list[float]:
    """Keys typed ``gap`` apart into ``cat`` whatever the screen shows (key repeat, a
    fast digraph: 50 a second), a row of up to 26 letters at a time; each key's time
    from being typed to showing on the terminal (escape sequences taken out, so a
    cursor move's letters are not taken for it)."""
    letters = b"abcdefghijklmnopqrstuvwxyz"
    term.write(b"cat\r")
    term.drain(0.5)
    samples: list[float] = []
    while len(samples) < keys:
        row = letters[:min(26, keys - len(samples))]
        term.record = bytearray()
        typed_at: list[float] = []
        shown, position = 0, 0
        start = time.perf_counter()
        while shown < len(row):
            now = time.perf_counter()
            if len(typed_at) < len(row) and now >= start + len(typed_at) * gap:
                term.write(row[len(typed_at):len(typed_at) + 1])
                typed_at.append(time.perf_counter())
                continue
            if now > start + len(row) * gap + 5.0:
                raise RuntimeError("a keystroke was not echoed")
            due = start + len(typed_at) * gap if len(typed_at) < len(row) else now + 0.05
            if not term.pump(max(0.0, due - now)):
                continue
            text = ESCAPE.sub(b"", bytes(term.record))
            arrived = time.perf_counter()
            while shown < len(typed_at) and (found := text.find(row[shown:shown + 1], position)) >= 0:
                samples.append((arrived - typed_at[shown]) * 1000)
                shown, position = shown + 1, found + 1
        term.record = None
        term.write(b"\r")
        term.drain(0.3)
    term.write(b"\x04")
    term.drain(0.5)
    return samples


def cat_file(term: Terminal, path: Path) -> tuple[float, int, int]:
    term.drain(0.3)
    wire, shown = loopback_bytes(), term.total
    start = time.perf_counter()
    term.write(b"cat %s; echo CAT-DONE-$((6*7))\r" % bytes(path))
    if not term.expect(b"CAT-DONE-42", timeout=600):
        raise RuntimeError("the cat did not finish")
    elapsed = time.perf_counter() - start
    return elapsed, loopback_bytes() - wire, term.total - shown


def idle_ticks(tool: Tool, term: Terminal, seconds: float) -> tuple[int, int]:
    term.drain(1.0)
    server, client = tool.server_pids(), tool.client_pids(term)
    before = [sum(cpu_ticks(p) for p in pids) for pids in (server, client)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        term.pump(deadline - time.monotonic())
    after = [sum(cpu_ticks(p) for p in pids) for pids in (server, client)]
    return after[0] - before[0], after[1] - before[1]


def memory_growth(tool: Tool, sessions: int) -> tuple[float, float]:
    """kB of (PSS, private dirty) each session beyond the first adds, server side."""
    terms = [tool.connect()]
    try:
        ready(terms[0])
        time.sleep(0.5)
        before = [sum(values) for values in zip(*(smaps_kb(p) for p in tool.server_pids()))]
        for _ in range(sessions - 1):
            terms.append(tool.connect())
            ready(terms[-1])
        time.sleep(0.5)
        after = [sum(values) for values in zip(*(smaps_kb(p) for p in tool.server_pids()))]
        return tuple((a - b) / (sessions - 1) for a, b in zip(after, before))
    finally:
        for term in terms:
            tool.quit(term)


def fairness(tool: Tool, keys: int, big: Path) -> tuple[list[float], list[float]]:
    """B's echo latencies alone, then beside A printing ``big`` in a loop."""
    tool.start_server()
    try:
        typist = tool.connect()
        ready(typist)
        alone = echo_latency(typist, keys)
        flooder = tool.connect()
        ready(flooder)
        stop = threading.Event()

        def read_everything():                        # A's user keeps up with A's output
            while not stop.is_set():
                flooder.pump(0.1)
        reader = threading.Thread(target=read_everything, daemon=True)
        reader.start()
        flooder.write(b"while :; do cat %s; done\r" % bytes(big))
        time.sleep(1.0)
        try:
            beside = echo_latency(typist, keys)
        finally:
            stop.set()
            reader.join()
            flooder.write(b"\x03")
            tool.quit(flooder)
            tool.quit(typist)
    finally:
        tool.stop_server()
    return alone, beside


def make_file(path: Path, megabytes: float) -> None:
    line = b"%07d The quick brown fox jumps over the lazy dog, again and again.\n"
    count = int(megabytes * 1e6 / 72)
    with open(path, "wb") as out:
        for start in range(0, count, 10000):
            out.write(b"".join(line % i for i in range(start, min(count, start + 10000))))


def run(tool: Tool, args, big: Path) -> dict:
    tool.start_server()
    try:
        term = tool.connect()
        try:
            ready(term)
            samples = echo_latency(term, args.keys)
            fast = fast_echo_latency(term, min(args.keys, 104))
            server, client = tool.server_pids(), tool.client_pids(term)
            before = [sum(cpu_ticks(p) for p in pids) for pids in (server, client)]
            machine = machine_cpu_ticks()
            cat = cat_file(term, big)
            machine = machine_cpu_ticks() - machine
            cat_cpu = [sum(cpu_ticks(p) for p in pids) - b for pids, b in zip((server, client), before)]
            idle = idle_ticks(tool, term, args.idle)
        finally:
            tool.quit(term)
    finally:
        tool.stop_server()
    return {"latency": samples, "fast": fast, "cat": cat, "idle": idle, "cat_cpu": cat_cpu,
            "cat_machine": machine}


# --- roaming between two namespaces ------------------------------------------------------

class Roamer:
    """Starts a tool's server in the server namespace and its client in the client's."""

    def __init__(self, tool: Tool, hosts: "netns.TwoHosts"):
        self.tool, self.hosts = tool, hosts

    def start(self) -> Terminal:
        tool, hosts = self.tool, self.hosts
        if isinstance(tool, Moshpit):
            keys, auth = tool.make_keys()
            env = dict(tool.env, MOSHPITS_AUTHORIZED_KEYS_FILE=str(auth))
            self.server = subprocess.Popen(hosts.in_server(
                [str(BIN / "mps"), "-e", "-q", "-p", str(keys / "host_key"), "--bind", hosts.SERVER4,
                 "--port", "40404", "--udp-ports", "50000-50063"]), env=env, stderr=subprocess.PIPE,
                cwd=tool.work)
            if b"listening" not in self.server.stderr.readline():
                raise RuntimeError("mps did not start")
            return Terminal(hosts.in_client(
                [str(BIN / "mp"), "-i", str(keys / "id_ed25519"), "-p", "40404", "--host-key-check",
                 "accept-new", "--diff-mode", tool.mode, hosts.SERVER4]), tool.env)
        out = subprocess.run(hosts.in_server(["mosh-server", "new", "-i", hosts.SERVER4, "-p", "60001",
                                              "--", "/bin/bash", "-l"]),
                             env=tool.env, capture_output=True, text=True, cwd=tool.work)
        found = re.search(r"MOSH CONNECT (\d+) (\S+)", out.stdout)
        if not found:
            raise RuntimeError(f"mosh-server did not start: {out.stdout} {out.stderr}")
        self.server = None
        return Terminal(hosts.in_client(["mosh-client", hosts.SERVER4, found[1]]),
                        dict(tool.env, MOSH_KEY=found[2], MOSH_PREDICTION_DISPLAY="never"))

    def stop(self, term: Terminal) -> None:
        self.tool.quit(term)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(10)


def roam_times(tool: Tool, roams: int) -> list[float]:
    """Seconds from each address change to the echo of a command typed right after it."""
    hosts = netns.TwoHosts()
    roamer = Roamer(tool, hosts)
    try:
        term = roamer.start()
        try:
            ready(term)
            times, address = [], hosts.CLIENT4
            for i in range(roams):
                new = f"10.77.0.{3 + i}"
                start = time.perf_counter()
                hosts.readdress(address, new)
                address = new
                term.write(b"echo R%d-$((40+2))\r" % i)
                if not term.expect(b"R%d-42" % i, timeout=30):
                    raise RuntimeError("no echo within 30 s of the move")
                times.append(time.perf_counter() - start)
                term.drain(0.5)
        finally:
            roamer.stop(term)
    finally:
        hosts.close()
    return times


def roaming(tools: list[Tool], roams: int) -> None:
    if not netns.available():
        print("\nroaming: skipped (needs root and iproute2)")
        return
    print(f"\nroaming: the client's address replaced, then echo typed ({roams} moves)\n")
    print("| tool | median to echo | slowest |")
    print("|---|---|---|")
    for tool in tools:
        if isinstance(tool, (LocalPty, Ssh)):
            continue
        try:
            times = roam_times(tool, roams)
        except Exception as exc:                          # one tool failing must not hide the others
            print(f"| {tool.name} | failed: {exc} | |", flush=True)
            continue
        print(f"| {tool.name} | {statistics.median(times):.3f} s | {max(times):.3f} s |", flush=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def main_table(tools: list[Tool], args, big: Path) -> None:
    print(f"| tool | echo median | echo p90 | echo at 50 keys/s median / p90 | cat {big.stat().st_size / 1e6:.0f} MB "
          f"| bytes on loopback | bytes shown | cat CPU server / client | idle ticks server / client |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for tool in tools:
        try:
            result = results[tool.name] = run(tool, args, big)
        except Exception as exc:                     # one tool failing must not hide the others
            print(f"| {tool.name} | failed: {exc} | | | | | | | |", flush=True)
            continue
        median, p90 = percentiles(result["latency"])
        fast_median, fast_p90 = percentiles(result["fast"])
        seconds, wire, shown = result["cat"]
        server_cpu, client_cpu = (ticks / TICKS for ticks in result["cat_cpu"])
        print(f"| {tool.name} | {median:.2f} ms | {p90:.2f} ms | {fast_median:.1f} / {fast_p90:.1f} ms "
              f"| {seconds:.2f} s "
              f"| {size(wire)} | {size(shown)} | {server_cpu:.2f} / {client_cpu:.2f} s "
              f"| {result['idle'][0]} / {result['idle'][1]} |", flush=True)
    cat_floor_table(results, big)


def cat_floor_table(results: dict, big: Path) -> None:
    """What the cat's CPU allows at best. However well the processes overlap, the cat
    cannot end sooner than the machine's CPU-seconds spent on it over the cores, nor
    sooner than the busier side spent alone (its processes summed, which for moshpit
    is the one session process; for sshd, two, so a looser bound): two floors, each beside
    ssh's time in the same run (a goal of 1.5x ssh is out of reach while a floor is
    above it)."""
    cores = os.cpu_count() or 1
    ssh = results.get("ssh")
    ssh_seconds = ssh["cat"][0] if ssh else None
    print(f"\nWhat the cat of {big.stat().st_size / 1e6:.0f} MB costs the machine ({cores} cores; "
          f"every process and the kernel, from /proc/stat)\n")
    print("| tool | cat | machine CPU during it | floor: CPU / cores | floor: busiest side alone "
          "| cat / ssh | floors / ssh |")
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        seconds = result["cat"][0]
        machine = result["cat_machine"] / TICKS
        busiest = max(result["cat_cpu"]) / TICKS
        ratios = floors = "-"
        if ssh_seconds:
            ratios = f"{seconds / ssh_seconds:.2f}x"
            floors = f"{machine / cores / ssh_seconds:.2f}x / {busiest / ssh_seconds:.2f}x"
        print(f"| {name} | {seconds:.2f} s | {machine:.2f} s | {machine / cores:.2f} s | {busiest:.2f} s "
              f"| {ratios} | {floors} |", flush=True)


def fairness_table(tools: list[Tool], args, work: Path) -> None:
    flood = work / "flood.txt"
    make_file(flood, args.fair_mb)
    extra = [Moshpit(work, "reliable", processes=False)] if any(isinstance(t, Moshpit) for t in tools) else []
    print(f"\nFairness: B types {args.fair_keys} keys into cat, alone, then while A on the same server "
          f"prints {flood.stat().st_size / 1e6:.0f} MB in a loop\n")
    print("| tool | B alone median / p90 | B beside A median / p90 | median ratio | p90 ratio |")
    print("|---|---|---|---|---|")
    for tool in tools + extra:
        try:
            alone, beside = fairness(tool, args.fair_keys, flood)
        except Exception as exc:
            print(f"| {tool.name} | failed: {exc} | | | |", flush=True)
            continue
        (m0, p0), (m1, p1) = percentiles(alone), percentiles(beside)
        print(f"| {tool.name} | {m0:.2f} / {p0:.2f} ms | {m1:.2f} / {p1:.2f} ms | {m1 / m0:.2f}x "
              f"| {p1 / p0:.2f}x |", flush=True)
    flood.unlink()


def memory_table(tools: list[Tool], sessions: int) -> None:
    print(f"\nServer memory per extra session, 1 -> {sessions} sessions (smaps_rollup, shells not counted)\n")
    print("| tool | PSS per extra session | private dirty per extra session |")
    print("|---|---|---|")
    for tool in tools:
        if isinstance(tool, Moshpit) and tool.mode != "statesync":
            continue                                  # one mode is enough: the process is the same
        tool.start_server()
        try:
            pss, dirty = memory_growth(tool, sessions)
        except Exception as exc:
            print(f"| {tool.name} | failed: {exc} | |", flush=True)
            continue
        finally:
            tool.stop_server()
        print(f"| {tool.name} | {pss / 1024:.2f} MB | {dirty / 1024:.2f} MB |", flush=True)


def connect_table(tools: list[Tool], rounds: int) -> None:
    """From the command to a shell that has run a command: ``mp --ssh``, ``mosh`` and
    ``ssh`` against the same sshd (nothing of moshpit or mosh running beforehand), and
    ``mp`` to a running mps for reference. The command line is typed ahead."""
    ssh = next((tool for tool in tools if isinstance(tool, Ssh)), None)
    if ssh is None:
        print("\nconnect table: needs ssh (--tools ...,ssh)")
        return
    ssh.start_server()
    user = os.environ.get("USER", "root")
    ssh_cmd = (f"ssh -i {ssh.work / 'ssh' / 'id'} -p {ssh.port} -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    starts = {"ssh": lambda: ssh.connect(),
              "mp --ssh": lambda: Terminal([str(BIN / "mp"), f"--ssh={ssh_cmd}", f"--server={BIN / 'mps'} -q",
                                            f"{user}@127.0.0.1"], ssh.env)}
    if shutil.which("mosh"):
        starts["mosh"] = lambda: Terminal(["mosh", f"--ssh={ssh_cmd}", f"{user}@127.0.0.1"],
                                          dict(ssh.env, MOSH_PREDICTION_DISPLAY="never"))
    mps = next((tool for tool in tools if isinstance(tool, Moshpit)), None)
    if mps is not None:
        mps.start_server()
        starts["mp (mps already running)"] = mps.connect
    print(f"\nConnect: from the command to the first command's output ({rounds} rounds, median; "
          f"the same sshd for ssh, mp --ssh and mosh)\n")
    print("| tool | median | min | max |")
    print("|---|---|---|---|")
    try:
        for name, start in starts.items():
            times = []
            for _ in range(rounds):
                began = time.monotonic()
                term = start()
                term.write(b"echo READY-$((40+2))\r")
                ok = term.expect(b"READY-42", timeout=60)
                times.append(time.monotonic() - began)
                term.drain(0.1)
                if name.startswith("mp"):
                    Moshpit.quit(None, term)
                else:
                    Ssh.quit(None, term)
                if not ok:
                    times = []
                    break
            if times:
                times.sort()
                print(f"| {name} | {statistics.median(times) * 1000:.0f} ms | {times[0] * 1000:.0f} ms "
                      f"| {times[-1] * 1000:.0f} ms |", flush=True)
            else:
                print(f"| {name} | failed | | |", flush=True)
    finally:
        ssh.stop_server()
        if mps is not None:
            mps.stop_server()


# --- a slow path: Ctrl-C in a flood, and what reaches the scrollback ----------------------

RELAY = Path(__file__).resolve().parents[1] / "tests" / "relay.py"
# The markers' output is in capitals that no file line (only 'T'), prompt or typed command
# holds, so a client that paints screen differences cannot skip one of their cells as
# unchanged: they show in the raw output in one piece, and their typed echo never matches.
# The leading spaces are for readline: a Ctrl-C that reaches it at the prompt throws
# away the line being read, which can already hold the first key typed after it.
MARK_COMMAND, MARK = b"   x=qzxj; echo ${x^^}\r", b"QZXJ"
ENDED_COMMAND, ENDED = b"; y=catend; echo ${y^^}", b"CATEND"     # only if the cat was not interrupted


class SlowPath:
    """tests/relay.py in a process of its own (this file does not run gevent): ``rtt`` ms
    round trip; ``block`` drops all UDP both ways, or stalls the TCP relay."""

    def __init__(self, kind: str, *ports: int, rtt: float):
        self.proc = subprocess.Popen([sys.executable, str(RELAY), kind, *map(str, ports), "--delay",
                                      str(rtt / 2000)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        words = self.proc.stdout.readline().split()
        if words[:1] != [b"ready"]:
            self.close()
            raise RuntimeError(f"the relay did not start: {words!r}")
        self.port = int(words[1])

    def block(self, on: bool) -> None:
        self.proc.stdin.write(b"block\n" if on else b"unblock\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()                  # done: the next packet sees it

    def close(self) -> None:
        self.proc.stdin.close()                      # end of input ends it
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Slow:
    """A tool's server reached only through a SlowPath: mps behind its Gateway (127.0.0.2,
    UDP relayed), mosh-client through a Relay, ssh through the delaying TCP relay."""

    def __init__(self, tool: Tool, rtt: float):
        self.tool, self.rtt, self.path = tool, rtt, None

    def __enter__(self):
        if isinstance(self.tool, Moshpit):
            self.tool.start_server(udp_ports=1)
            self.path = SlowPath("gateway", self.tool.port, self.tool.udp, rtt=self.rtt)
        elif isinstance(self.tool, Ssh):
            self.tool.start_server()
            self.path = SlowPath("tcp", self.tool.port, rtt=self.rtt)
        return self

    def connect(self) -> Terminal:
        if isinstance(self.tool, Moshpit):
            return self.tool.connect(host="127.0.0.2")
        if isinstance(self.tool, Ssh):
            return self.tool.connect(port=self.path.port)

        def via(port):                               # mosh: one server, one relay per connect
            if self.path:
                self.path.close()
            self.path = SlowPath("udp", port, rtt=self.rtt)
            return self.path.port
        return self.tool.connect(via=via)

    def block(self, on: bool) -> None:
        self.path.block(on)

    def __exit__(self, *exc):
        if self.path:
            self.path.close()
        self.tool.stop_server()


def pump_for(term: Terminal, seconds: float) -> None:
    """Read what comes for ``seconds``, as a person's terminal would."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        term.pump(min(left, 0.2))


def interrupt(tool: Tool, rtt: float, path: Path, timeout: float) -> tuple[float | None, int, bool]:
    """``cat`` a large file, Ctrl-C after 2 s of output and a command typed at once: seconds
    from the Ctrl-C until the command's output shows (None: not within ``timeout``), the
    bytes the client wrote to its terminal meanwhile, and whether the cat had ended by
    itself before the Ctrl-C reached it (then the Ctrl-C cut nothing short)."""
    with Slow(tool, rtt) as slow:
        term = slow.connect()
        try:
            ready(term)
            term.watch = ENDED
            term.write(b"cat %s%s\r" % (bytes(path), ENDED_COMMAND))
            if not term.expect(b"brown fox", timeout=30):
                raise RuntimeError("the cat did not start")
            pump_for(term, 2.0)
            shown, start = term.total, time.perf_counter()
            term.write(b"\x03")
            term.write(MARK_COMMAND)
            found = term.expect(MARK, timeout=timeout)
            return (time.perf_counter() - start if found else None), term.total - shown, term.seen
        finally:
            tool.quit(term)


def numbers_run(tool: Tool, rtt: float, command: bytes, last: int, timeout: float,
                outage: tuple[float, float] | None = None) -> tuple[NumbersVerdict, float]:
    """Run ``command`` (it prints 1..``last``, one a line), the path cut off both ways for
    ``outage`` = (after, seconds) if given; judge all the client wrote to its terminal as
    a person scrolling back through it would see it (tests/transcript.py). Also the
    seconds from the command to its end shown."""
    with Slow(tool, rtt) as slow:
        term = slow.connect()
        term.record = bytearray()
        try:
            ready(term)
            start = time.perf_counter()
            term.write(command + b"; " + MARK_COMMAND)
            if outage:
                pump_for(term, outage[0])
                slow.block(True)
                pump_for(term, outage[1])
                slow.block(False)
            if not term.expect(MARK, timeout=timeout):
                raise RuntimeError(f"the run did not end within {timeout:g} s")
            elapsed = time.perf_counter() - start
            term.drain(1.0)
        finally:
            tool.quit(term)
    return judge_numbers(transcript_lines(bytes(term.record), 80, 24), 1, last), elapsed


def interrupt_table(tools: list[Tool], args, work: Path, missing: list[str]) -> None:
    flood = work / "interrupt.txt"
    make_file(flood, args.interrupt_mb)
    rtts = [float(r) for r in args.rtt.split(",")]
    print(f"\nCtrl-C: cat of {flood.stat().st_size / 1e6:.0f} MB through a slow path, Ctrl-C after 2 s of "
          f"output and a command typed at once; seconds until its output shows, and what the client's "
          f"terminal received after the Ctrl-C (80x24)\n")
    print("| tool | " + " | ".join(f"{r:g} ms RTT: Ctrl-C to output | received after" for r in rtts) + " |")
    print("|---|" + "---|---|" * len(rtts))
    for tool in tools:
        cells = []
        for rtt in rtts:
            try:
                seconds, after, ended = interrupt(tool, rtt, flood, args.interrupt_timeout)
            except Exception as exc:                  # one tool failing must not hide the others
                cells += [f"failed: {exc}", ""]
                continue
            cells += [(f"{seconds:.2f} s" if seconds is not None else f"> {args.interrupt_timeout:g} s")
                      + (" (cat had ended)" if ended else ""),
                      f"{after / 1e3:.1f} kB" if after < 1e5 else f"{after / 1e6:.2f} MB"]
        print(f"| {tool.name} | " + " | ".join(cells) + " |", flush=True)
    for name in missing:
        print(f"| {name} | skipped: not installed |" + " |" * (2 * len(rtts) - 1), flush=True)
    flood.unlink()


def scrollback_table(tools: list[Tool], args, missing: list[str]) -> None:
    rtt = float(args.rtt.split(",")[0])
    burst, trickle, outage = args.burst, args.trickle, args.outage
    begin = max(0.5, (trickle * 0.011 - outage) / 2)  # about the middle of the trickle
    print(f"\nScrollback through a slow path ({rtt:g} ms RTT), judged as a person scrolling back in an "
          f"80x24 xterm would see it: (i) seq 1 {burst}; (ii) 1..{trickle}, one line every 10 ms, "
          f"the path cut off both ways for {outage:g} s after {begin:g} s. Lines present once "
          f"/ missing / repeated / '[moshpit: N lines not shown]' markers (lines they hide)\n")
    print("| tool | burst: once | missing | repeated | markers | burst took "
          "| outage: once | missing | repeated | markers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = ((b"seq 1 %d" % burst, burst, None),
            (b"for i in $(seq 1 %d); do echo $i; sleep 0.01; done" % trickle, trickle, (begin, outage)))
    if any(isinstance(tool, Mosh) for tool in tools):     # mosh-client's alternate screen keeps no
        tools = tools + [Mosh(tools[0].work, alternate_screen=False)]   # scrollback; its frames aside
    for tool in tools:
        cells = []
        for command, last, cut in runs:
            try:
                verdict, took = numbers_run(tool, rtt, command, last, args.scrollback_timeout, cut)
            except Exception as exc:
                cells += [f"failed: {exc}", "", "", ""] + ([""] if cut is None else [])
                continue
            order = " (out of order)" if verdict.out_of_order else ""
            cells += [f"{verdict.once}/{verdict.expected}{order}", str(len(verdict.missing)),
                      str(verdict.repeated), f"{len(verdict.markers)} ({verdict.hidden})"]
            if cut is None:
                cells.append(f"{took:.2f} s")
        print(f"| {tool.name} | " + " | ".join(cells) + " |", flush=True)
    for name in missing:
        print(f"| {name} | skipped: not installed |" + " |" * 8, flush=True)


def size(count: float) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", default="pty,mp,mosh,ssh")
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--file-mb", type=float, default=72.0)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--tables", help="which tables to print (comma-separated; default: all, "
                        "and with --quick all but interrupt and scrollback)")
    parser.add_argument("--memory-sessions", type=int, default=20)
    parser.add_argument("--fair-keys", type=int, default=80)
    parser.add_argument("--fair-mb", type=float, default=65.0)
    parser.add_argument("--roams", type=int, default=5)
    parser.add_argument("--connect-rounds", type=int, default=5)
    parser.add_argument("--rtt", default="250", help="slow path round trips in ms, comma-separated "
                        "(interrupt: each; scrollback: the first)")
    parser.add_argument("--interrupt-mb", type=float, default=65.0)
    parser.add_argument("--interrupt-timeout", type=float, default=120.0)
    parser.add_argument("--burst", type=int, default=20000)
    parser.add_argument("--trickle", type=int, default=1500)
    parser.add_argument("--outage", type=float, default=8.0)
    parser.add_argument("--scrollback-timeout", type=float, default=120.0)
    args = parser.parse_args()
    tables = "main,fairness,memory,roaming,connect"
    if args.quick:
        args.tools, args.keys, args.file_mb, args.idle, args.roams = "mp", 12, 2.0, 2.0, 1
        args.memory_sessions, args.fair_keys, args.fair_mb = 3, 10, 2.0
        args.interrupt_mb, args.interrupt_timeout, args.burst, args.trickle = 8.0, 30.0, 2000, 300
        args.outage, args.scrollback_timeout = 1.5, 30.0
    else:
        tables += ",interrupt,scrollback"
    tables = (args.tables or tables).split(",")
    work = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    work.chmod(0o700)
    big = work / "big.txt"
    make_file(big, args.file_mb)
    file_size = big.stat().st_size
    wanted = args.tools.split(",")
    tools: list[Tool] = []
    missing: list[str] = []
    if "pty" in wanted:
        tools.append(LocalPty(work))
    if "mp" in wanted:
        tools += [Moshpit(work, mode) for mode in ("reliable", "statesync", "datagram")]
    if "mosh" in wanted:
        if shutil.which("mosh-server") and shutil.which("mosh-client"):
            tools.append(Mosh(work))
        else:
            print("mosh is not installed: skipped (apt-get install mosh)")
            missing.append("mosh")
    if "ssh" in wanted:
        if shutil.which("ssh") and os.path.exists("/usr/sbin/sshd"):
            tools.append(Ssh(work))
        else:
            print("ssh/sshd is not installed: skipped (apt-get install openssh-server)")
            missing.append("ssh")
    print(f"{os.cpu_count()} cores; {args.keys} keystrokes; cat of {file_size / 1e6:.1f} MB "
          f"({file_size // 72} lines); idle {args.idle:g} s\n")
    try:
        if "main" in tables:
            main_table(tools, args, big)
        servers = [tool for tool in tools if not isinstance(tool, LocalPty)]
        if "fairness" in tables:
            fairness_table(servers, args, work)
        if "memory" in tables:
            memory_table(servers, args.memory_sessions)
        if "roaming" in tables:
            roaming(tools, args.roams)
        if "connect" in tables:
            connect_table(servers, args.connect_rounds)
        if "interrupt" in tables:
            interrupt_table(servers, args, work, missing)
        if "scrollback" in tables:
            scrollback_table(servers, args, missing)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
