"""One datagram's frames, filled to a byte budget (no I/O).

The channel decides what goes and in which order (PING, ACK, NAK, GONE, ECHO_ACK,
STATE_ACK, unordered frames, the ordered bundle, PADDING); the builder keeps count
of the bytes, refuses a frame that does not fit, and encodes the payload.
"""

from __future__ import annotations

from moshpit import codec as F
from moshpit.protocol.wire import FRAME_OVERHEAD, RANGE_SIZE


class PayloadBuilder:
    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.bundle = b""
        self._parts: list[tuple[int, bytes]] = []

    def add(self, frame_type: int, body: bytes) -> bool:
        """Add the frame if it fits; whether it did."""
        if self.used + FRAME_OVERHEAD + len(body) > self.budget:
            return False
        self._parts.append((frame_type, body))
        self.used += FRAME_OVERHEAD + len(body)
        return True

    @property
    def ranges_room(self) -> int:
        """How many ranges a NAK or GONE frame may carry in what is left."""
        return (self.budget - self.used - FRAME_OVERHEAD) // RANGE_SIZE

    @property
    def left(self) -> int:
        return self.budget - self.used

    def add_bundle(self, bundle: bytes) -> None:
        """The ordered bundle (already encoded, OSN frame first) goes after every other frame."""
        self.bundle = bundle
        self.used += len(bundle)

    def pad(self) -> None:
        """Fill the datagram to its budget."""
        self.add(F.FRAME_PADDING, bytes(max(0, self.budget - self.used - FRAME_OVERHEAD)))

    def payload(self) -> bytes:
        return F.encode_frames(self._parts) + self.bundle
