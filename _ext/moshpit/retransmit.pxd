from cpython cimport array
from libc.stdint cimport int32_t, uint64_t

cdef class RetransmitBuffer:
    cdef uint64_t[::1] _seqs
    cdef int32_t[::1] _lengths          # bytes held per slot; -1: empty
    cdef int32_t[::1] _slab_live        # slots in use per slab
    cdef list _slabs                    # per slab: an array of _slab_slots * _slot_size bytes, or None
    cdef object _spare
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _slot_size
    cdef Py_ssize_t _slab_slots
    cdef uint64_t _mask
    cdef Py_ssize_t _count
    cdef uint64_t _newest
    cdef uint64_t _low
    cdef bint _any

    cdef uint64_t _oldest_possible(self) noexcept
    cdef void _clear_slot(self, uint64_t slot)
    cdef array.array _slab_for(self, Py_ssize_t slab)
    cpdef store(self, uint64_t seq, const unsigned char[::1] datagram)
    cpdef object lookup(self, uint64_t seq)
    cpdef bint discard(self, uint64_t seq)
    cpdef Py_ssize_t discard_through(self, uint64_t seq)
