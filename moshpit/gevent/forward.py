"""Forwarded streams on real sockets: the runtime half of ``protocol/streams.py``.

``StreamPump`` joins a ``StreamSet`` to sockets, one per stream: it reads a socket
only while the set has room for more (so a far end that never reads costs bounded
memory here), writes what arrives, and tells the set what it wrote (so the window
opens again). ``ClientForwarder`` and ``ServerForwarder`` decide what each stream
is: the listeners, the connections made on the peer's behalf, the agent socket, and
the server's policy. Everything else (ordering, windows, a resume) is the set's.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable, Sequence

import gevent
import gevent.event
import gevent.socket as gsocket

from moshpit.forwarding import Forward, ForwardPolicy
from moshpit.protocol import streams as st
from moshpit.socks import SocksError, SocksRequest

log = logging.getLogger("moshpit.forward")

READ_SIZE = 64 << 10
MAX_LISTENERS = 16         # -R listeners a session may hold (sshd has no cap; a client is one user)
CONNECT_TIMEOUT = 10.0


class _Conn:
    """One stream's socket: a reader and a writer greenlet."""

    def __init__(self, pump: StreamPump, sid: int, sock, preface: bytes = b""):
        self.pump, self.sid, self.sock = pump, sid, sock
        self.out = bytearray()
        self.finish_out = False                    # the peer half-closed: shut our write side
        self.room = gevent.event.Event()
        self.writable = gevent.event.Event()
        self.closed = False
        if preface:                                # read before the stream existed (SOCKS)
            pump.streams.send(sid, preface)
        self.greenlets = [gevent.spawn(self._read), gevent.spawn(self._write)]

    def _read(self) -> None:
        streams = self.pump.streams
        try:
            while True:
                room = streams.room(self.sid)
                if not room:
                    if self.sid not in streams:
                        return
                    self.room.clear()
                    self.room.wait()
                    continue
                data = self.sock.recv(min(room, READ_SIZE))
                if not data:
                    streams.finish(self.sid)
                    self.pump.kick()
                    return
                streams.send(self.sid, data)
                self.pump.kick()
        except OSError as exc:
            self.pump.failed(self, exc)

    def _write(self) -> None:
        try:
            while True:
                if not self.out:
                    if self.finish_out:
                        self.sock.shutdown(socket.SHUT_WR)
                        return
                    self.writable.clear()
                    self.writable.wait()
                    continue
                sent = self.sock.send(self.out[:READ_SIZE])
                del self.out[:sent]
                self.pump.streams.consumed(self.sid, sent)
                self.pump.kick()
        except OSError as exc:
            self.pump.failed(self, exc)

    def give(self, data: bytes) -> None:
        self.out += data
        self.writable.set()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for greenlet in self.greenlets:
            if greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass


class StreamPump:
    def __init__(self, streams: st.StreamSet, service: Callable[[], None]):
        self.streams = streams
        self._service = service
        self._conns: dict[int, _Conn] = {}
        self._early: dict[int, bytearray] = {}     # data for a stream still connecting
        self._early_fin: set[int] = set()
        self._kick_due = False

    def kick(self) -> None:
        """Service the channel soon: once per turn of the loop, however many reads asked."""
        if not self._kick_due:
            self._kick_due = True
            gevent.get_hub().loop.run_callback(self._kicked)

    def _kicked(self) -> None:
        self._kick_due = False
        self._service()

    def adopt(self, sid: int, sock, preface: bytes = b"") -> None:
        if sid not in self.streams:                # reset while it was connecting
            sock.close()
            return
        conn = self._conns[sid] = _Conn(self, sid, sock, preface)
        if early := self._early.pop(sid, None):
            conn.give(bytes(early))
        if sid in self._early_fin:
            self._early_fin.discard(sid)
            conn.finish_out = True
            conn.writable.set()
        self.kick()

    def connect_then_adopt(self, sid: int, connect: Callable[[], object], what: str) -> None:
        """Make the connection a peer's stream asked for, off the loop's back; data that
        arrives meanwhile waits for it."""
        self._early[sid] = bytearray()

        def run():
            try:
                sock = connect()
            except OSError as exc:
                self._early.pop(sid, None)
                log.info("forwarded connection to %s failed: %s", what, exc)
                self.streams.reset(sid, st.ResetCode.REFUSED, f"connect to {what} failed: {exc.strerror or exc}")
                self.kick()
                return
            self.adopt(sid, sock)
        gevent.spawn(run)

    def failed(self, conn: _Conn, exc: OSError) -> None:
        log.debug("forwarded stream %d: %s", conn.sid, exc)
        self.streams.reset(conn.sid, st.ResetCode.CLOSED, str(exc.strerror or exc))
        self._forget(conn.sid)
        self.kick()

    def _forget(self, sid: int) -> None:
        conn = self._conns.pop(sid, None)
        if conn is not None:
            conn.close()
        self._early.pop(sid, None)
        self._early_fin.discard(sid)

    def handle(self, event) -> bool:
        """Data, ends and resets reach their sockets; False for what the caller decides."""
        if isinstance(event, st.StreamDataReceived):
            conn = self._conns.get(event.stream)
            if conn is not None:
                conn.give(event.data)
            elif event.stream in self._early:
                self._early[event.stream] += event.data
        elif isinstance(event, st.StreamFinished):
            conn = self._conns.get(event.stream)
            if conn is not None:
                conn.finish_out = True
                conn.writable.set()
            else:
                self._early_fin.add(event.stream)
        elif isinstance(event, st.StreamClosed):
            self._forget(event.stream)
        else:
            return False
        return True

    def poke(self) -> None:
        """The set may have room again (a WINDOW came): wake readers that wait for it."""
        for conn in self._conns.values():
            if not conn.room.is_set() and self.streams.room(conn.sid):
                conn.room.set()
        for sid in [s for s in self._conns if s not in self.streams and not self._conns[s].out]:
            self._forget(sid)                      # both halves done, or reset

    def close_all(self) -> None:
        for sid in list(self._conns):
            self._forget(sid)


def _listen(bind: str, port: int, family=None):
    family = family or (gsocket.AF_INET6 if ":" in bind else gsocket.AF_INET)
    sock = gsocket.socket(family, gsocket.SOCK_STREAM)
    sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def _serve(sock, on_accept) -> gevent.Greenlet:
    def run():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            on_accept(conn)
    return gevent.spawn(run)


class ClientForwarder:
    """The client's end: -L and -D listeners, -R's and the agent's connections made here."""

    def __init__(self, streams: st.StreamSet, pump: StreamPump, notice: Callable[[str], None], *,
                 local: Sequence[Forward] = (), remote: Sequence[Forward] = (), dynamic: Sequence[Forward] = (),
                 agent: str | None = None):
        self.streams, self.pump, self.notice = streams, pump, notice
        self.local, self.remote, self.dynamic, self.agent = list(local), list(remote), list(dynamic), agent
        self._listeners: list = []
        self._greenlets: list[gevent.Greenlet] = []
        self._started = False
        self._allocated: dict[int, Forward] = {}     # the port the server chose -> the -R 0 it serves
        self._unallocated = [spec for spec in self.remote if spec.listen_port == 0]

    def start(self) -> None:
        """Listen for -L and -D, ask the server for -R (once: a resume keeps them)."""
        if self._started:
            return
        self._started = True
        for spec in self.local + self.dynamic:
            try:
                sock = _listen(spec.bind, spec.listen_port)
            except OSError as exc:
                self.notice(f"mp: cannot listen on {spec.bind}:{spec.listen_port} for forwarding: "
                            f"{exc.strerror or exc}")
                continue
            self._listeners.append(sock)
            accept = self._accept_local if spec.host else self._accept_socks
            self._greenlets.append(_serve(sock, lambda conn, spec=spec, accept=accept: accept(conn, spec)))
        for spec in self.remote:
            self.streams.ask_forward(st.LISTEN, spec.bind, spec.listen_port)

    def _accept_local(self, conn, spec: Forward) -> None:
        if not self.streams.can_open:
            log.warning("too many forwarded connections; refusing one on port %d", spec.listen_port)
            conn.close()
            return
        self.pump.adopt(self.streams.open(st.TCP, spec.host, spec.port), conn)

    def _accept_socks(self, conn, spec: Forward) -> None:
        gevent.spawn(self._socks, conn)

    def _socks(self, conn) -> None:
        request = SocksRequest()
        try:
            with gevent.Timeout(30):
                while request.target is None:
                    data = conn.recv(1024)
                    if not data:
                        raise SocksError("closed during the SOCKS request")
                    conn.sendall(request.feed(data))
                conn.sendall(request.success())
        except (SocksError, OSError, gevent.Timeout, ValueError) as exc:
            if isinstance(exc, SocksError) and exc.reply:
                try:
                    conn.sendall(exc.reply)
                except OSError:
                    pass
            log.info("SOCKS request refused: %s", exc)
            conn.close()
            return
        if not self.streams.can_open:
            conn.close()
            return
        host, port = request.target
        self.pump.adopt(self.streams.open(st.TCP, host, port), conn, preface=request.rest)

    def handle(self, event) -> None:
        if isinstance(event, st.StreamOpened):
            self._opened(event)
        elif isinstance(event, st.ForwardAnswered):
            self._answered(event)
        elif isinstance(event, st.StreamClosed) and event.code == st.ResetCode.REFUSED and event.reason:
            self.notice(f"mp: a forwarded connection was refused: {event.reason}")

    def _answered(self, event: st.ForwardAnswered) -> None:
        """A refusal is one line; a port the server chose for -R 0 is told, as ssh does.
        (Answers come in the order asked, so the n-th choice is the n-th -R 0's.)"""
        if event.ok and self._unallocated and not any(r.listen_port == event.port for r in self.remote):
            spec = self._unallocated.pop(0)
            self._allocated[event.port] = spec
            self.notice(f"Allocated port {event.port} for remote forward to {spec.host}:{spec.port}")
        elif not event.ok:
            if event.port == 0 and self._unallocated:
                self._unallocated.pop(0)
            what = "agent forwarding" if event.kind == st.AGENT else f"-R port {event.port}"
            self.notice(f"mp: the server refused {what}: {event.reason}")

    def _opened(self, event: st.StreamOpened) -> None:
        if event.kind == st.AGENT:
            if not self.agent:
                self.streams.reset(event.stream, st.ResetCode.REFUSED, "this client forwards no agent")
                return
            path = self.agent
            self.pump.connect_then_adopt(event.stream, lambda: _unix_connect(path), "the ssh agent")
            return
        spec = next((r for r in self.remote if r.listen_port == event.port and r.listen_port),
                    self._allocated.get(event.port))
        if spec is None:
            self.streams.reset(event.stream, st.ResetCode.REFUSED, "no -R for that port")
            return
        self.pump.connect_then_adopt(event.stream, lambda: gsocket.create_connection(
            (spec.host, spec.port), timeout=CONNECT_TIMEOUT), f"{spec.host}:{spec.port}")

    def close(self) -> None:
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        for sock in self._listeners:
            sock.close()
        self.pump.close_all()


def _unix_connect(path: str):
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(None)
    except OSError:
        sock.close()
        raise
    return sock


def _tcp_connect(host: str, port: int):
    sock = gsocket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    sock.settimeout(None)
    return sock


class AgentSocket:
    """The server's end of ``mp -A``: a socket in a private directory (0700, the socket
    0600, both the user's), its path the shell's SSH_AUTH_SOCK. Made before the shell
    starts, by whoever starts it (as root: handed to the user)."""

    def __init__(self, uid: int, gid: int, parent: str | None = None):
        self.dir = tempfile.mkdtemp(prefix="mp-", dir=parent)
        self.path = os.path.join(self.dir, f"agent.{os.getpid()}")
        self.uid = uid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            sock.listen(16)
            if os.getuid() == 0:
                os.chown(self.path, uid, gid)
                os.chown(self.dir, uid, gid)
        except OSError:
            sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.sock = sock

    def peer_allowed(self, conn) -> bool:
        """Only the user (and root, who could read its memory anyway), as ssh."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in (self.uid, 0)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerForwarder:
    """The server's end: the agent socket's connections and -R listeners become streams
    to the client; a client's -L and -D streams become connections, as policy allows."""

    def __init__(self, streams: st.StreamSet, pump: StreamPump, policy: ForwardPolicy,
                 agent: AgentSocket | None = None):
        self.streams, self.pump, self.policy, self.agent = streams, pump, policy, agent
        self.agent_wanted = False          # the attached client forwards its agent
        self._listeners: dict[tuple[str, int], tuple] = {}
        self._greenlets: list[gevent.Greenlet] = []
        if agent is not None:
            agent_sock = gsocket.socket(fileno=agent.sock.detach())
            self._agent_listener = agent_sock
            self._greenlets.append(_serve(agent_sock, self._accept_agent))

    def attached(self, forward_agent: bool) -> None:
        self.agent_wanted = forward_agent and self.agent is not None

    def _accept_agent(self, conn) -> None:
        assert self.agent is not None
        if not self.agent.peer_allowed(conn):
            log.warning("agent socket: a connection from another user refused")
            conn.close()
        elif not self.agent_wanted or not self.streams.can_open:
            conn.close()                   # no agent on the attached client (ssh-add: "no agent")
        else:
            self.pump.adopt(self.streams.open(st.AGENT), conn)

    def handle(self, event) -> None:
        if isinstance(event, st.StreamOpened):
            self._opened(event)
        elif isinstance(event, st.ForwardAsked):
            self._asked(event)
        elif isinstance(event, st.ClientChanged):
            self._close_listeners()

    def _opened(self, event: st.StreamOpened) -> None:
        if event.kind != st.TCP:
            self.streams.reset(event.stream, st.ResetCode.REFUSED, "the client opens TCP streams only")
            return
        refusal = self.policy.may_open(event.host, event.port)
        if refusal is not None:
            log.info("forwarding to %s:%d refused: %s", event.host, event.port, refusal)
            self.streams.reset(event.stream, st.ResetCode.REFUSED, refusal)
            return
        host, port = event.host, event.port
        self.pump.connect_then_adopt(event.stream, lambda: _tcp_connect(host, port), f"{host}:{port}")

    def _asked(self, event: st.ForwardAsked) -> None:
        """A -R listener, as policy allows. Port 0: the system picks one, and the answer
        names it (as sshd does); the streams from it carry the port it listens on."""
        if event.kind != st.LISTEN:
            refusal: str | None = "an agent socket is asked for at login"
        elif len(self._listeners) >= MAX_LISTENERS:
            refusal = f"too many -R listeners in one session ({MAX_LISTENERS})"
        else:
            refusal = self.policy.may_listen(event.host, event.port)
        bound = event.port
        if refusal is None and (event.port == 0 or (event.host, event.port) not in self._listeners):
            try:
                sock = _listen(event.host, event.port)
            except OSError as exc:
                refusal = f"cannot listen on {event.host}:{event.port}: {exc.strerror or exc}"
            else:
                bind, bound = event.host, sock.getsockname()[1]
                greenlet = _serve(sock, lambda conn: self._accept_remote(conn, bind, bound))
                self._listeners[(bind, bound)] = (sock, greenlet)
        if refusal is not None:
            log.info("-R %s:%d refused: %s", event.host, event.port, refusal)
        self.streams.answer_forward(event, refusal is None, refusal or "", port=bound)

    def _accept_remote(self, conn, bind: str, port: int) -> None:
        if not self.streams.can_open:
            conn.close()
            return
        self.pump.adopt(self.streams.open(st.TCP, bind, port), conn)

    def _close_listeners(self) -> None:
        for sock, greenlet in self._listeners.values():
            greenlet.kill(block=False)
            sock.close()
        self._listeners.clear()

    def close(self) -> None:
        self._close_listeners()
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        if self.agent is not None:
            self._agent_listener.close()
            self.agent.close()
        self.pump.close_all()
