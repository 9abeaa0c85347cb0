from libc.stdint cimport uint8_t, uint64_t

cdef enum IngestVerdict:
    ACCEPTED = 0
    DUPLICATE = 1
    STALE = 2


cdef class SeqTracker:
    cdef Py_ssize_t _capacity
    cdef uint64_t _mask
    cdef uint8_t[::1] _state
    cdef uint8_t[::1] _retries
    cdef double[::1] _nak_at
    cdef list _payloads
    cdef list _ready
    cdef list _abandoned
    cdef uint64_t _next
    cdef uint64_t _top
    cdef Py_ssize_t _missing
    cdef double _floor
    cdef double _max_interval
    cdef int _max_retries
    cdef bint _seen
    cdef public double rto

    cdef double _base_interval(self) noexcept
    cdef void _abandon(self, uint64_t first, uint64_t last)
    cdef void _advance(self)
    cdef void _force_base(self, uint64_t new_base)

    cpdef int ingest(self, uint64_t seq, object payload, double now) except -1
    cpdef list due_naks(self, double now)
    cpdef Py_ssize_t give_up(self, uint64_t first, uint64_t last) except -1
    cpdef object next_deadline(self)
    cpdef list pop_ready(self)
    cpdef list pop_abandoned(self)
