"""How a client reaches a server's key exchange: straight over TCP, or through ssh.

A route's ``open(interactive=...)`` gives a byte stream (``sendall``, ``recv``,
``close``) carrying the ordinary moshpit key exchange, and the address to send
UDP to. ``TcpRoute`` connects to mps. ``SshRoute`` runs ``ssh HOST mps
--ssh-session NAME`` (cli/ssh_session.py), which finds or starts the session's
one-session server and relays the exchange over the ssh channel: SSH has
authenticated the user, the exchange still derives the session's keys.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import subprocess
import time

import gevent
import gevent.os
import gevent.socket as gsocket

from moshpit.errors import MoshpitError, printable
from moshpit.protocol.bootstrap import GONE, PREAMBLE
from moshpit.protocol.handshake import RefuseCode
from moshpit.sshcommand import DEFAULT_SERVER, SshCommand

log = logging.getLogger("moshpit.client")

CONNECT_TIMEOUT = 10.0
MAX_CHATTER = 65536               # what a noisy login script may print before it
BATCH_TIMEOUT = 30.0              # a reconnect through ssh that takes longer has failed


class ClientError(MoshpitError):
    """Why we could not connect, in one sentence for the user.

    ``permanent``: trying again cannot help (refused, host key changed);
    ``refusal``: the server's RefuseCode when it turned us away;
    ``retry_after``: the server was busy and said to try again in that many seconds."""

    def __init__(self, message: str, *, permanent: bool = False, refusal: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.refusal = refusal
        self.retry_after = retry_after


class TcpRoute:
    """mps's key-exchange port. Its connection is kept after the exchange
    (``keeps_stream``): the session's datagrams go over it where UDP is blocked."""

    keeps_stream = True
    stream_kind = "tcp"

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.no_answer = (f"{host} port {port} did not answer the key exchange within "
                          f"{CONNECT_TIMEOUT:.0f} s (is mps listening there?)")

    @staticmethod
    def keep(sock) -> None:
        sock.settimeout(None)

    def open(self, *, interactive: bool = True):
        """(stream, where): the first of the server's addresses that takes a TCP
        connection, in the resolver's order (a client whose IPv4 is gone goes on over
        IPv6, or back); ``where()`` is (family, UDP host), that address."""
        try:
            infos = gsocket.getaddrinfo(self.host, self.port, 0, gsocket.SOCK_STREAM)
        except gsocket.gaierror as exc:
            raise ClientError(f"cannot resolve {self.host}: {exc.strerror}") from None
        timeout = max(2.0, CONNECT_TIMEOUT / len(infos))
        problem = "no address"
        for family, _, _, _, address in infos:
            try:
                stream = gsocket.create_connection(address[:2], timeout=timeout)
                return stream, _known((family, address[0]))
            except gsocket.timeout:
                problem = "timed out"
            except OSError as exc:
                problem = exc.strerror or str(exc)
        if problem == "timed out":
            raise ClientError(f"connection to {self.host} port {self.port} timed out")
        raise ClientError(f"cannot connect to {self.host} port {self.port}: {problem}")


def _known(address: tuple[int, str]):
    """A route's ``where`` when the address is known already."""
    return lambda: address


class SshRoute:
    """A route through ssh (sshcommand.py builds the command line). ``first``: an ssh
    already started for the first key exchange (mp starts it before importing the rest
    of itself, so ssh's connection overlaps our start-up). ssh is kept after the
    exchange (``keeps_stream``): where UDP is blocked the session's datagrams go over
    its channel, relayed by ``mps --ssh-session``."""

    keeps_stream = True
    stream_kind = "ssh"

    @staticmethod
    def keep(stream: PipeStream) -> None:
        stream.keep()

    def __init__(self, command: SshCommand, *, first=None):
        self.command = command
        self.host, self.destination, self.server = command.host, command.destination, command.server
        self.no_answer = (f"the session server on {self.host} did not answer the key exchange within "
                          f"{CONNECT_TIMEOUT:.0f} s")
        self._first = first
        self._hostname: str | None = None
        self._lookup = gevent.spawn(self._ssh_hostname)   # while ssh connects

    def open(self, *, interactive: bool = True):
        """Start ssh and wait for the session server's first line (however long ssh takes
        to ask for a password, when ``interactive``): (stream, where). ``where()`` gives
        the UDP address; the exchange asks for it only once done, because the server
        waits HELLO_TIMEOUT for our hello and ``ssh -G`` (a wrapper's, a slow
        ProxyCommand's) may take longer than that."""
        proc, self._first = self._first, None
        if proc is None:
            try:
                proc = self.command.start(interactive=interactive)
            except OSError as exc:
                raise ClientError(f"cannot run {self.command.ssh[0]}: {exc.strerror}", permanent=True) from None
        stream = PipeStream(proc)
        try:
            with gevent.Timeout(None if interactive else BATCH_TIMEOUT, ClientError("ssh took too long")):
                reached_at = self._read_preamble(stream)
                return stream, functools.partial(self.udp_address, reached_at)
        except BaseException:
            stream.close()
            raise

    def _read_preamble(self, stream: PipeStream) -> str:
        """The session server's line; whatever a login script printed first is skipped."""
        seen = bytearray()
        while True:
            if GONE + b"\n" in seen:
                raise ClientError(f"the session on {self.host} no longer exists (its server is gone)",
                                  permanent=True, refusal=RefuseCode.NO_SESSION)
            start = seen.find(PREAMBLE)
            if start >= 0 and b"\n" in seen[start:]:
                line = bytes(seen[start + len(PREAMBLE):seen.index(b"\n", start)])
                stream.unread(bytes(seen[seen.index(b"\n", start) + 1:]))
                if start:
                    log.info("%s printed before the session server: %r", self.host, bytes(seen[:start]))
                return "" if line == b"-" else line.decode("ascii", "replace").strip()
            if len(seen) > MAX_CHATTER:
                raise ClientError(f"{self.host} printed {len(seen)} bytes but never started the session "
                                  f"server", permanent=True)
            chunk = stream.read_some()
            if not chunk:
                raise self._failure(stream, bytes(seen))
            seen += chunk

    def _failure(self, stream: PipeStream, output: bytes) -> ClientError:
        status = stream.wait(5.0)
        said = printable((output.decode("utf-8", "replace").strip().splitlines() or [""])[-1], 200)
        if status == 255:
            why = (" (it says why above)" if stream.said.echoed else
                   f": {stream.stderr_line()}" if stream.stderr_line() else "")
            return ClientError(f"ssh to {self.destination} failed{why}")
        if status == 127:
            searched = " (PATH, ~/.local/bin)" if self.command.server_text == DEFAULT_SERVER else ""
            return ClientError(f"{self.server[0]} was not found on {self.host}{searched}: install moshpit "
                               f"there, or name it with --server=PATH", permanent=True)
        return ClientError(f"{self.server[0]} on {self.host} did not start a session (status {status})"
                           + (f": {said}" if said else ""), permanent=True)

    def udp_address(self, reached_at: str) -> tuple[int, str]:
        """Where to send UDP: the address ssh's host name has here, preferring the one the
        server says ssh reached it at (round-robin DNS: the same machine); that address
        itself if the name does not resolve here (a name only a jump host knows)."""
        self._lookup.join()
        name = self._ssh_hostname()
        try:
            infos = gsocket.getaddrinfo(name, None, 0, gsocket.SOCK_DGRAM)
        except gsocket.gaierror:
            infos = []
        found = [(family, address[0]) for family, _, _, _, address in infos]
        wanted = reached_at.removeprefix("::ffff:")
        for family, address in found:
            if address.removeprefix("::ffff:") == wanted:
                return family, address
        if found:
            return found[0]
        if reached_at:
            return _printed_address(self.host, wanted)
        raise ClientError(f"cannot tell which address {self.host} has (it does not resolve here and "
                          f"the server did not say)", permanent=True)

    def _ssh_hostname(self) -> str:
        """The host name ssh connects to for our destination (``ssh -G``: aliases and
        HostName lines of ~/.ssh/config applied), or the host as typed."""
        if self._hostname is None:
            self._hostname = self.host
            try:
                # In a thread, with the standard library: gevent.subprocess would reap every
                # child of ours, ssh too, and its exit status would be lost to PipeStream.
                out = gevent.get_hub().threadpool.apply(subprocess.run, (
                    [*self.command.ssh, "-G", "--", self.destination],),
                    dict(capture_output=True, timeout=CONNECT_TIMEOUT, stdin=subprocess.DEVNULL)).stdout
                for line in out.decode("utf-8", "replace").splitlines():
                    key, _, value = line.partition(" ")
                    if key.lower() == "hostname" and value.strip():
                        self._hostname = value.strip()
                        break
            except (OSError, subprocess.SubprocessError) as exc:
                log.info("ssh -G failed (%s); using %s as typed", exc, self.host)
        return self._hostname


def _printed_address(host: str, text: str) -> tuple[int, str]:
    """The address the server printed, used as it is only when ``host`` does not resolve
    here: the ssh login vouches for the server, but not for where it points us, so a
    datagram never goes to an address that is not one host's (multicast, broadcast,
    unspecified, reserved)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ClientError(f"{host} does not resolve here and the server named no address "
                          f"({printable(text, 64)!r})", permanent=True) from None
    if address.is_multicast or address.is_unspecified or address.is_reserved or \
            (address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255")):
        raise ClientError(f"{host} does not resolve here and the server named {address}, "
                          f"which is not a host's address", permanent=True)
    return (gsocket.AF_INET6 if address.version == 6 else gsocket.AF_INET), str(address)


class PipeStream:
    """ssh's stdin and stdout as a byte stream (socket-like): the key exchange's, then,
    kept, the session's datagrams where UDP is blocked. ssh is a plain
    ``subprocess.Popen`` (mp starts it before gevent is loaded): it is polled."""

    def __init__(self, proc):
        self.proc = proc
        self._in, self._out = proc.stdin.fileno(), proc.stdout.fileno()
        for fd in (self._in, self._out):
            os.set_blocking(fd, False)
        self._pending = b""
        self.timeout: float | None = CONNECT_TIMEOUT
        self._closed = False

    @property
    def said(self):
        return self.proc.said

    @property
    def stderr(self) -> bytes:
        """The tail of what ssh wrote to stderr so far."""
        return self.said.tail()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def keep(self) -> None:
        """The exchange is done and the stream stays, under a screen in raw mode: no
        timeout on reads (an idle path), and ssh's stderr goes to the log only."""
        self.timeout = None
        self.said.quiet()

    def unread(self, data: bytes) -> None:
        self._pending = data + self._pending

    def read_some(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return gevent.os.nb_read(self._out, 65536)
        except OSError:
            return b""

    def recv(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        try:
            with gevent.Timeout(self.timeout, gsocket.timeout("timed out")):
                return gevent.os.nb_read(self._out, size)
        except gsocket.timeout:
            raise
        except OSError:
            return b""

    def send(self, data) -> int:
        return gevent.os.nb_write(self._in, data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[gevent.os.nb_write(self._in, view):]

    def wait(self, timeout: float) -> int | None:
        """ssh's exit status, or None if it is still running after ``timeout`` (polled:
        the process may be a plain ``subprocess.Popen``, whose wait would block the loop).
        Its stderr is read to the end then, up to a second more."""
        deadline = time.monotonic() + timeout
        while (status := self.proc.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            gevent.sleep(0.02)
        ends = time.monotonic() + 1.0
        while not self.said.done.is_set() and time.monotonic() < ends:
            gevent.sleep(0.01)
        return status

    def stderr_line(self) -> str:
        """ssh's last line, safe to show: remote text, so no escapes (printable)."""
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return printable(lines[-1], 200) if lines else ""

    def close(self) -> None:
        """The pipes at once; ssh ends once the server is done, and is waited for (and
        stopped if it does not end) in a greenlet of its own: the session, ready by
        then, does not wait the 40 ms ssh takes to go. What it says from now on is for
        the log, not the screen."""
        if self._closed:
            return
        self._closed = True
        self.said.quiet()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        gevent.spawn(self._reap)

    def _reap(self) -> None:
        if self.wait(2.0) is None:
            self.proc.kill()
            self.wait(5.0)
