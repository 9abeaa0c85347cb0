"""mp --ssh against a real sshd on loopback, typed into a job-control shell on a PTY.

Nothing of moshpit runs on the "server" beforehand: ssh starts ``mps --ssh-session``,
which starts the session's own server (detached, as the logged-in user, with no TCP
port) and relays the key exchange; the client then goes on over UDP.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import sshd
from test_mp import MP, Shell, plain

pytestmark = pytest.mark.skipif(not sshd.available(), reason="needs root, sshd and ssh")

MPS = f"{sys.executable} -m moshpit.cli.mps"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    daemon = sshd.Sshd(tmp_path_factory.mktemp("sshd"))
    yield daemon
    daemon.stop()


@pytest.fixture(autouse=True)
def no_session_left_behind():
    """A test that fails half-way leaves its session server detached (a week, by default),
    where every later listing of this machine's sessions would find it: it is stopped."""
    before = set(session_servers())
    yield
    for name, pid in session_servers().items():
        if name not in before:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def shell(tmp_path):
    (tmp_path / "tmp").mkdir()
    terminal = Shell(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    yield terminal
    terminal.kill()


def mp_ssh(server, tmp_path, *extra: str, server_args: str = "", dest: str = "root@127.0.0.1") -> str:
    """The command line a person types (one line, for the shell)."""
    remote = f"{MPS} -t {tmp_path}/server.log {server_args}".strip()
    words = [MP, f"--ssh='{server.ssh_command()}'", f"--server='{remote}'", dest, *extra]
    return " ".join(words) + "\r"


def session_servers() -> dict[str, int]:
    """name -> pid of every one-session server running (``mps --ssh-session NAME``)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"--ssh-session" in argv:
                found[argv[argv.index(b"--ssh-session") + 1].decode()] = int(entry)
    return found


def parent_of(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])


def listening_tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":                       # LISTEN
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def mps_sessions() -> str:
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}     # as ssh's sessions see /tmp
    result = subprocess.run([sys.executable, "-m", "moshpit.cli.mps", "sessions"], capture_output=True,
                            text=True, env=env, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_mp_ssh_logs_in_with_nothing_running_and_ends_with_the_shell(server, shell, tmp_path):
    before = session_servers()
    shell.type(mp_ssh(server, tmp_path))
    shell.type("echo hi-$((40+2)) user=$(id -un)\r")
    assert shell.expect(b"hi-42 user=root", timeout=30)
    started = {name: pid for name, pid in session_servers().items() if name not in before}
    assert len(started) == 1                             # ssh started exactly one server
    (name, pid), = started.items()
    assert parent_of(pid) == 1 or parent_of(pid) != shell.pid     # detached from ssh
    assert not socket_inodes(pid) & listening_tcp_inodes()        # it listens on no TCP port
    assert os.stat(f"/tmp/moshpit-0/{name}.sock").st_mode & 0o077 == 0
    shell.type("exit 3\r")
    assert shell.expect(b"mp: shell exited with status 3")
    assert shell.last_status() == 3
    assert wait_for(lambda: name not in session_servers())        # the server went with its shell
    assert not os.path.exists(f"/tmp/moshpit-0/{name}.sock")
    assert not os.path.exists(f"/tmp/moshpit-0/{name}.ctl")
    assert shell.sane()


def test_a_slow_ssh_config_lookup_does_not_time_the_key_exchange_out(server, shell, tmp_path):
    """mp asks ``ssh -G`` where the host name points (for UDP) while ssh logs in. An ssh
    wrapper (or a slow ProxyCommand) may take longer to answer -G than the session
    server waits for the client's hello (HELLO_TIMEOUT, 3 s): the exchange must not wait
    for that answer."""
    wrapper = tmp_path / "slow-ssh"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = -G ] && sleep 4\nexec {server.ssh_command()} "$@"\n')
    wrapper.chmod(0o755)
    remote = f"{MPS} -t {tmp_path}/server.log"
    started = time.monotonic()
    shell.type(f"{MP} --ssh='{wrapper}' --server='{remote}' root@127.0.0.1\r")
    shell.type("echo hi-$((40+2))-${SSH_CONNECTION:+remote}\r")      # (typed ahead: had mp failed,
    assert shell.expect(b"hi-42-remote", timeout=30)                  # the local shell would say hi-42-)
    assert time.monotonic() - started >= 4                  # (the wrapper's -G did take its 4 s)
    shell.type("exit\r")
    assert shell.expect(b"mp: shell exited")


def test_kill_9_then_mp_ssh_again_resumes_the_same_shell_and_mps_sessions_shows_it(server, shell, tmp_path):
    command = mp_ssh(server, tmp_path)
    shell.type(command)
    shell.type("echo shell=$$.\r")
    shell_pid = shell.expect_re(rb"shell=(\d+)\.", timeout=30).group(1)
    listing = mps_sessions()
    row = next(line for line in listing.splitlines() if f" {shell_pid.decode()} " in line)
    assert "attached" in row and "127.0.0.1:" in row and row.startswith("root ") and " ssh " in row
    client_pid = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True,
                                text=True).stdout.split()[0]
    os.kill(int(client_pid), signal.SIGKILL)             # the client dies without a word
    assert wait_for(lambda: "detached" in next(line for line in mps_sessions().splitlines()
                                                if f" {shell_pid.decode()} " in line), timeout=20)
    shell.read(0.5)
    shell.output.clear()
    shell.type("stty sane\r" + command)                  # same terminal, same command
    shell.type("echo again=$$.\r")                       # (the output goes on where it was:
    assert shell.expect(b"again=" + shell_pid + b".", timeout=30)   # nothing repainted)
    assert b"shell=" + shell_pid not in shell.output
    shell.type("exit\r")
    assert shell.expect(b"shell exited with status 0")
    assert wait_for(lambda: f" {shell_pid.decode()} " not in mps_sessions())


def test_an_mp_ssh_session_is_in_who_while_it_lasts(server, shell, tmp_path, system_utmp):
    """As mosh: the session server runs as the user, so libutempter's helper writes the
    record (``who`` shows the client's address, ``via mp``); it is gone at the end."""
    from moshpit.gevent.logins import UtempterRecords
    if UtempterRecords.load() is None:
        pytest.skip("libutempter is not installed")
    shell.type(mp_ssh(server, tmp_path))
    shell.type("echo tty=$(tty).\r")
    line = shell.expect_re(rb"tty=/dev/(pts/\d+)\.", timeout=30).group(1).decode()
    assert wait_for(lambda: re.search(rf"^root +{line} .*\(127\.0\.0\.1 via mp \[\d+\]\)$",
                                      subprocess.run(["who"], capture_output=True, text=True).stdout, re.M))
    shell.type("exit\r")
    assert shell.expect(b"shell exited with status 0")
    assert wait_for(lambda: f" {line} " not in subprocess.run(["who"], capture_output=True, text=True).stdout)


def test_the_shell_has_the_ssh_logins_environment_less_the_channels(server, shell, tmp_path):
    """As under ssh or mosh-server: what sshd gave the login (a SetEnv here, the
    SSH_CONNECTION it came by) reaches the shell; a forwarded agent's socket, which
    closes with the ssh channel, and the bootstrap command's own SHLVL do not."""
    ssh = server.ssh_command() + " -o ForwardAgent=yes"
    remote = f"{MPS} -t {tmp_path}/server.log"
    shell.type("eval $(ssh-agent -s) >/dev/null; echo agent=$SSH_AGENT_PID.\r")   # a real agent to forward
    agent = int(shell.expect_re(rb"agent=(\d+)\.").group(1))
    try:
        shell.type(f"{MP} --ssh='{ssh}' --server='{remote}' root@127.0.0.1\r")
        shell.type("echo env=$MPTEST_FROM_SSHD,${SSH_CONNECTION%% *},${SSH_AUTH_SOCK-none},$SHLVL.\r")
        assert shell.expect(b"env=hello,127.0.0.1,none,1.", timeout=30), bytes(shell.output)[-400:]
        shell.type("exit\r")
        assert shell.expect(b"shell exited with status 0")
    finally:
        os.kill(agent, signal.SIGTERM)


def test_a_reconnect_to_a_server_that_is_gone_says_so_and_starts_nothing(server, shell, tmp_path):
    """The server dies (a reboot, an OOM kill) while the client waits: its reconnect over
    ssh finds no session, starts no new server (which would show a new host key and a
    false alarm), and mp ends saying the session no longer exists."""
    before = session_servers()
    shell.type(mp_ssh(server, tmp_path))
    shell.type("echo up-$((2+3))\r")
    assert shell.expect(b"up-5", timeout=30)
    (name, pid), = ((n, p) for n, p in session_servers().items() if n not in before)
    os.kill(pid, signal.SIGKILL)
    assert shell.expect(b"the session on 127.0.0.1 no longer exists", timeout=40), bytes(shell.output)[-300:]
    assert b"host key changed" not in bytes(shell.output)
    assert shell.last_status() == 1
    assert not {n for n in session_servers() if n not in before}        # nothing new was started
    assert "--resume-only" in (tmp_path / ".config" / "moshpit" / "logs" / "moshpit.log").read_text()


def test_a_remote_command_after_double_dash(server, shell, tmp_path):
    shell.type(mp_ssh(server, tmp_path, "--", "sh", "-c", "'echo remote-$((6*7)); sleep 0.3; exit 4'"))
    assert shell.expect(b"remote-42", timeout=30)
    assert shell.expect(b"mp: shell exited with status 4")
    assert shell.last_status() == 4


def test_a_server_whose_client_never_comes_back_gives_up(server, shell, tmp_path):
    before = session_servers()
    shell.type(mp_ssh(server, tmp_path, server_args="--detached-timeout 2"))
    shell.type("echo up-$((1+1))\r")
    assert shell.expect(b"up-2", timeout=30)
    (name, pid), = ((n, p) for n, p in session_servers().items() if n not in before)
    client_pid = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True,
                                text=True).stdout.split()[0]
    os.kill(int(client_pid), signal.SIGKILL)
    assert wait_for(lambda: name not in session_servers(), timeout=15)
    assert "client was gone for 2 s" in (tmp_path / "server.log").read_text()


def test_a_new_session_is_told_of_the_detached_one(server, shell, tmp_path):
    shell.type(mp_ssh(server, tmp_path))
    shell.type("echo first-$((2*2))\r")
    assert shell.expect(b"first-4", timeout=30)
    client_pid = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True,
                                text=True).stdout.split()[0]
    os.kill(int(client_pid), signal.SIGKILL)             # left detached
    shell.read(0.5)
    second = Shell(tmp_path, TMPDIR=str(tmp_path / "tmp"))   # another terminal: a new session
    try:
        assert wait_for(lambda: "detached" in mps_sessions(), timeout=20)
        second.type(mp_ssh(server, tmp_path))
        assert second.expect(b"detached session", timeout=30)
        assert re.search(rb"you have (a|\d+) detached sessions? on this server", plain(second.output))
        second.type("exit\r")
        assert second.expect(b"shell exited")
    finally:
        second.kill()
    shell.output.clear()
    shell.type("stty sane\r" + mp_ssh(server, tmp_path))   # back to the first, to end it
    shell.type("echo again-$((2*2))\r")
    assert shell.expect(b"again-4", timeout=30)
    shell.type("exit\r")
    assert shell.expect(b"shell exited")


@pytest.mark.parametrize("server_command, message", [
    ("no-such-mps", b"no-such-mps was not found on 127.0.0.1"),
    ("sh -c 'echo nope; exit 5' --", b"did not start a session (status 5): nope"),
])
def test_a_server_that_cannot_start_is_one_clear_line(server, shell, tmp_path, server_command, message):
    shell.type(f"{MP} --ssh='{server.ssh_command()}' --server=\"{server_command}\" root@127.0.0.1\r")
    assert shell.expect(message, timeout=30)
    assert b"Traceback" not in shell.output
    assert shell.last_status() == 1


def test_ssh_failing_says_so(server, shell, tmp_path):
    shell.type(f"{MP} --ssh='ssh -F none -p 1 -o ConnectTimeout=5' root@127.0.0.1\r")
    assert shell.expect(b"mp: ssh to root@127.0.0.1 failed", timeout=30)
    assert b"Traceback" not in shell.output
    assert shell.last_status() == 1


def test_a_runtime_directory_another_user_took_first_does_not_stop_mp_ssh(server, shell, tmp_path):
    """nobody made /tmp/moshpit-0 before us: the session's sockets go to ~/.mp/run
    instead, the log says so, and the session works and is listed as usual."""
    import pwd
    remote_tmp, home = tmp_path / "remote-tmp", tmp_path / "remote-home"
    remote_tmp.mkdir(mode=0o777)
    remote_tmp.chmod(0o1777)                              # a /tmp of its own
    home.mkdir(mode=0o700)
    squatted = remote_tmp / "moshpit-0"
    squatted.mkdir(mode=0o777)
    os.chown(squatted, pwd.getpwnam("nobody").pw_uid, -1)
    remote = f"env TMPDIR={remote_tmp} HOME={home} {MPS} -t {tmp_path}/server.log"
    shell.type(f"{MP} --ssh='{server.ssh_command()}' --server='{remote}' root@127.0.0.1\r")
    shell.type("echo squatted-$((40+2))\r")
    assert shell.expect(b"squatted-42", timeout=30)
    sockets = list((home / ".mp" / "run").glob("*.sock"))
    assert len(sockets) == 1 and os.stat(home / ".mp" / "run").st_mode & 0o777 == 0o700
    assert not list(squatted.iterdir())                   # nothing of ours in theirs
    assert f"{squatted} belongs to uid" in (tmp_path / "server.log").read_text()
    shell.type("exit 4\r")
    assert shell.expect(b"mp: shell exited with status 4")
