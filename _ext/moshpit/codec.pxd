# Declarations other kernels cimport: wire constants and big-endian helpers.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    C_HEADER_SIZE = 13
    C_FRAME_HEADER_SIZE = 3
    C_VERSION = 1
    C_TAG_SIZE = 16                     # AES-256-GCM-SIV's tag
    C_MAC_SIZE = 32                     # HMAC-SHA-512, truncated
    C_MIN_DATAGRAM = C_HEADER_SIZE + C_TAG_SIZE + C_MAC_SIZE
    C_MAX_DATAGRAM = 1280

# What is wrong with a datagram's size or header (header_problem), 0 if nothing.
cdef enum HeaderProblem:
    HEADER_OK = 0
    TOO_SHORT = 1
    TOO_LONG = 2
    BAD_VERSION = 3
    RESERVED_BITS = 4
    SEQ_TOP_BIT = 5


cdef inline void store_u16(unsigned char *p, uint16_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 8)
    p[1] = <unsigned char>v


cdef inline void store_u32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v


cdef inline void store_u64(unsigned char *p, uint64_t v) noexcept nogil:
    store_u32(p, <uint32_t>(v >> 32))
    store_u32(p + 4, <uint32_t>v)


cdef inline uint16_t load_u16(const unsigned char *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t load_u32(const unsigned char *p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[2] << 8) | p[3])


cdef inline uint64_t load_u64(const unsigned char *p) noexcept nogil:
    return (<uint64_t>load_u32(p) << 32) | load_u32(p + 4)


cpdef Py_ssize_t encode_header(unsigned char[::1] out, int direction,
                               uint32_t conn_id, uint64_t seq) except -1
cpdef bytes header(int direction, uint32_t conn_id, uint64_t seq)
cpdef tuple decode_header(const unsigned char[::1] datagram)
cpdef Py_ssize_t encode_frame(unsigned char[::1] out, Py_ssize_t pos, int frame_type,
                              const unsigned char[::1] body) except -1
cpdef list decode_frames(const unsigned char[::1] payload)


cdef inline void store_header(unsigned char *p, int direction, uint32_t conn_id, uint64_t seq) noexcept nogil:
    """The 13-byte header at ``p``: ``version << 4 | direction``, connection id, sequence number."""
    p[0] = <unsigned char>((C_VERSION << 4) | (direction & 1))
    store_u32(p + 1, conn_id)
    store_u64(p + 5, seq)


cdef inline int header_problem(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """The one rule for a datagram's size and header (``p`` holds ``n`` bytes): a
    ``HeaderProblem``. Nothing is read at ``p`` unless ``n`` is a datagram's size."""
    if n < C_MIN_DATAGRAM:
        return TOO_SHORT
    if n > C_MAX_DATAGRAM:
        return TOO_LONG
    if (p[0] >> 4) != C_VERSION:
        return BAD_VERSION
    if p[0] & 0x0E:
        return RESERVED_BITS
    if p[5] & 0x80:
        return SEQ_TOP_BIT
    return HEADER_OK
