# cython: language_level=3, boundscheck=False, wraparound=False
"""Receive-side sequence tracking: in-order delivery, reordering, gaps and NAKs.

Every bundle of a connection's ordered flow carries an ordered sequence number
(OSN; not the datagram's packet number, which control datagrams and resends
also use up); this tracker puts the bundles back in order, remembers which
numbers are missing and says when to ask for each again. The first NAK for a gap goes out ``max(floor, rto)``
after the gap was seen, each retry waits twice as long as the one before
(capped at ``max_interval``), and after ``max_retries`` NAKs a gap is
*abandoned*: reported once, then skipped, so the layer above can resynchronise
the screen instead of stalling. Times are always passed in; nothing here reads
a clock.

>>> t = SeqTracker()
>>> t.ingest(0, b"a", 0.0), t.ingest(2, b"c", 0.0), t.pop_ready()
(0, 0, [b'a'])
>>> t.next_deadline(), t.due_naks(0.01), t.due_naks(0.05)
(0.05, [], [(1, 1)])
>>> t.ingest(1, b"b", 0.06), t.pop_ready()
(0, [b'b', b'c'])
"""

from cpython cimport array
from libc.stdint cimport uint8_t, uint64_t

from moshpit.errors import LocalProtocolError

cdef uint64_t _MAX_SEQ = (<uint64_t>1 << 63) - 1  # codec.MAX_SEQ: seq + 1 never wraps

VERDICT_ACCEPTED = ACCEPTED
VERDICT_DUPLICATE = DUPLICATE
VERDICT_STALE = STALE

DEFAULT_CAPACITY = 1024
DEFAULT_NAK_FLOOR = 0.050
DEFAULT_MAX_RETRIES = 10
DEFAULT_MAX_INTERVAL = 1.0

cdef enum SlotState:
    EMPTY = 0
    RECEIVED = 1
    MISSING = 2
    ABANDONED = 3


cdef class SeqTracker:
    """Orders payloads by sequence number and schedules NAKs for the gaps.

    ``capacity`` (a power of two) bounds the reorder buffer: a number that far
    past the oldest undelivered one forces the oldest gaps to be abandoned.
    ``start`` is the first sequence number expected. ``rto`` may be updated by
    the caller at any time; it is read whenever a NAK is scheduled.
    ``max_retries=-1`` never gives a gap up (for a stream that must not lose a
    byte, such as keystrokes); only the reorder-buffer bound can then abandon.
    """

    def __cinit__(self, Py_ssize_t capacity=DEFAULT_CAPACITY, uint64_t start=0,
                  double nak_floor=DEFAULT_NAK_FLOOR, int max_retries=DEFAULT_MAX_RETRIES,
                  double max_interval=DEFAULT_MAX_INTERVAL, double rto=0.0):
        if start > _MAX_SEQ:
            raise LocalProtocolError("start above MAX_SEQ")
        if capacity < 2 or capacity & (capacity - 1):
            raise LocalProtocolError(f"capacity must be a power of two >= 2, not {capacity}")
        if not (nak_floor > 0) or max_retries < -1 or not (max_interval >= nak_floor):
            raise LocalProtocolError("need nak_floor > 0, max_retries >= -1, max_interval >= nak_floor")
        self._capacity = capacity
        self._mask = <uint64_t>(capacity - 1)
        # Typed memoryviews over arrays the tracker owns. Every index below is a
        # sequence number masked by ``capacity - 1`` and each array holds exactly
        # ``capacity`` items (checked here, once), so the unchecked indexing stays inside.
        self._state = array.clone(array.array("B"), capacity, zero=True)
        self._retries = array.clone(array.array("B"), capacity, zero=True)
        self._nak_at = array.clone(array.array("d"), capacity, zero=True)
        if not (self._state.shape[0] == self._retries.shape[0] == self._nak_at.shape[0] == capacity):
            raise LocalProtocolError("tracker arrays of the wrong size")
        self._payloads = [None] * capacity
        self._ready = []
        self._abandoned = []
        self._next = start
        self._top = start
        self._missing = 0
        self._seen = False
        self._floor = nak_floor
        self._max_retries = max_retries
        self._max_interval = max_interval
        self.rto = rto

    @property
    def next_expected(self):
        """Every number below this was delivered or abandoned (the cumulative ACK)."""
        return self._next

    @property
    def highest(self):
        """The highest number seen so far, or None."""
        return self._top - 1 if self._seen else None

    @property
    def missing(self):
        """How many numbers are currently awaited (gaps not yet filled or abandoned)."""
        return self._missing

    cdef double _base_interval(self) noexcept:
        return self.rto if self.rto > self._floor else self._floor

    cdef void _abandon(self, uint64_t first, uint64_t last):
        # Merge with the previous range when contiguous, so reports stay short.
        if self._abandoned:
            prev = self._abandoned[len(self._abandoned) - 1]   # no [-1]: wraparound is off
            if prev[1] + 1 == first:
                prev[1] = last
                return
        self._abandoned.append([first, last])

    cdef void _advance(self):
        cdef uint64_t slot
        cdef uint8_t state
        while self._next < self._top:
            slot = self._next & self._mask
            state = self._state[slot]
            if state == RECEIVED:
                payload = self._payloads[slot]
                if payload is not None:
                    self._ready.append(payload)
                    self._payloads[slot] = None
            elif state != ABANDONED:
                return
            self._state[slot] = EMPTY
            self._next += 1

    cdef void _force_base(self, uint64_t new_base):
        """Move the oldest undelivered number up to ``new_base``, giving up what lies below."""
        cdef uint64_t s = self._next
        cdef uint64_t stop = self._top if self._top < new_base else new_base
        cdef uint64_t slot
        cdef uint8_t state
        while s < stop:
            slot = s & self._mask
            state = self._state[slot]
            if state == RECEIVED:
                payload = self._payloads[slot]
                if payload is not None:
                    self._ready.append(payload)
                    self._payloads[slot] = None
            elif state == MISSING:
                self._missing -= 1
                self._abandon(s, s)
            self._state[slot] = EMPTY
            s += 1
        if new_base > self._top:
            self._abandon(self._top, new_base - 1)
            self._top = new_base
        self._next = new_base

    cpdef int ingest(self, uint64_t seq, object payload, double now) except -1:
        """Take the datagram numbered ``seq``; return 0 accepted, 1 duplicate, 2 stale.

        ``payload`` is what to deliver in order (None when the datagram carries
        nothing for the ordered stream but still fills its number).
        """
        cdef uint64_t slot, s
        cdef double due
        if seq > _MAX_SEQ:
            raise LocalProtocolError(f"sequence number {seq} above MAX_SEQ")
        if seq < self._next:
            return STALE
        if seq < self._top:
            slot = seq & self._mask
            if self._state[slot] == RECEIVED:
                return DUPLICATE
            if self._state[slot] == ABANDONED:
                return STALE
            self._state[slot] = RECEIVED
            self._payloads[slot] = payload
            self._missing -= 1
            self._advance()
            return ACCEPTED
        if seq - self._next >= <uint64_t>self._capacity:
            self._force_base(seq - <uint64_t>self._capacity + 1)
        due = now + self._base_interval()
        s = self._top
        while s < seq:
            slot = s & self._mask
            self._state[slot] = MISSING
            self._retries[slot] = 0
            self._nak_at[slot] = due
            self._missing += 1
            s += 1
        slot = seq & self._mask
        self._state[slot] = RECEIVED
        self._payloads[slot] = payload
        self._top = seq + 1
        self._seen = True
        self._advance()
        return ACCEPTED

    cpdef list due_naks(self, double now):
        """The gaps to NAK at ``now``, as inclusive ``(first, last)`` ranges, ascending.

        Reschedules each one (doubling its interval) and abandons those that
        have used up their retries; call :meth:`pop_abandoned` afterwards.
        """
        cdef list ranges = []
        if self._missing == 0:
            return ranges
        cdef uint64_t s = self._next
        cdef uint64_t slot
        cdef double interval
        cdef int retries
        cdef object last_range = None
        while s < self._top:
            slot = s & self._mask
            if self._state[slot] == MISSING and self._nak_at[slot] <= now:
                retries = self._retries[slot]
                if self._max_retries >= 0 and retries >= self._max_retries:
                    self._state[slot] = ABANDONED
                    self._missing -= 1
                    self._abandon(s, s)
                else:
                    if retries < 60:
                        retries += 1
                    self._retries[slot] = retries
                    interval = self._base_interval() * (<double>(<uint64_t>1 << retries))
                    if interval > self._max_interval:
                        interval = self._max_interval
                    self._nak_at[slot] = now + interval
                    if last_range is not None and last_range[1] + 1 == s:
                        last_range[1] = s
                    else:
                        last_range = [s, s]
                        ranges.append(last_range)
            s += 1
        self._advance()
        return [(r[0], r[1]) for r in ranges]

    cpdef Py_ssize_t give_up(self, uint64_t first, uint64_t last) except -1:
        """Abandon the missing numbers in ``first..last`` at once (the sender said GONE).

        Returns how many were abandoned; they are reported by :meth:`pop_abandoned`.
        """
        if last < first or first >= self._top or last < self._next:
            return 0
        cdef uint64_t s = first if first > self._next else self._next
        cdef uint64_t stop = last if last < self._top - 1 else self._top - 1
        cdef uint64_t slot
        cdef Py_ssize_t count = 0
        if s > stop:
            return 0
        cdef uint64_t steps = stop - s + 1   # at most capacity
        while steps:
            slot = s & self._mask
            if self._state[slot] == MISSING:
                self._state[slot] = ABANDONED
                self._missing -= 1
                self._abandon(s, s)
                count += 1
            s += 1
            steps -= 1
        self._advance()
        return count

    cpdef object next_deadline(self):
        """The earliest time a NAK falls due, or None when nothing is missing."""
        if self._missing == 0:
            return None
        cdef uint64_t s = self._next
        cdef uint64_t slot
        cdef double best = 0.0
        cdef bint found = False
        while s < self._top:
            slot = s & self._mask
            if self._state[slot] == MISSING and (not found or self._nak_at[slot] < best):
                best = self._nak_at[slot]
                found = True
            s += 1
        return best if found else None

    cpdef list pop_ready(self):
        """Payloads now deliverable in order (oldest first); each is returned once."""
        cdef list ready = self._ready
        self._ready = []
        return ready

    cpdef list pop_abandoned(self):
        """Ranges ``(first, last)`` given up since the last call; each is returned once."""
        cdef list gone = [(r[0], r[1]) for r in self._abandoned]
        self._abandoned = []
        return gone
