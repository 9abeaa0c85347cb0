"""The SOCKS greeting of an ``mp -D`` connection, parsed without I/O (SOCKS4, 4a and 5).

Only CONNECT, and for SOCKS5 only "no authentication", as ssh's -D. The caller
feeds what the application sent so far; ``SocksRequest.feed`` answers what to
write back and, once the request is complete, where to connect.
"""

from __future__ import annotations

import ipaddress
import struct


class SocksError(ValueError):
    """Not a request we serve; the caller writes ``reply`` (if any) and closes."""

    def __init__(self, message: str, reply: bytes = b""):
        super().__init__(message)
        self.reply = reply


SOCKS5_REFUSED = b"\x05\x07\x00\x01" + bytes(6)      # command not supported
SOCKS4_REFUSED = b"\x00\x5b" + bytes(6)


def _name(raw: bytes) -> str:
    """A host name as the application gave it: printable ASCII (IDNA already applied)."""
    if not raw or any(b <= 32 or b >= 127 for b in raw):
        raise SocksError("SOCKS host name is not a printable ASCII name", SOCKS5_REFUSED)
    return raw.decode("ascii")


class SocksRequest:
    def __init__(self) -> None:
        self._buf = b""
        self._greeted = False
        self.version = 0
        self.target: tuple[str, int] | None = None

    def feed(self, data: bytes) -> bytes:
        """More bytes from the application; returns bytes to write back. ``target`` is
        set once the request is whole; anything after it is ``rest``."""
        self._buf += data
        if self.target is not None:
            return b""                   # the application's own bytes, for the stream
        if len(self._buf) > 1024:
            raise SocksError("SOCKS request too long")
        if not self._buf:
            return b""
        self.version = self._buf[0]
        if self.version == 4:
            return self._socks4()
        if self.version == 5:
            return self._socks5()
        raise SocksError(f"not SOCKS (first byte {self.version})")

    @property
    def rest(self) -> bytes:
        return self._buf

    def success(self) -> bytes:
        """The reply that lets the application go on (sent once the stream is open)."""
        return b"\x00\x5a" + bytes(6) if self.version == 4 else b"\x05\x00\x00\x01" + bytes(6)

    def _socks4(self) -> bytes:
        buf = self._buf
        if len(buf) < 9:
            return b""
        command, port = buf[1], struct.unpack("!H", buf[2:4])[0]
        end = buf.find(b"\0", 8)
        if end < 0:
            return b""
        ip = buf[4:8]
        host = str(ipaddress.IPv4Address(ip))
        consumed = end + 1
        if ip[:3] == b"\0\0\0" and ip[3]:                 # 4a: the name follows the user id
            name_end = buf.find(b"\0", consumed)
            if name_end < 0:
                return b""
            host = _name(buf[consumed:name_end])
            consumed = name_end + 1
        if command != 1:
            raise SocksError("SOCKS4 command other than CONNECT", SOCKS4_REFUSED)
        self.target, self._buf = (host, port), buf[consumed:]
        return b""

    def _socks5(self) -> bytes:
        buf = self._buf
        if not self._greeted:
            if len(buf) < 2 or len(buf) < 2 + buf[1]:
                return b""
            methods = buf[2:2 + buf[1]]
            self._buf = buf = buf[2 + buf[1]:]
            if 0 not in methods:
                raise SocksError("SOCKS5 client needs authentication", b"\x05\xff")
            self._greeted = True
            reply = b"\x05\x00"
            return reply + self._socks5()
        if len(buf) < 5:
            return b""
        _, command, _, atyp = buf[:4]
        if atyp == 1:
            size, host = 4 + 4, lambda: str(ipaddress.IPv4Address(buf[4:8]))
        elif atyp == 4:
            size, host = 4 + 16, lambda: str(ipaddress.IPv6Address(buf[4:20]))
        elif atyp == 3:
            size, host = 5 + buf[4], lambda: _name(buf[5:5 + buf[4]])
        else:
            raise SocksError("SOCKS5 address type unknown", SOCKS5_REFUSED)
        if len(buf) < size + 2:
            return b""
        if command != 1:
            raise SocksError("SOCKS5 command other than CONNECT", SOCKS5_REFUSED)
        self.target = (host(), struct.unpack("!H", buf[size:size + 2])[0])
        self._buf = buf[size + 2:]
        return b""
