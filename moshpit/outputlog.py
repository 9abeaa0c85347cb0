"""The shell's output as a numbered stream, kept for a client that is away or restarting.

Offsets count the bytes the PTY has given since the session began, and lines count
the newlines among them. A reliable session hands its channel output from here as
the path has room, so while its client is silent the shell goes on printing into
this log instead of waiting; a client that comes back (the same process after an
outage, or a new ``mp`` on the same terminal after a crash) says where its terminal
stopped and the stream goes on from there, each byte once.

The log is bounded. It holds at most ``max_bytes``, and drops whole reads of the
PTY from its head while more than ``max_lines`` lines would remain. Output that
went before a client had it is skipped: the client is told how many lines it
missed, and repainted. Each append is one chunk (one PTY read), so trimming by
lines costs one count per read, never a search per line.
"""

from __future__ import annotations

from collections import deque


class OutputLog:
    def __init__(self, max_bytes: int, max_lines: int):
        if max_bytes <= 0 or max_lines <= 0:
            raise ValueError("an output log needs room for some bytes and some lines")
        self.max_bytes, self.max_lines = max_bytes, max_lines
        self._chunks: deque[tuple[bytes, int]] = deque()   # (data, newlines in it)
        self._head = 0              # bytes of the first chunk already dropped
        self.start = self.end = 0   # offsets of the first byte held and of the next byte
        self.start_lines = self.end_lines = 0   # newlines before each
        self.held_lines = 0         # newlines in whole chunks held (the head's count is approximate)

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, data: bytes) -> None:
        if not data:
            return
        lines = data.count(b"\n")
        self._chunks.append((data, lines))
        self.end += len(data)
        self.end_lines += lines
        self.held_lines += lines
        while len(self._chunks) > 1 and self.held_lines - self._chunks[0][1] >= self.max_lines:
            self._drop_head_chunk()
        if len(self) > self.max_bytes:
            self.release(self.end - self.max_bytes)

    def release(self, offset: int) -> None:
        """Forget everything before ``offset`` (the client has it for sure)."""
        while self.start < offset and self._chunks:
            data, lines = self._chunks[0]
            rest = len(data) - self._head
            if self.start + rest <= offset:
                self._drop_head_chunk()
                continue
            cut = offset - self.start
            dropped_lines = data.count(b"\n", self._head, self._head + cut)
            self._head += cut
            self.start += cut
            self.start_lines += dropped_lines

    def _drop_head_chunk(self) -> None:
        data, lines = self._chunks.popleft()
        self.start_lines += data.count(b"\n", self._head) if self._head else lines
        self.start += len(data) - self._head
        self.held_lines -= lines
        self._head = 0

    def read(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes from ``offset`` (which must be held: start <= offset <= end)."""
        if not self.start <= offset <= self.end:
            raise ValueError(f"offset {offset} is not held ({self.start}..{self.end})")
        parts: list[bytes] = []
        skip = offset - self.start + self._head
        for data, _ in self._chunks:
            if skip >= len(data):
                skip -= len(data)
                continue
            piece = data[skip:skip + limit] if skip or len(data) > limit else data
            parts.append(piece)
            limit -= len(piece)
            skip = 0
            if not limit:
                break
        return b"".join(parts) if len(parts) != 1 else parts[0]
