# cython: language_level=3, boundscheck=False, wraparound=False
"""The sender's ring of recently sent datagrams, for NAK-driven retransmission.

Slot ``seq % capacity`` holds the datagram sent with ``seq``, so storing,
finding and evicting are O(1). Only the newest ``capacity`` sequence numbers
can be held; anything older is gone, and a NAK for it must be answered with
GONE so the receiver resynchronises instead of waiting.

The bytes are copied into slabs the ring owns, not kept as objects: a slab is
16 slots of ``slot_size`` bytes (20 kB), made when a datagram first lands in
it and let go (one kept spare) once all its slots are acknowledged. So a bulk
flow allocates once per 16 datagrams, not per datagram, and an idle
connection holds at most one slab and the spare (a full 512-slot ring
preallocated would be 640 kB per session, which a process per session pays in
full once the ring has cycled).

>>> ring = RetransmitBuffer(4)
>>> for seq in range(10, 16):
...     ring.store(seq, b"dgram %d" % seq)
>>> ring.lookup(15), ring.lookup(11), len(ring)
(b'dgram 15', None, 4)
>>> ring.discard_through(13), sorted(ring)
(2, [14, 15])
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint64_t
from libc.string cimport memcpy

from moshpit.errors import LocalProtocolError

DEFAULT_CAPACITY = 512
DEFAULT_SLOT_SIZE = 1280          # codec.MAX_DATAGRAM_SIZE: no bundle is larger
SLAB_SLOTS = 16


cdef class RetransmitBuffer:
    """Holds the datagrams of the newest ``capacity`` sequence numbers (a power of two),
    each at most ``slot_size`` bytes."""

    def __cinit__(self, Py_ssize_t capacity=DEFAULT_CAPACITY, Py_ssize_t slot_size=DEFAULT_SLOT_SIZE):
        if capacity < 1 or capacity & (capacity - 1):
            raise LocalProtocolError(f"capacity must be a power of two, not {capacity}")
        if slot_size < 1:
            raise LocalProtocolError("slot_size must be at least 1")
        self._capacity = capacity
        self._mask = <uint64_t>(capacity - 1)
        self._slot_size = slot_size
        self._slab_slots = SLAB_SLOTS if capacity >= SLAB_SLOTS else capacity
        # Every index below is a slot (a number masked by capacity - 1) or a slab
        # (a slot divided by _slab_slots); the arrays hold exactly that many (checked
        # here once), so the unchecked indexing cannot leave them.
        self._seqs = array.clone(array.array("Q"), capacity, zero=True)
        self._lengths = array.clone(array.array("i"), capacity, zero=False)
        self._lengths[:] = -1
        slabs = capacity // self._slab_slots
        self._slab_live = array.clone(array.array("i"), slabs, zero=True)
        if not (self._seqs.shape[0] == self._lengths.shape[0] == capacity
                and self._slab_live.shape[0] == slabs):
            raise LocalProtocolError("ring arrays of the wrong size")
        self._slabs = [None] * slabs
        self._spare = None
        self._count = 0
        self._newest = 0
        self._low = 0
        self._any = False

    @property
    def slot_size(self):
        return self._slot_size

    @property
    def slabs_held(self):
        """Slabs holding datagrams now (what the ring costs in memory, besides one spare)."""
        return sum(1 for slab in self._slabs if slab is not None)

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

    cdef void _clear_slot(self, uint64_t slot):
        cdef Py_ssize_t slab
        if self._lengths[slot] >= 0:
            self._lengths[slot] = -1
            self._count -= 1
            slab = <Py_ssize_t>(slot // <uint64_t>self._slab_slots)
            self._slab_live[slab] -= 1
            if self._slab_live[slab] == 0:           # all acknowledged: let it go
                if self._spare is None:
                    self._spare = self._slabs[slab]
                self._slabs[slab] = None

    cdef array.array _slab_for(self, Py_ssize_t slab):
        cdef array.array found = self._slabs[slab]
        if found is None:
            if self._spare is not None:
                found, self._spare = self._spare, None
            else:
                found = array.clone(array.array("B"), self._slab_slots * self._slot_size, zero=False)
            self._slabs[slab] = found
        return found

    cpdef store(self, uint64_t seq, const unsigned char[::1] datagram):
        """Keep a copy of ``datagram`` under ``seq``, evicting what falls out of the window.

        Sequence numbers must strictly increase; ``datagram`` must not be None and
        must fit a slot.
        """
        if datagram is None:
            raise LocalProtocolError("cannot store None")
        cdef Py_ssize_t n = datagram.shape[0]
        if n > self._slot_size:
            raise LocalProtocolError(f"{n} bytes do not fit a {self._slot_size}-byte slot")
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
        cdef Py_ssize_t slab = <Py_ssize_t>(slot // <uint64_t>self._slab_slots)
        cdef array.array rows = self._slab_for(slab)       # _slab_slots * _slot_size bytes
        cdef Py_ssize_t at = <Py_ssize_t>(slot % <uint64_t>self._slab_slots) * self._slot_size
        if n:                                        # at + n <= len(rows): n <= slot_size, checked above
            memcpy(rows.data.as_uchars + at, &datagram[0], n)
        self._lengths[slot] = <int32_t>n
        self._slab_live[slab] += 1
        self._seqs[slot] = seq
        self._count += 1
        self._newest = seq
        self._any = True

    cpdef object lookup(self, uint64_t seq):
        """The datagram stored under ``seq``, or None if it was never stored or is gone."""
        if not self._any or seq > self._newest or seq < self._oldest_possible():
            return None
        cdef uint64_t slot = seq & self._mask
        if self._seqs[slot] != seq or self._lengths[slot] < 0:
            return None
        cdef array.array rows = self._slabs[<Py_ssize_t>(slot // <uint64_t>self._slab_slots)]
        cdef Py_ssize_t at = <Py_ssize_t>(slot % <uint64_t>self._slab_slots) * self._slot_size
        return PyBytes_FromStringAndSize(rows.data.as_chars + at, self._lengths[slot])

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
            if self._seqs[slot] == s and self._lengths[slot] >= 0:
                self._clear_slot(slot)
                removed += 1
            s += 1
            steps -= 1
        self._low = s if s > stop else stop
        return removed
