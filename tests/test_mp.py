"""mp as a person uses it: typed into a job-control shell on a real terminal (a PTY),
against a real mps process, read back the way the person would see it."""

import os
import re
import signal
import socket
import subprocess
import sys
import termios
import time

import nacl.signing
import pytest

from moshpit.keyfiles import write_key_pair
from moshpit.keys import KnownHosts, fingerprint, format_public_key
from moshpit.terminal.model import TerminalModel
from pty_driver import PtyProgram
from test_mps import start_mps
from transcript import judge_numbers, transcript_lines

MP = f"{sys.executable} -m moshpit.cli.mp"
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[78=>]")


def plain(data: bytes) -> bytes:
    """What the person reads: the bytes less the escape sequences."""
    return ESCAPES.sub(b"", bytes(data))


class Shell(PtyProgram):
    """An interactive bash with job control on a real terminal, as the person's own."""

    def __init__(self, home, **env):
        env = dict(os.environ, HOME=str(home), TERM="xterm-256color", PS1="$ ", **env)
        super().__init__(["bash", "--norc", "--noprofile", "-i"], env=env, cwd=str(home))
        assert self.expect(b"$ ")

    def type(self, text: str) -> None:
        self.write(text.encode())

    def expect_re(self, pattern: bytes, timeout: float = 15.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, bytes(self.output))):
            assert time.monotonic() < deadline, bytes(self.output)
            self.read()
        return found

    def last_status(self) -> int:
        """``$?`` of the shell: what mp exited with."""
        self.output.clear()
        self.type("echo status=$?.\r")
        return int(self.expect_re(rb"status=(\d+)\.").group(1))

    def raw(self) -> bool:
        """Is the terminal in mp's raw mode? (bash's readline clears ICANON and ECHO at its
        prompt too, but keeps ISIG, so Ctrl-C still interrupts.)"""
        return not termios.tcgetattr(self.fd)[3] & termios.ISIG

    def sane(self) -> bool:
        """Does a command run from the shell now find a cooked, echoing terminal? bash keeps
        the modes a command left behind when it exits normally, so this sees mp's leftovers."""
        self.output.clear()
        self.type("""printf 'TTY<%s>' "$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(isig|icanon|echo)')"\r""")
        return self.expect_re(rb"TTY<([-a-z\s]+)>").group(1).split() == [b"isig", b"icanon", b"echo"]

    def screen(self, cols: int = 80, rows: int = 24) -> list[str]:
        model = TerminalModel(cols, rows)
        model.feed(bytes(self.output))
        return model.state.text()


@pytest.fixture
def shell(tmp_path):
    (tmp_path / "tmp").mkdir()
    terminal = Shell(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    yield terminal
    terminal.kill()


# --- mp --local --------------------------------------------------------------------------

def test_local_passes_the_exit_status_on_and_leaves_nothing_behind(shell, tmp_path):
    shell.type(f"{MP} --local\r")
    shell.type("echo hi-$((40+2))\r")
    assert shell.expect(b"hi-42")
    shell.type("exit 3\r")
    assert shell.expect(b"mp: shell exited with status 3\r\n")
    assert b"\nmp: shell exited with status 3\r\n" in plain(shell.output)     # a line of its own
    assert shell.last_status() == 3                                        # as ssh passes it on
    assert b"known hosts" not in shell.output                              # nothing to trust
    assert os.listdir(tmp_path / "tmp") == []                              # nothing left behind
    assert not (tmp_path / ".mp").exists()
    assert shell.sane()


def test_escape_key_ends_the_session_with_status_0(shell):
    shell.type(f"{MP} --local\r")
    shell.type("echo ready\r")
    assert shell.expect(b"ready")
    shell.output.clear()
    shell.type("\x1e.")
    assert shell.expect(b"$ ", timeout=10)
    assert shell.last_status() == 0 and shell.sane()


def test_suspend_then_fg_repaints_and_carries_on(shell):
    shell.type(f"{MP} --local\r")
    shell.type("echo marker-$((6*7))\r")
    assert shell.expect(b"marker-42")
    shell.type("\x1e\x1a")                                          # Ctrl-^ Ctrl-Z
    assert shell.expect(b"[mp is suspended.]") and shell.expect(b"Stopped")
    assert b"\n[mp is suspended.]" in plain(shell.output)
    assert shell.sane()                 # the shell has its terminal
    shell.type("echo local-$((2+3))\r")
    assert shell.expect(b"local-5")                                # typed to the local shell
    shell.output.clear()
    shell.type("fg\r")
    assert shell.expect(b"marker-42")                              # the remote screen comes back
    deadline = time.monotonic() + 10
    while not shell.raw() and time.monotonic() < deadline:
        shell.read(0.1)
    assert shell.raw()                                             # mp's again
    shell.type("echo back-$((1+1))\r")
    assert shell.expect(b"back-2")                                 # keys and updates flow again
    shell.type("exit\r")
    assert shell.expect(b"mp: shell exited with status 0")
    assert shell.last_status() == 0 and shell.sane()


# --- against a real mps -------------------------------------------------------------------

@pytest.fixture
def mps(tmp_path):
    """A real mps on loopback for this home; yields its port and the host key's fingerprint."""
    host_key, client_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    write_key_pair(tmp_path / ".mp" / "mps_host_ed25519_key", host_key)
    write_key_pair(tmp_path / ".mp" / "id_ed25519", client_key)
    keys = tmp_path / ".mp" / "authorized_keys"
    keys.write_text(format_public_key(bytes(client_key.verify_key)) + "\n")   # mode 0644
    server = start_mps(tmp_path, "--bind", "127.0.0.1", "--port", "0", "--udp-ports", "53300-53399")
    line = ""
    while "mps: listening" not in line:
        line = server.stderr.readline()
        assert line, "mps exited before listening"
    port = int(re.search(r"port (\d+)", line).group(1))
    yield port, fingerprint(bytes(host_key.verify_key)), server
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def server_processes(server) -> list[int]:
    """mps and what it started: its fork server and a process per session (not the shells)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            head, _, rest = stat.rpartition(")")
            parents[int(entry)] = (int(rest.split()[1]), head.partition("(")[2])
    found, todo = [server.pid], [server.pid]
    while todo:
        parent = todo.pop()
        for pid, (ppid, name) in parents.items():
            if ppid == parent and name.startswith("mps-"):
                found.append(pid)
                todo.append(pid)
    return found


def known_keys(tmp_path, port):
    return [key for _, key in KnownHosts(tmp_path / ".mp" / "known_hosts").lookup("127.0.0.1", port)]


@pytest.mark.parametrize("answer", ["yes", "no", "wrong fingerprint", "the fingerprint"])
def test_the_host_key_question(shell, mps, tmp_path, answer):
    port, host_fingerprint, _ = mps
    wrong = fingerprint(bytes(nacl.signing.SigningKey.generate().verify_key))
    typed = {"wrong fingerprint": wrong, "the fingerprint": host_fingerprint}.get(answer, answer)
    # The command line beats the environment: this would go to port 1 otherwise.
    shell.type(f"MOSHPIT_SERVER_PORT=1 {MP} -p {port} 127.0.0.1\r")
    assert shell.expect(b"Are you sure you want to continue connecting (yes/no/[fingerprint])? ")
    assert host_fingerprint.encode() in shell.output
    shell.type(typed + "\r")
    if answer in ("yes", "the fingerprint"):
        assert shell.expect(b"Permanently added")
        shell.type("echo in-$((3*3))\r")
        assert shell.expect(b"in-9")
        assert len(known_keys(tmp_path, port)) == 1
        shell.type("exit\r")
        assert shell.expect(b"mp: shell exited with status 0")
        assert shell.last_status() == 0
    else:
        assert shell.expect(b"Host key verification failed.")
        if answer == "wrong fingerprint":
            assert b"is not the one" in shell.output and wrong.encode() in shell.output
        assert plain(shell.output).count(b"Host key verification failed") == 1
        assert b"Traceback" not in shell.output
        assert shell.last_status() == 1
        assert known_keys(tmp_path, port) == []


def test_a_server_that_shuts_down_is_reported_on_a_line_of_its_own(shell, mps):
    port, _, server = mps
    shell.type(f"{MP} -p {port} --host-key-check accept-new 127.0.0.1\r")
    shell.type("printf 'at-the-%s> ' prompt\r")             # (its echo is not what it prints:
    assert shell.expect(b"at-the-prompt> ")                     # the session is up before SIGTERM)
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    assert shell.expect(b"mp: server shutting down")
    assert b"\nmp: server shutting down" in plain(shell.output)
    assert shell.last_status() == 1 and shell.sane()


def test_sigterm_keeps_the_session_and_says_so(shell, mps):
    port, _, _ = mps
    shell.type(f"{MP} -p {port} --host-key-check accept-new 127.0.0.1\r")
    shell.type("echo shell=$$.\r")
    assert shell.expect_re(rb"shell=\d+\.")                     # the remote ran it: mp is running
    pid = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True, text=True).stdout.split()[0]
    os.kill(int(pid), signal.SIGTERM)
    assert shell.expect(b"killed by signal 15")
    assert shell.last_status() == 128 + 15 and shell.sane()


def test_the_status_bar_is_gone_when_mp_leaves(shell, mps):
    port, _, server = mps
    shell.type(f"{MP} -p {port} --host-key-check accept-new 127.0.0.1\r")
    shell.type("clear; echo top-$((6*7))\r")
    assert shell.expect(b"top-42")                                 # the remote shell ran it
    stopped = server_processes(server)
    assert len(stopped) == 3                                       # mps, fork server, the session
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)                               # the server goes silent
    try:
        assert shell.expect(b"Last contact", timeout=20)
        assert "Last contact" in shell.screen()[0]
        shown = bytes(shell.output)
        shell.output.clear()
        shell.type("\x1e.")
        assert shell.expect(b"$ ", timeout=10)                      # mp has left
        shell.output[:0] = shown                                   # all the terminal was sent
        assert not any("Last contact" in row for row in shell.screen()), shell.screen()
        assert shell.sane()
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


# --- Ctrl-C wherever mp waits ----------------------------------------------------------------

def test_ctrl_c_at_the_passphrase_prompt(shell, tmp_path):
    write_key_pair(tmp_path / ".mp" / "id_ed25519", nacl.signing.SigningKey.generate(), passphrase="pw")
    shell.type(f"{MP} 127.0.0.1\r")
    assert shell.expect(b"Enter passphrase for")
    shell.type("\x03")
    assert shell.expect(b"mp: interrupted")
    assert b"Traceback" not in shell.output
    assert shell.last_status() == 130 and shell.sane()


def test_ctrl_c_during_a_key_exchange_that_gets_no_answer(shell, tmp_path):
    write_key_pair(tmp_path / ".mp" / "id_ed25519", nacl.signing.SigningKey.generate())
    with socket.socket() as silent:                               # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        shell.type(f"{MP} -p {silent.getsockname()[1]} 127.0.0.1\r")
        time.sleep(1.5)
        shell.type("\x03")
        assert shell.expect(b"mp: interrupted")
    assert b"Traceback" not in shell.output and b"KeyboardInterrupt" not in shell.output
    assert shell.last_status() == 130


def test_ctrl_c_at_the_host_key_question(shell, mps, tmp_path):
    port, _, _ = mps
    shell.type(f"{MP} -p {port} 127.0.0.1\r")
    assert shell.expect(b"(yes/no/[fingerprint])? ")
    shell.type("\x03")
    assert shell.expect(b"mp: interrupted")
    assert b"Traceback" not in shell.output
    assert shell.last_status() == 130 and known_keys(tmp_path, port) == []


# --- one clear line for every mistake -------------------------------------------------------

@pytest.mark.parametrize("args, message, code", [
    (["nosuchhost.invalid"], "no identity key at", 1),
    (["--diff-mode", "fast", "--local"], "diff_mode must be one of", 1),
    ([], "Usage:", 2),
    (["--frobnicate", "host"], "unknown option --frobnicate", 2),
    (["-X", "host"], "unknown option -X: mp forwards no X11", 2),
    (["-L", "8080:localhost", "host"], "bad -L: '8080:localhost': expected [bind_address:]port:host:hostport", 1),
    (["-o", "Port=22", "host"], "unknown option -o: settings go in", 2),
    (["host", "ls", "/tmp"], "unexpected argument 'ls': mp opens a login shell", 2),
    (["-c", "/nonexistent.toml", "host"], "/nonexistent.toml: no such file", 1),
])
def test_mp_errors_are_one_clear_line(tmp_path, args, message, code):
    env = dict(os.environ, HOME=str(tmp_path))
    program = PtyProgram([sys.executable, "-m", "moshpit.cli.mp", *args], env=env, cwd=str(tmp_path))
    try:
        assert program.wait() == code
        text = program.output.decode(errors="replace")
        assert message in text and "Traceback" not in text and "Option(" not in text
    finally:
        program.kill()


def test_ssh_style_user_and_port(tmp_path, mps):
    """``-l USER`` and ``-p PORT`` mean what they mean to ssh: here a user mps refuses."""
    port, _, _ = mps
    env = dict(os.environ, HOME=str(tmp_path))
    program = PtyProgram([sys.executable, "-m", "moshpit.cli.mp", "-l", "nobody-such", "-p", str(port),
                          "--host-key-check", "accept-new", "127.0.0.1"], env=env, cwd=str(tmp_path))
    try:
        assert program.wait() == 1
        assert (b"127.0.0.1 refused: not authorised. The server tells a client no more; its log says why"
                in program.output)
    finally:
        program.kill()


@pytest.mark.parametrize("mode", ["reliable", "statesync"])
def test_kill_9_and_run_again_on_the_same_terminal_resumes_the_same_shell(shell, mps, mode):
    # ...and the output goes on where the killed client's terminal stopped: every line
    # once, in order, in the scrollback, with nothing written into it twice.
    port, _, _ = mps
    mp = f"MOSHPIT_DIFF_MODE={mode} {MP} -p {port} --host-key-check accept-new 127.0.0.1\r"
    shell.type(mp)
    assert shell.expect(b"known hosts")
    shell.type("echo shell=$$.\r")
    shell_pid = shell.expect_re(rb"shell=(\d+)\.").group(1)
    shell.type("i=1; while [ $i -le 800 ]; do echo $i; i=$((i+1)); sleep 0.005; done; echo end-$((2+2))\r")
    deadline = time.monotonic() + 15                # until the loop is past 150 (on screen)
    while not any(row.strip().isdigit() and int(row) >= 150 for row in shell.screen()):
        assert time.monotonic() < deadline
        shell.read()
    client_pid = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True,
                                text=True).stdout.split()[0]
    os.kill(int(client_pid), signal.SIGKILL)    # the client dies without a word, mid-output
    shell.read(0.5)
    shell.type("stty sane\r" + mp)              # same terminal, same command
    assert shell.expect(b"end-4", timeout=60)
    shell.type("echo again=$$.\r")
    assert shell.expect(b"again=" + shell_pid + b".")
    lines = transcript_lines(bytes(shell.output))
    verdict = judge_numbers(lines, 1, 800)
    assert not verdict.missing and not verdict.markers, verdict
    if mode == "reliable":
        assert verdict.once == 800 and not verdict.repeated and not verdict.out_of_order, verdict
        assert lines.count("shell=" + shell_pid.decode() + ".") == 1      # not written in again
    else:
        # The rows on screen when mp died come again as they scroll off on the server;
        # those the local shell pushed into the scrollback meanwhile (its prompt, the
        # command typed) are there twice. Nothing else is.
        assert verdict.repeated <= 4, verdict
    shell.type("exit\r")
    assert shell.expect(b"shell exited with status 0")


SLOW_SERVER = """
import sys, nacl.signing
from moshpit.gevent.server import Server
from moshpit.keyfiles import read_private_key
server = Server(read_private_key(sys.argv[1]), bind=("127.0.0.1", 0), udp_ports=(53400, 53499),
                authorized_keys=sys.argv[2], handshake_timeout=1.0, command=["/bin/sh"])
server.start()
print(server.address[1], flush=True)
server.serve_forever()
"""


def test_a_slow_yes_still_gets_in(shell, mps, tmp_path):
    """People read fingerprints slowly; the server gives up on a key exchange long before
    (here after 1 s). The answer is kept and the exchange done again, asking nothing."""
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(tmp_path / ".mp" / "mps_host_ed25519_key"),
                               str(tmp_path / ".mp" / "authorized_keys")], stdout=subprocess.PIPE, text=True,
                              cwd=str(tmp_path))     # the installed package, not the source tree
    try:
        port = int(server.stdout.readline())
        shell.type(f"{MP} -p {port} 127.0.0.1\r")
        assert shell.expect(b"(yes/no/[fingerprint])? ")
        time.sleep(2.5)                                          # the server has hung up
        shell.type("yes\r")
        assert shell.expect(b"Permanently added")
        shell.type("echo in-$((5*5))\r")
        assert shell.expect(b"in-25")
        assert plain(shell.output).count(b"Are you sure") == 1
        shell.type("exit\r")
        assert shell.expect(b"mp: shell exited with status 0")
    finally:
        server.kill()
        server.wait()


def test_a_busy_server_is_waited_for_not_reported_as_a_reset(shell, mps):
    """Someone sprays junk at the key-exchange port from the user's own host, emptying
    that source's allowance: mp is told to wait, says so, and gets in by itself."""
    port, _, _ = mps
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as junk:
            junk.sendall(b"GET / HTTP/1.1\r\n\r\n")
            junk.recv(4096)
    shell.type(f"{MP} -p {port} --host-key-check accept-new 127.0.0.1\r")
    assert shell.expect(b"is busy; trying again in")
    shell.type("echo in-$((7*7))\r")
    assert shell.expect(b"in-49", timeout=25)
    assert b"reset by peer" not in shell.output
    shell.type("exit\r")
    assert shell.expect(b"mp: shell exited with status 0")


def test_remote_output_cannot_question_the_local_terminal(shell):
    """Reliable mode writes the shell's bytes to the user's terminal; queries and clipboard
    access are taken out on the way (the echo-back attack), the rest arrives."""
    shell.type(f"{MP} --local\r")
    shell.type("printf 'A\\033[6nB\\033[21tC\\033]52;c;aGk=\\007D\\033P$qm\\033\\\\E-%s\\n' $((2+3))\r")
    assert shell.expect(b"ABCDE-5")
    assert b"\x1b[6n" not in shell.output and b"\x1b[21t" not in shell.output
    assert b"]52;" not in shell.output.replace(b"]52;c;aGk=\\007", b"")   # only in the typed command
    # The server's model answered printf's cursor-position query into the shell's input,
    # where the remote readline took it for typing: clear the line (Ctrl-U) before exit.
    shell.type("\x15exit\r")
    assert shell.expect(b"mp: shell exited with status 0")
