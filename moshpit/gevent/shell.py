"""One shell on a PTY driven over UDP: the per-session runtime, in whichever process runs it.

``spawn.py`` starts the user's shell on a new PTY; ``ShellSession`` then drives a ``ServerSession``
and its channels from three greenlets (PTY reader, PTY writer, UDP reader) and one
re-armed hub timer. What the session needs of whoever runs it (the listening
server in-process, or the link to the listener in a session process) is a
``host``: ``detached_timeout``, ``heard()`` when a new connection first speaks,
``ended()`` when the session is over.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import termios
import time
from typing import Any

import gevent
import gevent.event
import gevent.os
import gevent.socket as gsocket

from moshpit import codec
from moshpit.errors import DecodeError
from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import ConnectionClosed, Resized
from moshpit.protocol.handshake import DiffMode
from moshpit.gevent import udp
from moshpit.forwarding import ForwardPolicy
from moshpit.gevent.datagramstream import KeptStreams
from moshpit.gevent.forward import AgentSocket, ServerForwarder, StreamPump
from moshpit.gevent.hubtimer import HubTimer
from moshpit.protocol.streampath import StreamAddress, is_stream
from moshpit.protocol.streams import StreamSet
from moshpit.gevent.spawn import set_window_size
from moshpit.session import ServerSession
from moshpit.terminal.predict import ECHO, ICANON

log = logging.getLogger("moshpit.server")


PTY_BATCH = 256 * 1024     # PTY output taken in one go before the protocol is serviced
PTY_MIN_READ = 4096        # reliable, path full: read at least this much once there is room
EARLY_KEPT = 16            # datagrams kept for a connection whose keys have not arrived yet


def _address(addr) -> str:
    host, port = addr[0].removeprefix("::ffff:"), addr[1]      # an IPv4 client of a dual-stack socket
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ShellSession:
    """One shell on a PTY, its screen, its UDP socket and whichever channel is attached."""

    def __init__(self, host, sock, pid: int, fd: int, cols: int, rows: int, *,
                 forward_policy: ForwardPolicy | None = None, agent: AgentSocket | None = None):
        """``agent``: the socket the shell's SSH_AUTH_SOCK names (mp -A), made before it started."""
        self.host = host
        self.sock = sock
        self.udp_port = sock.getsockname()[1]
        self.session = ServerSession(cols, rows)
        self.pty_batch = PTY_BATCH
        # Anonymous memory: pages are only made as output fills them (a bytearray would
        # zero, so own, all 256 kB at once, in every session process).
        self._pty_buffer = memoryview(mmap.mmap(-1, self.pty_batch))
        self.channels: dict[int, Channel] = {}
        self.channel: Channel | None = None
        self._timer = HubTimer(self._on_timer)           # re-armed for the next deadline
        self._greenlets: list[gevent.Greenlet] = []
        self.exit_status: int | None = None
        self._heard_on_channel = False                   # the attached connection spoke yet?
        self.closed = False
        self.notice = ""                                 # for the first client (announce)
        self.record: Any = None                          # the listener's registry entry (in-process)
        self._early: list[tuple[bytes, Any]] = []      # datagrams of a connection not yet attached
        self._retired: set[int] = set()                  # conn_ids of connections displaced
        self._to_pty = bytearray()                       # keystrokes not yet taken by the PTY
        self._to_pty_ready = gevent.event.Event()
        self._drained = gevent.event.Event()             # the path has room for more output
        self.pid, self.fd = pid, fd
        self._pty_readable = udp.Readable(self.fd)
        # forwarded streams outlive a connection: a resume from the same client carries them on
        self.streams = StreamSet(is_client=False)
        self._pump = StreamPump(self.streams, self.service)
        self.forwarder = ServerForwarder(self.streams, self._pump, forward_policy or ForwardPolicy(), agent)
        self._pty_window = self.session.window           # the size the shell's terminal has
        set_window_size(self.fd, *self._pty_window)
        self._kept = KeptStreams(self._on_stream_datagrams)   # key-exchange connections kept
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
            log.exception("session on UDP %d: %s failed; ending the session", self.udp_port,
                          work.__name__)
            if self.channel is not None and not self.channel.closed:
                self.channel.close(CloseCode.PROTOCOL_ERROR, "server error", now=time.monotonic())
                try:
                    self.service()
                except Exception:
                    log.exception("sending the close failed")
            gevent.spawn_later(1.0, self.shutdown)

    # --- connections --------------------------------------------------------------
    def prepare_resume(self) -> int:
        """A resume is authenticated: the keystrokes this session has had (the old
        connection is let go when the new one attaches)."""
        return self.session.input_received

    def attach(self, params, resumed: bool = False) -> Channel:
        """A connection the key exchange accepted: its channel becomes the attached one."""
        channel = Channel.from_params(Role.SERVER, params, now=time.monotonic(),
                                      screen_source=self.session.screen_source)
        self._attach_channel(channel, params, resumed)
        early, self._early = self._early, []
        now = time.monotonic()
        for data, addr in early:                         # what the client sent before we knew
            channel.receive_datagram(data, addr, now)    # (any other: counted and dropped)
        if early:
            self.service()
        if self.notice:                                  # after the attach: before it, output
            self.announce(self.notice)                   # reaches the model, not the stream
            self.notice = ""
        return channel

    def attach_stream(self, conn_id: int, sock, *, copy: bool = True) -> bool:
        """The key exchange's connection for ``conn_id``, kept: that connection's datagrams
        may come and go over it where UDP is blocked (streampath.py). Whether it was
        taken (a connection already displaced is not). ``copy``: keep a duplicate (the
        caller closes ``sock``), else ``sock`` itself."""
        channel = self.channels.get(conn_id)
        if channel is None or channel.closed or self.closed:
            return False
        self._kept.attach(conn_id, sock.dup() if copy else sock)
        return True

    def _on_stream_datagrams(self, datagrams: list[bytes], addr: StreamAddress) -> None:
        channel = self.channels.get(addr.serial)
        if channel is None:
            return
        channel.receive_datagrams(datagrams, addr, time.monotonic())
        self._note_heard()
        self.service()

    def _note_heard(self) -> None:
        if not self._heard_on_channel and self.channel is not None \
                and self.channel.stats["datagrams_received"]:
            self._heard_on_channel = True            # the client has its new token: the
            self.host.heard()                        # old one is spent

    def displace(self) -> None:
        """A resume is on its way: the old connection stops taking keystrokes now."""
        if self.channel is not None and not self.channel.closed:
            self.channel.close(CloseCode.DISPLACED, "resumed elsewhere", now=time.monotonic())
            self.service()

    def stop(self, code: CloseCode, reason: str, linger: float = 0.0) -> None:
        """End the session, telling the attached client why. ``linger``: wait up to that
        long (from a greenlet) for the client to answer the close before the socket goes,
        so a close held back (the window, or a budget) or lost is still sent again."""
        channel = self.channel
        if channel is not None and not channel.closed and not self.closed:
            channel.close(code, reason, now=time.monotonic())
            self.service()
            deadline = time.monotonic() + linger
            while not channel.closed and not self.closed and time.monotonic() < deadline:
                gevent.sleep(0.02)
        self.shutdown()

    def _attach_channel(self, channel: Channel, params, resumed: bool = False) -> None:
        self.displace()
        if self.channel is not None:
            self.channel.attach_streams(None)            # the new one carries them on
        self.channels[channel.conn_id] = channel
        self.channel = channel
        self._heard_on_channel = False
        channel.attach_streams(self.streams)
        self.streams.new_channel()
        self.forwarder.attached(getattr(params, "forward_agent", False))
        if resumed:                                      # the window may have changed meanwhile
            self.session.on_event(Resized(params.cols, params.rows), time.monotonic())
        self.session.attach(channel, resumed, params.shown)
        self.service()

    def status(self) -> dict:
        """For listings: is a client there now, how long since it was heard, from where."""
        channel, now = self.channel, time.monotonic()
        if channel is None:
            return {"attached": False, "peer": ""}
        idle = now - channel.last_heard
        peer = channel.peer_addr
        if is_stream(peer):                              # the TCP connection's far end
            peer = self._kept.peer(channel.conn_id)
        return {"attached": not channel.closed and idle < channel.config.silence_threshold,
                "idle": round(idle, 1), "peer": _address(peer) if peer else ""}

    def announce(self, text: str) -> None:
        """A line for the user ahead of the shell's first output (a server notice)."""
        if text:
            self.session.pty_output(text.encode(), time.monotonic())
            self.service()

    # --- I/O greenlets ----------------------------------------------------------------
    def _read_pty(self) -> None:
        while True:
            limit = self._wait_for_room()
            try:
                data = self._read_pty_batch(limit)
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

    def _wait_for_room(self) -> int:
        """Flow control in ``reliable`` mode: while the output already read waits for the
        path (see ``ServerSession.pump``), leave the rest in the PTY: the program waits,
        as it would for a slow terminal, and a Ctrl-C's flush finds it there. Then read
        about what the path has room for. A client that has gone silent does not hold
        the shell up: the session's log takes the output meanwhile (bounded). In every
        mode, output the screen model has not taken yet (costly escape sequences are
        modelled a budget at a time, on the timer) also waits. Returns the read size."""
        while self.session.backlogged or self._client_listening() and self.session.holding_output:
            self._drained.clear()
            self._drained.wait(timeout=1.0)
        if not self._client_listening():
            return self.pty_batch
        assert self.channel is not None                  # (the client is listening)
        return min(self.pty_batch, max(PTY_MIN_READ, self.channel.output_room))

    def _client_listening(self) -> bool:
        """A reliable client that is there: its path paces the shell's output."""
        channel = self.channel
        return not (channel is None or channel.closed or channel.diff_mode is not DiffMode.RELIABLE
                    or time.monotonic() - channel.last_heard > channel.config.silence_threshold)

    def _read_pty_batch(self, limit: int) -> bytes:
        """Wait for output, then take what else is already there (up to ``limit``).

        Always through the loop first, even when output is surely waiting (a program
        printing without end): each batch is then one turn of the loop, and every other
        session's datagrams and timers get theirs between two of ours."""
        buffer = self._pty_buffer[:limit]
        while True:
            self._pty_readable.wait()
            try:
                size = os.readv(self.fd, [buffer])
                break
            except BlockingIOError:
                pass
        while size and size < limit:                  # a PTY hands over about 4 kB a read:
            try:                                       # read them into one buffer, not 64 kB
                got = os.readv(self.fd, [buffer[size:]])   # objects each
            except OSError:
                break                                    # nothing more now (or EIO: next read says)
            if not got:
                break
            size += got
        return bytes(buffer[:size])

    def _read_udp(self) -> None:
        readable = udp.Readable(self.sock.fileno())
        while True:
            try:
                batch = udp.receive_batch(self.sock, readable, codec.MAX_DATAGRAM_SIZE + 1)
            except OSError:
                return
            now = time.monotonic()
            run: list[bytes] = []                        # consecutive ones for one channel and
            run_to: tuple[Channel, Any] | None = None    # address are opened in one call
            for data, addr in batch:
                try:
                    _, conn_id, _ = codec.decode_header(data)
                except DecodeError:
                    continue
                channel = self.channels.get(conn_id)
                if channel is None and conn_id not in self._retired:
                    self._early.append((data, addr))     # a connection we are not told of yet:
                    if len(self._early) <= EARLY_KEPT:   # its keys come over the link shortly
                        continue
                    data, addr = self._early.pop(0)
                channel = channel or self.channel
                if channel is None:
                    continue
                if run and run_to is not None and run_to != (channel, addr):   # (one not its own: dropped)
                    run_to[0].receive_datagrams(run, run_to[1], now)
                    run = []
                run_to = (channel, addr)
                run.append(data)
            if run and run_to is not None:
                run_to[0].receive_datagrams(run, run_to[1], now)
            self._note_heard()
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
        while (event := self.streams.next_event()) is not None:
            if not self._pump.handle(event):
                self.forwarder.handle(event)
        self.session.pump()                              # acknowledgements made room for output
        pending = self.session.take_pty_input()
        if pending and self.exit_status is None:
            self._to_pty += pending
            self._write_some()
        if self.session.window != self._pty_window and not self.closed:
            self._pty_window = self.session.window       # a RESIZE applied (now or by the timer)
            set_window_size(self.fd, *self._pty_window)
        for channel in list(self.channels.values()):
            out = channel.datagrams_to_send(now)
            while out:                                   # runs to one address go as one GSO send
                addr = out[0][1]
                run = 1
                while run < len(out) and out[run][1] == addr:
                    run += 1
                if is_stream(addr):
                    self._kept.send(channel.conn_id, [data for data, _ in out[:run]])
                else:
                    try:
                        udp.send_many(self.sock, [data for data, _ in out[:run]], addr)
                    except OSError as exc:
                        log.debug("send to %s failed: %s", addr, exc)
                del out[:run]
            self._take_events(channel)               # sending can time a close out
            if channel.closed and channel is not self.channel:
                self.channels.pop(channel.conn_id, None)
                self._retired.add(channel.conn_id)
                self._kept.drop(channel.conn_id)
        if not (self.session.backlogged or self.session.holding_output):
            self._drained.set()
        self._pump.poke()
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
        timeout = self.host.detached_timeout
        if not timeout or self.channel is None or self.exit_status is not None:
            return None
        return self.channel.last_heard + timeout

    def _arm(self, now: float) -> None:
        self._timer.arm([self.session.get_timer(), self._detached_deadline(),
                         *(c.get_timer() for c in self.channels.values())], now)

    def _on_timer(self) -> None:
        now = time.monotonic()
        detached_until = self._detached_deadline()
        if detached_until is not None and now >= detached_until:
            log.info("ending a session whose client was gone for %d s", self.host.detached_timeout)
            self._timer.fired()
            if self.channel is not None:
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
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self._timer.cancel()
        self.forwarder.close()
        self._kept.close()
        if self.exit_status is None:
            try:
                os.kill(self.pid, 1)
            except ProcessLookupError:
                pass
        self._pty_readable.close()
        self.host.ended()                # while the PTY is open: a logout record may need it
        for closer in (self.sock.close, lambda: os.close(self.fd)):
            try:
                closer()
            except OSError:
                pass
