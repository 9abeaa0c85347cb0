"""Starting a shell on a new PTY, as its user: light to import on purpose.

The one-session server that ``mp --ssh`` starts imports this first and starts the
shell, and only then the rest of moshpit, so a login shell's start-up overlaps ours.
"""

from __future__ import annotations

import fcntl
import fnmatch
import grp
import os
import pwd
import re
import signal
import struct
import termios

import gevent.os

MAX_FD = 1 << 20           # closed in a shell's child above stdio (close_range makes it cheap)
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def _sane_value(value: str) -> bool:
    """No control characters (a value is pasted into a shell's world, not a terminal's)."""
    return value.isprintable() and len(value) <= 1024


def accepted_env(env: dict, patterns) -> dict:
    """The client's variables a server lets through: ``patterns`` (accept_env), names of
    capitals, digits and ``_`` only (no ``LC_ALL\nLD_PRELOAD``), printable values."""
    return {key: value for key, value in env.items()
            if key != "TERM" and ENV_NAME.fullmatch(key) and _sane_value(value)
            and any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)}


# What only the ssh channel that started a session had (its tty, a forwarded agent's
# socket, a forwarded X display: gone once it closes), or the command it ran (its
# depth, directory and name), not the login.
BOOTSTRAP_ONLY = frozenset({"SSH_TTY", "SSH_AUTH_SOCK", "DISPLAY", "SSH_ORIGINAL_COMMAND", "SHLVL", "_",
                            "PWD", "OLDPWD"})


def shell_environment(user: pwd.struct_passwd, client_env: dict, patterns, base: dict | None = None) -> dict:
    """The shell's environment: the account's, the client's TERM, what ``patterns`` let in.

    ``base``, for a session started over ssh: the login's own environment to start from
    (what sshd, PAM and ``~/.ssh/environment`` gave it, ``SSH_CONNECTION`` included), as
    a shell under ssh or mosh-server has it, less what died with the ssh channel."""
    env = {key: value for key, value in (base or {}).items() if key not in BOOTSTRAP_ONLY}
    term = client_env.get("TERM", "")
    env.update({"TERM": term if TERM_NAME.fullmatch(term) else "xterm-256color", "HOME": user.pw_dir,
                "USER": user.pw_name, "LOGNAME": user.pw_name, "SHELL": user.pw_shell,
                "PATH": env.get("PATH") or os.environ.get("PATH", "/usr/bin:/bin")})
    env.update(accepted_env(client_env, patterns))
    return env


def login_argv(user: pwd.struct_passwd) -> list[str]:
    return [user.pw_shell or "/bin/sh", "-l"]


def _reset_signals() -> None:
    """In the shell's child: every signal as sshd and login hand it to a shell, default and
    unblocked. exec keeps what is ignored and blocked: Python ignores SIGPIPE and SIGXFSZ
    (`yes | head -1` would complain of a broken pipe), gevent may block some, and whoever
    started the server may have had SIGINT and SIGQUIT (a background job) or SIGHUP
    (nohup) ignored: the shell's Ctrl-C would then stop nothing, and a hang-up not end it."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass                                  # (one that cannot be set: nothing to undo)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def drop_privileges(user: pwd.struct_passwd) -> None:
    """As root: become ``user`` for good (groups first, then gid, then uid), and check it:
    real, effective and saved ids all the user's, the groups exactly theirs, and no way
    back to root."""
    uid, gid = user.pw_uid, user.pw_gid
    os.initgroups(user.pw_name, gid)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError("could not drop privileges: ids still differ")
    if set(os.getgroups()) - {gid} != set(os.getgrouplist(user.pw_name, gid)) - {gid}:
        raise OSError("could not drop privileges: groups still differ")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError("could not drop privileges: root could be regained")


PR_SET_DUMPABLE = 4


def forbid_tracing() -> None:
    """No ptrace, no core dump, /proc/PID owned by root, whatever ``fs.suid_dumpable``
    says: a process that had root's secrets keeps them from the user's other processes.
    Call after the last change of ids (each change resets it)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _become(user: pwd.struct_passwd) -> None:
    """In the shell's child, as root: give the terminal to ``user`` and drop to them."""
    try:
        tty_group = grp.getgrnam("tty").gr_gid
    except KeyError:
        tty_group = user.pw_gid
    os.fchown(0, user.pw_uid, tty_group)        # as sshd does, so mesg, tmux and sudo work
    os.fchmod(0, 0o620)
    drop_privileges(user)


def spawn_shell(argv: list[str], env: dict, user: pwd.struct_passwd, cols: int, rows: int):
    """``argv`` on a new PTY as ``user``: (pid, master fd), the fd non-blocking and not inherited."""
    pid, fd = gevent.os.forkpty_and_watch()
    if pid == 0:                                   # the child: become the shell
        try:
            os.closerange(3, MAX_FD)               # no other session's PTY, no server socket
            _reset_signals()
            if os.getuid() == 0 and user.pw_uid != 0:
                _become(user)
            os.chdir(user.pw_dir if os.path.isdir(user.pw_dir) else "/")
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    os.set_inheritable(fd, False)                  # later shells must not get this PTY
    os.set_blocking(fd, False)
    set_window_size(fd, cols, rows)
    return pid, fd
