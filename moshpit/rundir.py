"""A user's runtime directory: where sessions started over SSH keep their sockets.

``$TMPDIR/moshpit-<uid>/`` (``/tmp`` by default), as tmux keeps ``tmux-<uid>``:
mode 0700, owned by the user, never followed through a symlink. Not
``$XDG_RUNTIME_DIR``: logind removes that when the user's last login ends, which
is exactly when a detached session must stay reachable.

In a shared ``/tmp`` another user can take that name first. Refusing it would let
them stop every ``mp --ssh`` of ours (tmux has that weakness), so a name held by
someone else is passed over for ``~/.mp/run`` (``FALLBACK``), made and checked
the same way, and the log says so once. A directory that is ours but open to
others is still refused: that is our own mistake to fix, not a squatter's.

In it, per session started by ``mp --ssh``: ``NAME.sock`` (the key exchange, for
the first connection and every resume) and ``NAME.ctl`` (status, for
``mps sessions``); and ``start.lock``, held while a session's socket is found or
bound.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
import re
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from moshpit.errors import MoshpitError

SESSION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
FALLBACK = (".mp", "run")             # under the user's home
log = logging.getLogger("moshpit.server")
_told: set[Path] = set()


def base_dir() -> Path:
    return Path(tempfile.gettempdir())


def fallback_dir(uid: int | None = None) -> Path:
    """``~/.mp/run``: the user's own, where nobody else can take the name first."""
    uid = os.getuid() if uid is None else uid
    home = os.path.expanduser("~") if uid == os.getuid() else pwd.getpwuid(uid).pw_dir
    return Path(home).joinpath(*FALLBACK)


def runtime_dir(uid: int | None = None, *, create: bool = False) -> Path:
    """The user's directory, checked (and made, with ``create``): ``$TMPDIR/moshpit-UID``,
    or ``~/.mp/run`` if another user holds that name. MoshpitError if it is not safe to
    use: open to others, or ours but not a plain directory."""
    uid = os.getuid() if uid is None else uid
    path = base_dir() / f"moshpit-{uid}"
    info = _made(path, create)
    if info is not None and info.st_uid != uid:          # a squatter's (a directory, a link, a file)
        fallback = fallback_dir(uid)
        if path not in _told:
            _told.add(path)
            log.warning("%s belongs to uid %d, not %d: using %s instead", path, info.st_uid, uid, fallback)
        if create:
            _made(fallback.parent, True)
        return _checked(fallback, _made(fallback, create), uid)
    return _checked(path, info, uid)


def _made(path: Path, create: bool) -> os.stat_result | None:
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise MoshpitError(f"cannot make {path}: {exc.strerror}") from None
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _checked(path: Path, info: os.stat_result | None, uid: int) -> Path:
    if info is None:
        return path
    if info.st_uid != uid:
        raise MoshpitError(f"{path} belongs to uid {info.st_uid}, not {uid}")
    if not stat.S_ISDIR(info.st_mode):
        raise MoshpitError(f"{path} is not a directory")
    if info.st_mode & 0o077:
        raise MoshpitError(f"{path} is open to others (mode {info.st_mode & 0o777:o}); it must be 0700")
    return path


def _other_dir(uid: int | None = None) -> Path | None:
    """The directory not chosen now that may still hold sockets (a squatter came or went
    while a session lasted), if it is safe to look in."""
    uid = os.getuid() if uid is None else uid
    chosen = runtime_dir(uid)
    other = base_dir() / f"moshpit-{uid}" if chosen == fallback_dir(uid) else fallback_dir(uid)
    try:
        return _checked(other, os.lstat(other), uid)
    except (OSError, MoshpitError):
        return None


def session_socket(name: str, *, create: bool = False) -> Path:
    """NAME's socket: where it is, if a server made it in the other directory, else
    where it would be made now."""
    if not SESSION_NAME.fullmatch(name):
        raise MoshpitError(f"bad session name {name!r}")
    path = runtime_dir(create=create) / f"{name}.sock"
    other = _other_dir()
    if not path.exists() and other is not None and (other / f"{name}.sock").exists():
        return other / f"{name}.sock"
    return path


def control_sockets(uid: int | None = None) -> list[Path]:
    """The status sockets of the user's sessions started over SSH (empty if none)."""
    try:
        found = sorted(runtime_dir(uid).glob("*.ctl"))
        other = _other_dir(uid)
        return found + (sorted(other.glob("*.ctl")) if other is not None else [])
    except (MoshpitError, OSError, KeyError):
        return []


def bind_unix(path: str | os.PathLike, mode: int = 0o600, backlog: int = 16) -> socket.socket:
    """A listening Unix stream socket at ``path``. One left by a server that is gone
    (nobody answers) is replaced; one that answers is not: OSError EADDRINUSE."""
    path = os.fspath(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or _answers(path):
                raise
            os.unlink(path)
            sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


@contextmanager
def start_lock():
    """The user's lock for finding or binding a session socket (held for microseconds).
    A POSIX record lock: a server forked while it is held does not inherit it."""
    fd = os.open(runtime_dir(create=True) / "start.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def unlink_if_same(path: str | os.PathLike, inode: int) -> None:
    """Remove our socket, unless another server has bound one at the same path since."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
