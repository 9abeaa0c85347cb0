# cython: language_level=3
"""The per-datagram loops of packet protection, over a run of datagrams a call.

``moshpit.crypto`` holds the keys, the primitives and the policy; these loops only
run them, one run per call, without the interpreter's dispatch between one step and
the next (measured: most of what sealing and opening cost beyond the primitives).
The receive order is the module's: header and size checks, direction, connection,
replay check, HMAC, decrypt, replay commit. Nothing is committed for a datagram
that fails a check, and one that fails never stops the rest of the run.

Every datagram is read through its buffer, under an explicit length check before
any byte of it is touched.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from moshpit.codec cimport C_HEADER_SIZE, C_MAC_SIZE, HEADER_OK, header_problem, load_u32, load_u64, store_header
from moshpit.replay cimport ReplayWindow

from cryptography.exceptions import InvalidTag

from moshpit.codec import decode_header
from moshpit.errors import DatagramDropped, DecodeError, DropReason

cdef enum:
    _PyBUF_READ = 0x100

_VERDICT_REASON = {
    1: DropReason.DUPLICATE,
    2: DropReason.TOO_OLD,
    3: DropReason.TOO_FAR_AHEAD,
}


cdef inline bint _same(const unsigned char *a, const unsigned char *b, Py_ssize_t n) noexcept:
    """Constant-time comparison: every byte is looked at, whatever differs first."""
    cdef unsigned char diff = 0
    cdef Py_ssize_t i
    for i in range(n):
        diff |= a[i] ^ b[i]
    return diff == 0


cdef inline object _view(const unsigned char *p, Py_ssize_t n):
    return PyMemoryView_FromMemory(<char *>p, n, _PyBUF_READ)


def seal_run(encrypt, keyed_mac, int direction, uint32_t conn_id, uint64_t first_seq, list payloads):
    """Seal ``payloads`` under ``first_seq``, ``first_seq + 1``, ...: a list of datagrams.

    ``encrypt`` is the AEAD's ``encrypt(nonce, data, associated_data)``; ``keyed_mac``
    a pre-keyed HMAC-SHA-512 (copied per datagram). The caller has checked the sizes,
    the direction and that the numbers stay within ``MAX_SEQ``."""
    cdef list sealed = []
    cdef unsigned char head[C_HEADER_SIZE]
    cdef uint64_t seq = first_seq
    cdef bytes header, body, tag, datagram
    cdef Py_ssize_t body_size
    cdef char *out
    for payload in payloads:
        store_header(head, direction, conn_id, seq)
        header = PyBytes_FromStringAndSize(<char *>head, C_HEADER_SIZE)
        body = encrypt(header[1:], payload, header)
        mac = keyed_mac.copy()
        mac.update(header)
        mac.update(body)
        tag = mac.digest()
        body_size = len(body)
        if len(tag) < C_MAC_SIZE:
            raise ValueError("the MAC is shorter than the wire's")
        datagram = PyBytes_FromStringAndSize(NULL, C_HEADER_SIZE + body_size + C_MAC_SIZE)
        out = PyBytes_AS_STRING(datagram)
        memcpy(out, head, C_HEADER_SIZE)
        memcpy(out + C_HEADER_SIZE, PyBytes_AS_STRING(body), body_size)
        memcpy(out + C_HEADER_SIZE + body_size, PyBytes_AS_STRING(tag), C_MAC_SIZE)
        sealed.append(datagram)
        seq += 1
    return sealed


cdef object _malformed(datagram):
    """The exact reason, from the codec's own check (the slow path: bad input only)."""
    try:
        decode_header(datagram)
    except DecodeError as exc:
        return DatagramDropped(DropReason.MALFORMED, str(exc))
    except (TypeError, ValueError, BufferError) as exc:
        return DatagramDropped(DropReason.MALFORMED, str(exc))
    return DatagramDropped(DropReason.MALFORMED)


def open_run(decrypt, keyed_mac, ReplayWindow replay, int direction, uint32_t conn_id, datagrams):
    """Open a run of datagrams: for each, ``(seq, payload)`` or the ``DatagramDropped``
    saying why it was refused (returned, not raised)."""
    cdef list results = []
    cdef Py_buffer buf
    cdef const unsigned char *p
    cdef Py_ssize_t n, mac_at
    cdef uint64_t seq
    cdef int verdict
    cdef bytes tag
    for datagram in datagrams:
        try:
            PyObject_GetBuffer(datagram, &buf, PyBUF_SIMPLE)
        except (TypeError, ValueError, BufferError):       # not one contiguous run of bytes
            results.append(_malformed(datagram))
            continue
        try:
            p = <const unsigned char *>buf.buf
            n = buf.len
            if header_problem(p, n) != HEADER_OK:
                results.append(_malformed(datagram))     # the codec says exactly what
                continue
            seq = load_u64(p + 5)
            if (p[0] & 1) != direction:
                results.append(DatagramDropped(DropReason.REFLECTED))
                continue
            if load_u32(p + 1) != conn_id:
                results.append(DatagramDropped(DropReason.WRONG_CONNECTION,
                                               f"connection {load_u32(p + 1):#010x}"))
                continue
            verdict = replay.check(seq)
            if verdict:
                results.append(DatagramDropped(_VERDICT_REASON[verdict], f"sequence {seq}"))
                continue
            mac_at = n - C_MAC_SIZE
            mac = keyed_mac.copy()
            mac.update(_view(p, mac_at))
            tag = mac.digest()
            if len(tag) < C_MAC_SIZE or not _same(<const unsigned char *>PyBytes_AS_STRING(tag),
                                                 p + mac_at, C_MAC_SIZE):
                results.append(DatagramDropped(DropReason.AUTH_FAILED, f"bad MAC on sequence {seq}"))
                continue
            try:
                payload = decrypt(_view(p + 1, C_HEADER_SIZE - 1),
                                  _view(p + C_HEADER_SIZE, mac_at - C_HEADER_SIZE),
                                  _view(p, C_HEADER_SIZE))
            except InvalidTag:
                results.append(DatagramDropped(DropReason.AUTH_FAILED, f"bad AEAD tag on sequence {seq}"))
                continue
            replay.commit(seq)
            results.append((seq, payload))
        finally:
            PyBuffer_Release(&buf)
    return results
