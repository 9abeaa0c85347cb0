# cython: language_level=3
"""The sender's ring of recently sent datagrams, for NAK-driven retransmission.

Slot ``seq % capacity`` holds the datagram sent with ``seq``, so storing,
finding and evicting are O(1) with no allocation beyond the datagram object
itself. Only the newest ``capacity`` sequence numbers can be held; anything
older is gone, and a NAK for it must be answered with GONE so the receiver
resynchronises instead of waiting.

>>> ring = RetransmitBuffer(4)
>>> for seq in range(10, 16):
...     ring.store(seq, b"dgram %d" % seq)
>>> ring.lookup(15), ring.lookup(11), len(ring)
(b'dgram 15', None, 4)
>>> ring.discard_through(13), sorted(ring)
(2, [14, 15])
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport uint64_t

from moshpit.errors import LocalProtocolError

DEFAULT_CAPACITY = 512


cdef class RetransmitBuffer:
    """Holds the datagrams of the newest ``capacity`` sequence numbers (a power of two)."""

    def __cinit__(self, Py_ssize_t capacity=DEFAULT_CAPACITY):
        if capacity < 1 or capacity & (capacity - 1):
            raise LocalProtocolError(f"capacity must be a power of two, not {capacity}")
        self._capacity = capacity
        self._mask = <uint64_t>(capacity - 1)
        self._items = [None] * capacity
        self._seqs = <uint64_t *>PyMem_Calloc(capacity, sizeof(uint64_t))
        if self._seqs == NULL:
            raise MemoryError()
        self._count = 0
        self._newest = 0
        self._low = 0
        self._any = False

    def __dealloc__(self):
        PyMem_Free(self._seqs)

    @property
    def capacity(self):
        return self._capacity

    @property
    def newest(self):
        """The newest sequence number stored, or None if nothing was ever stored."""
        return self._newest if self._any else None

    def __len__(self):
        return self._count

    def __contains__(self, seq):
        return self.lookup(seq) is not None

    def __iter__(self):
        """The sequence numbers held, oldest first."""
        if not self._any:
            return iter(())
        cdef uint64_t start = self._oldest_possible()
        return iter([s for s in range(start, <object>self._newest + 1) if self.lookup(s) is not None])

    cdef uint64_t _oldest_possible(self) noexcept:
        cdef uint64_t floor = 0
        if self._newest >= <uint64_t>self._capacity:
            floor = self._newest - <uint64_t>self._capacity + 1
        return self._low if self._low > floor else floor

    cdef void _clear_slot(self, uint64_t slot) noexcept:
        if self._items[slot] is not None:
            self._items[slot] = None
            self._count -= 1

    cpdef store(self, uint64_t seq, object datagram):
        """Keep ``datagram`` under ``seq``, evicting what falls out of the window.

        Sequence numbers must strictly increase; ``datagram`` must not be None.
        """
        if datagram is None:
            raise LocalProtocolError("cannot store None")
        if self._any and seq <= self._newest:
            raise LocalProtocolError(f"sequence {seq} not after the newest stored {self._newest}")
        cdef uint64_t s, stop
        if self._any:
            # Numbers skipped between the newest and seq were never stored; their
            # slots may still hold datagrams that now fall out of the window.
            stop = seq
            s = self._newest + 1
            if stop - s > <uint64_t>self._capacity:
                s = stop - <uint64_t>self._capacity
            while s < stop:
                self._clear_slot(s & self._mask)
                s += 1
        cdef uint64_t slot = seq & self._mask
        self._clear_slot(slot)
        self._items[slot] = datagram
        self._seqs[slot] = seq
        self._count += 1
        self._newest = seq
        self._any = True

    cpdef object lookup(self, uint64_t seq):
        """The datagram stored under ``seq``, or None if it was never stored or is gone."""
        if not self._any or seq > self._newest or seq < self._oldest_possible():
            return None
        cdef uint64_t slot = seq & self._mask
        if self._seqs[slot] != seq:
            return None
        return self._items[slot]

    cpdef bint discard(self, uint64_t seq):
        """Forget ``seq`` (for example once it is acknowledged); return whether it was held."""
        if self.lookup(seq) is None:
            return False
        self._clear_slot(seq & self._mask)
        return True

    cpdef Py_ssize_t discard_through(self, uint64_t seq):
        """Forget everything up to and including ``seq`` (a cumulative ACK); return how many.

        Amortised O(1) per stored datagram: each number is walked past once.
        """
        if not self._any:
            return 0
        cdef uint64_t s = self._oldest_possible()
        cdef uint64_t stop = seq if seq < self._newest else self._newest
        cdef Py_ssize_t removed = 0
        cdef uint64_t slot, steps
        if s > stop:
            return 0
        steps = stop - s + 1  # at most capacity; counted so that 2**64 - 1 cannot wrap
        while steps:
            slot = s & self._mask
            if self._seqs[slot] == s and self._items[slot] is not None:
                self._items[slot] = None
                self._count -= 1
                removed += 1
            s += 1
            steps -= 1
        self._low = s if s > stop else stop
        return removed
