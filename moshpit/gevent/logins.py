"""Login records, as sshd writes them: utmp (who is on now) and wtmp (last).

A session's shell is a login: when mps runs as root, ``who`` should list it and
``last`` should remember it. glibc's ``pututxline`` and ``updwtmpx`` do the
writing; this module only fills in ``struct utmpx`` (Linux layout). Where the
platform has no such C library, or the files are absent, nothing is written:
records are a courtesy to administrators, never a reason to refuse a login.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import socket
import struct
import time

log = logging.getLogger("moshpit.server")

USER_PROCESS, DEAD_PROCESS = 7, 8
UTMP, WTMP = "/var/run/utmp", "/var/log/wtmp"


class _ExitStatus(ctypes.Structure):
    _fields_ = [("e_termination", ctypes.c_short), ("e_exit", ctypes.c_short)]


class _TimeVal(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int32), ("tv_usec", ctypes.c_int32)]


class Utmpx(ctypes.Structure):
    """glibc's ``struct utmpx`` on Linux (384 bytes; 32-bit times on every ABI)."""
    _fields_ = [("ut_type", ctypes.c_short), ("ut_pid", ctypes.c_int),
                ("ut_line", ctypes.c_char * 32), ("ut_id", ctypes.c_char * 4),
                ("ut_user", ctypes.c_char * 32), ("ut_host", ctypes.c_char * 256),
                ("ut_exit", _ExitStatus), ("ut_session", ctypes.c_int32), ("ut_tv", _TimeVal),
                ("ut_addr_v6", ctypes.c_int32 * 4), ("reserved", ctypes.c_char * 20)]


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    if not all(hasattr(libc, f) for f in ("setutxent", "pututxline", "endutxent", "updwtmpx", "utmpxname")):
        return None
    libc.pututxline.restype = ctypes.c_void_p
    return libc


_LIBC = _libc() if ctypes.sizeof(Utmpx) == 384 else None


TIOCGPTN = 0x80045430       # Linux: the number of the pts behind a pty master


def pty_line(master_fd: int) -> str | None:
    """``pts/3`` for a PTY master, as the records name terminals (None if unknown)."""
    try:
        number, = struct.unpack("I", fcntl.ioctl(master_fd, TIOCGPTN, b"\0" * 4))
    except OSError:
        return None
    return f"pts/{number}"


def _record(kind: int, pid: int, line: str, user: str, host: str) -> Utmpx:
    entry = Utmpx()
    entry.ut_type = kind
    entry.ut_pid = pid
    entry.ut_line = line.encode()[:32]
    entry.ut_id = line.encode()[-4:]                 # as sshd and login: the line's tail
    entry.ut_user = user.encode()[:32]
    entry.ut_host = host.encode()[:256]
    now = time.time()
    entry.ut_tv.tv_sec, entry.ut_tv.tv_usec = int(now), int(now % 1 * 1e6)
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%")[0])
        ctypes.memmove(ctypes.addressof(entry.ut_addr_v6), packed, len(packed))
    except OSError:
        pass
    return entry


class LoginRecords:
    """Writes a session's login and logout; ``utmp``/``wtmp`` name other files (tests)."""

    def __init__(self, utmp: str = UTMP, wtmp: str = WTMP):
        self.utmp, self.wtmp = utmp, wtmp

    def login(self, pid: int, line: str, user: str, host: str) -> None:
        self._write(_record(USER_PROCESS, pid, line, user, host))

    def logout(self, pid: int, line: str) -> None:
        self._write(_record(DEAD_PROCESS, pid, line, "", ""))

    def _write(self, entry: Utmpx) -> None:
        if _LIBC is None:
            return
        _LIBC.utmpxname(self.utmp.encode())
        _LIBC.setutxent()
        if not _LIBC.pututxline(ctypes.byref(entry)):
            log.debug("utmp not written: %s", os.strerror(ctypes.get_errno()))
        _LIBC.endutxent()
        if os.path.exists(self.wtmp):
            _LIBC.updwtmpx(self.wtmp.encode(), ctypes.byref(entry))
