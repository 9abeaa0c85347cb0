# cython: language_level=3
"""Cursor arithmetic over plain text, for the screen model's fast path.

Plain text here means printable ASCII, CR, LF and SGR sequences (``ESC [ ... m``,
which change colours but never move the cursor), read with the parser in its
ground state, full-screen scrolling and autowrap on. Over such a run the
cursor's path is pure arithmetic, so we can find the last point after which at
least ``rows - 1`` more scrolls happen: everything drawn before it is scrolled
off the screen before the run ends, and need never be drawn at all.

>>> plain_run("ab\\x1b[1mcd\\x1b[Hx", 0), plain_run("ab\\x1b[1mcd\\x1b[Hx", 8)
((0, 8), (9, 12))
>>> skip_point("1\\n2\\n3\\n4\\n5\\n", 0, 10, 0, 0, 80, 2)   # 2 rows: cut after the 3rd of 4 scrolls
(8, 4, 1)
"""


from cpython.unicode cimport PyUnicode_DATA, PyUnicode_KIND, PyUnicode_READ
from libc.stdlib cimport free, malloc


cdef inline bint _plain(Py_UCS4 c) noexcept:
    return (0x20 <= c <= 0x7E) or c == 10 or c == 13


# The scans read the string's own storage (its kind and data, fixed for the life of
# a str), never one Python-level index at a time: every index is below ``n`` (or
# ``end``), which the callers' arguments are checked against first.

cdef inline Py_ssize_t _sgr_end(int kind, const void *data, Py_ssize_t i, Py_ssize_t n) noexcept:
    """If an SGR sequence starts at ``i``, the index after it; else -1."""
    cdef Py_UCS4 c
    if i + 2 >= n or PyUnicode_READ(kind, <void *>data, i) != 27 \
            or PyUnicode_READ(kind, <void *>data, i + 1) != 91:
        return -1
    i += 2
    while i < n:
        c = PyUnicode_READ(kind, <void *>data, i)
        if c == 109:                    # 'm'
            return i + 1
        if not (48 <= c <= 59):         # digits, ':' and ';'
            return -1
        i += 1
    return -1


cdef inline Py_ssize_t _checked(str text, Py_ssize_t i) except -1:
    if i < 0 or i > len(text):
        raise IndexError(f"position {i} outside a text of {len(text)}")
    return i


def plain_run(str text, Py_ssize_t pos):
    """``(start, end)`` of the first run of plain text at or after ``pos``
    (``start == end == len(text)`` if there is none). A run never starts or
    ends inside an SGR sequence."""
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t i = _checked(text, pos), j
    cdef int kind = PyUnicode_KIND(text)
    cdef const void *data = PyUnicode_DATA(text)
    cdef const unsigned char *narrow = <const unsigned char *>data
    while i < n and not _plain(PyUnicode_READ(kind, <void *>data, i)) and _sgr_end(kind, data, i, n) < 0:
        i += 1
    cdef Py_ssize_t start = i
    while i < n:
        if kind == 1:                   # the usual case (ASCII): a tight loop over bytes
            while i < n and ((0x20 <= narrow[i] <= 0x7E) or narrow[i] == 10 or narrow[i] == 13):
                i += 1
            if i >= n:
                break
        elif _plain(PyUnicode_READ(kind, <void *>data, i)):
            i += 1
            continue
        j = _sgr_end(kind, data, i, n)
        if j < 0:
            break
        i = j
    return start, i


def skip_point(str text, Py_ssize_t start, Py_ssize_t end, Py_ssize_t x, Py_ssize_t y,
               Py_ssize_t cols, Py_ssize_t rows):
    """Where drawing may begin in ``text[start:end]`` (all plain) without changing the
    final screen: ``(cut, x, y)`` with the cursor as it stands at ``cut``, or
    ``(start, x, y)`` when too little scrolls for anything to be skipped."""
    cdef Py_ssize_t i, k, total = 0, need = rows - 1
    cdef Py_UCS4 c
    if rows < 1 or cols < 1 or y >= rows:
        return start, x, y
    _checked(text, start)
    _checked(text, end)
    cdef int kind = PyUnicode_KIND(text)
    cdef const void *data = PyUnicode_DATA(text)
    # A ring of the newest ``rows`` scroll points: (cut, x) -- y is always the bottom row.
    cdef Py_ssize_t *cuts = <Py_ssize_t *>malloc(2 * rows * sizeof(Py_ssize_t))
    if cuts == NULL:
        raise MemoryError()
    cdef Py_ssize_t *xs = cuts + rows
    try:
        i = start
        while i < end:
            c = PyUnicode_READ(kind, <void *>data, i)
            if c == 27:                     # an SGR sequence: no cursor movement
                i = _sgr_end(kind, data, i, end)
                if i < 0:
                    raise ValueError("skip_point takes plain text only (see plain_run)")
                continue
            if c == 10:
                if y == rows - 1:
                    k = total % rows
                    cuts[k] = i + 1
                    xs[k] = x
                    total += 1
                else:
                    y += 1
            elif c == 13:
                x = 0
            else:
                if x >= cols:
                    x = 0
                    if y == rows - 1:
                        k = total % rows
                        cuts[k] = i
                        xs[k] = 0
                        total += 1
                    else:
                        y += 1
                x += 1
            i += 1
        if total < rows:
            return start, -1, -1
        # The scroll that leaves exactly rows - 1 more after it.
        k = (total - 1 - need) % rows
        return cuts[k], xs[k], rows - 1
    finally:
        free(cuts)
