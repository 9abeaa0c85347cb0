"""The fork server: a clean, fully imported process that every session process is forked from.

Why not fork the listener itself: it runs a gevent hub full of other connections'
greenlets and holds the host key; a child of it would inherit both. The fork server
is a fresh interpreter (started once, by ``ForkServer``) that imports everything a
session needs, freezes the garbage collector's generations (so a child's collections
do not write to, and copy, the pages it shares with its parent), and then only
forks. It never starts a hub and never sees the host key, a client's bytes or a
resume token. It reports each child's end to the listener, which logs it.

Requests and replies are JSON on a ``SOCK_SEQPACKET`` pair; a spawn request carries
the session's UDP socket and its end of the session link as ``SCM_RIGHTS`` fds.

What a child must not inherit, the fork server never has: it starts with stdin,
stdout and stderr on /dev/null (not root's terminal), a minimal environment (not
root's), and no log descriptor. Its log records, like its children's, travel as
data to the listener, which writes them (linklog.py).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
from typing import Any

log = logging.getLogger("moshpit.server")

MAX_REQUEST = 65536
SPAWN_TIMEOUT = 10.0


def name_process(name: str) -> None:
    """What ps, top and pgrep -x show for this process (at most 15 characters)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def describe_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"


# --- the fork server's own process (no gevent hub, ever) --------------------------------

def _spawn(request: dict, fds: list[int], close_in_child: list) -> int:
    from moshpit.gevent import session_process
    gc.freeze()                                   # what the parent has stays shared
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        for thing in close_in_child:
            thing.close() if hasattr(thing, "close") else os.close(thing)
        signal.set_wakeup_fd(-1)
        name_process("mps-session")
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        code = session_process.run(request["spec"], *fds)
    except BaseException:
        log.exception("session process for %s failed", request["spec"].get("user"))
    finally:
        logging.shutdown()
        os._exit(code)


def warm_up(seconds: float = 1.0) -> None:
    """Run a session's code once here, every diff mode, over an in-memory loopback.

    CPython specialises bytecode as it runs and fills caches lazily; done in each child,
    that writes to pages shared with this process, and each child pays for its own copy.
    Done here once, before any fork, the children share it."""
    from moshpit import crypto
    from moshpit.protocol.channel import Channel, Role
    from moshpit.protocol.handshake import DiffMode
    from moshpit.clientsession import ClientSession
    from moshpit.session import ServerSession
    direction = crypto.DirectionKeys(bytes(range(32)), bytes(range(64)))
    keys = crypto.TrafficKeys(direction, direction)
    output = (b"\x1b[H\x1b[2Jwarm \x1b[1;31mup\x1b[0m\r\n" + b"line of text \x1b[K\r\n" * 30
              + "\u00e9\u4e2d\r\n".encode())
    for mode in DiffMode:
        now = 0.0
        server = ServerSession(80, 24)
        server_channel = Channel(Role.SERVER, keys, 1, mode, now=now, screen_source=server.screen_source)
        client_channel = Channel(Role.CLIENT, keys, 1, mode, now=now, peer_addr=("127.0.0.1", 9))
        client = ClientSession(80, 24)
        server.attach(server_channel)
        client.attach(client_channel, 0)
        while now < seconds:
            now += 0.01
            if int(now * 100) % 10 == 0:
                server.pty_output(output, now)
                client_channel.send_data(b"x") if client_channel.accepts_data else None
            server.handle_timer(now)
            for channel, peer in ((server_channel, client_channel), (client_channel, server_channel)):
                channel.handle_timer(now)
                for data, _ in channel.datagrams_to_send(now):
                    peer.receive_datagram(data, ("127.0.0.1", 9), now)
            while (event := server_channel.next_event()) is not None:
                server.on_event(event, now)
            while (event := client_channel.next_event()) is not None:
                client.on_event(event, now)
            server.take_pty_input()
            client.take_output()


class _WarmUpHost:
    detached_timeout = 0

    def __init__(self):
        import gevent.event
        self.done = gevent.event.Event()

    def heard(self) -> None:
        pass

    def ended(self) -> None:
        self.done.set()


def warm_up_runtime() -> None:
    """The same for the gevent runtime: a real ShellSession (``cat`` on a PTY) typed into
    over loopback UDP, then ended and the hub destroyed (its epoll descriptor must not
    be shared with the children; each makes its own on first use)."""
    import pwd
    import time
    import gevent
    from moshpit import crypto
    from moshpit.gevent import udp
    from moshpit.gevent.shell import ShellSession
    from moshpit.gevent.spawn import spawn_shell
    from moshpit.protocol.channel import Channel, CloseCode, Role
    from moshpit.protocol.handshake import DiffMode, SessionParams
    hub = gevent.get_hub()
    direction = crypto.DirectionKeys(bytes(range(32)), bytes(range(64)))
    keys = crypto.TrafficKeys(direction, direction)
    server_sock, client_sock = udp.open_udp(socket.AF_INET), udp.open_udp(socket.AF_INET)
    server_sock.bind(("127.0.0.1", 0))
    client_sock.bind(("127.0.0.1", 0))
    host = _WarmUpHost()
    pid, fd = spawn_shell(["cat"], {"PATH": "/usr/bin:/bin"}, pwd.getpwuid(os.getuid()), 80, 24)
    shell = ShellSession(host, server_sock, pid, fd, 80, 24)
    for mode in (DiffMode.STATESYNC, DiffMode.RELIABLE):
        params = SessionParams(conn_id=len(shell.channels) + 1, udp_port=0, session_id=bytes(16),
                               resume_token=b"", resumed=False, diff_mode=mode, keys=keys, client_key=bytes(32),
                               host_key=bytes(32), user="", cols=80, rows=24, env={})
        shell.attach(params)
        client = Channel.from_params(Role.CLIENT, params, now=time.monotonic(),
                                     peer_addr=server_sock.getsockname())
        readable = udp.Readable(client_sock.fileno())
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            now = time.monotonic()
            if client.accepts_data:
                client.send_data(b"warm up\r")
            client.handle_timer(now)
            for data, addr in client.datagrams_to_send(now):
                udp.send(client_sock, data, addr)
            with gevent.Timeout(0.02, False):
                for data, addr in udp.receive_batch(client_sock, readable, 2048):
                    client.receive_datagram(data, addr, time.monotonic())
            while client.next_event() is not None:
                pass
        readable.close()
    shell.stop(CloseCode.SERVER_SHUTDOWN, "warmed up")
    host.done.wait(timeout=1)
    client_sock.close()
    try:
        gevent.os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    hub.destroy(destroy_loop=True)


def serve(control_fd: int, log_sock: socket.socket | None = None) -> None:
    """Fork a session process per request until the listener closes the control socket."""
    import moshpit.gevent.session_process  # noqa: F401  (imported once here, shared by every child)
    warm_up()
    try:
        warm_up_runtime()
    except Exception:                             # a cost, not a failure: the children warm up alone
        log.debug("the fork server's warm-up failed", exc_info=True)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=control_fd)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the listener decides when sessions end
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 4)
                if not message:
                    return                        # the listener is gone; sessions see their links close
                request = json.loads(message)
                try:
                    pid = _spawn(request, fds, [control, selector, wake_r, wake_w,
                                                *([log_sock] if log_sock is not None else [])])
                    reply = {"op": "spawned", "id": request["id"], "pid": pid}
                except OSError as exc:
                    reply = {"op": "failed", "id": request["id"], "error": str(exc)}
                finally:
                    for fd in fds:
                        os.close(fd)
                control.send(json.dumps(reply).encode())
            else:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
        _reap(control)


def _reap(control) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(json.dumps({"op": "exited", "pid": pid, "status": status}).encode())


def main() -> None:
    from moshpit.linklog import send_logs_over
    control_fd, level = int(sys.argv[1]), sys.argv[2]
    handler = send_logs_over(socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=os.dup(control_fd)),
                             logging.getLevelName(level))
    name_process("mps-forkserver")
    try:
        serve(control_fd, handler.sock)          # (which no child may keep: it reaches the listener)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("the fork server failed")
        raise


# --- the listener's side -----------------------------------------------------------------

class ForkServer:
    """Starts the fork server and asks it for session processes (call from a greenlet)."""

    def __init__(self, on_exit):
        import gevent
        import gevent.subprocess as subprocess
        import gevent.lock
        import gevent.socket as gsocket
        import moshpit
        self._gevent = gevent
        self.on_exit = on_exit                       # on_exit(pid, status), for every child
        from moshpit.linklog import LogIntake
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        level = logging.getLevelName(logging.getLogger("moshpit").getEffectiveLevel())
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(moshpit.__file__)))
        code = (f"import sys; sys.path.insert(0, {package_root!r}); "
                "from moshpit.gevent.forkserver import main; main()")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", code, str(theirs.fileno()), level], env=minimal_environment(),
            pass_fds=(theirs.fileno(),), start_new_session=True, cwd="/",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        self._log = LogIntake("fork server", log, rate=100, burst=500)
        self.sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=ours.detach())
        self._lock = gevent.lock.Semaphore()
        self._next_id = 0
        self._waiting: dict[int, Any] = {}              # request id -> its AsyncResult
        self._closing = False
        self._reader = gevent.spawn(self._read)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self._reader.dead

    def spawn(self, spec: dict, fds: list[int]) -> int:
        """A new session process running ``spec``; its pid. ``fds`` are the caller's to close."""
        from gevent.event import AsyncResult
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            result = AsyncResult()
            self._waiting[request_id] = result
            try:
                socket.send_fds(self.sock, [json.dumps({"id": request_id, "spec": spec}).encode()], fds)
            except OSError:
                self._waiting.pop(request_id, None)
                raise
        try:
            reply = result.get(timeout=SPAWN_TIMEOUT)
        except self._gevent.Timeout:
            raise OSError("the fork server did not answer") from None
        finally:
            self._waiting.pop(request_id, None)
        if reply["op"] != "spawned":
            raise OSError(reply.get("error", "the fork server could not start a session"))
        return reply["pid"]

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_REQUEST)
            except OSError:
                data = b""
            if not data:
                break
            reply = json.loads(data)
            if reply["op"] == "log":
                import time
                self._log.take(reply["level"], reply["message"], time.monotonic())
            elif reply["op"] == "exited":
                self.on_exit(reply["pid"], reply["status"])
            elif (waiting := self._waiting.get(reply["id"])) is not None:
                waiting.set(reply)
        if not self._closing:
            code = self.process.poll()
            log.error("the fork server has ended (%s)", "its socket closed" if code is None else
                      f"killed by signal {-code}" if code < 0 else f"exited with status {code}")
        for waiting in list(self._waiting.values()):
            waiting.set({"op": "failed", "error": "the fork server has ended"})

    def close(self) -> None:
        self._closing = True
        self.sock.close()
        self._reader.kill(block=False)
        try:
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()


SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def minimal_environment() -> dict:
    """The fork server's environment, which every session process inherits: nothing of
    the root shell that started mps (its secrets, its SSH_AUTH_SOCK, its LD_*), only what
    Python needs. Shells get their environment from the session's spec, never from here."""
    from moshpit.gevent.session_process import TEST_HOOK
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    if os.environ.get(TEST_HOOK):
        env[TEST_HOOK] = os.environ[TEST_HOOK]
    return env


if __name__ == "__main__":
    main()
