"""The client runtime on gevent: the user's terminal on one side, the server on the other.

``connect()`` runs the TCP key exchange (checking the host key against
known_hosts) and opens the UDP channel; ``run()`` shuttles keystrokes and
screen updates until the shell exits or the user quits with the escape key
(Ctrl-^ then ``.``). Errors a user can act on are ``ClientError`` with one
clear sentence.
"""

from __future__ import annotations

import errno
import signal
import time

import gevent
import gevent.event
import gevent.os
import gevent.socket as gsocket

from moshpit.errors import MoshpitError, RemoteProtocolError
from moshpit.keys import HostKeyPolicy, KnownHosts
from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import (ConnectionClosed, HandshakeRefused, HostKeyReceived,
                                     PeerReachable, PeerSilent)
from moshpit.protocol.handshake import ClientHandshake, DiffMode
from moshpit.gevent.server import size_buffers
from moshpit.session import ClientSession
from moshpit.terminal.render import render_full
from moshpit.terminal.tty import window_size

ESCAPE = 0x1E                 # Ctrl-^
CONNECT_TIMEOUT = 10.0


class ClientError(MoshpitError):
    """Why we could not connect, in one sentence for the user."""


class Client:
    def __init__(self, host: str, port: int, *, identity, user: str, known_hosts: KnownHosts,
                 policy: HostKeyPolicy, diff_mode: DiffMode = DiffMode.RELIABLE,
                 term: str = "xterm-256color", env: dict | None = None, ask=None,
                 stdin_fd: int = 0, stdout_fd: int = 1, resume_token: bytes | None = None):
        self.host, self.port = host, port
        self.identity, self.user = identity, user
        self.known_hosts, self.policy, self.ask = known_hosts, policy, ask
        self.diff_mode = DiffMode(diff_mode)
        self.env = dict(env or {}, TERM=term)
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
        self.resume_token = resume_token
        self.params = None
        self.channel: Channel | None = None
        self.session: ClientSession | None = None
        self.exit_message = ""
        self.exit_code = 0
        self._done = gevent.event.Event()
        self._escape = False
        self._timer = None
        self._status_shown = False
        self.session_over = False     # True once the shell is gone (or we ended it)

    # --- connecting -----------------------------------------------------------------
    def connect(self) -> None:
        cols, rows = window_size(self.stdout_fd)
        try:
            infos = gsocket.getaddrinfo(self.host, self.port, 0, gsocket.SOCK_STREAM)
        except gsocket.gaierror as exc:
            raise ClientError(f"cannot resolve {self.host}: {exc.strerror}") from None
        family, _, _, _, address = infos[0]
        try:
            tcp = gsocket.create_connection(address[:2], timeout=CONNECT_TIMEOUT)
        except gsocket.timeout:
            raise ClientError(f"connection to {self.host} port {self.port} timed out") from None
        except OSError as exc:
            raise ClientError(f"cannot connect to {self.host} port {self.port}: {exc.strerror}") from None
        hs = ClientHandshake(self.identity, self.user, now=time.monotonic(), diff_mode=self.diff_mode,
                             cols=cols, rows=rows, env=self.env, resume_token=self.resume_token)
        try:
            tcp.sendall(hs.data_to_send())
            while hs.params is None:
                data = tcp.recv(4096)
                hs.receive_data(data, time.monotonic())
                while (event := hs.next_event()) is not None:
                    if isinstance(event, HostKeyReceived):
                        verdict = self.known_hosts.verify(self.host, self.port, event.host_key,
                                                          self.policy, ask=self.ask)
                        if verdict.message:
                            self.notice(verdict.message)
                        if not verdict.accepted:
                            hs.reject_host_key()
                            tcp.sendall(hs.data_to_send())
                            raise ClientError("host key verification failed")
                        hs.accept_host_key()
                    elif isinstance(event, HandshakeRefused):
                        raise ClientError(f"{self.host} refused: {event.reason}")
                tcp.sendall(hs.data_to_send())
        except RemoteProtocolError as exc:
            raise ClientError(f"key exchange with {self.host} failed: {exc}") from None
        except (OSError, gsocket.timeout) as exc:
            raise ClientError(f"connection to {self.host} lost during the key exchange: {exc}") from None
        finally:
            tcp.close()
        self.params = hs.params
        udp = gsocket.socket(family, gsocket.SOCK_DGRAM)
        size_buffers(udp)
        udp.connect((address[0], self.params.udp_port))
        self.udp = udp
        self.channel = Channel.from_params(Role.CLIENT, self.params, now=time.monotonic(),
                                           peer_addr=(address[0], self.params.udp_port))
        self.session = ClientSession(cols, rows)

    def notice(self, text: str) -> None:
        gevent.os.nb_write(2, (text.rstrip("\n") + "\r\n").replace("\n", "\r\n").encode())

    # --- running ------------------------------------------------------------------------
    def run(self) -> int:
        greenlets = [gevent.spawn(self._read_udp), gevent.spawn(self._read_stdin)]
        gevent.signal_handler(signal.SIGWINCH, self._resized)
        for sig in (signal.SIGTERM, signal.SIGHUP):      # leave through the front door, so the
            gevent.signal_handler(sig, self._terminated)  # terminal is always restored
        self.service()
        self._done.wait()
        for greenlet in greenlets:
            greenlet.kill(block=False)
        if self._timer is not None:
            self._timer.close()
        return self.exit_code

    def _read_udp(self) -> None:
        while True:
            try:
                data = self.udp.recv(2048)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    gevent.sleep(0.2)
                    continue
                raise
            self.channel.receive_datagram(data, self.channel.peer_addr, time.monotonic())
            self.service()

    def _read_stdin(self) -> None:
        while True:
            try:
                data = gevent.os.nb_read(self.stdin_fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.quit("end of input")
                return
            self._keys(data)
            self.service()

    def _keys(self, data: bytes) -> None:
        """Pass keystrokes on, except the escape sequences (Ctrl-^ then . / Ctrl-Z / ^)."""
        out = bytearray()
        for byte in data:
            if self._escape:
                self._escape = False
                if byte == ord("."):
                    self.quit("")
                    return
                if byte == 0x1A:                         # Ctrl-Z: suspend ourselves
                    gevent.spawn(self._suspend)
                    continue
                if byte in (ESCAPE, ord("^")):
                    out.append(ESCAPE)                   # Ctrl-^ ^ sends a literal Ctrl-^
                else:
                    out += bytes([ESCAPE, byte])         # not an escape command after all
            elif byte == ESCAPE:
                self._escape = True
            else:
                out.append(byte)
        if out and not self.channel.closed:
            self.channel.send_data(bytes(out))

    def _suspend(self) -> None:
        import os
        os.kill(os.getpid(), signal.SIGTSTP)

    def _terminated(self) -> None:
        self.exit_code = 1
        self._done.set()          # no CLOSE: the session stays, to be resumed

    def _resized(self) -> None:
        cols, rows = window_size(self.stdout_fd)
        self.session.resize(cols, rows, self.channel)
        self.service()

    def quit(self, message: str) -> None:
        """The user is done: end the session (as Mosh does), not just this client."""
        self.exit_message = message
        self.session_over = True
        if self.channel is not None and not self.channel.closed:
            self.channel.close(CloseCode.NORMAL, "client quit", now=time.monotonic())
            self.service()
        self._done.set()

    def service(self) -> None:
        now = time.monotonic()
        for data, _ in self.channel.datagrams_to_send(now):
            try:
                self.udp.send(data)
            except OSError:
                pass                                     # the network is down: keep trying
        while (event := self.channel.next_event()) is not None:
            self.session.on_event(event, self.channel)
            if isinstance(event, PeerSilent):
                self._status(f"mp: Last contact {int(event.seconds)} seconds ago. [To quit: Ctrl-^ .]")
            elif isinstance(event, PeerReachable):
                self._status(None)
            elif isinstance(event, ConnectionClosed):
                self.exit_message = event.reason if event.by_peer else ""
                self.session_over = event.code != CloseCode.DISPLACED
                self._flush_output()
                self._done.set()
        self._flush_output()
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        deadline = self.channel.get_timer()
        if deadline is not None and not self._done.is_set():
            self._timer = gevent.get_hub().loop.timer(max(0.0, deadline - now))
            self._timer.start(self._on_timer)

    def _on_timer(self) -> None:
        self.channel.handle_timer(time.monotonic())
        self.service()

    def _status(self, text: str | None) -> None:
        """The top-row notice while the server is silent, as Mosh shows it."""
        if text is not None:
            self._status_shown = True
            gevent.os.nb_write(self.stdout_fd, f"\x1b7\x1b[1;1H\x1b[0;7m{text}\x1b[K\x1b[0m\x1b8".encode())
        elif self._status_shown:
            self._status_shown = False                   # bring back the row under the notice
            if self.diff_mode is DiffMode.RELIABLE:
                self.channel.request_repaint()
            else:
                gevent.os.nb_write(self.stdout_fd, render_full(self.session.displayed).encode())

    def _flush_output(self) -> None:
        data = self.session.take_output()
        while data:
            written = gevent.os.nb_write(self.stdout_fd, data)
            data = data[written:]
