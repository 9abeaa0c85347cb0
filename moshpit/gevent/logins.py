"""Login records, as sshd and mosh-server write them: utmp (who is on now) and wtmp (last).

A session's shell is a login: ``who`` should list it and ``last`` should remember
it. Two writers, one interface (``login``, ``logout``):

- ``LoginRecords``, for mps running as root: glibc's ``pututxline`` and
  ``updwtmpx`` do the writing, this module fills in ``struct utmpx`` (Linux layout);
- ``UtempterRecords``, for a server running as its user (``mp --ssh``'s, or mps
  unprivileged), who may not write those files: libutempter's setgid helper
  writes them for the PTY we hand it, as mosh-server does.

Where the platform has neither, or the files are absent, nothing is written:
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

    def login(self, pid: int, line: str, user: str, host: str, *, master_fd: int | None = None) -> None:
        self._write(_record(USER_PROCESS, pid, line, user, host))

    def logout(self, pid: int, line: str, *, master_fd: int | None = None) -> None:
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


class UtempterRecords:
    """Records through libutempter (``utempter_add_record(master_fd, host)``): its helper
    is setgid utmp, checks that the PTY is the caller's, and writes utmp and wtmp for
    it. It needs the PTY's master, so a shell whose master we do not hold (a session
    process's, from mps's listener) is not recorded this way."""

    def __init__(self, library):
        self._lib = library

    @classmethod
    def load(cls) -> UtempterRecords | None:
        """None when libutempter is not installed (the helper missing shows later, as
        records not written)."""
        name = ctypes.util.find_library("utempter") or "libutempter.so.0"
        try:
            library = ctypes.CDLL(name)
            add, remove = library.utempter_add_record, library.utempter_remove_record
        except (OSError, AttributeError):
            return None
        add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p], ctypes.c_int
        remove.argtypes, remove.restype = [ctypes.c_int], ctypes.c_int
        return cls(library)

    def login(self, pid: int, line: str, user: str, host: str, *, master_fd: int | None = None) -> None:
        if master_fd is not None:          # the helper's pid in brackets, as mosh: whose session
            if not self._lib.utempter_add_record(master_fd, f"{host} via mp [{os.getpid()}]".encode()[:255]):
                log.debug("utmp not written for %s (libutempter refused)", line)

    def logout(self, pid: int, line: str, *, master_fd: int | None = None) -> None:
        if master_fd is not None:
            self._lib.utempter_remove_record(master_fd)


def login_records_for(*, single_session: bool):
    """The writer a server of ours should use: root's own records for mps as root (wtmp
    beside utmp, the client's address in ``ut_addr``, as sshd); libutempter's helper for
    a one-session server (mosh-server's way) and for mps run by a user; else none."""
    if os.getuid() == 0 and not single_session:
        return LoginRecords()
    helper = UtempterRecords.load()
    if helper is not None:
        return helper
    return LoginRecords() if os.getuid() == 0 else None
