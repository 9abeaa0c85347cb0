"""Many sessions on one server, each typing, beside mosh and ssh (loopback, real processes).

    python benchmarks/bench_load.py [--quick] [--tools mp,mosh,ssh] [--sessions N] [--keys N]
                                    [--idle SECONDS] [--rate KEYS_PER_SECOND] [--nice N]

For each tool, one server and N sessions to it (200 by default), each running a
login shell on a PTY of the server's, in one run:

- one measured session, a real client on a PTY of ours exactly as in
  ``bench_e2e.py`` (``mp``, ``ssh``, ``mosh-client``), types ``--keys`` single
  keys into ``cat``, 50 to 150 ms apart; echo latency is from the write to the
  client's PTY until the key shows up in what the client writes back;
- the N-1 others are held by a load process of their own (this script run with
  ``--worker``) and, while the measured session types, type into ``cat`` at a
  human rate: ``--rate`` keys a second each on average (intervals drawn
  uniformly from 0.5/rate to 1.5/rate), with a Ctrl-U now and then so the line
  stays short. Their echo latency (write to echo, at most one key in flight per
  session) is pooled over all of them. For ssh and mosh these are real ``ssh``
  and ``mosh-client`` processes on PTYs. For moshpit they are in-process
  clients on the sans-IO ``Channel`` over real UDP (as ``ShellClient`` in
  tests/test_gevent_server.py): 199 ``mp`` processes would cost 40 MB and a
  Python interpreter each on a 2-core machine. So the measured session is the
  like-for-like comparison; "the others" are what a session sees from inside
  the load process, whose own delays are in it. Each session's shell is up
  (it has answered an ``echo``, its login scripts done) before the next phase;
- server memory: the RSS of the server's own processes, and their private
  memory (USS: pages no other process maps, so not the shared libraries and
  code that forked servers share), with one session and with N after the
  typing; per extra session is the growth divided by N-1. The server's
  processes are ``mps``, its fork server and a process per session
  (``mps-session``); ``sshd`` (the listener and the two it forks per
  session); the ``mosh-server`` of each session. The shells and their ``cat``
  are the same for every tool and are not counted (their RSS is printed apart);
- idle CPU: with all N connected and nobody typing, the clock ticks (1/100 s,
  utime+stime from /proc) that the server's processes use over ``--idle``
  seconds; and the server's CPU while everyone types.

The load process and its clients run at ``--nice`` 10: they stand for clients
on other machines and should not take the 2 cores from the server they load
(the servers, mosh-server included, and the measured client keep the run's
priority). A shared machine is noisy all the same, so the second table says,
for the typing phase, how much of the time the server's processes were
runnable but waiting for a CPU (/proc/PID/schedstat) and how busy the machine
was, in all and with processes not of this run: compare tools of one run only,
and distrust a run whose "not this run" is large.
moshpit runs ``mps`` in its default diff mode (reliable), with the per-user
and per-key session limits lifted (``MOSHPITS_MAX_SESSIONS_PER_USER=0``,
``MOSHPITS_MAX_SESSIONS_PER_KEY=0``; the defaults, 32 and 16, would refuse the
rest) and a UDP port range wide enough for N. Its key-exchange limiter allows
a burst of 10 per source address, so the load process spreads its logins over
source addresses 127.0.0.10 and up (all loopback), 8 logins each. mosh runs
with prediction off. Tools that are not installed are skipped. ``--quick`` is
the CI smoke run (5 sessions, short phases).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import pty
import pwd
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import (BIN, TICKS, Mosh, Moshpit, Ssh, Terminal, cpu_ticks, echo_latency, free_port,  # noqa: E402
                       ready)

KEYS = b"abefgijknopqstuvwxyz"      # none of the letters that end mosh's escape sequences
CLEAR_EVERY = 40                    # keys before a Ctrl-U (cat's line stays short; not timed)
ECHO_TIMEOUT = 5.0                  # a key not echoed by then counts as lost
PER_SOURCE = 8                      # moshpit logins per loopback source address (burst is 10)
CONNECT_BATCH = 8                   # logins under way at once (sshd's MaxStartups starts at 10)


# --- processes, from /proc ---------------------------------------------------------------

def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            head, _, rest = stat.rpartition(")")
            table[int(entry)] = (int(rest.split()[1]), head.partition("(")[2])
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def memory_kb(pids) -> tuple[int, int]:
    """Summed RSS and private memory (USS: pages no other process maps, what ending the
    processes frees; a forked server's shared libraries and code are not in it) in kB."""
    rss = private = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    private += int(line.split()[1])
        except OSError:
            pass
    return rss, private


def ticks(pids) -> int:
    return sum(cpu_ticks(pid) for pid in pids)


def run_queue_ms(pids) -> tuple[float, float]:
    """Milliseconds on a CPU, and runnable but waiting for one (/proc/PID/schedstat)."""
    ran = waited = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/schedstat").read_text().split()
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
        except (OSError, IndexError):
            pass
    return ran / 1e6, waited / 1e6


def machine_busy() -> int:
    """Ticks all CPUs spent busy so far (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7))


def command_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def end(pids, name: bytes = b"") -> None:
    """SIGTERM each pid still running ``name`` (a pid may have been reused since)."""
    for pid in pids:
        if name and not command_of(pid).startswith(name):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class SizedTerminal(Terminal):
    """bench_e2e's Terminal, its window size set in the child before the program starts:
    set from the parent after the fork, a busy machine lets mosh-client read 0 rows first
    and die (``Assertion `s_height > 0' failed``)."""

    def __init__(self, argv, env, cols=80, rows=24):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.total = 0
        self.tail = b""
        self.record, self.watch, self.seen = None, None, False   # as bench_e2e's Terminal


# --- the tools: bench_e2e's, with room for N sessions and their server processes by pid ----

class MoshpitLoad(Moshpit):
    def __init__(self, work: Path, sessions: int):
        super().__init__(work, "reliable")
        self.name = "moshpit (reliable)"
        self.sessions = sessions

    def start_server(self):
        """As ``Moshpit.start_server``, with ports and session limits for N sessions."""
        keys, auth = self.make_keys()
        self.port = free_port()
        low = random.randrange(20000, 30000)             # below the ephemeral range; mps skips taken ports
        env = dict(self.env, MOSHPITS_AUTHORIZED_KEYS_FILE=str(auth), MOSHPITS_MAX_SESSIONS_PER_USER="0",
                   MOSHPITS_MAX_SESSIONS_PER_KEY="0")
        self.server = subprocess.Popen(
            [BIN / "mps", "-e", "-q", "-p", keys / "host_key", "--bind", "127.0.0.1", "--port", str(self.port),
             "--udp-ports", f"{low}-{low + self.sessions + 63}"], env=env, stderr=subprocess.PIPE, cwd=self.work)
        line = self.server.stderr.readline()
        if b"listening" not in line:
            raise RuntimeError(f"mps did not start: {line!r}")
        self.log = self.work / "mps.log"                 # the rest of its stderr, for a failure
        self._copier = subprocess.Popen(["cat"], stdin=self.server.stderr, stdout=open(self.log, "wb"))

    def server_side(self) -> set[int]:
        """mps, its fork server and a process per session (``mps-session``)."""
        if self.server.poll() is not None:
            return set()
        table = process_table()
        return {self.server.pid} | {p for p in descendants({self.server.pid}, table)
                                    if table[p][1].startswith("mps-")}

    def worker_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def stop_server(self):
        if self.server.poll() is None:
            super().stop_server()
        self._copier.wait(5)


class SshLoad(Ssh):
    name = "ssh"

    def server_side(self) -> set[int]:
        """The listener and the sshd processes under it (two per session), not the shells."""
        if self.server.poll() is not None:
            return set()
        table = process_table()
        return {self.server.pid} | {p for p in descendants({self.server.pid}, table) if table[p][1] == "sshd"}

    def worker_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def stop_server(self):
        end(self.server_side() - {self.server.pid}, b"sshd")
        super().stop_server()


class MoshLoad(Mosh):
    name = "mosh"

    def __init__(self, work: Path):
        super().__init__(work)
        self.pids: set[int] = set()
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)   # the server's priority, whoever starts it

    def _server_priority(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        except OSError:                                  # not root: it stays as nice as the load
            pass

    def connect(self):
        """As ``Mosh.connect``, keeping the mosh-server's pid (its figures; to end it by pid)."""
        for _ in range(3):                               # the free port may be taken meanwhile
            port = free_port(socket.SOCK_DGRAM)
            out = subprocess.run(["mosh-server", "new", "-i", "127.0.0.1", "-p", str(port), "--", "/bin/bash",
                                  "-l"], env=self.env, capture_output=True, text=True, cwd=self.work,
                                 preexec_fn=self._server_priority)
            found = re.search(r"MOSH CONNECT (\d+) (\S+)", out.stdout)
            pid = re.search(r"detached, pid = (\d+)", out.stderr)
            if found and pid:
                break
        else:
            raise RuntimeError(f"mosh-server did not start: {out.stdout} {out.stderr}")
        self.pids.add(int(pid[1]))
        return SizedTerminal(["mosh-client", "127.0.0.1", found[1]],
                             dict(self.env, MOSH_KEY=found[2], MOSH_PREDICTION_DISPLAY="never"))

    def server_side(self) -> set[int]:
        return {pid for pid in self.pids if command_of(pid).startswith(b"mosh-server")}

    def worker_args(self) -> list[str]:
        return []

    def stop_server(self):
        end(self.pids, b"mosh-server")


# --- the load process: N-1 sessions that type --------------------------------------------

def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def intervals(rate: float, rng: random.Random):
    while True:
        yield rng.uniform(0.5 / rate, 1.5 / rate)


def pty_worker(args) -> None:
    """ssh or mosh: real clients on PTYs, driven from one poll loop."""
    work = Path(args.work)
    tool = SshLoad(work) if args.worker == "ssh" else MoshLoad(work)
    if args.port:
        tool.port = args.port
    if isinstance(tool, MoshLoad):
        tool.nice = args.server_nice
    rng = random.Random(args.seed)
    started, sessions, failed, errors = time.monotonic(), [], 0, []
    try:
        for first in range(0, args.count, CONNECT_BATCH):
            batch = []
            for _ in range(min(CONNECT_BATCH, args.count - first)):
                try:
                    batch.append(tool.connect())
                except (RuntimeError, OSError) as exc:
                    errors.append(f"connect: {exc}")
                    failed += 1
            for term in batch:
                try:
                    ready(term)
                    term.write(b"cat\r")
                    sessions.append(term)
                except (RuntimeError, OSError) as exc:
                    errors.append(f"{exc} (last output: {term.tail[-80:]!r})")
                    failed += 1
                    term.close()
        for term in sessions:
            term.drain(0.05)
        emit({"up": len(sessions), "failed": failed, "seconds": time.monotonic() - started, "errors": errors[:3],
              "pids": sorted(getattr(tool, "pids", ())), "clients": [t.pid for t in sessions]})

        by_fd = {term.fd: term for term in sessions}
        state = {term.fd: {"key": None, "since": b"", "sent": 0.0, "next": 0.0, "count": 0} for term in sessions}
        poller = select.poll()
        for fd in [0, *by_fd]:
            poller.register(fd, select.POLLIN)
        pause = intervals(args.rate, rng)
        typing, stopping, latencies, lost, typed, commands, began = False, None, [], 0, 0, b"", 0.0
        while True:
            now = time.monotonic()
            if typing or stopping:
                waits = [s["sent"] + ECHO_TIMEOUT if s["key"] else s["next"] for s in state.values()]
                timeout = max(0.0, min(waits, default=now + 1) - now)
            else:
                timeout = 1.0
            if stopping:
                timeout = min(timeout, max(0.0, stopping - now))
            for fd, _ in poller.poll(timeout * 1000):
                if fd == 0:
                    data = os.read(0, 4096)
                    if not data:
                        return
                    commands += data
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:                             # the client is gone
                    poller.unregister(fd)
                    state.pop(fd, None)
                    continue
                s = state.get(fd)
                if s and s["key"] is not None:
                    s["since"] += data
                    if s["key"] in s["since"]:
                        latencies.append((time.monotonic() - s["sent"]) * 1000)
                        s["key"] = None
            while b"\n" in commands:
                line, _, commands = commands.partition(b"\n")
                if line == b"type":
                    typing, now = True, time.monotonic()
                    began = now
                    for s in state.values():
                        s["next"] = now + rng.uniform(0, 1.0 / args.rate)
                elif line == b"stop":
                    typing, stopping = False, time.monotonic() + ECHO_TIMEOUT
                    began = time.monotonic() - began             # how long they typed
                elif line == b"quit":
                    return
            now = time.monotonic()
            for fd, s in state.items():
                if s["key"] is not None and now - s["sent"] > ECHO_TIMEOUT:
                    lost, s["key"] = lost + 1, None
                if typing and s["key"] is None and now >= s["next"]:
                    s["count"] += 1
                    s["next"] = now + next(pause)
                    if s["count"] % CLEAR_EVERY == 0:
                        os.write(fd, b"\x15")
                        continue
                    key = KEYS[s["count"] % len(KEYS):][:1]
                    s["key"], s["since"], s["sent"] = key, b"", time.monotonic()
                    os.write(fd, key)
                    typed += 1
            if stopping and (now >= stopping or all(s["key"] is None for s in state.values())):
                lost += sum(s["key"] is not None for s in state.values())
                emit({"latencies": latencies, "typed": typed, "lost": lost, "alive": len(state),
                      "seconds": began})
                stopping, latencies, lost, typed = None, [], 0, 0
    finally:
        for term in sessions:                            # cat ends, then the shell: the server side ends too
            try:
                term.write(b"\x04exit\r")
            except OSError:
                pass
        time.sleep(1.0)
        for term in sessions:
            term.close()
        if isinstance(tool, MoshLoad):
            time.sleep(0.5)
            tool.stop_server()                           # only the mosh-servers this process started


def mp_worker(args) -> None:
    """moshpit: light clients on the sans-IO Channel over real UDP, on gevent (no PTY, no mp)."""
    import gevent
    import gevent.event
    import gevent.os
    import gevent.pool
    import gevent.socket as gsocket
    from moshpit.keyfiles import read_private_key
    from moshpit.protocol.channel import Channel, CloseCode, Role
    from moshpit.protocol.events import ConnectionClosed, DataReceived, HandshakeRefused, HostKeyReceived
    from moshpit.protocol.handshake import ClientHandshake, DiffMode, ServerBusy

    key = read_private_key(Path(args.work) / ".mp" / "id_ed25519")
    user = pwd.getpwuid(os.getuid()).pw_name
    latencies: list[float] = []
    rng = random.Random(args.seed)
    pause = intervals(args.rate, rng)

    class LightClient:
        """ShellClient of tests/test_gevent_server.py, from its own source address, whose timer
        greenlet sleeps until the channel's timer (no 50 ms polling: 200 of them idle)."""

        def __init__(self, source: str):
            self.closed, self.greeted = False, False
            self.key, self.since, self.sent = None, b"", 0.0
            self.echoed = gevent.event.Event()
            self.wake = gevent.event.Event()
            self.params = None
            for _ in range(5):
                try:
                    self.params = self._handshake(source)
                    break
                except ServerBusy as busy:               # past the limiter's burst: wait as mp does
                    gevent.sleep(busy.retry_after)
            if self.params is None:
                raise RuntimeError("refused")
            self.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
            self.sock.bind((source, 0))
            self.sock.connect(("127.0.0.1", self.params.udp_port))
            self.channel = Channel.from_params(Role.CLIENT, self.params, now=time.monotonic(),
                                               peer_addr=("127.0.0.1", self.params.udp_port))
            self.greenlets = [gevent.spawn(self._read), gevent.spawn(self._tick)]

        def _handshake(self, source: str):
            hs = ClientHandshake(key, user, now=time.monotonic(), diff_mode=DiffMode.RELIABLE,
                                 env={"TERM": "xterm-256color", "LANG": "C.UTF-8"})
            with gsocket.create_connection(("127.0.0.1", args.port), timeout=20,
                                           source_address=(source, 0)) as tcp:
                tcp.sendall(hs.data_to_send())
                while hs.params is None:
                    data = tcp.recv(4096)
                    if not data:
                        raise RuntimeError("the server closed the key exchange")
                    hs.receive_data(data, time.monotonic())
                    while (event := hs.next_event()) is not None:
                        if isinstance(event, HostKeyReceived):
                            hs.accept_host_key()
                        elif isinstance(event, HandshakeRefused):
                            raise RuntimeError(f"refused: {event.reason}")
                    tcp.sendall(hs.data_to_send())
                return hs.params

        def _read(self):
            while not self.closed:
                try:
                    data = self.sock.recv(2048)
                except OSError:
                    return
                self.channel.receive_datagram(data, self.channel.peer_addr, time.monotonic())
                self.service()

        def _tick(self):
            while not self.closed:
                timer = self.channel.get_timer()
                self.wake.wait(None if timer is None else max(0.001, timer - time.monotonic()))
                self.wake.clear()
                now = time.monotonic()
                timer = self.channel.get_timer()
                if timer is not None and now >= timer:
                    self.channel.handle_timer(now)
                self.service(wake=False)

        def service(self, wake: bool = True):
            now = time.monotonic()
            for data, _ in self.channel.datagrams_to_send(now):
                try:
                    self.sock.send(data)
                except OSError:
                    pass
            while (event := self.channel.next_event()) is not None:
                if isinstance(event, DataReceived) and self.key is not None:
                    self.since += event.data
                    if self.key in self.since:
                        latencies.append((time.monotonic() - self.sent) * 1000)
                        self.key = None
                        self.echoed.set()
                elif isinstance(event, DataReceived) and not self.greeted:
                    self.since = (self.since + event.data)[-4096:]
                elif isinstance(event, ConnectionClosed):
                    self.closed = True
            if wake:
                self.wake.set()                          # the timer may be earlier now

        def ready(self):
            """As bench_e2e's ready(): the shell runs commands (its login scripts are done)."""
            self.type(b"echo READY-$((40+2))\r")
            deadline = time.monotonic() + 30
            while b"READY-42" not in self.since:
                if self.closed or time.monotonic() > deadline:
                    raise RuntimeError("the session did not come up")
                gevent.sleep(0.05)
            self.type(b"cat\r")

        def type(self, data: bytes):
            if self.channel.accepts_data:
                self.channel.send_data(data)
                self.service()

        def typist(self, counters: dict):
            count = 0
            gevent.sleep(rng.uniform(0, 1.0 / args.rate))
            while counters["typing"] and not self.closed:
                count += 1
                if count % CLEAR_EVERY == 0:
                    self.type(b"\x15")
                    gevent.sleep(next(pause))
                    continue
                key = KEYS[count % len(KEYS):][:1]
                self.echoed.clear()
                self.key, self.since, self.sent = key, b"", time.monotonic()
                counters["typed"] += 1
                self.type(key)
                due = self.sent + next(pause)
                if not self.echoed.wait(ECHO_TIMEOUT):
                    counters["lost"] += 1
                    self.key = None
                gevent.sleep(max(0.0, due - time.monotonic()))

        def close(self):
            if not self.closed and self.channel.accepts_data:
                self.channel.close(CloseCode.NORMAL, "done", now=time.monotonic())
                self.service()
            self.closed = True
            gevent.killall(self.greenlets, block=False)
            self.sock.close()

    clients, failures = [], []
    sources = max(1, math.ceil(args.count / PER_SOURCE))

    def connect(index: int):
        client = None
        try:
            client = LightClient(f"127.0.0.{10 + index % sources}")
            client.ready()
            client.greeted = True
            clients.append(client)
        except Exception as exc:                         # counted and reported, the rest go on
            failures.append(str(exc))
            if client is not None:
                client.close()

    started = time.monotonic()
    pool = gevent.pool.Pool(CONNECT_BATCH)
    for index in range(args.count):
        pool.spawn(connect, index)
    pool.join()
    gevent.sleep(0.5)
    emit({"up": len(clients), "failed": len(failures), "seconds": time.monotonic() - started,
          "errors": failures[:3], "pids": [], "clients": []})

    gevent.os.make_nonblocking(0)
    commands, typists, counters = b"", [], {"typing": False, "typed": 0, "lost": 0}
    try:
        while True:
            data = gevent.os.nb_read(0, 4096)
            if not data:
                return
            commands += data
            while b"\n" in commands:
                line, _, commands = commands.partition(b"\n")
                if line == b"type":
                    counters.update(typing=True, typed=0, lost=0, began=time.monotonic())
                    latencies.clear()
                    typists = [gevent.spawn(client.typist, counters) for client in clients]
                elif line == b"stop":
                    counters["typing"] = False
                    counters["began"] = time.monotonic() - counters["began"]      # how long they typed
                    gevent.joinall(typists, timeout=ECHO_TIMEOUT + 3)
                    emit({"latencies": latencies, "typed": counters["typed"], "lost": counters["lost"],
                          "alive": sum(not c.closed for c in clients),
                          "seconds": counters["began"]})
                elif line == b"quit":
                    return
    finally:
        for client in clients:
            client.close()
        gevent.sleep(0.5)


# --- the run -------------------------------------------------------------------------------

class Worker:
    """The load process, spoken to a line at a time; every wait bounded, the measured
    client's PTY drained meanwhile (a client that cannot write stops reading the network)."""

    def __init__(self, tool, args, count: int):
        self.log = tool.work / f"worker-{args.tool_key}.log"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", args.tool_key, "--work", str(tool.work), "--count", str(count),
             "--rate", str(args.rate), "--seed", "7", "--nice", str(args.nice),
             "--server-nice", str(os.getpriority(os.PRIO_PROCESS, 0)), *tool.worker_args()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "wb"), env=tool.env)
        self.buffer = b""

    def send(self, command: str) -> None:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float, term: Terminal) -> dict:
        deadline = time.monotonic() + timeout
        out = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the load process did not answer in {timeout:.0f} s")
            readable, _, _ = select.select([out, term.fd], [], [], left)
            if term.fd in readable:
                term.pump(0)
            if out in readable:
                data = os.read(out, 1 << 20)
                if not data:
                    raise RuntimeError(f"the load process ended: {self.tail()}")
                self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip().splitlines()[-1]
        except (OSError, IndexError):
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pump_for(term: Terminal, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        term.pump(max(0.0, deadline - time.monotonic()))


def shells_of(server: set[int]) -> set[int]:
    return descendants(server, process_table()) - server


def ours(tool) -> set[int]:
    """This run's processes: ours and our children's, and the servers' (mosh-server detaches)."""
    table = process_table()
    server = tool.server_side()
    return {os.getpid()} | descendants({os.getpid()} | server, table) | server


def run(tool, args) -> dict:
    result: dict = {}
    tool.start_server()
    worker = term = None
    try:
        time.sleep(0.5)
        result["mem0"] = memory_kb(tool.server_side())
        term = tool.connect()
        ready(term)
        pump_for(term, args.settle)
        result["mem1"] = memory_kb(tool.server_side())
        worker = Worker(tool, args, args.sessions - 1)
        up = worker.receive(60 + 2.0 * args.sessions, term)
        result["up"], result["failed"], result["connect"] = up["up"] + 1, up["failed"], up["seconds"]
        result["errors"] = up["errors"]
        if isinstance(tool, MoshLoad):
            tool.pids.update(up["pids"])
        pump_for(term, args.settle)
        server = tool.server_side()
        result["memN0"] = memory_kb(server)
        result["processes"] = len(server)

        # idle: everyone connected, nobody typing
        client_side = {term.pid, worker.proc.pid, *up["clients"]}
        before = ticks(server), ticks(client_side)
        pump_for(term, args.idle)
        server = tool.server_side()
        result["idle"] = ticks(server) - before[0], ticks(client_side) - before[1]

        # typing: the others all along, the measured session in the middle
        before, started = ticks(server), time.monotonic()
        queue, mine, busy = run_queue_ms(server), ours(tool), machine_busy()
        mine = {pid: cpu_ticks(pid) for pid in mine}
        worker.send("type")
        pump_for(term, args.settle)
        result["measured"] = echo_latency(term, args.keys)
        pump_for(term, args.settle / 2)
        worker.send("stop")
        typing_seconds = time.monotonic() - started
        result["typing_cpu"] = (ticks(tool.server_side()) - before) / TICKS / typing_seconds * 100
        ran, waited = (b - a for a, b in zip(queue, run_queue_ms(tool.server_side())))
        result["waited"] = waited / (ran + waited) * 100 if ran + waited else 0.0
        busy = machine_busy() - busy
        ours_ticks = sum(cpu_ticks(pid) - start for pid, start in mine.items() if pid in ours(tool))
        cores = typing_seconds * TICKS / 100
        result["machine"] = busy / cores, max(0, busy - ours_ticks) / cores   # % of one core
        result["others"] = worker.receive(ECHO_TIMEOUT + 30, term)
        pump_for(term, args.settle / 2)
        server = tool.server_side()
        result["memN"] = memory_kb(server)
        result["shells"] = memory_kb(shells_of(server))[0]
        result["alive_at_end"] = len(server)
        if isinstance(tool, MoshpitLoad) and tool.server.poll() is not None:
            tool.stop_server()
            last = tool.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"mps exited with {tool.server.returncode}: {' / '.join(last)}")
    finally:
        if worker is not None:
            worker.stop()
        if term is not None:
            tool.quit(term)
        tool.stop_server()
    return result


def figures(samples: list[float]) -> str:
    if not samples:
        return "none"
    ordered = sorted(samples)
    return f"{statistics.median(ordered):.2f} / {ordered[int(0.9 * (len(ordered) - 1))]:.2f} ms"


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB" if abs(kb) >= 1024 * 10 else f"{kb / 1024:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tools", default="mp,mosh,ssh")
    parser.add_argument("--sessions", type=int, default=200, help="sessions on each server, measured one included")
    parser.add_argument("--keys", type=int, default=100, help="keys the measured session types")
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=3.0, help="keys a second each other session types")
    parser.add_argument("--settle", type=float, default=2.0, help=argparse.SUPPRESS)   # pauses between phases
    parser.add_argument("--limit", type=float, default=900.0, help="seconds one tool may take at most")
    parser.add_argument("--worker", choices=("mp", "ssh", "mosh"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=7, help=argparse.SUPPRESS)
    parser.add_argument("--nice", type=int, default=10, help="niceness of the load process and its clients")
    parser.add_argument("--server-nice", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the run ends us, after its own Ctrl-C
        os.nice(args.nice)
        (mp_worker if args.worker == "mp" else pty_worker)(args)
        return
    if args.quick:
        args.sessions, args.keys, args.idle, args.settle = 5, 15, 2.0, 0.5
    args.sessions = max(2, args.sessions)
    work = Path(tempfile.mkdtemp(prefix="mp-load-"))
    work.chmod(0o700)
    wanted = args.tools.split(",")
    tools = []
    if "mp" in wanted:
        tools.append(("mp", MoshpitLoad(work, args.sessions)))
    if "mosh" in wanted:
        if shutil.which("mosh-server") and shutil.which("mosh-client"):
            tools.append(("mosh", MoshLoad(work)))
        else:
            print("mosh is not installed: skipped (apt-get install mosh)")
    if "ssh" in wanted:
        if shutil.which("ssh") and os.path.exists("/usr/sbin/sshd"):
            tools.append(("ssh", SshLoad(work)))
        else:
            print("ssh/sshd is not installed: skipped (apt-get install openssh-server)")

    def too_long(signum, frame):
        raise TimeoutError(f"over --limit {args.limit:g} s")
    signal.signal(signal.SIGALRM, too_long)

    print(f"{os.cpu_count()} cores; {args.sessions} sessions on each server, one measured ({args.keys} keys "
          f"into cat, 50-150 ms apart), {args.sessions - 1} others typing {args.rate:g} keys/s each; "
          f"idle {args.idle:g} s\n", flush=True)
    rows, details = [], []
    try:
        for key, tool in tools:
            args.tool_key = key
            signal.alarm(int(args.limit))
            try:
                r = run(tool, args)
            except Exception as exc:                     # one tool failing must not hide the others
                rows.append(f"| {tool.name} | failed: {exc} | | | | | | | |")
                print(f"{tool.name}: failed: {exc}", flush=True)
                continue
            finally:
                signal.alarm(0)
            others = r["others"]
            extra = max(1, r["up"] - 1)
            per_rss = (r["memN"][0] - r["mem1"][0]) / extra
            per_uss = (r["memN"][1] - r["mem1"][1]) / extra
            rows.append(f"| {tool.name} | {r['up']} | {figures(r['measured'])} | {figures(others['latencies'])} "
                        f"| {mb(r['memN'][0])} / {mb(r['memN'][1])} | {mb(per_rss)} / {mb(per_uss)} "
                        f"| {r['idle'][0]} | {r['typing_cpu']:.0f} % |")
            details.append(f"| {tool.name} | {r['connect']:.1f} s ({r['failed']} failed) | {r['processes']} "
                           f"| {mb(r['mem0'][0])} | {mb(r['mem1'][0])} | {mb(r['memN0'][0])} "
                           f"| {others['typed'] / max(others['seconds'], 1e-9):.0f} ({others['lost']} lost) "
                           f"| {r['waited']:.0f} % | {r['machine'][0]:.0f} % / {r['machine'][1]:.0f} % "
                           f"| {r['idle'][1]} | {mb(r['shells'])} |")
            for error in r["errors"]:
                details.append(f"<!-- {tool.name}: a session failed: {error} -->")
            print(f"{tool.name}: done", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n| tool | sessions up | echo median / p90, measured | echo median / p90, the others "
          f"| server RSS / private, {args.sessions} sessions | per extra session, RSS / private "
          f"| idle ticks, server ({args.idle:g} s) | server CPU while typing |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| tool | others connected in | server processes | server RSS, no session | one session "
          f"| {args.sessions}, before typing | keys/s the others typed | server runnable, waiting for a CPU "
          f"| machine busy / not this run, while typing | idle ticks, clients | shells' RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(details), flush=True)


if __name__ == "__main__":
    main()
