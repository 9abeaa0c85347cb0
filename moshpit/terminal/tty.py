"""The user's local terminal: raw mode that is always restored, and its size."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import tty


def window_size(fd: int, default: tuple[int, int] = (80, 24)) -> tuple[int, int]:
    """(columns, rows) of the terminal on ``fd``, or ``default`` if it is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return default
    return (cols or default[0], rows or default[1])


# What a remote program may have switched on in the user's terminal and must not outlive
# the session: attributes, a hidden cursor, application cursor keys and keypad, mouse
# reporting, bracketed paste.
SANE_MODES = ("\x1b[0m\x1b[?25h\x1b[?1l\x1b>"
              "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l")


def status_bar(text: str, insert: bool = False) -> str:
    """``text`` in reverse video on the top row, the cursor left where it was. ``insert``:
    on a row of its own, pushed in above the screen, for a client that cannot redraw
    the row it would cover (reliable mode: that row may yet scroll into the scrollback,
    and must be there as it was). ``REMOVE_STATUS_BAR`` takes such a row out again."""
    return f"\x1b7\x1b[1;1H{INSERT_LINE if insert else ''}\x1b[0;7m{text}\x1b[K\x1b[0m\x1b8"


INSERT_LINE = "\x1b[L"
REMOVE_STATUS_BAR = "\x1b7\x1b[1;1H\x1b[M\x1b8"


class RawMode:
    """``with RawMode(fd, other_fds):`` puts the terminal in raw mode and the fds in
    non-blocking mode (for gevent), and always puts both back, however the block
    ends. ``restore()`` and ``apply()`` give the terminal back and take it again
    around a suspend: the shell resets both while we are stopped. A non-terminal
    ``fd`` keeps its line discipline."""

    def __init__(self, fd: int, other_fds: tuple = ()):
        self.fd = fd
        self.fds = (fd, *other_fds)
        self.saved = None
        self.blocking: dict[int, bool] = {}

    def __enter__(self):
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
        self.blocking = {fd: os.get_blocking(fd) for fd in self.fds}
        self.apply()
        return self

    def apply(self) -> None:
        if self.saved is not None:
            tty.setraw(self.fd, termios.TCSANOW)
        for fd in self.fds:
            os.set_blocking(fd, False)

    def restore(self) -> None:
        for fd, blocking in self.blocking.items():
            try:
                os.set_blocking(fd, blocking)
            except OSError:
                pass
        if self.saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except termios.error:
                pass

    def __exit__(self, *exc):
        self.restore()
        return False
