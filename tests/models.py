"""Small, obviously-correct pure-Python models of the Cython kernels.

Each model states the kernel's contract with sets and dicts instead of bitmaps
and rings; the property tests drive both with the same random operations and
require identical answers.
"""

from __future__ import annotations


class ReplayModel:
    def __init__(self, bits: int = 2048, max_ahead: int = 1 << 20):
        self.window = bits - 64
        self.max_ahead = max_ahead
        self.highest = 0
        self.seen: set[int] = set()

    def check(self, seq: int) -> int:
        if seq > self.highest:
            return 3 if seq - self.highest > self.max_ahead else 0
        if self.highest - seq >= self.window:
            return 2
        return 1 if seq in self.seen else 0

    def commit(self, seq: int) -> int:
        verdict = self.check(seq)
        if verdict == 0:
            self.seen.add(seq)
            self.highest = max(self.highest, seq)
        return verdict


class RetransmitModel:
    """Holds datagrams whose numbers lie within ``capacity`` of the newest stored."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self.items: dict[int, bytes] = {}
        self.newest: int | None = None
        self.low = 0  # everything below was discarded through a cumulative ACK

    def _live(self, seq: int) -> bool:
        return (self.newest is not None and seq <= self.newest
                and seq > self.newest - self.capacity and seq >= self.low)

    def store(self, seq: int, datagram: bytes) -> bool:
        if self.newest is not None and seq <= self.newest:
            return False  # refused: the kernel raises LocalProtocolError
        self.newest = seq
        self.items[seq] = datagram
        while not self._live(next(iter(self.items))):  # dicts keep insertion (= seq) order
            del self.items[next(iter(self.items))]
        return True

    def lookup(self, seq: int):
        return self.items.get(seq) if self._live(seq) else None

    def discard(self, seq: int) -> bool:
        return self.items.pop(seq, None) is not None

    def discard_through(self, seq: int) -> int:
        if self.newest is None:
            return 0
        gone = [s for s in self.items if s <= seq]
        for s in gone:
            del self.items[s]
        self.low = max(self.low, min(seq, self.newest) + 1)
        return len(gone)

    def __len__(self):
        return len(self.items)

    def held(self) -> list[int]:
        return sorted(self.items)


class SeqTrackModel:
    """The tracker's contract, stated with a dict of per-number records."""

    def __init__(self, capacity=1024, start=0, nak_floor=0.05, max_retries=10,
                 max_interval=1.0, rto=0.0):
        self.capacity = capacity
        self.next = start
        self.top = start
        self.floor = nak_floor
        self.max_retries = max_retries
        self.max_interval = max_interval
        self.rto = rto
        self.received: dict[int, object] = {}
        self.missing: dict[int, list] = {}  # seq -> [nak_at, retries]
        self.abandoned_slots: set[int] = set()
        self.ready: list = []
        self.abandoned: list[list[int]] = []

    def _base(self):
        return max(self.rto, self.floor)

    def _abandon(self, first, last):
        if self.abandoned and self.abandoned[-1][1] + 1 == first:
            self.abandoned[-1][1] = last
        else:
            self.abandoned.append([first, last])

    def _advance(self):
        while self.next < self.top:
            if self.next in self.received:
                payload = self.received.pop(self.next)
                if payload is not None:
                    self.ready.append(payload)
            elif self.next in self.abandoned_slots:
                self.abandoned_slots.discard(self.next)
            else:
                return
            self.next += 1

    def ingest(self, seq, payload, now):
        if seq < self.next:
            return 2
        if seq < self.top:
            if seq in self.received:
                return 1
            if seq in self.abandoned_slots:
                return 2
            del self.missing[seq]
            self.received[seq] = payload
            self._advance()
            return 0
        if seq - self.next >= self.capacity:
            new_base = seq - self.capacity + 1
            for s in range(self.next, min(self.top, new_base)):
                if s in self.received:
                    p = self.received.pop(s)
                    if p is not None:
                        self.ready.append(p)
                elif s in self.missing:
                    del self.missing[s]
                    self._abandon(s, s)
                self.abandoned_slots.discard(s)
            if new_base > self.top:
                self._abandon(self.top, new_base - 1)
                self.top = new_base
            self.next = new_base
        for s in range(self.top, seq):
            self.missing[s] = [now + self._base(), 0]
        self.received[seq] = payload
        self.top = seq + 1
        self._advance()
        return 0

    def due_naks(self, now):
        ranges = []
        for s in sorted(self.missing):
            nak_at, retries = self.missing[s]
            if nak_at > now:
                continue
            if self.max_retries >= 0 and retries >= self.max_retries:
                del self.missing[s]
                self.abandoned_slots.add(s)
                self._abandon(s, s)
                continue
            retries = min(retries + 1, 60)
            self.missing[s] = [now + min(self._base() * 2**retries, self.max_interval), retries]
            if ranges and ranges[-1][1] + 1 == s:
                ranges[-1][1] = s
            else:
                ranges.append([s, s])
        self._advance()
        return [tuple(r) for r in ranges]

    def give_up(self, first, last):
        count = 0
        for s in range(max(first, self.next), min(last, self.top - 1) + 1):
            if s in self.missing:
                del self.missing[s]
                self.abandoned_slots.add(s)
                self._abandon(s, s)
                count += 1
        self._advance()
        return count

    def next_deadline(self):
        return min((v[0] for v in self.missing.values()), default=None)

    def pop_ready(self):
        ready, self.ready = self.ready, []
        return ready

    def pop_abandoned(self):
        gone = [tuple(r) for r in self.abandoned]
        self.abandoned = []
        return gone


class OpenerModel:
    """Opening a datagram, step by step as docs/protocol.md orders the checks, with the
    standard library's HMAC and the replay model: the judge of ``protect.open_run``.
    Returns ``(seq, payload)`` or the name of the reason it is refused."""

    def __init__(self, aead_key: bytes, mac_key: bytes, conn_id: int, direction: int):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
        self.aead = AESGCMSIV(aead_key)
        self.mac_key = mac_key
        self.conn_id = conn_id
        self.direction = direction
        self.replay = ReplayModel()

    def open(self, datagram: bytes):
        import hmac
        from cryptography.exceptions import InvalidTag
        if not 61 <= len(datagram) <= 1280:
            return "malformed"
        first, conn_id, seq = datagram[0], int.from_bytes(datagram[1:5], "big"), int.from_bytes(datagram[5:13], "big")
        if first >> 4 != 1 or first & 0x0E or seq >> 63:
            return "malformed"
        if first & 1 != self.direction:
            return "reflected"
        if conn_id != self.conn_id:
            return "wrong-connection"
        verdict = self.replay.check(seq)
        if verdict:
            return {1: "duplicate", 2: "too-old", 3: "too-far-ahead"}[verdict]
        expected = hmac.new(self.mac_key, datagram[:-32], "sha512").digest()[:32]
        if not hmac.compare_digest(expected, datagram[-32:]):
            return "auth-failed"
        try:
            payload = self.aead.decrypt(datagram[1:13], datagram[13:-32], datagram[:13])
        except InvalidTag:
            return "auth-failed"
        self.replay.commit(seq)
        return seq, payload
