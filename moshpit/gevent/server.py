"""The server runtime on gevent: the only server code that touches sockets, PTYs and clocks.

``Server`` has gevent's ``BaseServer`` shape (``start()``, ``serve_forever()``,
``stop(timeout)``, context manager) so it embeds in a gevent application. Per
TCP connection a greenlet runs the sans-IO handshake; per session a UDP socket,
a PTY running the shell, and one re-armed timer drive a ``ServerSession`` and
its ``Channel``.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import grp
import logging
import os
import pwd
import re
import signal
import struct
import termios
import time

import gevent
import gevent.event
import gevent.os
import gevent.socket as gsocket
from gevent.server import StreamServer

from moshpit import codec
from moshpit.accounts import LoginPolicy, valid_user_name
from moshpit.errors import DecodeError, RemoteProtocolError, printable
from moshpit.keys import check_authorized
from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import AuthRequested, ConnectionClosed, Resized
from moshpit.protocol.handshake import DiffMode, HandshakeError, RefuseCode, ServerHandshake, busy_message
from moshpit.protocol.ratelimit import HandshakeLimiter, retry_after
from moshpit.protocol.sessions import PortPool, PortsExhausted, SessionGone, SessionRegistry, TooManySessions
from moshpit.gevent import udp
from moshpit.gevent.logins import LoginRecords, pty_line
from moshpit.session import ServerSession
from moshpit.terminal.predict import ECHO, ICANON

log = logging.getLogger("moshpit.server")


PTY_BATCH = 256 * 1024     # PTY output taken in one go before the protocol is serviced
PTY_HIGH_WATER = 1 << 20   # reliable output queued for a listening client: stop reading the PTY
MAX_FD = 1 << 20           # closed in a shell's child above stdio (close_range makes it cheap)
DEFAULT_DETACHED_TIMEOUT = 7 * 86400   # a session whose client is gone this long is ended
HELLO_TIMEOUT = 3.0        # a connection that has not spoken by then is closed


ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def _sane_value(value: str) -> bool:
    """No control characters (a value is pasted into a shell's world, not a terminal's)."""
    return value.isprintable() and len(value) <= 1024


def _reset_signals() -> None:
    """In the shell's child: Python ignores SIGPIPE and SIGXFSZ and gevent may block some
    signals; exec keeps both, so without this `yes | head -1` complains of a broken pipe."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _become(user: pwd.struct_passwd) -> None:
    """In the shell's child, as root: give the terminal to ``user`` and drop to them for good."""
    try:
        tty_group = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_group = user.pw_gid
    os.fchown(0, user.pw_uid, tty_group)        # as sshd does, so mesg, tmux and sudo work
    os.fchmod(0, 0o620)
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    if os.getuid() != user.pw_uid or os.geteuid() != user.pw_uid:
        raise OSError("could not drop privileges")


class ShellSession:
    """One shell on a PTY, its screen, its UDP socket and whichever channel is attached."""

    def __init__(self, server: "Server", record, request: AuthRequested, sock, user: pwd.struct_passwd,
                 host: str = ""):
        self.server = server
        self.record = record
        self.sock = sock
        self.session = ServerSession(request.cols, request.rows)
        self.channels: dict[int, Channel] = {}
        self.channel: Channel | None = None
        self._timer = None
        self._greenlets: list[gevent.Greenlet] = []
        self.exit_status: int | None = None
        self._heard_on_channel = False                   # the attached connection spoke yet?
        self.closed = False
        self._to_pty = bytearray()                       # keystrokes not yet taken by the PTY
        self._to_pty_ready = gevent.event.Event()
        self._drained = gevent.event.Event()             # the client has caught up with output
        self.pid, self.fd = self._spawn(request, user)
        self._tty = pty_line(self.fd) if server.login_records is not None else None
        if self._tty is not None:
            server.login_records.login(self.pid, self._tty, user.pw_name, host)
        self._pty_readable = udp.Readable(self.fd)
        self._pty_window = self.session.window           # the size the shell's terminal has
        set_window_size(self.fd, *self._pty_window)
        self._greenlets += [gevent.spawn(self._guarded, work)
                            for work in (self._read_pty, self._read_udp, self._write_pty)]

    def _guarded(self, work) -> None:
        """Run one of the session's greenlets; if it fails, say so in the log and end the
        session cleanly (the client is told) rather than leave it half alive."""
        try:
            work()
        except gevent.GreenletExit:
            raise
        except Exception:
            log.exception("session on UDP %d: %s failed; ending the session", self.record.udp_port,
                          work.__name__)
            if self.channel is not None and not self.channel.closed:
                self.channel.close(CloseCode.PROTOCOL_ERROR, "server error", now=time.monotonic())
                try:
                    self.service()
                except Exception:
                    log.exception("sending the close failed")
            gevent.spawn_later(1.0, self.shutdown)

    def _spawn(self, request: AuthRequested, user):
        term = request.env.get("TERM", "")
        env = {"TERM": term if TERM_NAME.fullmatch(term) else "xterm-256color", "HOME": user.pw_dir,
               "USER": user.pw_name, "LOGNAME": user.pw_name, "SHELL": user.pw_shell,
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(self.server.accepted_env(request.env))
        argv = self.server.command or [user.pw_shell or "/bin/sh", "-l"]
        pid, fd = gevent.os.forkpty_and_watch()
        if pid == 0:                                   # the child: become the shell
            try:
                os.closerange(3, MAX_FD)               # no other session's PTY, no server socket
                _reset_signals()
                if os.getuid() == 0 and user.pw_uid != 0:
                    _become(user)
                os.chdir(user.pw_dir if os.path.isdir(user.pw_dir) else "/")
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        os.set_inheritable(fd, False)                  # later shells must not get this PTY
        os.set_blocking(fd, False)
        return pid, fd

    # --- connections --------------------------------------------------------------
    def attach(self, channel: Channel, params, resumed: bool = False) -> None:
        if self.channel is not None and not self.channel.closed:
            self.channel.close(CloseCode.DISPLACED, "resumed elsewhere", now=time.monotonic())
        self.channels[channel.conn_id] = channel
        self.channel = channel
        self._heard_on_channel = False
        if resumed:                                      # the window may have changed meanwhile
            self.session.on_event(Resized(params.cols, params.rows), time.monotonic())
        self.session.attach(channel, resumed)
        self.service()

    # --- I/O greenlets ----------------------------------------------------------------
    def _read_pty(self) -> None:
        while True:
            self._wait_for_room()
            try:
                data = self._read_pty_batch()
            except OSError as exc:
                if exc.errno != errno.EIO:
                    log.warning("pty read failed: %s", exc)
                data = b""
            if not data:
                break
            self.session.tty_flags = self._tty_flags()
            self.session.pty_output(data, time.monotonic())
            self.service()
        self._shell_exited()

    def _tty_flags(self) -> int:
        """ECHO and ICANON of the shell's terminal (the master reads the slave's flags)."""
        try:
            lflag = termios.tcgetattr(self.fd)[3]
        except (termios.error, OSError):
            return self.session.tty_flags
        return (ECHO if lflag & termios.ECHO else 0) | (ICANON if lflag & termios.ICANON else 0)

    def _wait_for_room(self) -> None:
        """Flow control in ``reliable`` mode: while a client that is listening has more
        than PTY_HIGH_WATER of output still to receive, leave the rest in the PTY (the
        program waits, as it would for a slow terminal). A client that has gone silent
        does not hold the shell up: the session keeps a bounded backlog, then repaints.
        In every mode, output the screen model has not taken yet (costly escape
        sequences are modelled a budget at a time, on the timer) also waits."""
        while self.session.backlogged or self._client_behind():
            self._drained.clear()
            self._drained.wait(timeout=1.0)

    def _client_behind(self) -> bool:
        channel = self.channel
        return not (channel is None or channel.closed or channel.diff_mode is not DiffMode.RELIABLE
                    or channel.pending_output < PTY_HIGH_WATER
                    or time.monotonic() - channel.last_heard > channel.config.silence_threshold)

    def _read_pty_batch(self) -> bytes:
        """Wait for output, then take what else is already there (up to PTY_BATCH)."""
        while True:
            try:
                chunks = [os.read(self.fd, 65536)]
                break
            except BlockingIOError:
                self._pty_readable.wait()
        size = len(chunks[0])
        while chunks[-1] and size < PTY_BATCH:
            try:
                chunks.append(os.read(self.fd, 65536))
            except OSError:
                break                                    # nothing more now (or EIO: next read says)
            size += len(chunks[-1])
        return b"".join(chunks)

    def _read_udp(self) -> None:
        readable = udp.Readable(self.sock.fileno())
        while True:
            try:
                batch = udp.receive_batch(self.sock, readable, codec.MAX_DATAGRAM_SIZE + 1)
            except OSError:
                return
            now = time.monotonic()
            for data, addr in batch:
                try:
                    _, conn_id, _ = codec.decode_header(data)
                except DecodeError:
                    continue
                channel = self.channels.get(conn_id) or self.channel
                if channel is not None:
                    channel.receive_datagram(data, addr, now)
            if not self._heard_on_channel and self.channel is not None \
                    and self.channel.stats["datagrams_received"]:
                self._heard_on_channel = True            # the client has its new token: the
                self.server.registry.confirm(self.record.session_id)   # old one is spent
            self.service()

    def _write_some(self) -> None:
        """Give the PTY what it takes now; the writer greenlet waits for room for the rest."""
        try:
            written = os.write(self.fd, self._to_pty[:65536])
        except BlockingIOError:
            written = 0
        except OSError:
            self._to_pty.clear()                         # the shell is gone
            return
        del self._to_pty[:written]
        if self._to_pty:
            self._to_pty_ready.set()

    def _write_pty(self) -> None:
        """Keystrokes reach the shell whole and in order, however full its input is: every
        write goes through ``_write_some`` from the head, this greenlet only waits for room."""
        while True:
            self._to_pty_ready.wait()
            self._to_pty_ready.clear()
            while self._to_pty:
                gsocket.wait_write(self.fd)
                self._write_some()

    def _shell_exited(self) -> None:
        try:
            _, status = gevent.os.waitpid(self.pid, 0)
            self.exit_status = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self.exit_status = self.exit_status or 0
        self.session.flush()
        if self.channel is not None:
            status = self.exit_status if self.exit_status >= 0 else 128 - self.exit_status
            self.channel.close(CloseCode.SHELL_EXITED, f"shell exited with status {status}",
                               now=time.monotonic(), exit_status=status)
            self.service()
        gevent.spawn_later(5, self.shutdown)

    # --- the one timer ------------------------------------------------------------------
    def service(self) -> None:
        """Events first and keystrokes to the PTY at once (the echo is what the user
        waits for), then whatever the channels have to send, then the one timer."""
        now = time.monotonic()
        for channel in list(self.channels.values()):
            self._take_events(channel)
        pending = self.session.take_pty_input()
        if pending and self.exit_status is None:
            self._to_pty += pending
            self._write_some()
        if self.session.window != self._pty_window and not self.closed:
            self._pty_window = self.session.window       # a RESIZE applied (now or by the timer)
            set_window_size(self.fd, *self._pty_window)
        for channel in list(self.channels.values()):
            for data, addr in channel.datagrams_to_send(now):
                try:
                    udp.send(self.sock, data, addr)
                except OSError as exc:
                    log.debug("send to %s failed: %s", addr, exc)
            self._take_events(channel)               # sending can time a close out
            if channel.closed and channel is not self.channel:
                self.channels.pop(channel.conn_id, None)
        if not self.session.backlogged and (self.channel is None
                                            or self.channel.pending_output < PTY_HIGH_WATER):
            self._drained.set()
        self._arm(now)

    def _take_events(self, channel: Channel) -> None:
        while (event := channel.next_event()) is not None:
            if channel is self.channel:
                self.session.on_event(event, time.monotonic())
            if isinstance(event, ConnectionClosed) and channel is self.channel and event.by_peer:
                log.info("client ended the session: %s", event.reason)
                gevent.spawn_later(0.5, self.shutdown)   # after our CLOSE answer went out

    def _detached_deadline(self) -> float | None:
        """When this session ends for want of a client (never, unless configured)."""
        timeout = self.server.detached_timeout
        if not timeout or self.channel is None or self.exit_status is not None:
            return None
        return self.channel.last_heard + timeout

    def _arm(self, now: float) -> None:
        deadlines = [t for t in [self.session.get_timer(), self._detached_deadline(),
                                 *(c.get_timer() for c in self.channels.values())]
                     if t is not None]
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if deadlines:
            self._timer = gevent.get_hub().loop.timer(max(0.0, min(deadlines) - now))
            self._timer.start(gevent.spawn, self._on_timer)   # a greenlet: it may wait for I/O

    def _on_timer(self) -> None:
        now = time.monotonic()
        detached_until = self._detached_deadline()
        if detached_until is not None and now >= detached_until:
            log.info("ending a session whose client was gone for %d s", self.server.detached_timeout)
            self._timer = None
            self.channel.close(CloseCode.DETACHED_TIMEOUT, "detached too long", now=now)
            self.shutdown()
            return
        self.session.tty_flags = self._tty_flags()
        self.session.handle_timer(now)
        for channel in list(self.channels.values()):
            channel.handle_timer(now)
        self.service()

    def shutdown(self) -> None:
        """End the session. Idempotent: several paths lead here, and closing the PTY
        twice would close whatever file took its number in between."""
        if self.closed:
            return
        self.closed = True
        if self._tty is not None:
            self.server.login_records.logout(self.pid, self._tty)
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        if self._timer is not None:
            self._timer.close()
        if self.exit_status is None:
            try:
                os.kill(self.pid, 1)
            except ProcessLookupError:
                pass
        self._pty_readable.close()
        for closer in (self.sock.close, lambda: os.close(self.fd)):
            try:
                closer()
            except OSError:
                pass
        self.server._forget(self)


class Server:
    """mps as a library: ``start()`` for embedding, ``serve_forever()``, ``stop()``."""

    def __init__(self, host_key, *, bind: tuple = ("::", 40404), udp_ports=(50000, 59999),
                 udp_host: str | None = None, authorized_keys: str = "%h/.mp/authorized_keys",
                 command: list[str] | None = None, handshake_timeout: float = 10.0,
                 accept_env=("LANG", "LC_*", "TZ"), detached_timeout: float = DEFAULT_DETACHED_TIMEOUT,
                 limiter: HandshakeLimiter | None = None, authorize=None,
                 login_policy: LoginPolicy | None = None, max_sessions_per_user: int = 32,
                 max_sessions_per_key: int = 16, login_records: LoginRecords | None = None):
        """``authorize(client_key, user) -> Authorization`` replaces the authorized_keys
        check (an embedder's own key store; ``mp --local``'s one key in memory)."""
        self.host_key = host_key
        self.bind = bind
        self.udp_host = udp_host if udp_host is not None else bind[0]
        self.authorized_keys = authorized_keys
        self.authorize = authorize or self._authorized_keys_check
        self.login_policy = login_policy or LoginPolicy()
        # utmp/wtmp, as sshd: only root may write them
        self.login_records = login_records or (LoginRecords() if os.getuid() == 0 else None)
        self.command = command
        self.handshake_timeout = handshake_timeout
        self.accept_env = tuple(accept_env)
        self.detached_timeout = detached_timeout
        self.limiter = limiter or HandshakeLimiter()
        self.registry = SessionRegistry(PortPool(range(udp_ports[0], udp_ports[1] + 1)),
                                        max_per_user=max_sessions_per_user, max_per_key=max_sessions_per_key)
        self.sessions: dict[bytes, ShellSession] = {}
        self._tcp: StreamServer | None = None
        self._stopped = gevent.event.Event()
        self.user = pwd.getpwuid(os.getuid())

    @property
    def address(self):
        return self._tcp.address if self._tcp is not None else None

    def start(self) -> None:
        self._tcp = StreamServer(self.bind, self._handle)
        self._tcp.start()
        self._stopped.clear()
        log.info("listening on %s", self._tcp.address)

    def serve_forever(self) -> None:
        if self._tcp is None:
            self.start()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        if self._tcp is not None:
            self._tcp.stop(timeout=timeout)
            self._tcp = None
        for shell in list(self.sessions.values()):
            if shell.channel is not None:
                shell.channel.close(CloseCode.SERVER_SHUTDOWN, "server shutting down", now=time.monotonic())
                shell.service()
            shell.shutdown()
        self._stopped.set()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def accepted_env(self, env: dict) -> dict:
        """The client's variables this server lets through: ``accept_env`` patterns, names of
        capitals, digits and ``_`` only (no ``LC_ALL\nLD_PRELOAD``), printable values."""
        return {key: value for key, value in env.items()
                if key != "TERM" and ENV_NAME.fullmatch(key) and _sane_value(value)
                and any(fnmatch.fnmatchcase(key, pattern) for pattern in self.accept_env)}

    def _forget(self, shell: ShellSession) -> None:
        if self.sessions.pop(shell.record.session_id, None) is not None:
            self.registry.close(shell.record.session_id)

    # --- one TCP connection: the handshake ----------------------------------------------
    def _handle(self, sock, address) -> None:
        """One TCP connection: wait (briefly, cheaply) for the client's first bytes, and only
        then take a handshake slot and do cryptography; no room is said, not a reset."""
        host = address[0]
        try:
            wait = self.limiter.connect(host, time.monotonic())
            if wait is not None:
                self._say_busy(sock, host, wait)
                return
            try:
                first = self._first_bytes(sock)
                if not first:
                    return
                wait = self.limiter.admit(host, time.monotonic())
                if wait is not None:
                    self._say_busy(sock, host, wait)
                    return
                try:
                    self._handshake(sock, address, first)
                finally:
                    self.limiter.done(host)
            finally:
                self.limiter.disconnect(host)
        finally:
            sock.close()

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
        hs = ServerHandshake(self.host_key, now=time.monotonic(), timeout=self.handshake_timeout)
        data = first
        try:
            with gevent.Timeout(self.handshake_timeout + 1):
                while True:
                    hs.receive_data(data, time.monotonic())
                    event = hs.next_event()
                    if isinstance(event, AuthRequested):
                        self._decide(hs, event, address)
                    out = hs.data_to_send()
                    if out:
                        sock.sendall(out)
                    if hs.finished:
                        break
                    data = sock.recv(4096)
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
        if os.getuid() != 0:
            return self.user if name == self.user.pw_name else None
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def _authorized_keys_check(self, client_key: bytes, user: pwd.struct_passwd):
        return check_authorized(client_key, user=user.pw_name, home=user.pw_dir, uid=user.pw_uid,
                                template=self.authorized_keys)

    def _decide(self, hs: ServerHandshake, request: AuthRequested, address) -> None:
        if not valid_user_name(request.user):
            log.warning("refused %r from %s: not a valid user name", printable(request.user), address)
            hs.refuse()
            return
        user = self.target_user(request.user)
        if user is None:
            log.warning("refused %s from %s: %s", request.user, address,
                        "no such user" if os.getuid() == 0 else f"this server serves only {self.user.pw_name}")
            hs.refuse()
            return
        closed = self.login_policy.refusal(user, now=time.time())
        verdict = self.authorize(request.client_key, user) if closed is None else None
        if verdict is None or not verdict.allowed:
            log.warning("refused %s (%s) from %s: %s", request.user, request.fingerprint, address,
                        closed or verdict.reason)
            hs.refuse()
            return
        try:
            admission = self.registry.admit(request.user, request.client_key, request.resume_token,
                                            resume_only=request.resume_only)
        except PortsExhausted:
            hs.refuse(RefuseCode.SERVER_BUSY, "server busy")
            return
        except TooManySessions as exc:
            log.warning("refused %s (%s) from %s: %s", request.user, request.fingerprint, address, exc)
            hs.refuse(RefuseCode.SERVER_BUSY, "too many sessions: end one (Ctrl-^ . in it) first")
            return
        except SessionGone as exc:
            log.info("no session to resume for %s (%s): %s", request.user, request.fingerprint, exc)
            hs.refuse(RefuseCode.NO_SESSION, "the session no longer exists")
            return
        record = admission.session
        shell = self.sessions.get(record.session_id)
        if shell is not None and shell.exit_status is not None:
            hs.refuse(RefuseCode.NO_SESSION, "the session has ended")   # its shell just exited
            return
        if shell is None:
            try:
                shell = self._start_shell(record, request, user, address[0])
            except (PortsExhausted, OSError) as exc:
                log.warning("could not start a session for %s: %s", request.user, exc)
                self.registry.close(record.session_id)       # its port goes back to the pool
                hs.refuse(RefuseCode.SERVER_BUSY, "server busy")
                return
            self.sessions[record.session_id] = shell
        params = hs.accept(conn_id=record.conn_id, udp_port=record.udp_port, session_id=record.session_id,
                           resume_token=admission.resume_token, resumed=admission.resumed,
                           input_received=shell.session.input_received)
        channel = Channel.from_params(Role.SERVER, params, now=time.monotonic(),
                                      screen_source=shell.session.screen_source)
        shell.attach(channel, params, admission.resumed)
        log.info("%s session for %s (%s) on UDP %d", "resumed" if admission.resumed else "new",
                 request.user, request.fingerprint, record.udp_port)

    def _start_shell(self, record, request: AuthRequested, user, host: str) -> ShellSession:
        """A UDP socket and a shell for a new session, or nothing at all (no port kept)."""
        sock = self._bind_udp(record)
        try:
            return ShellSession(self, record, request, sock, user, host)
        except BaseException:
            sock.close()
            raise

    def _bind_udp(self, record):
        family = gsocket.AF_INET6 if ":" in self.udp_host else gsocket.AF_INET
        for _ in range(64):
            sock = udp.open_udp(family)
            try:
                sock.bind((self.udp_host, record.udp_port))
                return sock
            except OSError:
                sock.close()
                self.registry.ports.release(record.udp_port)
                record.udp_port = self.registry.ports.allocate()
        raise PortsExhausted("no UDP port could be bound")
