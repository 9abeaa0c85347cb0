# cython: language_level=3
"""Cursor arithmetic over plain text, for the screen model's fast path.

Plain text here means printable ASCII, CR and LF, read with the parser in its
ground state, full-screen scrolling and autowrap on. Over such a run the
cursor's path is pure arithmetic, so we can find the last point after which at
least ``rows - 1`` more scrolls happen: everything drawn before it is scrolled
off the screen before the run ends, and need never be drawn at all.

>>> plain_run("ab\\x1b[1mcd", 0), plain_run("ab\\x1b[1mcd", 2)
((0, 2), (3, 8))
>>> skip_point("1\\n2\\n3\\n4\\n5\\n", 0, 10, 0, 0, 80, 2)   # 2 rows: cut after the 3rd of 4 scrolls
(8, 4, 1)
"""


cdef inline bint _plain(Py_UCS4 c) noexcept:
    return (0x20 <= c <= 0x7E) or c == 10 or c == 13


def plain_run(str text, Py_ssize_t pos):
    """``(start, end)`` of the first run of plain characters at or after ``pos``
    (``start == end == len(text)`` if there is none)."""
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t i = pos
    while i < n and not _plain(text[i]):
        i += 1
    cdef Py_ssize_t start = i
    while i < n and _plain(text[i]):
        i += 1
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
    for i in range(start, end):
        c = text[i]
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
    if total < rows:
        return start, -1, -1
    # The scroll that leaves exactly rows - 1 more after it.
    k = (total - 1 - need) % rows
    return cuts[k], xs[k], rows - 1
