"""Screen messages cut into datagram-sized chunks, and put back together.

A screen message turns numbered state ``base`` into state ``state``; it is
zlib-compressed and split into SCREEN frames so no datagram relies on IP
fragmentation. The receiver keeps a few incomplete messages at a time and a
bounded decompressed size, so a hostile or broken peer cannot grow it without
limit.
"""

from __future__ import annotations

import zlib

from moshpit.errors import DecodeError
from moshpit.protocol import frames

MAX_PENDING_MESSAGES = 4
MAX_CHUNKS = 0xFFFF


def chunk_screen(state: int, base: int, data: bytes, chunk_size: int) -> list[bytes]:
    """SCREEN frame bodies carrying ``data`` (compressed) from ``base`` to ``state``."""
    packed = zlib.compress(data, 6)
    pieces = [packed[i:i + chunk_size] for i in range(0, len(packed), chunk_size)] or [b""]
    if len(pieces) > MAX_CHUNKS:
        raise ValueError("screen message too large to chunk")
    return [frames.pack_screen(state, base, i, len(pieces), piece) for i, piece in enumerate(pieces)]


class ScreenAssembler:
    """Collects chunks; hands back ``(base, state, data)`` once a message is whole.

    A whole message is handed back even if the receiver cannot use it (it may
    lack the base); only states the receiver says it holds are filtered out, so
    a repaint of an already-seen state number still gets through.
    """

    def __init__(self, max_bytes: int = 8 << 20):
        self.max_bytes = max_bytes
        self._pending: dict[tuple[int, int], dict] = {}
        self.applied = 0

    def discard_through(self, state: int) -> None:
        """The receiver now holds ``state``: forget messages that would not advance past it."""
        self.applied = max(self.applied, state)
        for key in [k for k in self._pending if k[0] <= state]:
            del self._pending[key]

    def add(self, chunk: frames.ScreenChunk) -> tuple[int, int, bytes] | None:
        if chunk.state <= self.applied:
            return None
        key = (chunk.state, chunk.base)
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= MAX_PENDING_MESSAGES:
                del self._pending[min(self._pending)]
            entry = self._pending[key] = {"count": chunk.count, "parts": {}, "size": 0}
        if entry["count"] != chunk.count:
            raise DecodeError("screen chunk count changed within one message")
        if chunk.index in entry["parts"]:
            return None
        entry["size"] += len(chunk.chunk)
        if entry["size"] > self.max_bytes:
            del self._pending[key]
            raise DecodeError("screen message exceeds the size limit")
        entry["parts"][chunk.index] = chunk.chunk
        if len(entry["parts"]) < entry["count"]:
            return None
        del self._pending[key]
        packed = b"".join(entry["parts"][i] for i in range(entry["count"]))
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(packed, self.max_bytes)
        except zlib.error as exc:
            raise DecodeError(f"screen message does not decompress: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise DecodeError("screen message is truncated or exceeds the size limit")
        return chunk.base, chunk.state, data
