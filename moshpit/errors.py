"""The exceptions of moshpit, split the way h11 splits them.

``LocalProtocolError`` means *we* misused an API (a bug on this side);
``RemoteProtocolError`` means the *peer* (or the network, or an attacker) sent
something wrong. Bad input from the network is never allowed to escape as any
other exception type, so a runtime loop can catch exactly ``RemoteProtocolError``,
count it and carry on.
"""

import enum


def printable(text: "str | bytes", limit: int = 60) -> str:
    """Peer-supplied text made safe to print or log: at most ``limit`` characters, every
    control character (ESC, BEL, CR, LF...) as ``?``. Bytes are read as ASCII, so binary
    shows as ``?`` too; a string keeps its printable Unicode."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in bytes(text[:limit]))
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


class MoshpitError(Exception):
    """Base class of every error moshpit raises on purpose."""


class LocalProtocolError(MoshpitError):
    """The caller broke an API contract (a bug on our side, not the peer's)."""


class RemoteProtocolError(MoshpitError):
    """The peer or the network handed us something we must refuse."""


class DecodeError(RemoteProtocolError, ValueError):
    """Malformed wire bytes: truncated, oversized, unknown version or type, lying lengths.

    The only exception the codec raises for bad input.
    """


class DropReason(enum.Enum):
    """Why a received datagram was dropped; the runtime counts drops by reason."""

    MALFORMED = "malformed"
    WRONG_CONNECTION = "wrong-connection"
    REFLECTED = "reflected"
    DUPLICATE = "duplicate"
    TOO_OLD = "too-old"
    TOO_FAR_AHEAD = "too-far-ahead"
    AUTH_FAILED = "auth-failed"


class DatagramDropped(RemoteProtocolError):
    """A datagram failed a check on receive; ``reason`` says which."""

    def __init__(self, reason: DropReason, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
