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


class RawMode:
    """``with RawMode(fd, other_fds):`` puts the terminal in raw mode and the fds in
    non-blocking mode (for gevent), and always puts both back, however the block
    ends. A non-terminal ``fd`` keeps its line discipline."""

    def __init__(self, fd: int, other_fds: tuple = ()):
        self.fd = fd
        self.fds = (fd, *other_fds)
        self.saved = None
        self.blocking: dict[int, bool] = {}

    def __enter__(self):
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        for fd in self.fds:
            self.blocking[fd] = os.get_blocking(fd)
            os.set_blocking(fd, False)
        return self

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
