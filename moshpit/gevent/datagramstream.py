"""The session's datagrams over a kept byte stream, on gevent: the runtime half of
``protocol/streampath.py``, the same at both ends.

A reader greenlet cuts what arrives into datagrams and hands each batch on with the
stream's address; ``send_many`` frames datagrams into an outbox that a writer
greenlet drains, so a sender never waits on TCP. The outbox is bounded by what the
channel lets fly (its window); past OUTBOX_LIMIT the stream counts as stalled and
is closed (the channel then finds the peer silent, as on a dead UDP path).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import gevent
import gevent.event

from moshpit.errors import RemoteProtocolError
from moshpit.protocol.streampath import Deframer, StreamAddress, frame

log = logging.getLogger("moshpit.stream")

READ_SIZE = 64 << 10
OUTBOX_LIMIT = 4 << 20


class DatagramStream:
    def __init__(self, sock, addr: StreamAddress, on_datagrams: Callable[[list[bytes], StreamAddress], None],
                 on_closed: Callable[[DatagramStream], None] | None = None):
        """``sock``: a connected gevent socket; ``on_closed``: told when the stream ends by
        itself (the peer closed it, an error, a stall), not when it is closed."""
        self.sock, self.addr = sock, addr
        self._on_datagrams, self._on_closed = on_datagrams, on_closed
        self._deframer = Deframer()
        self._outbox = bytearray()
        self._ready = gevent.event.Event()
        self.closed = False
        try:
            peer = sock.getpeername()
        except (AttributeError, OSError):
            peer = None
        self.peer = peer if isinstance(peer, tuple) else None     # (host, port, ...) of a TCP peer
        if self.peer is not None:
            try:                                 # each datagram at once: a keystroke must not
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # wait for an ACK
            except (AttributeError, OSError):
                pass
        self._greenlets = [gevent.spawn(self._read), gevent.spawn(self._write)]

    def send_many(self, datagrams: list[bytes]) -> None:
        if self.closed or not datagrams:
            return
        self._outbox += frame(datagrams)
        if len(self._outbox) > OUTBOX_LIMIT:
            log.info("%s stalled (%d bytes unsent); closing it", self.addr, len(self._outbox))
            self._ended()
            return
        self._ready.set()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(READ_SIZE)
                if not data:
                    break
                datagrams = self._deframer.feed(data)
                if datagrams:
                    self._on_datagrams(datagrams, self.addr)
        except RemoteProtocolError as exc:
            log.warning("%s: %s; closing it", self.addr, exc)
        except OSError as exc:
            log.info("%s: %s", self.addr, exc)
        self._ended()

    def _write(self) -> None:
        try:
            while True:
                self._ready.wait()
                self._ready.clear()
                while self._outbox:
                    sent = self.sock.send(self._outbox[:READ_SIZE])
                    del self._outbox[:sent]
        except OSError as exc:
            log.info("%s: %s", self.addr, exc)
            self._ended()

    def _ended(self) -> None:
        if not self.closed:
            self.close()
            if self._on_closed is not None:
                self._on_closed(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for greenlet in self._greenlets:
            if greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass


class KeptStreams:
    """A server session's kept key-exchange connections, one per connection id."""

    def __init__(self, on_datagrams: Callable[[list[bytes], StreamAddress], None]):
        self._on_datagrams = on_datagrams
        self._by_conn: dict[int, DatagramStream] = {}

    def attach(self, conn_id: int, sock) -> None:
        self.drop(conn_id)
        self._by_conn[conn_id] = DatagramStream(sock, StreamAddress("tcp", conn_id), self._on_datagrams)

    def send(self, conn_id: int, datagrams: list[bytes]) -> None:
        stream = self._by_conn.get(conn_id)
        if stream is not None:
            stream.send_many(datagrams)

    def peer(self, conn_id: int):
        """The far end's (host, port) of a TCP connection, or None."""
        stream = self._by_conn.get(conn_id)
        return stream.peer if stream is not None else None

    def drop(self, conn_id: int) -> None:
        stream = self._by_conn.pop(conn_id, None)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        for conn_id in list(self._by_conn):
            self.drop(conn_id)
