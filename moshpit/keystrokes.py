"""The client's keystrokes, apart from I/O: the escape key, and what to send again.

``EscapeKeys`` reads Ctrl-^ sequences out of what the user types, as Mosh does:
Ctrl-^ ``.`` quits, Ctrl-^ Ctrl-Z suspends, Ctrl-^ ``^`` (or Ctrl-^ twice) sends a
literal Ctrl-^, and Ctrl-^ followed by anything else sends both. A Ctrl-^ at the end
of one read waits for the next.

``KeystrokeReplay`` keeps what was typed on a connection, numbered from the session's
count of input received, so a resumed connection sends again exactly what the server
says it did not get: keystrokes arrive once, in order, across any reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass

ESCAPE = 0x1E                 # Ctrl-^
TYPED_KEPT = 1 << 20          # keystroke bytes kept for resending after a reconnect


@dataclass
class Typed:
    """What one read of the user's terminal comes to."""
    keys: bytes               # to send
    suspends: int = 0         # Ctrl-^ Ctrl-Z seen
    quit: bool = False        # Ctrl-^ . seen: nothing of this read is sent


class EscapeKeys:
    def __init__(self) -> None:
        self._pending = False     # the last byte was Ctrl-^

    def feed(self, data: bytes) -> Typed:
        out = bytearray()
        suspends = 0
        for byte in data:
            if self._pending:
                self._pending = False
                if byte == ord("."):
                    return Typed(b"", suspends, quit=True)
                if byte == 0x1A:                         # Ctrl-Z
                    suspends += 1
                elif byte in (ESCAPE, ord("^")):
                    out.append(ESCAPE)                   # a literal Ctrl-^
                else:
                    out += bytes([ESCAPE, byte])         # not an escape command after all
            elif byte == ESCAPE:
                self._pending = True
            else:
                out.append(byte)
        return Typed(bytes(out), suspends)


class KeystrokeReplay:
    def __init__(self, kept: int = TYPED_KEPT) -> None:
        self.kept = kept
        self._typed = bytearray()  # keystrokes sent on this connection, from offset ``base``
        self.base = 0

    def sent(self, data: bytes, *, in_contact: bool) -> None:
        """``data`` went to the channel. While in contact, what is older than ``kept``
        bytes has long been delivered and is let go."""
        self._typed += data
        if len(self._typed) > self.kept and in_contact:
            drop = len(self._typed) - self.kept
            del self._typed[:drop]
            self.base += drop

    def resumed(self, input_received: int) -> tuple[bytes, int]:
        """A new connection whose server has ``input_received`` bytes: (what to send again,
        how many bytes were let go that the server never got, if any: lost)."""
        old_base, typed = self.base, bytes(self._typed)
        self._typed = bytearray()
        self.base = input_received
        return typed[max(0, input_received - old_base):], max(0, old_base - input_received)

    def connected(self, input_received: int) -> None:
        """The first connection: numbering starts at the server's count."""
        self._typed = bytearray()
        self.base = input_received
