"""Datagram I/O for the runtime: take everything already queued, wait only when nothing is.

Handing the protocol a batch of datagrams before servicing it once (sending,
re-arming the timer, writing to the terminal) costs far less per datagram than
servicing after each one, which is what bounds a bulk transfer. ``Readable``
serves the runtime's other descriptors (PTY, stdin) the same way.
"""

from __future__ import annotations

import socket
from typing import Any
import weakref

import gevent
from gevent import get_hub

BUFFER_SIZE = 4 << 20     # a burst of output must not overflow the socket before we read it
BATCH = 64                # datagrams taken before the protocol is serviced


class Readable:
    """Waits until a file descriptor is readable, with one watcher kept for its life
    (gevent's own helpers make and drop a watcher, and its system calls, every wait)."""

    def __init__(self, fd: int):
        self._watcher = get_hub().loop.io(fd, 1)

    def wait(self) -> None:
        get_hub().wait(self._watcher)

    def close(self) -> None:
        self._watcher.close()


def open_udp(family: int) -> socket.socket:
    """A non-blocking UDP socket with room for bursts."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    size_buffers(sock)
    return sock


def size_buffers(sock) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_SIZE)
        except OSError:
            pass


def receive_batch(sock: socket.socket, readable: Readable, size: int,
                  limit: int = BATCH) -> list[tuple[bytes, Any]]:
    """Wait for at least one datagram; return it and up to ``limit`` in all that are queued.

    An error from the socket (an ICMP refusal on a connected socket, say) is raised
    only when no datagram came before it. A socket ``enable_gro`` switched on hands
    over runs of datagrams in one read; they are cut apart here, as they were sent."""
    gro = sock in _gro_sockets
    while True:
        batch: list[tuple[bytes, tuple]] = []
        try:
            while len(batch) < limit:
                if gro:
                    _receive_run(sock, size, batch)
                else:
                    batch.append(sock.recvfrom(size))
        except BlockingIOError:
            pass
        except OSError:
            if not batch:
                raise
        if batch:
            return batch
        readable.wait()


_gro_sockets: weakref.WeakSet = weakref.WeakSet()
_GRO_CMSG = socket.CMSG_SPACE(4)


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to hand over runs of same-size datagrams from one sender as one
    buffer (UDP_GRO): one system call for up to 64 datagrams of a bulk transfer. False,
    and nothing changes, where the kernel has no UDP GRO."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    _gro_sockets.add(sock)
    return True


def _receive_run(sock: socket.socket, size: int, batch: list) -> None:
    """One read from a GRO socket: a datagram, or a run of them cut at the segment size
    the kernel reports (the last may be shorter). A datagram longer than ``size`` is
    cut to it, as recvfrom would (the codec then refuses it)."""
    data, ancillary, _, addr = sock.recvmsg(GRO_MAX_BYTES, _GRO_CMSG)
    segment = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
            segment = int.from_bytes(value[:4], "little")
    if segment <= 0 or segment >= len(data):
        batch.append((data[:size], addr))
        return
    view = memoryview(data)
    for start in range(0, len(data), segment):
        batch.append((bytes(view[start:start + min(segment, size)]), addr))


def send(sock: socket.socket, data: bytes, addr=None) -> bool:
    """Send one datagram if the socket has room; never wait (this may run from a timer,
    and a datagram that does not fit is as good as one lost: the channel resends)."""
    try:
        if addr is None:
            sock.send(data)
        else:
            sock.sendto(data, addr)
        return True
    except BlockingIOError:
        return False


SOL_UDP = 17
UDP_SEGMENT = 103          # linux/udp.h: send one buffer, the kernel cuts it into datagrams
UDP_GRO = 104              # ...and receive runs of them as one buffer
GSO_MAX_SEGMENTS = 64      # the kernel's limit (UDP_MAX_SEGMENTS)
GSO_MAX_BYTES = 65000      # under the 64 kB an IP datagram can carry before it is cut
GRO_MAX_BYTES = 65535      # the most one GRO read can hand over
_gso_works = True          # until a kernel says otherwise (then every send is one datagram)


def send_many(sock: socket.socket, datagrams: list[bytes], addr) -> int:
    """Send datagrams to one address, runs of equal size as one ``sendmsg`` each with
    UDP_SEGMENT (GSO: one system call, the same datagrams on the wire); one by one where
    the kernel has no GSO. Never waits; returns how many were handed to the kernel
    (the rest are as good as lost, as in ``send``)."""
    global _gso_works
    sent, i, n = 0, 0, len(datagrams)
    while i < n:
        size = len(datagrams[i])
        j = i + 1
        if _gso_works:
            total = size
            while (j < n and j - i < GSO_MAX_SEGMENTS and len(datagrams[j]) <= size
                   and total + len(datagrams[j]) <= GSO_MAX_BYTES):
                total += len(datagrams[j])
                j += 1
                if len(datagrams[j - 1]) < size:
                    break                      # a shorter one may only end a run
        try:
            if j - i == 1:
                if not send(sock, datagrams[i], addr):
                    return sent
            else:
                sock.sendmsg(datagrams[i:j], [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, "little"))], 0, addr)
        except BlockingIOError:
            return sent
        except OSError:
            if j - i == 1:
                raise
            _gso_works = False                 # EIO, EINVAL, ENOPROTOOPT: no GSO here
            continue                           # the same run again, one by one
        sent += j - i
        i = j
    return sent


OLD_SOCKET_GRACE = 3.0    # a socket moved away from still takes what was already on its way


class UdpLink:
    """The client's UDP path to the server.

    The socket is not connected: the kernel picks the host's current source
    address for every datagram, so a client whose address changes sends from the
    new one at once (a connected socket keeps the address it started with).
    ``reopen()`` moves to a fresh socket, hence a new source port, as the channel
    asks after a silence (a NAT that dropped its mapping) or a local send error;
    the old socket keeps listening for OLD_SOCKET_GRACE, for what was on its way.
    """

    def __init__(self, family: int, server_addr, on_batch):
        self.family, self.server_addr = family, server_addr
        self._on_batch = on_batch           # called with a list of datagrams (bytes)
        self._readers: dict[socket.socket, gevent.Greenlet] = {}
        self.sock = self._open()

    def _open(self) -> socket.socket:
        sock = open_udp(self.family)
        enable_gro(sock)                    # the client is where bulk output lands
        self._readers[sock] = gevent.spawn(self._read, sock)
        return sock

    def _read(self, sock: socket.socket) -> None:
        readable = Readable(sock.fileno())
        try:
            while True:
                try:
                    batch = receive_batch(sock, readable, 2048)
                except OSError:
                    gevent.sleep(0.2)       # an ICMP error surfacing: keep listening
                    continue
                self._on_batch([data for data, _ in batch])
        finally:
            readable.close()

    def send(self, data: bytes) -> int | None:
        """Send one datagram; the errno of a local failure, else None (a full socket
        buffer counts as a loss, as in ``send``)."""
        try:
            send(self.sock, data, self.server_addr)
        except OSError as exc:
            return exc.errno
        return None

    def reopen(self) -> None:
        old, self.sock = self.sock, self._open()
        gevent.spawn_later(OLD_SOCKET_GRACE, self._retire, old)

    def _retire(self, sock: socket.socket) -> None:
        reader = self._readers.pop(sock, None)
        if reader is not None and reader is not gevent.getcurrent():
            reader.kill()
        sock.close()

    def close(self) -> None:
        for sock in list(self._readers):
            self._retire(sock)
