"""libutempter's helper writing a PTY's login record, read back the way ``who`` reads it.
(root's own records, written by mps itself: test_gevent_server.py.)"""

from __future__ import annotations

import os
import subprocess

import pytest

import utmp
from moshpit.gevent.logins import DEAD_PROCESS, USER_PROCESS, UtempterRecords

HELPER = UtempterRecords.load()
pytestmark = pytest.mark.skipif(HELPER is None, reason="libutempter is not installed")


def test_utempter_records_a_pty_for_who_and_last_and_takes_it_back(system_utmp):
    master, slave = os.openpty()
    line = os.ttyname(slave).removeprefix("/dev/")
    wtmp_before = len(utmp.records(utmp.WTMP)) if utmp.WTMP.exists() else None
    try:
        HELPER.login(0, line, "root", "192.0.2.7", master_fd=master)
        now, = [r for r in utmp.entries_for(line) if r.ut_type == USER_PROCESS]
        assert now.ut_host == f"192.0.2.7 via mp [{os.getpid()}]".encode()
        assert now.ut_user == b"root"                 # the helper's caller, not what we said
        who = subprocess.run(["who"], capture_output=True, text=True).stdout
        assert any(f" {line} " in row and "192.0.2.7 via mp" in row for row in who.splitlines())
        HELPER.logout(0, line, master_fd=master)
        assert [r.ut_type for r in utmp.entries_for(line)] == [DEAD_PROCESS]
        if wtmp_before is not None:                   # and last remembers both
            added = utmp.records(utmp.WTMP)[wtmp_before:]
            assert [(r.ut_type, r.ut_line) for r in added if r.ut_line == line.encode()] == \
                [(USER_PROCESS, line.encode()), (DEAD_PROCESS, line.encode())]
    finally:
        os.close(master)
        os.close(slave)


def test_a_pty_that_is_not_ours_to_give_is_not_recorded(system_utmp):
    """Anything but a PTY master (here the slave side) is refused by the helper."""
    master, slave = os.openpty()
    line = os.ttyname(slave).removeprefix("/dev/")
    try:
        HELPER.login(0, line, "root", "192.0.2.8", master_fd=slave)
        assert not [r for r in utmp.entries_for(line) if r.ut_type == USER_PROCESS]
    finally:
        os.close(master)
        os.close(slave)
