from libc.stdint cimport uint64_t

cdef class RetransmitBuffer:
    cdef uint64_t *_seqs
    cdef list _items
    cdef Py_ssize_t _capacity
    cdef uint64_t _mask
    cdef Py_ssize_t _count
    cdef uint64_t _newest
    cdef uint64_t _low
    cdef bint _any

    cdef uint64_t _oldest_possible(self) noexcept
    cdef void _clear_slot(self, uint64_t slot) noexcept
    cpdef store(self, uint64_t seq, object datagram)
    cpdef object lookup(self, uint64_t seq)
    cpdef bint discard(self, uint64_t seq)
    cpdef Py_ssize_t discard_through(self, uint64_t seq)
