"""``mps --ssh-session NAME``: the server end of ``mp --ssh``, run by sshd as the user.

Its stdin and stdout are the ssh channel, already authenticated by SSH. It finds
the session NAME (a Unix socket in the user's runtime directory, rundir.py) or
starts it: a one-session server, detached from ssh (its own session, stdio on
/dev/null), holding the PTY and a UDP port. Then it says where the client should
send UDP (one line, ``MOSHPIT-SSH 1 <address>``) and relays the ordinary moshpit
key exchange between the channel and that socket, byte for byte, until the server
closes it. The client goes on over UDP; ssh ends.

A resume is the same command with the same NAME: the key exchange then resumes
the session by its token, and the server checks that the client holds the key
that opened it. See docs/security.md, "Sessions started over SSH".
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys

from moshpit import rundir, sessionlist
from moshpit.errors import MoshpitError
from moshpit.protocol.bootstrap import GONE, PREAMBLE

log = logging.getLogger("moshpit.server")

NOTICE_TIMEOUT = 0.5        # per other server asked about detached sessions at login


def ssh_connection() -> tuple[str, str]:
    """(the ssh client's address, the address it reached us at), from sshd's SSH_CONNECTION."""
    parts = os.environ.get("SSH_CONNECTION", "").split()
    return (parts[0], parts[2]) if len(parts) == 4 else ("", "")


def run(name: str, config, command: list[str], servers: list[str], terminal: dict | None = None, *,
        resume_only: bool = False) -> int:
    """``terminal``: the client's TERM, locale and window (``env``, ``cols``, ``rows``), to
    start a new session's shell before the key exchange; the exchange still decides.
    ``resume_only`` (mp's reconnect in the background): never start a server; if the
    session's is gone, say so (``GONE``) instead of starting a new one."""
    _, reached_at = ssh_connection()
    out = sys.stdout.buffer
    path = rundir.session_socket(name, create=True)
    conn = _connect(path) if resume_only else None
    if resume_only and conn is None:
        out.write(GONE + b"\n")
        out.flush()
        return 0
    out.write(PREAMBLE + (reached_at or "-").encode() + b"\n")   # first thing: the client
    out.flush()                                   # works out where to send UDP while we start
    if conn is None:
        conn = _find_or_start(path, name, config, command, servers, terminal)
    try:
        _relay(conn, sys.stdin.fileno(), out.fileno())
    except OSError as exc:                        # the server went away mid-exchange
        raise MoshpitError(f"the session server for {name} closed the key exchange "
                           f"({exc.strerror or exc}); see its log") from None
    return 0


def _find_or_start(path, name: str, config, command: list[str], servers: list[str],
                   terminal: dict | None) -> socket.socket:
    """The session's socket, its server started first if nobody answers there. Finding
    or binding is done under the user's start lock, so two starts of one name at once
    make one server; once bound, the socket queues connections until the server runs."""
    with rundir.start_lock():
        conn = _connect(path)
        if conn is not None:
            return conn
        try:
            listener = rundir.bind_unix(path)
        except OSError as exc:
            raise MoshpitError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    try:
        _detach_server(listener, path, name, config, command, _notice(servers, path), terminal)
    except OSError as exc:
        raise MoshpitError(f"cannot start the session server for {name}: {exc.strerror or exc}") from None
    finally:
        listener.close()
    conn = _connect(path)
    if conn is None:
        raise MoshpitError(f"the session server for {name} did not start (see the log)")
    return conn


def _connect(path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.fspath(path))
        return sock
    except OSError:
        sock.close()
        return None


def _notice(servers: list[str], ours) -> str:
    """"You have N detached sessions", counting the user's sessions on every server
    that may hold one (each asked once; not the one being started)."""
    sessions = []
    skip = os.fspath(ours.with_suffix(".ctl"))    # its status socket, as _serve names it
    for path in dict.fromkeys(servers):
        if path != skip:
            sessions += sessionlist.query(path, timeout=NOTICE_TIMEOUT) or []
    mine = os.environ.get("USER") or ""
    return sessionlist.detached_notice([s for s in sessions if not mine or s.get("user") == mine])


def _relay(conn: socket.socket, in_fd: int, out_fd: int) -> None:
    """The channel's bytes to the server and back, until the server is done."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    poller.register(in_fd, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == in_fd:
                data = os.read(in_fd, 65536)
                if data:
                    conn.sendall(data)
                else:                                # ssh went away: let the server see it
                    poller.unregister(in_fd)
                    conn.shutdown(socket.SHUT_WR)
            else:
                data = conn.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(out_fd, view):]


def _udp_host() -> str:
    """Every address, both families when the kernel has IPv6."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        return "::"
    except OSError:
        return "0.0.0.0"


def _detach_server(listener, path, name: str, config, command: list[str], notice: str,
                   terminal: dict | None) -> None:
    """The session's server in a process of its own that outlives ssh (double fork)."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _serve(listener, path, name, config, command, notice, terminal)
    except BaseException:
        log.exception("the session server for %s failed", name)
    finally:
        os._exit(0)


def _serve(listener, path, name: str, config, command: list[str], notice: str, terminal: dict | None) -> None:
    import pwd
    from moshpit.gevent.spawn import login_argv, shell_environment, spawn_shell
    from moshpit.forwarding import ForwardPolicy
    from moshpit.gevent.forward import AgentSocket
    early, agent = None, None
    policy = ForwardPolicy.from_config(config)
    if terminal is not None:                      # the shell first: its start-up overlaps ours
        user = pwd.getpwuid(os.getuid())
        env = shell_environment(user, terminal["env"], config.accept_env, dict(os.environ))
        if terminal.get("agent") and policy.may_forward_agent() is None:
            agent = AgentSocket(user.pw_uid, user.pw_gid)      # mp --ssh -A
            env = dict(env, SSH_AUTH_SOCK=agent.path)
        early = spawn_shell(command or login_argv(user), env, user,
                            max(1, min(terminal["cols"], 4096)), max(1, min(terminal["rows"], 4096)))
    import gevent
    import nacl.signing
    from moshpit.gevent.server import Server
    from moshpit.keys import Authorization

    def logged_in_by_ssh(client_key: bytes, user) -> Authorization:
        return Authorization(True, "logged in by ssh; the resume token binds the key")

    client_at, _ = ssh_connection()
    server = Server(nacl.signing.SigningKey.generate(), listener=listener, udp_host=_udp_host(),
                    udp_ports=config.udp_ports, authorize=logged_in_by_ssh, single_session=True,
                    command=command or None, accept_env=config.accept_env,
                    detached_timeout=config.detached_timeout_secs,
                    control=os.fspath(path.with_suffix(".ctl")), unix_peer=client_at or "ssh",
                    via="ssh", name=name, notice=notice, base_env=dict(os.environ), forward_policy=policy)
    if early is not None:
        server.adopt_early_shell(early, agent)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGHUP, lambda: None)
    ours = os.stat(path).st_ino                   # bound for us before the fork
    server.start()
    log.info("session %s started over ssh from %s", name, client_at or "?")
    try:
        server.serve_forever()
    finally:
        rundir.unlink_if_same(path, ours)         # not a successor's, bound since
        log.info("session %s over", name)
