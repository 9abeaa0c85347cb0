"""Whether an account may log in at all, before any key is looked at: what sshd checks.

A key in ``authorized_keys`` proves who the client is; these rules decide whether
that account is open for logins: a sane user name, ``allow_users`` / ``deny_users``,
``permit_root``, an account expiry date (``chage -E``) and ``/etc/nologin``. The
answer is a reason to refuse (for the server's log only) or None.
"""

from __future__ import annotations

import fnmatch
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

# POSIX portable user names, as useradd accepts them (a trailing $ for machine accounts).
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}\$?")
SECONDS_PER_DAY = 86400


def valid_user_name(name: str) -> bool:
    return USER_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class LoginPolicy:
    """The server's account rules. Patterns are shell-style (``fnmatch``), on the user name."""

    allow_users: tuple = ()          # empty: everyone not denied
    deny_users: tuple = ()
    permit_root: bool = True         # sshd's default too (keys only: prohibit-password)
    shadow_path: str = "/etc/shadow"
    nologin_path: str = "/etc/nologin"

    def refusal(self, user: pwd.struct_passwd, *, now: float) -> str | None:
        """Why ``user`` may not log in now, or None. ``now`` is wall-clock seconds."""
        name = user.pw_name
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.deny_users):
            return "listed in deny_users"
        if self.allow_users and not any(fnmatch.fnmatchcase(name, p) for p in self.allow_users):
            return "not listed in allow_users"
        if user.pw_uid == 0 and not self.permit_root:
            return "root logins are not permitted (permit_root)"
        if user.pw_uid != 0 and Path(self.nologin_path).exists():
            return f"{self.nologin_path} exists: logins are closed"
        expiry = self._expiry_day(name)
        if expiry is not None and now >= expiry * SECONDS_PER_DAY:
            return "the account has expired"
        return None

    def _expiry_day(self, name: str) -> int | None:
        """The account's expiry, in days since 1970 (shadow's 8th field), if it has one."""
        try:
            text = Path(self.shadow_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None                  # not root, or no shadow file: nothing to enforce
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 8 and fields[0] == name:
                return int(fields[7]) if fields[7].strip().isdigit() else None
        return None
