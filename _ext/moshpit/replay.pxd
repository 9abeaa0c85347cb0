from libc.stdint cimport uint64_t

cdef enum ReplayVerdict:
    FRESH = 0
    DUPLICATE = 1
    TOO_OLD = 2
    TOO_FAR_AHEAD = 3


cdef class ReplayWindow:
    cdef uint64_t[::1] _bitmap
    cdef Py_ssize_t _words
    cdef uint64_t _window
    cdef uint64_t _max_ahead
    cdef uint64_t _highest
    cdef bint _any

    cpdef int check(self, uint64_t seq) noexcept
    cpdef int commit(self, uint64_t seq) noexcept
