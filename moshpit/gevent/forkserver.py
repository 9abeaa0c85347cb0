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

log = logging.getLogger("moshpit.server")

MAX_REQUEST = 65536
SPAWN_TIMEOUT = 10.0


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
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        code = session_process.run(request["spec"], *fds)
    except BaseException:
        log.exception("session process for %s failed", request["spec"].get("user"))
    finally:
        logging.shutdown()
        os._exit(code)


def serve(control_fd: int) -> None:
    """Fork a session process per request until the listener closes the control socket."""
    import moshpit.gevent.session_process  # noqa: F401  (imported once here, shared by every child)
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
                    pid = _spawn(request, fds, [control, selector, wake_r, wake_w])
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
    control_fd, log_fd, level, fmt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    logging.basicConfig(stream=os.fdopen(log_fd, "a", buffering=1), level=level, format=fmt)
    try:
        serve(control_fd)
    except KeyboardInterrupt:
        pass


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
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_fd, level, fmt = _logging_target()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(moshpit.__file__)))
        code = (f"import sys; sys.path.insert(0, {package_root!r}); "
                "from moshpit.gevent.forkserver import main; main()")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", code, str(theirs.fileno()), str(log_fd), level, fmt],
            pass_fds=(theirs.fileno(), log_fd), start_new_session=True, cwd="/", stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = gsocket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=ours.detach())
        self._lock = gevent.lock.Semaphore()
        self._next_id = 0
        self._waiting: dict[int, object] = {}
        self._reader = gevent.spawn(self._read)

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
            if reply["op"] == "exited":
                self.on_exit(reply["pid"], reply["status"])
            elif (waiting := self._waiting.get(reply["id"])) is not None:
                waiting.set(reply)
        for waiting in list(self._waiting.values()):
            waiting.set({"op": "failed", "error": "the fork server has ended"})

    def close(self) -> None:
        self.sock.close()
        self._reader.kill(block=False)
        try:
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()


def _logging_target() -> tuple[int, str, str]:
    """Where and how the fork server and its children log: the listener's first handler
    with a stream (a log file or stderr), at the listener's level and format."""
    root = logging.getLogger()
    for handler in root.handlers:
        stream = getattr(handler, "stream", None)
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue
        fmt = getattr(handler.formatter, "_fmt", None) or "%(asctime)s %(name)s %(levelname)s %(message)s"
        return fd, logging.getLevelName(logging.getLogger("moshpit").getEffectiveLevel()), fmt
    level = logging.getLevelName(logging.getLogger("moshpit").getEffectiveLevel())
    return 2, level, "%(asctime)s %(name)s %(levelname)s %(message)s"


if __name__ == "__main__":
    main()
