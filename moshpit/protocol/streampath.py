"""The session's datagrams over a byte stream, for networks that block UDP (no I/O).

The key exchange's TCP connection to ``mps`` stays open and carries the very
datagrams UDP would, sealed the same way, each behind a 16-bit big-endian length.
To the channel the stream is one more address, a ``StreamAddress``, so roaming,
replay protection and "keystrokes exactly once" are the ones it already has; what
changes on a stream is only what need not be done twice: the stream delivers every
byte in order, so bundles are not resent on a NAK or a probe while it carries them
(see ``SendFlow.path_is_stream``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from moshpit import codec
from moshpit.errors import RemoteProtocolError

_LENGTH = struct.Struct("!H")
LENGTH_SIZE = _LENGTH.size


class StreamAddress(NamedTuple):
    """Where datagrams go when they go over a stream: ``kind`` names it in logs ("tcp"),
    ``serial`` tells one stream from the next (a reconnect makes a new one). A socket
    address is (an IP address, a port): never one of these."""
    kind: str
    serial: int

    def __str__(self) -> str:
        return f"the {self.kind.upper()} stream #{self.serial}"


def is_stream(addr) -> bool:
    return isinstance(addr, StreamAddress)


def frame(datagrams) -> bytes:
    """Datagrams as they go on the stream, each behind its length."""
    out = bytearray()
    for datagram in datagrams:
        if not 0 < len(datagram) <= codec.MAX_DATAGRAM_SIZE:
            raise ValueError(f"a datagram of {len(datagram)} bytes cannot be framed")
        out += _LENGTH.pack(len(datagram))
        out += datagram
    return bytes(out)


class Deframer:
    """Bytes from the stream in, whole datagrams out. Holds at most one datagram's worth
    (plus its length) between calls, whatever the peer sends; a length of zero or past
    the largest datagram is the peer's error (the stream is then closed: nothing after
    it can be trusted to start a frame)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        view = memoryview(self._buffer)
        start, end = 0, len(self._buffer)
        try:
            while end - start >= LENGTH_SIZE:
                (size,) = _LENGTH.unpack_from(view, start)
                if not 0 < size <= codec.MAX_DATAGRAM_SIZE:
                    raise RemoteProtocolError(f"a stream frame of {size} bytes")
                if end - start - LENGTH_SIZE < size:
                    break
                out.append(bytes(view[start + LENGTH_SIZE:start + LENGTH_SIZE + size]))
                start += LENGTH_SIZE + size
        finally:
            view.release()
        del self._buffer[:start]
        return out
