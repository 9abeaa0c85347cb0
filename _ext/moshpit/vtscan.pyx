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


cdef inline bint _plain(Py_UCS4 c) noexcept:
    return (0x20 <= c <= 0x7E) or c == 10 or c == 13


cdef inline Py_ssize_t _sgr_end(str text, Py_ssize_t i, Py_ssize_t n) noexcept:
    """If an SGR sequence starts at ``i``, the index after it; else -1."""
    cdef Py_UCS4 c
    if i + 2 >= n or text[i] != 27 or text[i + 1] != 91:
        return -1
    i += 2
    while i < n:
        c = text[i]
        if c == 109:                    # 'm'
            return i + 1
        if not (48 <= c <= 59):         # digits, ':' and ';'
            return -1
        i += 1
    return -1


def plain_run(str text, Py_ssize_t pos):
    """``(start, end)`` of the first run of plain text at or after ``pos``
    (``start == end == len(text)`` if there is none). A run never starts or
    ends inside an SGR sequence."""
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t i = pos, j
    while i < n and not _plain(text[i]) and _sgr_end(text, i, n) < 0:
        i += 1
    cdef Py_ssize_t start = i
    while i < n:
        if _plain(text[i]):
            i += 1
            continue
        j = _sgr_end(text, i, n)
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
    # A ring of the newest ``rows`` scroll points: (cut, x) -- y is always the bottom row.
    cdef list cuts = [0] * rows
    cdef list xs = [0] * rows
    if rows < 1 or cols < 1 or y >= rows:
        return start, x, y
    i = start
    while i < end:
        c = text[i]
        if c == 27:                     # an SGR sequence: no cursor movement
            i = _sgr_end(text, i, end)
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
