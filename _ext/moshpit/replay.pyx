# cython: language_level=3, boundscheck=False, wraparound=False
"""Anti-replay sliding window over 64-bit sequence numbers (RFC 6479, WireGuard).

A ring of 64-bit words holds one bit per recent sequence number. ``check`` is
cheap and runs before any cryptography; ``commit`` runs only once the datagram
has been authenticated, so forged datagrams can never move the window.

>>> w = ReplayWindow()
>>> w.check(5), w.commit(5), w.check(5)
(0, 0, 1)
>>> w.commit(5000), w.check(5), w.check(4999)
(0, 2, 0)
>>> w.check(5000 + w.max_ahead + 1)
3
"""

from cpython cimport array
from libc.stdint cimport uint64_t


from moshpit.errors import LocalProtocolError

# Verdicts, as returned by check() and commit().
VERDICT_FRESH = FRESH
VERDICT_DUPLICATE = DUPLICATE
VERDICT_TOO_OLD = TOO_OLD
VERDICT_TOO_FAR_AHEAD = TOO_FAR_AHEAD

DEFAULT_BITS = 2048
DEFAULT_MAX_AHEAD = 1 << 20


cdef class ReplayWindow:
    """Accepts each sequence number at most once, within a window behind the newest.

    ``bits`` is the bitmap size (a power of two, at least 128); the window is
    ``bits - 64`` numbers, since the word holding the newest number is only
    partly behind it. A number more than ``max_ahead`` past the newest is
    refused as absurd. Before anything is committed the newest is taken as 0.
    """

    def __cinit__(self, Py_ssize_t bits=DEFAULT_BITS, uint64_t max_ahead=DEFAULT_MAX_AHEAD):
        if bits < 128 or bits & (bits - 1):
            raise LocalProtocolError(f"bits must be a power of two >= 128, not {bits}")
        if max_ahead < 1:
            raise LocalProtocolError("max_ahead must be at least 1")
        self._words = bits // 64
        self._window = <uint64_t>(bits - 64)
        self._max_ahead = max_ahead
        self._highest = 0
        self._any = False
        # A typed memoryview over an array the window owns; every index below is masked
        # by ``_words - 1``, and the bitmap holds exactly ``_words`` words (checked here
        # once), so the unchecked indexing cannot leave it.
        self._bitmap = array.clone(array.array("Q"), self._words, zero=True)
        if self._bitmap.shape[0] != self._words:
            raise LocalProtocolError("replay bitmap of the wrong size")

    @property
    def window(self):
        """How far behind the newest number a number may still be accepted."""
        return self._window

    @property
    def max_ahead(self):
        return self._max_ahead

    @property
    def highest(self):
        """The newest committed number, or None before the first commit."""
        return self._highest if self._any else None

    cpdef int check(self, uint64_t seq) noexcept:
        """Verdict for ``seq`` without changing anything: 0 fresh, 1 duplicate, 2 too old, 3 too far ahead."""
        if seq > self._highest:
            if seq - self._highest > self._max_ahead:
                return TOO_FAR_AHEAD
            return FRESH
        if self._highest - seq >= self._window:
            return TOO_OLD
        if self._bitmap[(seq >> 6) & (self._words - 1)] & (<uint64_t>1 << (seq & 63)):
            return DUPLICATE
        return FRESH

    cpdef int commit(self, uint64_t seq) noexcept:
        """Record ``seq`` as received if ``check`` allows it; return the verdict."""
        cdef int verdict = self.check(seq)
        if verdict != FRESH:
            return verdict
        cdef uint64_t current, target, steps, i
        cdef Py_ssize_t mask = self._words - 1
        if seq > self._highest:
            current = self._highest >> 6
            target = seq >> 6
            steps = target - current
            if steps > <uint64_t>self._words:
                steps = self._words
            i = 1
            while i <= steps:
                self._bitmap[(current + i) & mask] = 0
                i += 1
            self._highest = seq
        self._bitmap[(seq >> 6) & mask] |= <uint64_t>1 << (seq & 63)
        self._any = True
        return FRESH
