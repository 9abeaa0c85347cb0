"""The system's utmp, for tests of what ``who`` sees. A container may have none: it is
made for the test (root, group utmp, as a distribution's own) and taken away after;
one already there is only read."""

from __future__ import annotations

import grp
import os
import struct
from contextlib import contextmanager
from pathlib import Path

from moshpit.gevent.logins import Utmpx

UTMP = Path("/var/run/utmp")
WTMP = Path("/var/log/wtmp")


def records(path: Path = UTMP) -> list[Utmpx]:
    data = path.read_bytes()
    size = struct.calcsize("384s")
    return [Utmpx.from_buffer_copy(data[i:i + size]) for i in range(0, len(data) - size + 1, size)]


def entries_for(line: str, path: Path = UTMP) -> list[Utmpx]:
    return [r for r in records(path) if r.ut_line == line.encode()]


@contextmanager
def system_utmp():
    made = not UTMP.exists()
    if made:
        UTMP.touch(mode=0o664)
        try:
            os.chown(UTMP, 0, grp.getgrnam("utmp").gr_gid)
        except KeyError:
            pass
        UTMP.chmod(0o664)
    try:
        yield UTMP
    finally:
        if made:
            UTMP.unlink(missing_ok=True)
