"""The server runtime on gevent: the only server code that touches sockets, PTYs and clocks.

``Server`` has gevent's ``BaseServer`` shape (``start()``, ``serve_forever()``,
``stop(timeout)``, context manager) so it embeds in a gevent application. Per
TCP connection a greenlet runs the sans-IO handshake. Each session (a UDP socket,
a PTY running the shell, one re-armed timer: shell.py) runs either here as
greenlets (``processes=False``, the embedding default) or in a process of its own,
as its user (``processes=True``, mps's default: session_process.py, forkserver.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import signal
import time
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.socket as gsocket
from gevent.server import StreamServer

from moshpit import sessionlist
from moshpit.accounts import LoginPolicy, valid_user_name
from moshpit.errors import RemoteProtocolError, printable
from moshpit.forwarding import ForwardPolicy
from moshpit.keys import check_authorized
from moshpit.protocol.channel import CloseCode
from moshpit.protocol.events import AuthRequested
from moshpit.protocol.handshake import HandshakeError, RefuseCode, ServerHandshake, busy_message
from moshpit.protocol.ratelimit import HandshakeLimiter, retry_after
from moshpit.protocol.sessions import PortPool, PortsExhausted, SessionGone, SessionRegistry, TooManySessions
from moshpit.gevent import udp
from moshpit.gevent.control import ControlSocket
from moshpit.gevent.forkserver import ForkServer
from moshpit.gevent.forward import AgentSocket
from moshpit.gevent.logins import LoginRecords, login_records_for, pty_line
from moshpit.gevent.session_process import SessionProcess, SessionProcesses
from moshpit.gevent.shell import ShellSession
from moshpit.gevent.spawn import accepted_env, login_argv, shell_environment, spawn_shell
from moshpit.terminal.model import clamp_window

log = logging.getLogger("moshpit.server")


DEFAULT_DETACHED_TIMEOUT = 7 * 86400   # a session whose client is gone this long is ended
HELLO_TIMEOUT = 3.0        # a connection that has not spoken by then is closed
NOTICE_PATIENCE = 0.2      # a login waits this long at most to count its detached sessions
FIRST_CONTACT_TIMEOUT = 60.0   # single_session: a server no client reached by then ends


class SessionHandle(Protocol):
    """What the listener asks of a session, in-process (``ShellSession``) or in a process
    of its own (``SessionProcess``): the same acts under the same names."""
    record: Any                     # its registry entry
    exit_status: int | None         # once its shell has ended

    def prepare_resume(self) -> int | None:
        """A resume is authenticated: the keystrokes it has had (None: no answer in time)."""

    def attach(self, params, resumed: bool = False) -> Any:
        """Take the connection the key exchange accepted."""

    def stop(self, code: CloseCode, reason: str) -> None:
        """The server is stopping: tell the client, then end."""


class Server:
    """mps as a library: ``start()`` for embedding, ``serve_forever()``, ``stop()``."""

    def __init__(self, host_key, *, bind: tuple = ("::", 40404), udp_ports=(50000, 59999),
                 udp_host: str | None = None, authorized_keys: str = "%h/.mp/authorized_keys",
                 command: list[str] | None = None, handshake_timeout: float = 10.0,
                 accept_env=("LANG", "LC_*", "TZ"), detached_timeout: float = DEFAULT_DETACHED_TIMEOUT,
                 limiter: HandshakeLimiter | None = None, authorize=None,
                 login_policy: LoginPolicy | None = None, max_sessions_per_user: int = 32,
                 max_sessions_per_key: int = 16, login_records: LoginRecords | None = None,
                 processes: bool = False, listener=None, single_session: bool = False,
                 control: str | None = None, control_mode: int = 0o600, unix_peer: str = "local",
                 via: str = "mps", name: str = "", notice: str = "", base_env: dict | None = None,
                 first_contact_timeout: float = FIRST_CONTACT_TIMEOUT,
                 forward_policy: ForwardPolicy | None = None):
        """``authorize(client_key, user) -> Authorization`` replaces the authorized_keys
        check (an embedder's own key store; ``mp --local``'s one key in memory).
        ``processes``: run each session in a process of its own, as its user (see
        docs/security.md); otherwise as greenlets in this process's hub.

        ``listener``: a listening socket to take key exchanges on instead of ``bind``; a
        Unix one takes only connections from our own uid, whose peer is ``unix_peer``.
        ``single_session``: serve one session of our own user, then stop (what ``mp
        --ssh`` starts: ssh has checked who it is), or stop after ``first_contact_timeout``
        if no key exchange made it one. ``control``: a Unix socket path
        answering ``mps sessions`` (``via`` and ``name`` label our sessions there).
        ``notice``: told to each new session first, besides its user's detached sessions here.
        ``base_env``: the environment a shell starts from (``mp --ssh``: the ssh login's).
        ``forward_policy``: what clients may forward (mp -A, -L, -R, -D); sshd's defaults."""
        self.host_key = host_key
        self.bind = bind
        self.listener = listener
        self.single_session = single_session
        self.control_path, self.control_mode = control, control_mode
        self._control: ControlSocket | None = None
        self._early_shell: tuple[int, int] | None = None     # (pid, PTY fd): start_shell_early
        self._early_agent: AgentSocket | None = None
        self.unix_peer, self.via, self.name, self.notice = unix_peer, via, name, notice
        self.udp_host = udp_host if udp_host is not None else bind[0]
        self.authorized_keys = authorized_keys
        self.authorize = authorize or self._authorized_keys_check
        self.login_policy = login_policy or LoginPolicy()
        # utmp/wtmp: as sshd when root, as mosh-server (libutempter's helper) otherwise
        self.login_records = login_records or login_records_for(single_session=single_session)
        self.command = command
        self.handshake_timeout = handshake_timeout
        self.accept_env = tuple(accept_env)
        self.base_env = base_env
        self.first_contact_timeout = first_contact_timeout
        self.forward_policy = forward_policy or ForwardPolicy()
        self.detached_timeout = detached_timeout
        self.limiter = limiter or HandshakeLimiter()
        self.registry = SessionRegistry(PortPool(range(udp_ports[0], udp_ports[1] + 1)),
                                        max_per_user=1 if single_session else max_sessions_per_user,
                                        max_per_key=max_sessions_per_key)
        self.sessions: dict[bytes, SessionHandle] = {}
        self.processes = processes
        self._processes: SessionProcesses | None = None      # processes=True: the fork server and handles
        self._tcp: StreamServer | None = None
        self._stopped = gevent.event.Event()
        self.user = pwd.getpwuid(os.getuid())

    @property
    def _forkserver(self) -> ForkServer | None:
        return self._processes.forkserver if self._processes is not None else None

    @property
    def address(self):
        return self._tcp.address if self._tcp is not None else None

    def start(self) -> None:
        if self.processes and self._processes is None:
            self._processes = SessionProcesses(self)
        elif not self.processes and os.getuid() == 0 and not self.single_session:
            log.warning("serving as root with sessions in-process: every user's network data is "
                        "parsed as root (processes=True runs each session as its user)")
        listener = self.bind
        if self.listener is not None:
            listener = gsocket.socket(self.listener.family, self.listener.type, fileno=self.listener.detach())
        self._tcp = StreamServer(listener, self._handle)
        self._tcp.start()
        self._stopped.clear()
        log.info("listening on %s", self._tcp.address)
        if self.single_session:
            gevent.spawn_later(self.first_contact_timeout, self._end_if_never_used)
        if self.control_path and self._control is None:
            try:
                self._control = ControlSocket(self.control_path, self.session_list, self.control_mode)
            except OSError as exc:
                log.warning("no status socket at %s (mps sessions will not list this server): %s",
                            self.control_path, exc.strerror or exc)

    def _end_if_never_used(self) -> None:
        """mp --ssh's server, started for a client that never came (its ssh died between
        the start and the key exchange): nothing is left running, its shell least of all."""
        if not self.sessions and not self._stopped.is_set():
            log.info("no client came within %.0f s; stopping", self.first_contact_timeout)
            self.stop()

    def serve_forever(self) -> None:
        if self._tcp is None:
            self.start()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        if self._tcp is not None:
            self._tcp.stop(timeout=timeout)
            self._tcp = None
        for shell in list(self.sessions.values()):
            shell.stop(CloseCode.SERVER_SHUTDOWN, "server shutting down")
        if self._processes is not None:
            self._processes.close()                  # session processes told to stop end on their own
            self._processes = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._early_shell is not None:              # started for a client that never came
            pid, fd = self._early_shell
            self._early_shell = None
            if self._early_agent is not None:
                self._early_agent.close()
            os.close(fd)
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
        self._stopped.set()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def accepted_env(self, env: dict) -> dict:
        return accepted_env(env, self.accept_env)

    def _forget(self, shell) -> None:
        if self.sessions.pop(shell.record.session_id, None) is not None:
            self.registry.close(shell.record.session_id)
        if isinstance(shell, SessionProcess) and shell.tty is not None and shell.shell_pid is not None \
                and self.login_records is not None:
            self.login_records.logout(shell.shell_pid, shell.tty)
        if self.single_session and not self.sessions:
            gevent.spawn(self.stop)                  # its one session is over: so is it

    # --- listings ---------------------------------------------------------------------------
    def session_list(self, uid: int | None, user: str | None = None, patience: float = 1.0) -> list[dict]:
        """The sessions ``uid`` may see (root: all), or ``user``'s, as sessionlist.py has them.
        A session process that does not answer within ``patience`` is listed as last known."""
        shells = [shell for shell in list(self.sessions.values())
                  if (_owner(shell) == user if user is not None else sessionlist.visible_to(uid, _owner(shell)))]
        asked = [gevent.spawn(shell.query_status) for shell in shells if isinstance(shell, SessionProcess)]
        gevent.joinall(asked, timeout=patience)
        return [_describe(shell, self.via, self.name) for shell in shells]

    # --- session processes ----------------------------------------------------------------
    def _session_started(self, handle: SessionProcess) -> None:
        """The session process's first word, sent before it dropped privileges."""
        if self.login_records is not None and handle.tty is not None and handle.shell_pid is not None:
            self.login_records.login(handle.shell_pid, handle.tty, handle.user, handle.peer)

    def _kill_session_process(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # --- one TCP connection: the handshake ----------------------------------------------
    def _handle(self, sock, address) -> None:
        """One TCP connection: wait (briefly, cheaply) for the client's first bytes, and only
        then take a handshake slot and do cryptography; no room is said, not a reset."""
        if sock.family == gsocket.AF_UNIX:
            uid = sessionlist.peer_uid(sock)
            if uid != os.getuid():
                log.warning("refused a key exchange on %s from uid %s", self.address, uid)
                sock.close()
                return
            address = (self.unix_peer, 0)
        host = address[0]
        first = b""
        try:
            wait = self.limiter.connect(host, time.monotonic())
            if wait is not None:
                self._say_busy(sock, host, wait)
                return
            try:
                first = self._first_bytes(sock)
                if not first:
                    return                   # not a key exchange: a probe, or nothing said
                wait = self.limiter.admit(host, time.monotonic())
                if wait is not None:
                    self._say_busy(sock, host, wait)
                    return
                try:
                    self._handshake(sock, address, first)
                finally:
                    self.limiter.done(host)
            finally:
                self.limiter.disconnect(host)    # a kept connection is the session's, not a slot
        finally:
            sock.close()                             # (a session keeps a copy: see _handshake)
            if self.single_session and first and not self.sessions:
                gevent.spawn(self.stop)              # the one key exchange made no session

    def _first_bytes(self, sock) -> bytes:
        """The client's hello, or b"" if it stays silent past HELLO_TIMEOUT (a real client
        sends it at once; a connection held open idle must not hold anything else)."""
        try:
            with gevent.Timeout(HELLO_TIMEOUT):
                return sock.recv(4096)
        except (OSError, gevent.Timeout):
            return b""

    def _say_busy(self, sock, host: str, wait: float) -> None:
        log.debug("no room for a key exchange from %s; told to retry in %.0f s", printable(host), wait)
        try:
            sock.sendall(busy_message(retry_after(wait)))
        except OSError:
            pass

    def _handshake(self, sock, address, first: bytes) -> None:
        """The key exchange on ``sock``; the session it attaches keeps a copy (streampath.py)."""
        hs = ServerHandshake(self.host_key, now=time.monotonic(), timeout=self.handshake_timeout)
        data, attached = first, None
        try:
            with gevent.Timeout(self.handshake_timeout + 1):
                while True:
                    hs.receive_data(data, time.monotonic())
                    event = hs.next_event()
                    if isinstance(event, AuthRequested):
                        attached = self._decide(hs, event, address)
                    out = hs.data_to_send()
                    if out:
                        sock.sendall(out)
                    if hs.finished:
                        break
                    data = sock.recv(4096)
            if attached is not None and hs.params is not None:
                attached[0].attach_stream(attached[1], sock)     # (the session, its conn_id)
        except (RemoteProtocolError, HandshakeError) as exc:
            log.info("handshake from %s failed: %s", address, exc)
            out = hs.data_to_send()
            if out:
                try:
                    sock.sendall(out)
                except OSError:
                    pass
        except (OSError, gevent.Timeout) as exc:
            log.info("handshake from %s ended: %s", address, exc)

    def target_user(self, name: str) -> pwd.struct_passwd | None:
        """Whom a login as ``name`` runs as: anyone when we are root, else only ourselves."""
        if self.single_session:
            return self.user                         # ssh logged them in as us, whatever they say
        if os.getuid() != 0:
            return self.user if name == self.user.pw_name else None
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def _authorized_keys_check(self, client_key: bytes, user: pwd.struct_passwd):
        return check_authorized(client_key, user=user.pw_name, home=user.pw_dir, uid=user.pw_uid,
                                template=self.authorized_keys)

    def _decide(self, hs: ServerHandshake, request: AuthRequested, address):
        """Authorise the client, admit it to a session (new or resumed), take that session
        over and attach the connection; each step refuses on its own terms."""
        user = self._authorise(hs, request, address)
        admission = self._admit(hs, request, user, address) if user is not None else None
        taken = self._take_session(hs, request, user, admission.session, address) \
            if user is not None and admission is not None else None
        if taken is None or admission is None:
            return None
        shell, input_received = taken
        record = admission.session
        params = hs.accept(conn_id=record.conn_id, udp_port=record.udp_port, session_id=record.session_id,
                           resume_token=admission.resume_token, resumed=admission.resumed,
                           input_received=input_received)
        if isinstance(shell, SessionProcess):
            shell.peer = address[0]
        shell.attach(params, admission.resumed)
        log.info("%s session for %s (%s) on UDP %d", "resumed" if admission.resumed else "new",
                 request.user, request.fingerprint, record.udp_port)
        return shell, params.conn_id

    def _authorise(self, hs: ServerHandshake, request: AuthRequested, address) -> pwd.struct_passwd | None:
        """The account the client may log in as, or None (refused, logged)."""
        if not valid_user_name(request.user):
            log.warning("refused %r from %s: not a valid user name", printable(request.user), address)
            hs.refuse()
            return None
        user = self.target_user(request.user)
        if user is None:
            log.warning("refused %s from %s: %s", request.user, address,
                        "no such user" if os.getuid() == 0 else f"this server serves only {self.user.pw_name}")
            hs.refuse()
            return None
        closed = None if self.single_session else self.login_policy.refusal(user, now=time.time())
        verdict = self.authorize(request.client_key, user) if closed is None else None
        if verdict is None or not verdict.allowed:
            log.warning("refused %s (%s) from %s: %s", request.user, request.fingerprint, address,
                        closed or (verdict.reason if verdict is not None else ""))
            hs.refuse()
            return None
        return user

    def _admit(self, hs: ServerHandshake, request: AuthRequested, user, address):
        """The registry's admission (a new session, or the one the token resumes), or None."""
        try:
            return self.registry.admit(user.pw_name, request.client_key, request.resume_token,
                                       resume_only=request.resume_only)
        except PortsExhausted:
            hs.refuse(RefuseCode.SERVER_BUSY, "server busy")
        except TooManySessions as exc:
            log.warning("refused %s (%s) from %s: %s", request.user, request.fingerprint, address, exc)
            hs.refuse(RefuseCode.SERVER_BUSY, "too many sessions: end one (Ctrl-^ . in it) first")
        except SessionGone as exc:
            log.info("no session to resume for %s (%s): %s", request.user, request.fingerprint, exc)
            hs.refuse(RefuseCode.NO_SESSION, "the session no longer exists")
        return None

    def _take_session(self, hs: ServerHandshake, request: AuthRequested, user, record, address):
        """(the session's shell, started now or let go by its old connection, and its count of
        keystrokes received), or None."""
        shell = self.sessions.get(record.session_id)
        if shell is not None and shell.exit_status is not None:
            hs.refuse(RefuseCode.NO_SESSION, "the session has ended")   # its shell just exited
            return None
        if shell is None:
            try:
                shell = self._start_shell(record, request, user, address[0])
            except (PortsExhausted, OSError) as exc:
                log.warning("could not start a session for %s: %s", request.user, exc)
                self.registry.close(record.session_id)       # its port goes back to the pool
                hs.refuse(RefuseCode.SERVER_BUSY, "server busy")
                return None
            self.sessions[record.session_id] = shell
            return shell, 0
        answered = shell.prepare_resume()
        if shell.exit_status is not None:
            hs.refuse(RefuseCode.NO_SESSION, "the session has ended")
            return None
        if answered is None:
            log.warning("session process %s did not answer; %s not resumed", getattr(shell, "pid", "?"),
                        request.user)
            hs.refuse(RefuseCode.SERVER_BUSY, "server busy")
            return None
        return shell, answered

    def shell_env(self, user, client_env: dict) -> dict:
        return shell_environment(user, client_env, self.accept_env, self.base_env)

    def shell_argv(self, user) -> list[str]:
        return self.command or login_argv(user)

    def adopt_early_shell(self, shell: tuple[int, int], agent: AgentSocket | None = None) -> None:
        """single_session: a shell (pid, PTY fd) started before the client's key exchange,
        so a login shell's start-up overlaps ours (see cli/ssh_session.py). The session
        the exchange makes takes it; if none does, it is hung up on at stop()."""
        self._early_shell = shell
        self._early_agent = agent                 # its SSH_AUTH_SOCK's socket (mp --ssh -A)

    def _start_shell(self, record, request: AuthRequested, user, host: str):
        """A UDP socket and a shell for a new session, or nothing at all (no port kept)."""
        env = self.shell_env(user, request.env)
        agent = request.forward_agent and self.forward_policy.may_forward_agent() is None
        if request.forward_agent and not agent:
            log.info("agent forwarding for %s refused: %s", user.pw_name, self.forward_policy.may_forward_agent())
        argv = self.shell_argv(user)
        others = self.session_list(None, user=user.pw_name, patience=NOTICE_PATIENCE)
        notice = self.notice + sessionlist.detached_notice(others)
        sock = bind_udp(self.udp_host, record, self.registry.ports)
        try:
            if self._processes is not None:
                spec = {"user": user.pw_name, "argv": argv, "env": env, "cols": request.cols,
                        "rows": request.rows, "detached_timeout": self.detached_timeout, "notice": notice,
                        "agent": agent, "forward_policy": dataclasses.asdict(self.forward_policy)}
                return self._processes.start(spec, record, host, sock)
            cols, rows = clamp_window(request.cols, request.rows)
            early, self._early_shell = self._early_shell, None
            if early:
                agent_socket, self._early_agent = self._early_agent, None
            else:
                agent_socket = AgentSocket(user.pw_uid, user.pw_gid) if agent else None
            if agent_socket is not None:
                env = dict(env, SSH_AUTH_SOCK=agent_socket.path)
            pid, fd = early or spawn_shell(argv, env, user, cols, rows)
            local = _InProcessHost(self, record, user.pw_name, host)
            shell = ShellSession(local, sock, pid, fd, cols, rows, forward_policy=self.forward_policy,
                                 agent=agent_socket)
        except BaseException:
            sock.close()
            raise
        shell.record = record
        local.started(shell)
        shell.notice = notice
        return shell


def bind_udp(udp_host: str, record, ports: PortPool):
    """The session's UDP socket at its record's port, or at another free one if that is
    taken after all (another program's), the record told which."""
    family = gsocket.AF_INET6 if ":" in udp_host else gsocket.AF_INET
    for _ in range(64):
        sock = udp.open_udp(family)
        try:
            sock.bind((udp_host, record.udp_port))
            return sock
        except OSError:
            sock.close()
            ports.release(record.udp_port)
            record.udp_port = ports.allocate()
    raise PortsExhausted("no UDP port could be bound")


def _describe(shell, via: str, name: str) -> dict:
    """A session's row for ``mps sessions``."""
    if isinstance(shell, SessionProcess):
        entry = {"pid": shell.shell_pid, "tty": shell.tty, "started": shell.started_at, **shell.status}
    else:
        entry = {"pid": shell.pid, "tty": shell.host.tty, "started": shell.host.started_at, **shell.status()}
    entry.update(user=_owner(shell), udp_port=shell.record.udp_port, via=via, name=name)
    return {key: value for key, value in entry.items() if value is not None}


def _owner(shell) -> str:
    return shell.user if isinstance(shell, SessionProcess) else shell.host.user


class _InProcessHost:
    """What an in-process ShellSession asks of the server: its registry entry, its login."""

    def __init__(self, server: Server, record, user: str, peer: str):
        self.server, self.record, self.user, self.peer = server, record, user, peer
        self.shell: ShellSession | None = None
        self.tty: str | None = None
        self.started_at = time.time()

    @property
    def detached_timeout(self) -> float:
        return self.server.detached_timeout

    def started(self, shell: ShellSession) -> None:
        self.shell = shell
        if self.server.login_records is not None:
            self.tty = pty_line(shell.fd)
            if self.tty is not None:
                self.server.login_records.login(shell.pid, self.tty, self.user, self.peer, master_fd=shell.fd)

    def heard(self) -> None:
        self.server.registry.confirm(self.record.session_id)

    def ended(self) -> None:
        assert self.shell is not None                 # (started before it can end)
        if self.tty is not None:
            self.server.login_records.logout(self.shell.pid, self.tty, master_fd=self.shell.fd)
            self.tty = None
        self.server._forget(self.shell)
