"""A session in a process of its own: both ends of the link to the listening process.

``run`` is the session process's life (forked by the fork server, see forkserver.py):
start the shell on its PTY while still root, tell the listener which shell and
terminal it is, drop to the user, and only then drive the UDP socket, the screen
model and the channel with the same ``ShellSession`` the in-process mode uses.

``SessionProcess`` is the listener's handle on one: it hands over each connection's
keys (``attach``), asks before a resume (``prepare_resume``), and forgets the session
when the link closes, which it does however the process ends (exit, crash, SIGKILL).
"""

from __future__ import annotations

import ctypes  # noqa: F401  (forbid_tracing needs it after the drop, when the stdlib may be unreadable)
import logging
import os
import pwd
import socket
import time

import gevent
import gevent.event
import gevent.socket as gsocket

from moshpit.errors import RemoteProtocolError
from moshpit.linklog import LogIntake, send_logs_over
from moshpit.protocol import link
from moshpit.protocol.channel import CloseCode
from moshpit.gevent.forkserver import ForkServer, describe_status
from moshpit.gevent.logins import pty_line
from moshpit.gevent.shell import ShellSession
from moshpit.forwarding import ForwardPolicy
from moshpit.gevent.forward import AgentSocket
from moshpit.gevent.spawn import drop_privileges, forbid_tracing, spawn_shell
from moshpit.terminal.model import clamp_window

log = logging.getLogger("moshpit.server")

PREPARE_TIMEOUT = 3.0      # how long the listener waits for a session to answer before a resume
READ_BUDGET = 16           # messages taken from one link before the listener serves anything else
LOG_PAUSE = 0.25           # a link over its log budget is not read for this long (its sends then fail)
TEST_HOOK = "MOSHPIT_TEST_SESSION_HOOK"   # tests only: a file run in the session process after the drop


# --- in the session's process ------------------------------------------------------------

class _LinkHost:
    """What the ShellSession asks of its host, answered over the link."""

    def __init__(self, link_sock, detached_timeout: float):
        self.link = link_sock
        self.detached_timeout = detached_timeout
        self.done = gevent.event.Event()

    def send(self, op: str, **fields) -> None:
        try:
            self.link.send(link.encode({"op": op, **fields}))
        except OSError:
            pass                                  # the listener is gone: the reader ends us

    def heard(self) -> None:
        self.send(link.HEARD)

    def ended(self) -> None:
        self.done.set()


def run(spec: dict, udp_fd: int, link_fd: int) -> int:
    """The session process: returns its exit code once the session is over."""
    send_logs_over(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=os.dup(link_fd)),
                   logging.getLogger().level)        # the only way this process logs
    user = pwd.getpwnam(spec["user"])
    link_sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=link_fd)
    sock = socket.socket(fileno=udp_fd)          # a plain socket, as udp.open_udp makes: it
    sock.setblocking(False)                      # says "nothing more" rather than wait
    cols, rows = clamp_window(spec["cols"], spec["rows"])
    env = spec["env"]
    agent = AgentSocket(user.pw_uid, user.pw_gid) if spec.get("agent") else None   # (as root: handed over)
    if agent is not None:
        env = dict(env, SSH_AUTH_SOCK=agent.path)
    pid, fd = spawn_shell(spec["argv"], env, user, cols, rows)
    host = _LinkHost(link_sock, spec["detached_timeout"])
    host.send(link.STARTED, shell_pid=pid, tty=pty_line(fd))
    if os.environ.get(TEST_HOOK):
        import runpy, pkgutil  # noqa: F401,E401  (as the user, the stdlib may be out of reach)
    if os.getuid() == 0 and user.pw_uid != 0:
        drop_privileges(user)                     # before a single datagram is read
    forbid_tracing()                              # after the drop: changing ids resets it
    policy = ForwardPolicy.from_dict(spec.get("forward_policy", {}))
    shell = ShellSession(host, sock, pid, fd, cols, rows, forward_policy=policy, agent=agent)
    shell.notice = spec.get("notice", "")
    reader = gevent.spawn(_serve_link, link_sock, shell, host)
    if os.environ.get(TEST_HOOK):                 # only root, starting mps, can set this
        gevent.spawn(_run_test_hook, os.environ[TEST_HOOK], {"link": link_sock, "shell": shell})
    host.done.wait()
    reader.kill()
    return 0


def _run_test_hook(path: str, names: dict) -> None:
    """What tests use to play a session process taken over by its user."""
    import runpy
    try:
        runpy.run_path(path, names)
    except Exception:
        log.exception("the test hook failed")


def _serve_link(link_sock, shell: ShellSession, host: _LinkHost) -> None:
    """The listener's orders, until it says stop or goes away (then the client is told)."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(link_sock, link.MAX_MESSAGE, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        message = link.decode(data)
        if message["op"] == link.STREAM and fds:
            stream = gsocket.socket(fileno=fds.pop())
            if not shell.attach_stream(message["conn_id"], stream, copy=False):
                stream.close()
        for fd in fds:                                   # (none comes with anything else)
            os.close(fd)
        if message["op"] == link.ATTACH:
            shell.attach(link.params_from_json(message["params"]), message["resumed"])
        elif message["op"] == link.PREPARE_RESUME:
            shell.displace()
            host.send(link.READY, input_received=shell.session.input_received,
                      ended=shell.exit_status is not None)
        elif message["op"] == link.QUERY:
            host.send(link.STATUS, **shell.status())
        elif message["op"] == link.STOP:
            break
    shell.stop(CloseCode.SERVER_SHUTDOWN, "server shutting down", linger=1.0)


# --- in the listening process --------------------------------------------------------

class SessionProcesses:
    """The listener's session processes: the fork server they come from, and a handle on
    each, by pid (the fork server reports each one's end)."""

    def __init__(self, server):
        self.server = server
        self.forkserver = ForkServer(on_exit=self._exited)
        self._by_pid: dict[int, SessionProcess] = {}

    def start(self, spec: dict, record, host: str, sock) -> SessionProcess:
        """A new session process running ``spec`` with the session's UDP ``sock`` (which
        it then holds alone: ours is closed)."""
        if not self.forkserver.alive:                 # it died (it should not): start another
            log.error("the fork server has ended; starting a new one")
            self.forkserver.close()
            self.forkserver = ForkServer(on_exit=self._exited)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self.forkserver.spawn(spec, [sock.fileno(), theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        sock.close()
        link_sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=ours.detach())
        handle = SessionProcess(self.server, record, spec["user"], host, link_sock, pid)
        self._by_pid[pid] = handle
        return handle

    def _exited(self, pid: int, status: int) -> None:
        handle = self._by_pid.pop(pid, None)
        if handle is None:
            return
        handle.exit_status = os.waitstatus_to_exitcode(status)
        level = logging.INFO if handle.exit_status == 0 else logging.WARNING
        log.log(level, "session process %d (%s, UDP %d) %s", pid, handle.user, handle.record.udp_port,
                describe_status(status))

    def close(self) -> None:
        self.forkserver.close()


class SessionProcess:
    """The listener's handle on a session running as its user in a process of its own."""

    def __init__(self, server, record, user: str, peer: str, link_sock, pid: int):
        self.server, self.record, self.user, self.peer = server, record, user, peer
        self.link = link_sock
        self.pid = pid                            # the session process (the shell is its child)
        self.shell_pid: int | None = None
        self.tty: str | None = None
        self.started_at = time.time()
        self.status = {"attached": True, "peer": peer}    # as last reported (QUERY)
        self.exit_status: int | None = None       # set once the process is known to have ended
        self.closed = False
        self._ready: gevent.event.AsyncResult | None = None
        self._status: gevent.event.AsyncResult | None = None
        self._owed = {link.READY: 0, link.STATUS: 0, link.HEARD: 0}    # answers asked for, not yet had
        self._log = LogIntake(f"session process {pid} ({user})", log)
        self._reader = gevent.spawn(self._read)

    def _send(self, op: str, **fields) -> bool:
        try:
            self.link.send(link.encode({"op": op, **fields}))
            return True
        except OSError:
            return False

    def _ask(self, op: str, owed: str, **fields) -> bool:
        self._owed[owed] += 1
        return self._send(op, **fields)

    def attach(self, params, resumed: bool = False) -> None:
        self._ask(link.ATTACH, link.HEARD, params=link.params_to_json(params), resumed=resumed)

    def attach_stream(self, conn_id: int, sock) -> bool:
        """Hand the session process the connection its key exchange ran over (a path
        for its datagrams); ours is then closed by the caller."""
        try:
            socket.send_fds(self.link, [link.encode({"op": link.STREAM, "conn_id": conn_id})], [sock.fileno()])
        except OSError as exc:
            log.info("could not hand session process %d its stream: %s", self.pid, exc)
        return False

    def prepare_resume(self) -> int | None:
        """Ask the session to let go of its old connection; its input count, or None if it
        does not answer in time or its shell has exited (it is then not resumed)."""
        self._ready = gevent.event.AsyncResult()
        if not self._ask(link.PREPARE_RESUME, link.READY):
            return None
        try:
            return self._ready.get(timeout=PREPARE_TIMEOUT)
        except gevent.Timeout:
            return None

    def query_status(self, timeout: float = 0.5) -> dict:
        """The session's own account of its client (the last known one if it is slow)."""
        if self.closed:
            return self.status
        if self._status is None or self._status.ready():
            self._status = gevent.event.AsyncResult()
            if not self._ask(link.QUERY, link.STATUS):
                return self.status
        try:
            return self._status.get(timeout=timeout)
        except gevent.Timeout:
            return self.status

    def stop(self, code=CloseCode.SERVER_SHUTDOWN, reason: str = "") -> None:
        """Tell the session the server is stopping (it tells its client, then ends)."""
        self._send(link.STOP)

    def _read(self) -> None:
        """On a budget: a process that keeps its link full gets a turn, not the listener."""
        try:
            while True:
                for _ in range(READ_BUDGET):
                    data = self.link.recv(link.MAX_FROM_SESSION + 1)
                    if not data:
                        return
                    self._on_message(link.decode_from_session(data))
                gevent.sleep(LOG_PAUSE if self._log.over_budget else 0)
        except OSError:
            pass
        except RemoteProtocolError as exc:
            log.warning("session process %d (%s, UDP %d) broke the link protocol: %s; ending it",
                        self.pid, self.user, self.record.udp_port, exc)
            self.server._kill_session_process(self.pid)
        finally:
            self._ended()

    def _on_message(self, message: dict) -> None:
        op = message["op"]
        if op in self._owed:
            if self._owed[op] == 0:
                raise RemoteProtocolError(f"{op!r} that nobody asked for")
            self._owed[op] = 0 if op == link.HEARD else self._owed[op] - 1
        if op == link.LOG:
            self._log.take(message["level"], message["message"], time.monotonic())
            return
        if op == link.STARTED:
            if self.shell_pid is not None:
                raise RemoteProtocolError("started twice")
            self.shell_pid, self.tty = message["shell_pid"], message["tty"]
            self.server._session_started(self)
        elif op == link.HEARD:
            self.server.registry.confirm(self.record.session_id)
        elif op == link.READY:
            if message["ended"]:
                self.exit_status = self.exit_status if self.exit_status is not None else 0
            if self._ready is not None:
                self._ready.set(None if message["ended"] else message["input_received"])
        elif op == link.STATUS:
            self.status = {key: message[key] for key in ("attached", "peer", "idle")
                           if message[key] is not None}
            if self._status is not None:
                self._status.set(self.status)

    def _ended(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.status = dict(self.status, attached=False)
        if self._status is not None and not self._status.ready():
            self._status.set(self.status)            # whoever asked need not wait for the timeout
        if self.exit_status is None:
            self.exit_status = -1
        try:
            self.link.close()
        except OSError:
            pass
        self.server._forget(self)
