"""The client runtime on gevent: the user's terminal on one side, the server on the other.

``connect()`` runs the TCP key exchange (checking the host key against
known_hosts) and opens the UDP channel; ``run()`` shuttles keystrokes and
screen updates until the shell exits or the user quits with the escape key
(Ctrl-^ then ``.``). Errors a user can act on are ``ClientError`` with one
clear sentence.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass

import gevent
import gevent.event
import gevent.os

from moshpit.forwarding import Forward
from moshpit.keys import HostKeyJudge, HostKeyPolicy
from moshpit.keystrokes import EscapeKeys, KeystrokeReplay
from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import (ConnectionClosed, MoveRequested, PeerReachable, PeerSilent)
from moshpit.protocol.backoff import Backoff
from moshpit.protocol.handshake import DiffMode, RefuseCode, SessionParams
from moshpit.protocol.streams import StreamSet
from moshpit.protocol.transport import Transport
from moshpit.gevent import udp as udpio
from moshpit.gevent.clientpaths import ClientPaths
from moshpit.gevent.exchange import KeyExchange
from moshpit.gevent.forward import ClientForwarder, StreamPump
from moshpit.gevent.hubtimer import HubTimer
from moshpit.gevent.routes import ClientError, TcpRoute
from moshpit.clientsession import ClientSession
from moshpit.terminal.predict import Policy
from moshpit.terminal.render import render_full
from moshpit.terminal.tty import REMOVE_STATUS_BAR, SANE_MODES, RawMode, status_bar, window_size

BUSY_PATIENCE = 30.0          # how long a first connection waits for a server that says it is busy
log = logging.getLogger("moshpit.client")


def closed_outcome(event: ConnectionClosed) -> tuple[str, int | None, bool]:
    """What mp says and exits with when its connection closes: (the message, the exit
    status or None to keep it, whether the session is over). A shell's exit status is
    passed on, as ssh does; another close by the server is a failure."""
    reason = "the session was resumed elsewhere" if event.code == CloseCode.DISPLACED else event.reason
    message = reason if event.by_peer else ""
    if event.code == CloseCode.SHELL_EXITED:
        code: int | None = event.exit_status
    elif event.by_peer and event.code != CloseCode.NORMAL:
        code = 1
    else:
        code = None
    return message, code, event.code != CloseCode.DISPLACED


class StatusBar:
    """The notice on the top row while the server is silent. In ``reliable`` it is a row
    inserted above the screen (so the row it covers reaches the scrollback whole) and
    removed again; in the screen modes it is drawn over the top row and the screen is
    drawn again when it goes."""

    def __init__(self, fd: int, *, reliable: bool):
        self.fd, self.reliable = fd, reliable
        self.shown = False
        self.text = ""

    def show(self, text: str | None) -> bool:
        """Show ``text``, or take the bar away (None): True if what it covered must be
        drawn again (in reliable, the bottom row it pushed off is back at once)."""
        if text is not None:
            self.text = text
            gevent.os.nb_write(self.fd, status_bar(text, insert=self.reliable and not self.shown).encode())
            self.shown = True
            return False
        if not self.shown:
            return False
        self.shown = False
        if self.reliable:
            gevent.os.nb_write(self.fd, REMOVE_STATUS_BAR.encode())
        return True


def leave_screen(fd: int, bar: StatusBar, session: ClientSession | None) -> None:
    """No status bar, no mode the remote program switched on, the cursor on a fresh line:
    what the shell (or mp's last message) finds when we let go of the terminal."""
    if not os.isatty(fd):
        return
    out = ""
    if bar.shown:
        out += REMOVE_STATUS_BAR if bar.reliable or session is None else render_full(session.displayed)
        bar.shown = False
    out += SANE_MODES
    if session is not None and not session.at_line_start:
        out += "\r\n"
    try:
        gevent.os.nb_write(fd, out.encode())
    except OSError:
        pass                                         # the terminal is gone (SIGHUP)


def log_prediction(session: ClientSession | None, srtt: float | None) -> None:
    """Why keys were or were not shown at once, for ``mp -v`` and the log."""
    engine = session.engine if session is not None else None
    if engine is None:
        return
    stats = engine.stats
    log.info("prediction (%s): SRTT %s, %d keys predicted, %d shown at once, %d confirmed, "
             "%d wrong while hidden, %d glitches", engine.policy.value,
             "unknown" if srtt is None else f"{srtt * 1000:.0f} ms", stats.predicted, stats.shown,
             stats.confirmed, stats.wrong, stats.glitches)


@dataclass(frozen=True)
class ClientForwards:
    """What a client forwards: its agent (the SSH_AUTH_SOCK path), -L, -R and -D."""
    agent: str | None = None
    local: tuple[Forward, ...] = ()
    remote: tuple[Forward, ...] = ()
    dynamic: tuple[Forward, ...] = ()


@dataclass
class Connection:
    """What one key exchange gave: swapped whole when the session is resumed."""
    params: SessionParams
    paths: ClientPaths
    channel: Channel


class Client:
    def __init__(self, host: str, port: int, *, identity, user: str, known_hosts: HostKeyJudge,
                 policy: HostKeyPolicy, diff_mode: DiffMode = DiffMode.RELIABLE,
                 term: str = "xterm-256color", env: dict | None = None, ask=None,
                 stdin_fd: int = 0, stdout_fd: int = 1, resume_token: bytes | None = None,
                 max_reconnect_backoff: float = 3600, on_resumed=None, clipboard_max_bytes: int = 0,
                 predict: str = "never", route=None, shown: tuple[int, int] | None = None,
                 on_output=None, forwards: ClientForwards | None = None, transport: str = "auto"):
        """``route``: how to reach the key exchange (routes.py); TCP to ``host:port`` by default.
        ``shown``: with ``resume_token``, how much of the session's output this terminal
        has (bytes, lines), as an earlier client left it; ``on_output(bytes, lines)`` is
        told the same after each write, to keep it so (the session file). ``forwards``:
        what to forward (mp -A, -L, -R, -D). ``transport``: auto, udp or stream (transport.py)."""
        self.host, self.port = host, port
        self.user = user
        self.diff_mode = DiffMode(diff_mode)
        self.transport = Transport(transport)
        self.predict = Policy(predict)
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
        self.resume_token = resume_token
        self.shown = shown if resume_token is not None else None
        self.on_output = on_output
        self.conn: Connection | None = None          # set by connect(), replaced on each resume
        self._session: ClientSession | None = None
        self.exit_message = ""
        self.exit_code = 0
        self._done = gevent.event.Event()
        self._escape = EscapeKeys()
        self._timer = HubTimer(self._on_timer)  # re-armed for the next deadline
        self._bar = StatusBar(stdout_fd, reliable=self.diff_mode is DiffMode.RELIABLE)
        self.session_over = False     # True once the shell is gone (or we ended it)
        self.on_resumed = on_resumed  # called with the new SessionParams after each reconnect
        self.clipboard_max_bytes = clipboard_max_bytes   # OSC 52 writes up to this size (0: none)
        self.reconnects = self.reconnect_failures = 0
        self._backoff = Backoff(max_reconnect_backoff)   # reset once a connection is heard from
        self._reconnector: gevent.Greenlet | None = None
        self._silent = False
        self._replay = KeystrokeReplay()   # what to send again after a reconnect
        self._path_dead = False       # sends fail for want of a route: resuming elsewhere
        self._exchanging = False      # a reconnect's key exchange is under way
        self._terminal: RawMode | None = None
        forwards = forwards or ClientForwards()
        self._exchange = KeyExchange(route or TcpRoute(host, port), host, port, identity, user,
                                     self.diff_mode, dict(env or {}, TERM=term), known_hosts, policy, ask,
                                     self.notice, forward_agent=forwards.agent is not None)
        # forwarded streams outlive a connection: this process's name carries them over a resume
        self.streams = StreamSet(is_client=True, epoch=os.urandom(8))
        self._pump = StreamPump(self.streams, self.service)
        self._forwarder = ClientForwarder(self.streams, self._pump, self.notice, local=forwards.local,
                                          remote=forwards.remote, dynamic=forwards.dynamic, agent=forwards.agent)

    @property
    def params(self) -> SessionParams | None:
        """The connection's session parameters (None before the first key exchange)."""
        return self.conn.params if self.conn is not None else None

    @property
    def channel_params(self) -> SessionParams:
        assert self.conn is not None, "connect() first"
        return self.conn.params

    @property
    def channel(self) -> Channel:
        assert self.conn is not None, "connect() first"
        return self.conn.channel

    @property
    def paths(self) -> ClientPaths:
        assert self.conn is not None, "connect() first"
        return self.conn.paths

    @property
    def session(self) -> ClientSession:
        assert self._session is not None, "connect() first"
        return self._session

    # --- connecting -----------------------------------------------------------------
    def connect(self) -> None:
        """The first connection. A busy server is waited for (as long as it says, for
        BUSY_PATIENCE in all); any other failure is the user's to hear about, at once."""
        cols, rows = window_size(self.stdout_fd)
        patience = time.monotonic() + BUSY_PATIENCE
        while True:
            try:
                params, address, kept = self._key_exchange(cols, rows, self.resume_token, resume_only=False,
                                                           shown=self.shown)
                break
            except ClientError as exc:
                if exc.retry_after is not None and time.monotonic() + exc.retry_after <= patience:
                    self.notice(f"mp: {self.host} is busy; trying again in {exc.retry_after} s")
                    gevent.sleep(exc.retry_after)
                    continue
                if exc.permanent or not self._exchange.trusted_just_now:
                    raise
                # The server may have given up waiting while the user read the fingerprint;
                # the key is known now, so a second exchange asks nothing.
                self._exchange.trusted_just_now = False
                log.info("key exchange after the host-key question failed (%s); trying again", exc)
        self._open_channel(params, address, kept)
        self._session = ClientSession(cols, rows, self.clipboard_max_bytes, predict=self.predict,
                                     shown=self.shown if params.resumed else (0, 0))
        self.session.attach(self.channel, params.input_received)
        self._replay.connected(params.input_received)

    def _key_exchange(self, cols: int, rows: int, token: bytes | None, *, resume_only: bool,
                      shown: tuple[int, int] | None):
        return self._exchange.run(cols, rows, token, resume_only=resume_only, shown=shown,
                                  same_key_as=self.params.host_key if self.params is not None else None)

    def _open_channel(self, params, address, kept) -> None:
        """The connection's channel, its UDP link, and ``kept`` (the exchange's stream, or None)."""
        family, host = address
        now = time.monotonic()
        channel = Channel.from_params(Role.CLIENT, params, now=now, peer_addr=(host, params.udp_port))
        paths = ClientPaths(udpio.UdpLink(family, (host, params.udp_port), self._on_datagrams), kept, channel,
                            self.transport, now, on_stream_datagrams=self._on_datagrams,
                            on_stream_closed=self._stream_lost, say=self._say,
                            stream_kind=getattr(self._exchange.route, "stream_kind", "tcp"))
        self.conn = Connection(params, paths, channel)
        self.channel.attach_streams(self.streams)
        self.streams.new_channel()
        self._forwarder.start()

    # --- reconnecting ---------------------------------------------------------------
    def _start_reconnecting(self) -> None:
        if self._reconnector is None and self.params is not None and not self._done.is_set():
            self._reconnector = gevent.spawn(self._reconnect_loop)

    def _reconnect_loop(self) -> None:
        """While the server stays silent, resume the session over a new key exchange,
        waiting longer after each failure; a refusal or a changed host key ends the client."""
        backoff = self._backoff
        try:
            while not self._done.is_set():
                # A path with no route left is abandoned at once, the first time.
                delay = backoff.next_delay()
                gevent.sleep(0 if self._path_dead and backoff.attempts == 1 else delay)
                if not (self._silent or self._path_dead) or self._done.is_set():
                    return                           # the old path came back by itself
                self._exchanging = True          # the old channel's output from now on would
                try:                             # come again from ``shown``: not taken meanwhile
                    params, address, kept = self._key_exchange(self.session.cols, self.session.rows,
                                                               self.channel_params.resume_token, resume_only=True,
                                                               shown=self.session.shown)
                except ClientError as exc:
                    self._exchanging = False
                    self.reconnect_failures += 1
                    log.info("reconnect attempt %d failed: %s", backoff.attempts, exc)
                    if exc.permanent:
                        self.exit_message = f"cannot reconnect: {exc}"
                        self.session_over = exc.refusal == RefuseCode.NO_SESSION
                        self.exit_code = 1
                        self._done.set()
                        return
                    continue
                self._adopt(params, address, kept)
                return
        finally:
            self._reconnector, self._exchanging = None, False

    def _adopt(self, params, address, kept) -> None:
        """Switch to the resumed connection; resend the keystrokes the old one may have lost."""
        self._exchanging = False
        self.paths.close()
        self._open_channel(params, address, kept)
        self.session.attach(self.channel, params.input_received)
        self.reconnects += 1
        undelivered, lost = self._replay.resumed(params.input_received)
        if lost:
            log.warning("the server has fewer keystrokes than were trimmed; %d bytes may be lost", lost)
        if undelivered:
            self._send_keys(undelivered)
        self._silent = self._path_dead = False
        self._status(None)
        if self.on_resumed is not None:
            self.on_resumed(params)
        log.info("resumed the session (%d keystroke bytes sent again)", len(undelivered))
        self.service()

    def notice(self, text: str) -> None:
        gevent.os.nb_write(2, (text.rstrip("\n") + "\r\n").replace("\n", "\r\n").encode())

    # --- running ------------------------------------------------------------------------
    def run(self) -> int:
        """Until the session ends, the user quits or a signal says stop; the terminal is
        handed back as it was found, with the cursor on a line of its own."""
        with RawMode(self.stdin_fd, (self.stdout_fd,)) as self._terminal:
            stdin_reader = gevent.spawn(self._read_stdin)
            handlers = [gevent.signal_handler(signal.SIGWINCH, self._resized),
                        gevent.signal_handler(signal.SIGTSTP, self._suspend),
                        gevent.signal_handler(signal.SIGCONT, self._continued)]
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):   # leave through the front
                handlers.append(gevent.signal_handler(sig, self._terminated, sig))   # door
            try:
                self.service()
                self._done.wait()
            finally:
                for handler in handlers:
                    handler.cancel()
                for greenlet in (stdin_reader, self._reconnector):
                    if greenlet is not None:
                        greenlet.kill(block=False)
                self.paths.close()
                self._forwarder.close()
                self._timer.cancel()
                self._leave_screen()
                log_prediction(self._session, self.channel.rtt.srtt)
        self._terminal = None
        return self.exit_code

    def _on_datagrams(self, batch: list[bytes], addr=None) -> None:
        """From UDP, or with ``addr`` from the kept stream (none while a reconnect's key
        exchange runs: unacknowledged, they come again if this channel stays)."""
        if self._exchanging:
            return
        now = time.monotonic()
        heard = self.channel.stats["datagrams_received"]
        self.channel.receive_datagrams(batch, addr or self.paths.udp.server_addr, now)
        if self.channel.stats["datagrams_received"] > heard:
            if self._backoff.attempts:
                self._backoff.reset()        # this connection works: start afresh next time
            if addr is None:
                self.paths.heard_udp(now)
        self.service()

    def _stream_lost(self) -> None:
        """The stream in use closed: resume at once, over a new key exchange (a new stream)."""
        self._path_dead = True
        self._start_reconnecting()

    def _say(self, text: str) -> None:
        """A notice on the status bar for a few seconds (unless the server is silent)."""
        if not self._silent and self._terminal is not None:
            self._status(text)
            gevent.spawn_later(3.0, lambda: None if self._silent or self._bar.text != text else self._status(None))

    def _read_stdin(self) -> None:
        readable = udpio.Readable(self.stdin_fd)
        try:
            while True:
                try:
                    data = os.read(self.stdin_fd, 4096)
                except BlockingIOError:
                    readable.wait()
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.quit("end of input")
                    return
                self._keys(data)
                self.service()
        finally:
            readable.close()

    def _keys(self, data: bytes) -> None:
        """Pass keystrokes on, except the escape sequences (Ctrl-^ then . / Ctrl-Z / ^)."""
        typed = self._escape.feed(data)
        if typed.quit:
            self.quit("")
            return
        for _ in range(typed.suspends):
            gevent.spawn(self._suspend)
        if typed.keys:
            self._send_keys(typed.keys)

    def _send_keys(self, data: bytes) -> None:
        if self.channel.closed and self._reconnector is None:
            return
        if self.channel.accepts_data:
            self.channel.send_data(data)
            self.session.keys(data, time.monotonic())
        self._replay.sent(data, in_contact=not self._silent and self._reconnector is None)

    def _suspend(self) -> None:
        """Ctrl-^ Ctrl-Z or a SIGTSTP: give the terminal back as the shell expects it, and stop.
        SIGSTOP, not SIGTSTP: it cannot come back to this handler and it is never ignored."""
        if self._terminal is None:
            return
        self._leave_screen()
        gevent.os.nb_write(self.stdout_fd, b"[mp is suspended.]\r\n")
        self._terminal.restore()
        os.kill(os.getpid(), signal.SIGSTOP)

    def _continued(self) -> None:
        """Back from a stop (``fg``): the shell has reset raw mode and O_NONBLOCK on the
        terminal, and painted over ours; take the terminal again and repaint it all."""
        if self._terminal is None or self._done.is_set():
            return
        self._terminal.apply()
        cols, rows = window_size(self.stdout_fd)
        if (cols, rows) != (self.session.cols, self.session.rows):
            self.session.resize(cols, rows)
        self._repaint()
        self.service()

    def _repaint(self) -> None:
        self.session.redraw()
        self._flush_output()
        if self._silent:
            self._bar.shown = False
            self._status(self._bar.text)

    def _leave_screen(self) -> None:
        leave_screen(self.stdout_fd, self._bar, self._session)

    def _terminated(self, signum: int) -> None:
        self.exit_code = 128 + signum
        self.exit_message = (f"killed by signal {signum}; the session is kept on the server, "
                             "run mp again on this terminal to resume it")
        self._done.set()          # no CLOSE: the session stays, to be resumed

    def _resized(self) -> None:
        cols, rows = window_size(self.stdout_fd)
        self.session.resize(cols, rows)
        self.service()

    def quit(self, message: str) -> None:
        """The user is done: end the session (as Mosh does), not just this client."""
        self.exit_message = message
        self.session_over = True
        if self.conn is not None and not self.conn.channel.closed:
            self.channel.close(CloseCode.NORMAL, "client quit", now=time.monotonic())
            self.service()
        self._done.set()

    def service(self) -> None:
        """Events and the screen first (the user is waiting for them), then sending."""
        now = time.monotonic()
        self._take_events()
        while (event := self.streams.next_event()) is not None:
            self._pump.handle(event)
            self._forwarder.handle(event)
        error = self.paths.send(self.channel.datagrams_to_send(now), now)
        if error is not None and self.channel.send_failed(error, now):
            self._move(f"sending failed: {os.strerror(error)}")   # (a loss: resent later)
        if self.channel.path_unreachable and not self._path_dead:
            self._path_dead = True                       # no route in this family: resume now,
            log.info("no route to the server from here; resuming over a new key exchange")
            self._start_reconnecting()                   # over whichever address works
        self._take_events()
        self._pump.poke()
        if self._done.is_set():
            self._timer.cancel()
        else:
            self._timer.arm([self.channel.get_timer(), self.session.get_timer(), self.paths.get_timer()], now)

    def _take_events(self) -> None:
        while (event := self.channel.next_event()) is not None:
            self.session.on_event(event, time.monotonic())
            if isinstance(event, PeerSilent):
                self._silent = True
                self._status(f"mp: Last contact {int(event.seconds)} seconds ago. [To quit: Ctrl-^ .]")
                self._start_reconnecting()
            elif isinstance(event, MoveRequested):
                self._move(f"nothing heard for {event.silent_for:.1f} s")
                self.paths.udp_silent(time.monotonic())
            elif isinstance(event, PeerReachable):
                self._silent = False
                self._status(None)
            elif isinstance(event, ConnectionClosed):
                if event.code == CloseCode.DISPLACED and self._reconnector is not None:
                    continue                         # our own reconnect landing (or retrying)
                self.exit_message, code, self.session_over = closed_outcome(event)
                self.exit_code = self.exit_code if code is None else code
                self._flush_output()
                self._done.set()
        self._flush_output()

    def _move(self, why: str) -> None:
        """To a new socket (a new source port): the channel asked, after a silence or a
        local send error. The server follows the first authentic datagram from it."""
        log.info("moving to a new socket: %s", why)
        self.paths.udp.reopen()
        self.channel.path_changed()

    def _on_timer(self) -> None:
        now = time.monotonic()
        self.channel.handle_timer(now)
        self.session.handle_timer(now)
        self.paths.handle_timer(now)
        self.service()

    def _status(self, text: str | None) -> None:
        """The top-row notice while the server is silent, as Mosh shows it."""
        if self._bar.show(text):                         # taken away: bring back what it covered
            self.session.redraw()
            self._flush_output()

    def _flush_output(self) -> None:
        data = memoryview(self.session.take_output())    # partial writes: no copy of the rest
        written = 0
        while True:                                      # each part on the terminal, then
            shown = self.session.wrote(written)          # recorded: a crash loses nothing
            if shown is not None and self.on_output is not None:
                self.on_output(*shown)
            if not data:
                return
            written = gevent.os.nb_write(self.stdout_fd, data)
            data = data[written:]
