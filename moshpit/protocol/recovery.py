"""Sending the ordered flow reliably: its queue, its bundles, loss recovery and the window (no I/O).

``SendFlow`` keeps the frames waiting for the ordered flow (DATA, RESIZE, reliable
SCREEN repaints, REPAINT requests, ECHO_ACK, SKIP, CLOSE) in the order given, cuts
them into bundles under consecutive ordered sequence numbers (OSNs), keeps each
bundle in the ring until it is acknowledged, and answers the peer's ACK, NAK and
silence: a NAKed bundle is resent (twice once NAKed twice), a NAK for what the ring
no longer holds becomes a GONE, and a probe resends the newest bundle when nothing
is acknowledged for an RTO. ``RenoWindow`` is how many bundles may be in flight.
The channel decides when a datagram goes and what else rides in it.
"""

from __future__ import annotations

from collections import deque

from moshpit import codec as F
from moshpit.protocol import frames
from moshpit.protocol.pacing import StreamPacer
from moshpit.protocol.streams import StreamSet
from moshpit.protocol.wire import FRAME_OVERHEAD
from moshpit.retransmit import RetransmitBuffer

# Output in flight is cut back while the RTT is more than this above the path's own: a
# queue on the path (bufferbloat) that a Ctrl-C waits behind.
QUEUE_ALLOWANCE = 0.020
STREAM_SHARE = 0.75         # of the window, at most, in flight with forwarded streams' data
STREAM_BURST = 8            # bundles of stream data per send turn: the loop gets back to the
                            # terminal (a keystroke, its echo) between bursts

# Unsent output is held to about what the window sends in UNSENT_TIME (TCP_NOTSENT_LOWAT's
# idea): whatever waits here must cross before anything typed after a Ctrl-C is answered,
# so the rest waits in the PTY, where the tty discards it on an interrupt.
UNSENT_TIME = 0.02
UNSENT_FLOOR = 16 << 10     # ...but at least this much (a slow path still moves)...
UNSENT_CEILING = 1 << 20    # ...and at most this (a LAN or loopback: the window is not the limit)


def _coalesce(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers -> inclusive ranges."""
    ranges: list[list[int]] = []
    for seq in seqs:
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return [(a, b) for a, b in ranges]


class RenoWindow:
    """Bundles in flight: slow start, then one more per window acknowledged; halved at
    most once per window of data on loss, never below a floor (random loss is not
    congestion). Capped further while the RTT shows a queue on the path."""

    def __init__(self, initial: int, minimum: int, maximum: int):
        self.cwnd = float(initial)
        self.ssthresh = float(maximum)
        self.minimum, self.maximum = minimum, maximum
        self._recovery_until = -1

    def acked(self, newly: int) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.maximum, self.cwnd + newly)             # slow start
        else:
            self.cwnd = min(self.maximum, self.cwnd + newly / self.cwnd)

    def lost(self, first: int, next_osn: int) -> bool:
        """Bundle ``first`` was NAKed; True if that is a new loss event (the window shrinks)."""
        if first <= self._recovery_until:
            return False
        self.ssthresh = max(self.minimum, self.cwnd / 2)
        self.cwnd = self.ssthresh
        self._recovery_until = next_osn
        return True

    def queue_free(self, srtt: float | None, min_rtt: float | None) -> int:
        """The window, cut back in proportion while the RTT shows a queue of more than
        QUEUE_ALLOWANCE: bundles beyond what keeps the path busy only wait in the queue,
        and after a Ctrl-C the next command's output waits behind them (Vegas' idea, as
        a cap: loss still drives the window)."""
        if srtt is None or min_rtt is None or srtt <= min_rtt + QUEUE_ALLOWANCE:
            return int(self.cwnd)
        return max(self.minimum, int(self.cwnd * (min_rtt + QUEUE_ALLOWANCE) / srtt))


class SendFlow:
    def __init__(self, capacity: int, window: RenoWindow, window_cap: int):
        self.queue: deque[tuple[int, bytes | bytearray]] = deque()   # consecutive DATA share a bytearray
        self.pending_bytes = 0          # DATA bytes queued, not yet in a bundle
        self.ring = RetransmitBuffer(capacity)
        self.window = window
        self.window_cap = window_cap    # bundles in flight at most, whatever the window says
        self.next_osn = 0
        self.peer_ack = 0               # the peer holds every OSN below this
        self.resend: set[int] = set()
        self.nak_counts: dict[int, int] = {}
        self.gone: set[int] = set()     # NAKed, no longer held: say GONE
        self.probe_at: float | None = None
        self.probes = 0
        self.streams: StreamSet | None = None     # forwarded streams, sent after the queue
        self._streams_may_go = False
        self.stream_bundles = 0         # in this send turn (see STREAM_BURST)
        self.stream_pacer = StreamPacer(STREAM_BURST)
        self.on_stream = False          # the path is a byte stream (streampath.py): it loses nothing
        self._stream_allowance = STREAM_BURST

    def start_turn(self, now: float) -> None:
        """A send turn begins: how much stream data it may carry (see StreamPacer)."""
        self.stream_bundles = 0
        self._stream_allowance = self.stream_pacer.allowance(now)

    def end_turn(self, now: float) -> None:
        self.stream_pacer.spent(self.stream_bundles, now)

    # --- the queue ---------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.next_osn - self.peer_ack

    def unsent_room(self, srtt: float | None, payload_size: int) -> int:
        """Bytes of output to take now: about what the window sends in UNSENT_TIME."""
        if srtt is None:
            limit = UNSENT_FLOOR
        else:
            per_rtt = int(self.window.cwnd) * payload_size
            limit = min(UNSENT_CEILING, max(UNSENT_FLOOR, int(per_rtt * UNSENT_TIME / max(srtt, 1e-4))))
        return max(0, limit - self.pending_bytes)

    def add_data(self, data: bytes) -> None:
        if self.queue and self.queue[-1][0] == F.FRAME_DATA:
            tail = self.queue[-1][1]
            assert isinstance(tail, bytearray)              # (queued DATA is always a bytearray)
            tail.extend(data)
        else:
            self.queue.append((F.FRAME_DATA, bytearray(data)))
        self.pending_bytes += len(data)

    def add(self, frame_type: int, body: bytes) -> None:
        self.queue.append((frame_type, body))

    def add_first(self, frame_type: int, body: bytes) -> None:
        self.queue.appendleft((frame_type, body))

    def holds(self, frame_type: int) -> bool:
        return any(ft == frame_type for ft, _ in self.queue)

    def drop(self, frame_type: int) -> None:
        self.queue = deque(item for item in self.queue if item[0] != frame_type)

    def may_go(self, srtt: float | None, min_rtt: float | None) -> bool:
        """New frames may go only while the window allows and the ring can keep every
        unacknowledged bundle (so nothing NAKable is ever evicted). Forwarded streams
        (``streams``) may fill only part of it: the rest is the terminal's, so a bulk
        transfer never holds an echo back for a window's worth of its data."""
        limit = min(self.window.queue_free(srtt, min_rtt), self.window_cap)
        self._streams_may_go = self.in_flight < limit * STREAM_SHARE and self.stream_bundles < self._stream_allowance
        if self.queue:
            return self.in_flight < limit
        return self._streams_may_go and self.streams is not None and self.streams.wants_to_send()

    def take(self, room: int) -> list[tuple[int, bytes]]:
        """Queued frames for one bundle, at most ``room`` bytes encoded; then, in the
        room left, the forwarded streams' frames."""
        taken: list[tuple[int, bytes]] = []
        used = self._take_queued(room, taken)
        if self.streams is not None and self._streams_may_go and room - used > FRAME_OVERHEAD:
            streamed = self.streams.frames_to_send(room - used)
            if streamed:
                self.stream_bundles += 1
                taken += streamed
        return taken

    @property
    def streams_held(self) -> bool:
        """Stream data is held back only by the pacer (this turn's burst, or typing):
        send again at ``stream_pacer.resume_at``, or at once when that has passed."""
        return (self.stream_bundles >= self._stream_allowance and self.streams is not None
                and self.streams.wants_to_send())

    def _take_queued(self, room: int, taken: list[tuple[int, bytes]]) -> int:
        used = 0
        while self.queue:
            frame_type, body = self.queue[0]
            if frame_type == F.FRAME_DATA:
                space = room - used - FRAME_OVERHEAD
                if space <= 0:
                    break
                chunk = bytes(body[:space])
                assert isinstance(body, bytearray)
                del body[:space]
                taken.append((F.FRAME_DATA, chunk))
                used += FRAME_OVERHEAD + len(chunk)
                self.pending_bytes -= len(chunk)
                if body:
                    break                  # the bundle is full
            else:
                if used + FRAME_OVERHEAD + len(body) > room:
                    break
                taken.append((frame_type, bytes(body)))
                used += FRAME_OVERHEAD + len(body)
            self.queue.popleft()
        return used

    def bundle(self, ordered: list[tuple[int, bytes]], now: float, rto: float) -> tuple[int, bytes]:
        """Number ``ordered`` as the next bundle and keep it for resending: (OSN, bytes)."""
        osn = self.next_osn
        self.next_osn += 1
        data = F.encode_frames([(F.FRAME_OSN, frames.pack_u64(osn)), *ordered])
        self.ring.store(osn, data)
        if self.probe_at is None:
            self.probe_at = now + rto
        return osn, data

    # --- the peer's answers ------------------------------------------------------------
    def acked(self, acked_below: int, now: float, rto: float) -> int:
        """The peer holds every bundle below ``acked_below``: how many that newly covers."""
        acked_below = min(acked_below, self.next_osn)   # a peer cannot ack what we never sent
        if acked_below <= self.peer_ack:
            return 0
        newly = acked_below - self.peer_ack
        self.peer_ack = acked_below
        self.ring.discard_through(acked_below - 1)
        self.resend = {s for s in self.resend if s >= acked_below}
        for osn in [s for s in self.nak_counts if s < acked_below]:
            del self.nak_counts[osn]
        self.probes = 0
        self.probe_at = now + rto if self.in_flight else None
        return newly

    def path_is_stream(self, on_stream: bool) -> None:
        """The path became a byte stream, or a datagram path again. Onto a stream, every
        bundle in flight goes once more (the old path may have lost it); from then on
        the stream delivers what it is given, in order, so NAKs and probes resend
        nothing (TCP is already resending; a second queue of ours would only grow)."""
        if on_stream and not self.on_stream:
            self.resend.update(osn for osn in range(self.peer_ack, self.next_osn) if osn in self.ring)
        self.on_stream = on_stream

    def naked(self, ranges) -> tuple[int, bool]:
        """The peer misses these bundles: (how many are gone for good, whether this is a
        new loss event). Ignored on a stream: what it carries arrives (and what the old
        path lost was sent again onto it)."""
        if self.on_stream:
            return 0, False
        gone = 0
        for first, last in ranges:
            first = max(first, self.peer_ack)
            last = min(last, self.next_osn - 1)
            for osn in range(first, last + 1):
                if osn in self.ring:
                    self.resend.add(osn)
                    self.nak_counts[osn] = self.nak_counts.get(osn, 0) + 1
                else:
                    self.gone.add(osn)
                    gone += 1
        return gone, bool(ranges) and self.window.lost(ranges[0][0], self.next_osn)

    def resend_newest(self) -> None:
        """Resend the newest bundle (the peer NAKs any gap before it)."""
        if self.in_flight:
            self.resend.add(self.next_osn - 1)

    def probe(self, now: float, rto: float, closing: bool) -> None:
        """Nothing acknowledged for a while: resend the newest bundle. If the tail was
        lost, the peer now sees the gap and NAKs the rest. (Not on a stream: there only
        silence tells, and the runtime acts on it.)"""
        if not self.on_stream:
            self.resend_newest()
        self.probes += 1
        backoff = 1 if closing else 2 ** min(self.probes, 6)
        self.probe_at = now + rto * backoff if self.in_flight else None

    def take_gone(self, room: int) -> list[tuple[int, int]]:
        """The GONE ranges that fit in ``room`` ranges, no longer owed."""
        ranges = _coalesce(sorted(self.gone))[:room]
        for first, last in ranges:
            self.gone.difference_update(range(first, last + 1))
        return ranges

    def take_resends(self) -> list[int]:
        pending, self.resend = sorted(self.resend), set()
        return pending

    def copies(self, osn: int) -> int:
        """A bundle NAKed again lost its resend too: send it twice, so heavy loss rarely
        exhausts the receiver's retries."""
        return 2 if self.nak_counts.get(osn, 0) >= 2 else 1
