"""Datagram I/O for the runtime: take everything already queued, wait only when nothing is.

Handing the protocol a batch of datagrams before servicing it once (sending,
re-arming the timer, writing to the terminal) costs far less per datagram than
servicing after each one, which is what bounds a bulk transfer. ``Readable``
serves the runtime's other descriptors (PTY, stdin) the same way.
"""

from __future__ import annotations

import socket

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
                  limit: int = BATCH) -> list[tuple[bytes, object]]:
    """Wait for at least one datagram; return it and up to ``limit`` in all that are queued.

    An error from the socket (an ICMP refusal on a connected socket, say) is raised
    only when no datagram came before it."""
    while True:
        batch = []
        try:
            while len(batch) < limit:
                batch.append(sock.recvfrom(size))
        except BlockingIOError:
            pass
        except OSError:
            if not batch:
                raise
        if batch:
            return batch
        readable.wait()


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
