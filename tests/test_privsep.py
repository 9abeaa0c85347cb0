"""Privilege separation, from outside: mps started by hand on root's terminal, serving
a user of its own, with a session process made to misbehave after its privilege drop (the test
hook runs a file there, as the user), and a second local user crowding the status socket."""

import fcntl
import json
import os
import pty
import pwd
import re
import select
import signal
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import gevent
import gevent.socket
import nacl.signing
import pytest

from moshpit import sessionlist
from moshpit.gevent.session_process import TEST_HOOK
from moshpit.keyfiles import write_key_pair
from moshpit.keys import format_public_key
from test_gevent_server import ShellClient

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root: mps serving a second user")

ROOT_SECRET = "correct horse battery staple"
USER = "mpprivsep"


@pytest.fixture(scope="module")
def user():
    """A local account of the test's own, with a shell (nobody's is nologin)."""
    if subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", USER],
                      capture_output=True).returncode not in (0, 9):           # 9: it exists already
        pytest.skip("cannot add a user here")
    yield pwd.getpwnam(USER)
    subprocess.run(["userdel", USER], capture_output=True)


def users_key(tmp_path: Path, account: pwd.struct_passwd):
    """A key the account's authorized_keys (owned by it) lists: (key, the template)."""
    key = nacl.signing.SigningKey.generate()
    keys_dir = tmp_path / "keys" / account.pw_name
    keys_dir.mkdir(parents=True, mode=0o700)
    (keys_dir / "authorized_keys").write_text(format_public_key(bytes(key.verify_key)) + "\n")
    (keys_dir / "authorized_keys").chmod(0o600)
    for path in (keys_dir, keys_dir / "authorized_keys"):
        os.chown(path, account.pw_uid, account.pw_gid)
    return key, str(tmp_path / "keys" / "%u" / "authorized_keys")


def run_as(user: pwd.struct_passwd, fn, *args, timeout: float = 30.0):
    """``fn(*args)`` in a forked child running as ``user`` (all ids, no groups); its
    JSON result. The parent waits without blocking the hub."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            result = json.dumps(fn(*args)).encode()
            code = 0
        except BaseException as exc:                         # noqa: BLE001 (reported to the parent)
            result = json.dumps({"error": repr(exc)}).encode()
        os.write(write_end, result)
        os._exit(code)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            gevent.socket.wait_read(read_end, timeout=deadline - time.monotonic())
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:                           # gevent's child watcher reaped it
            pass
    return json.loads(data)


def _timed_query(path: str) -> dict:
    start = time.monotonic()
    answer = sessionlist.query(path, timeout=5.0)
    return {"seconds": time.monotonic() - start, "answer": answer}


class RootTerminal:
    """mps as an admin starts it first: ``mps`` typed on root's terminal (a PTY here),
    with a secret in root's environment, logging to a file in a 0700 directory."""

    def __init__(self, tmp_path: Path, account: pwd.struct_passwd, hook: str):
        self.user = account
        self.key, template = users_key(tmp_path, account)
        self.shared = Path(tempfile.mkdtemp(prefix="moshpit-privsep-"))    # nobody may write here
        self.shared.chmod(0o777)
        (self.shared / "hook.py").write_text(hook.replace("SHARED", str(self.shared)))
        (self.shared / "hook.py").chmod(0o644)
        self.control = str(self.shared / "mps.ctl")
        self.logs = tmp_path / "logs"
        self.logs.mkdir(mode=0o700)
        self.log_file = self.logs / "mps.log"
        write_key_pair(tmp_path / "host_key", nacl.signing.SigningKey.generate())
        self.master, slave = pty.openpty()
        self.tty = os.ttyname(slave)
        env = dict(os.environ, MOSHPIT_ROOT_SECRET=ROOT_SECRET, MOSHPITS_AUTHORIZED_KEYS_FILE=template,
                   MOSHPITS_CONTROL_SOCKET=self.control, MOSHPITS_SESSION_PROCESSES="true",
                   **{TEST_HOOK: str(self.shared / "hook.py")})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moshpit.cli.mps", "-t", str(self.log_file), "-p", str(tmp_path / "host_key"),
             "--bind", "127.0.0.1", "--port", "0", "--udp-ports", "53400-53499"],
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        said = b""
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"port (\d+);", said)):
            assert time.monotonic() < deadline and self.proc.poll() is None, said
            if select.select([self.master], [], [], 0.5)[0]:
                said += os.read(self.master, 4096)
        self.address = ("127.0.0.1", int(found.group(1)))
        os.write(self.master, f"{ROOT_SECRET}\n".encode())     # what root types there next

    def login(self) -> ShellClient:
        client = ShellClient(self.address, self.key, self.user.pw_name)
        assert client.params is not None, client.refused
        return client

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.log())):
            assert time.monotonic() < deadline, f"{pattern!r} never logged:\n{self.log()[-3000:]}"
            gevent.sleep(0.1)
        return found

    def close(self) -> None:
        while select.select([self.master], [], [], 0)[0]:          # shown if the test failed
            try:
                print(os.read(self.master, 65536).decode(errors="replace"))
            except OSError:
                break
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


@pytest.fixture
def root_terminal(tmp_path, user):
    started = []

    def start(hook: str) -> RootTerminal:
        started.append(RootTerminal(tmp_path, user, hook))
        return started[-1]
    yield start
    for terminal in started:
        terminal.close()


LOOK_AROUND = r'''
import ctypes, json, logging, os
def fd_targets():
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return found
os.set_blocking(0, False)
try:
    typed = os.read(0, 200).decode(errors="replace")
except OSError as exc:
    typed = repr(exc)
unix = {line.split()[6] for line in open("/proc/net/unix").read().splitlines()[1:] if len(line.split()) > 6}
fds = fd_targets()
facts = {"fds": fds, "env": dict(os.environ), "typed": typed,
         "unix_sockets": sorted(t for t in fds.values() if t.startswith("socket:[") and t[8:-1] in unix),
         "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
         "resuid": os.getresuid(), "resgid": os.getresgid(), "groups": os.getgroups()}
try:
    os.setuid(0)
    facts["root_again"] = True
except OSError:
    facts["root_again"] = False
with open("SHARED/facts.json", "w") as out:
    json.dump(facts, out)
logging.getLogger("moshpit.server").warning("hook was here \x1b]0;title\x07\x1b[2J")
'''


def test_a_session_process_has_nothing_of_roots_terminal_log_or_environment(root_terminal):
    mps = root_terminal(LOOK_AROUND)
    client = mps.login()
    try:
        facts_file = mps.shared / "facts.json"
        assert client.wait_for(facts_file.exists, timeout=20)
        gevent.sleep(0.2)
        facts = json.loads(facts_file.read_text())
        account = mps.user
        assert facts["resuid"] == [account.pw_uid] * 3 and facts["resgid"] == [account.pw_gid] * 3
        assert set(facts["groups"]) == set(os.getgrouplist(USER, account.pw_gid)) and not facts["root_again"]
        assert facts["dumpable"] == 0                     # explicit, whatever fs.suid_dumpable says
        for fd in ("0", "1", "2"):                        # not root's terminal
            assert facts["fds"][fd] == "/dev/null", facts["fds"]
        assert facts["typed"] == ""                      # what root typed there stays there
        # Unix sockets: its link to the listener (and the copy it logs through), nothing else
        # (not the fork server's channel to the listener, which carries every spawn request)
        assert len(facts["unix_sockets"]) == 2 and len(set(facts["unix_sockets"])) == 1, facts["fds"]
        targets = set(facts["fds"].values())
        assert mps.tty not in targets and str(mps.log_file) not in targets, targets
        assert not any(ROOT_SECRET in value for value in facts["env"].values())
        assert set(facts["env"]) <= {"PATH", "LANG", TEST_HOOK}, facts["env"]
        # its log records reach the log as data: attributed, with no escapes
        line = mps.wait_for_log(r"session process \d+ \(mpprivsep\): hook was here.*").group(0)
        assert line.endswith("hook was here ?]0;title??[2J"), line
        assert "\x1b" not in mps.log() and "\x07" not in mps.log()
        # root's terminal got only mps's own line, nothing from the session
        os.set_blocking(mps.master, False)
        try:
            on_terminal = os.read(mps.master, 65536)
        except BlockingIOError:
            on_terminal = b""
        assert b"\x1b]0;" not in on_terminal and b"hook" not in on_terminal
    finally:
        client.close()


FLOOD = r'''
import os, socket, time
if not os.path.exists("SHARED/flooding"):                 # the first session only
    open("SHARED/flooding", "w").close()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=os.dup(link.fileno()))
    end = time.monotonic() + 4.0
    def send(data):
        while True:                                        # a busy loop: the link is always full
            try:
                return raw.send(data)
            except BlockingIOError:                        # (the link's descriptor is non-blocking)
                pass
    while time.monotonic() < end:
        send(MESSAGE)
    send(b'{"op":"ready","input_received":1}')             # an answer nobody asked for
    time.sleep(60)
'''


@pytest.mark.parametrize("message", [
    b'{"op":"heard","padding":"' + b"x" * 42000 + b'"}',                  # what froze the listener
    b'{"op":"log","level":20,"message":"' + b"z" * 800 + b'"}'])        # well formed, far over the rate
def test_a_session_process_flooding_its_link_freezes_nothing_and_is_ended(root_terminal, message):
    mps = root_terminal(FLOOD.replace("MESSAGE", repr(message)))
    flooder = mps.login()
    daemon = pwd.getpwnam("daemon")                       # a third user: no sessions, just asking
    try:
        assert flooder.wait_for(lambda: (mps.shared / "flooding").exists(), timeout=20)
        latencies = []
        for _ in range(6):
            answer = run_as(daemon, _timed_query, mps.control)
            assert answer["answer"] == [], answer
            latencies.append(answer["seconds"])
            gevent.sleep(0.2)
        start = time.monotonic()
        second = mps.login()                              # a login during the flood is served
        second.type(b"echo served\r")
        assert second.wait_for(lambda: b"served\r\n" in second.received, timeout=10)
        login_time = time.monotonic() - start
        second.close()
        assert max(latencies) < 0.5 and login_time < 3.0, (latencies, login_time)
        mps.wait_for_log(r"session process \d+ \(mpprivsep, UDP \d+\) broke the link protocol")
        if b'"log"' in message:
            lines = [line for line in mps.log().splitlines() if "zzzz" in line]
            assert 50 < len(lines) <= 100 + 20 * 6, len(lines)          # a burst, then the rate
            assert "log records dropped" in mps.log()
    finally:
        flooder.close()


def _hold_connections(path: str, count: int, seconds: float) -> int:
    """Keep ``count`` idle connections open, opening a new one as each is closed."""
    import socket
    held, made = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        held = [sock for sock in held if not select.select([sock], [], [], 0)[0] or sock.close()]
        while len(held) < count:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                held.append(sock)
                made += 1
            except OSError:
                sock.close()
                break
        time.sleep(0.02)
    return made


def test_a_user_holding_status_connections_crowds_out_only_themselves(root_terminal):
    mps = root_terminal("")
    client = mps.login()
    try:
        client.type(b"echo hi\r")
        assert client.wait_for(lambda: b"hi\r\n" in client.received)
        holder = gevent.spawn(run_as, mps.user, _hold_connections, mps.control, 200, 6.0)
        gevent.sleep(1.5)                                 # pressing: 200 open, remade as closed
        for _ in range(5):
            start = time.monotonic()
            listing = sessionlist.query(mps.control, timeout=5.0)
            root_seconds = time.monotonic() - start
            assert listing is not None and [entry["user"] for entry in listing] == [USER]
            assert root_seconds < 0.5, root_seconds
            gevent.sleep(0.3)
        assert holder.get(timeout=15) > 200               # it was turned away, and kept trying
    finally:
        client.close()


def _drop(account_name: str, sabotage: str) -> dict:
    """drop_privileges in this (forked, root) child, with one of its steps made to fall
    short the way a partial drop does: its verdict."""
    from moshpit.gevent import spawn
    account = pwd.getpwnam(account_name)
    if sabotage == "saved uid":                       # setuid as seteuid: the saved uid stays 0
        os.setresuid = lambda r, e, s: os.seteuid(e)
    elif sabotage == "saved gid":
        os.setresgid = lambda r, e, s: os.setegid(e)
    elif sabotage == "groups":                        # root's supplementary groups kept
        os.initgroups = lambda name, gid: os.setgroups([0, 4242])
    try:
        spawn.drop_privileges(account)
    except OSError as exc:
        return {"refused": str(exc), "resuid": os.getresuid()}
    return {"refused": None, "resuid": os.getresuid(), "groups": os.getgroups()}


@pytest.mark.parametrize("sabotage", ["saved uid", "saved gid", "groups"])
def test_a_drop_that_falls_short_in_any_id_or_group_is_refused(user, sabotage):
    verdict = run_as(pwd.getpwnam("root"), _drop, user.pw_name, sabotage)
    assert verdict["refused"] and "could not drop privileges" in verdict["refused"], verdict


def test_a_full_drop_is_checked_and_taken(user):
    verdict = run_as(pwd.getpwnam("root"), _drop, user.pw_name, "")
    assert verdict["refused"] is None and verdict["resuid"] == [user.pw_uid] * 3, verdict
    assert set(verdict["groups"]) == set(os.getgrouplist(user.pw_name, user.pw_gid))
