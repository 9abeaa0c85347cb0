"""An impairment relay on loopback: UDP in from the client, out to the server, with loss.

The kernel here has no netem, so loss, duplication and roaming are made in
user space: the client talks to the relay's front port; the relay forwards
each datagram (or not) from its back socket, whose source port is the client's
address as the server sees it. ``roam()`` swaps the back socket: the server
sees the client move to a new address mid-session; ``block_up`` and
``block_down`` cut one direction off entirely (a dead path, not a lossy one).

``Gateway`` puts a whole server behind another loopback address (127.0.0.2):
TCP is forwarded as is, UDP goes through a ``Relay`` on the same port number,
so an unmodified client reaches the server only through the impairments.

``DelayedTcp`` is the same kind of path for a TCP client (ssh): a delay each
way and a bounded amount in flight, and ``stalled`` to hold everything (a dead
path, which TCP only waits out). ``python tests/relay.py`` runs any of the
three in a process of its own, for programs that do not run gevent.
"""

from __future__ import annotations

import random
import time
from collections import deque

import gevent
import gevent.event
import gevent.socket as gsocket


class Relay:
    def __init__(self, server_addr, *, loss: float = 0.0, duplicate: float = 0.0, seed: int = 0,
                 front=("127.0.0.1", 0), delay: float = 0.0):
        self.server_addr = server_addr
        self.loss, self.duplicate = loss, duplicate
        self.delay = delay              # each way: 0.125 makes a 250 ms round trip
        self.block_up = self.block_down = False
        self.rng = random.Random(seed)
        self.front = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        self.front.bind(front)
        self.address = self.front.getsockname()
        self.client_addr = None
        self.dead: set = set()          # client addresses whose mapping is stuck (see kill_mapping)
        self._greenlets = [gevent.spawn(self._up)]
        self.back = self._new_back()
        self.forwarded = self.dropped = 0

    def _new_back(self):
        sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self._greenlets.append(gevent.spawn(self._down, sock))
        return sock

    def _pass(self, blocked: bool = False) -> int:
        if blocked or self.rng.random() < self.loss:
            self.dropped += 1
            return 0
        self.forwarded += 1
        return 2 if self.rng.random() < self.duplicate else 1

    def _up(self):
        while True:
            data, addr = self.front.recvfrom(2048)
            if addr in self.dead:
                self.dropped += 1
                continue
            self.client_addr = addr
            for _ in range(self._pass(self.block_up)):
                self._send(self.back, data, self.server_addr)

    def _down(self, sock):
        while True:
            data, _ = sock.recvfrom(2048)
            if self.client_addr is None or sock is not self.back:
                continue            # the server still answers an old address: nobody is there
            for _ in range(self._pass(self.block_down)):
                self._send(self.front, data, self.client_addr)

    def _send(self, sock, data, addr) -> None:
        if self.delay:
            gevent.spawn_later(self.delay, self._late, sock, data, addr)
        else:
            sock.sendto(data, addr)

    @staticmethod
    def _late(sock, data, addr) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass                        # the relay closed meanwhile

    def kill_mapping(self) -> None:
        """A NAT whose state for the client's current address and port is stuck: nothing
        passes either way for it any more; only a new source port gets through."""
        self.dead.add(self.client_addr)
        self.client_addr = None

    def roam(self) -> None:
        """The client's address changes (a new Wi-Fi, a NAT rebinding)."""
        self.back = self._new_back()

    def close(self):
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self.front.close()
        self.back.close()


class Gateway:
    """The server at ``127.0.0.2``: TCP port ``tcp_port`` forwarded, UDP ``udp_port`` relayed.
    The relay's ``block_up``/``block_down`` drop UDP (a firewall); with ``stall_tcp`` they
    stall the TCP connections too, each way (the network gone: the bytes go on when it
    comes back, as TCP's would; a session kept going over TCP waits with it)."""

    def __init__(self, tcp_port: int, udp_port: int, **impairments):
        from gevent.server import StreamServer
        self.relay = Relay(("127.0.0.1", udp_port), front=("127.0.0.2", udp_port), **impairments)
        self.tcp_open = True
        self.stall_tcp = False
        self.drop_accepts = 0          # this many key exchanges lose the server's last message
        self._tcp = StreamServer(("127.0.0.2", tcp_port), self._forward)
        self._tcp.start()
        self.host, self.port = "127.0.0.2", tcp_port

    def _forward(self, inbound, _addr):
        if not self.tcp_open:
            return                                   # closed at once: like a refused connection
        outbound = gsocket.create_connection(("127.0.0.1", self._tcp.address[1]))

        def pipe(src, dst, from_server=False):
            try:
                chunks = 0
                while data := src.recv(65536):
                    chunks += 1
                    if from_server and chunks == 2 and self.drop_accepts > 0:
                        self.drop_accepts -= 1
                        break                        # SERVER_ACCEPT lost with the connection
                    while self.stall_tcp and (self.relay.block_down if from_server else self.relay.block_up):
                        gevent.sleep(0.05)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(gsocket.SHUT_RDWR)
                    except OSError:
                        pass
        gevent.joinall([gevent.spawn(pipe, inbound, outbound), gevent.spawn(pipe, outbound, inbound, True)])
        outbound.close()

    def close(self):
        self._tcp.stop(timeout=1)
        self.relay.close()


class DelayedTcp:
    """TCP to ``server_addr`` with ``delay`` s each way and at most ``buffer`` bytes on the
    path each way: a link's bandwidth-delay product, so a sender cannot run far ahead of
    what the reader has seen. The relay's own socket buffers are kept small for that."""

    SOCKET_BUFFER = 64 * 1024

    def __init__(self, server_addr, *, delay: float = 0.0, buffer: int = 1 << 20,
                 front=("127.0.0.1", 0)):
        self.server_addr, self.delay, self.buffer = server_addr, delay, buffer
        self.stalled = False            # nothing moves either way (data already sent waits)
        self.listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        self.listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        self._small(self.listener)      # accepted sockets inherit it (the window is set at SYN)
        self.listener.bind(front)
        self.listener.listen(16)
        self.address = self.listener.getsockname()
        self._greenlets = [gevent.spawn(self._accept)]
        self._sockets: list = []

    def _small(self, sock) -> None:
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, self.SOCKET_BUFFER)
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, self.SOCKET_BUFFER)

    def _accept(self):
        while True:
            inbound, _ = self.listener.accept()
            outbound = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
            self._small(outbound)
            try:
                outbound.connect(self.server_addr)
            except OSError:
                inbound.close()
                outbound.close()
                continue
            self._sockets += [inbound, outbound]
            self._greenlets += [gevent.spawn(self._carry, inbound, outbound),
                                gevent.spawn(self._carry, outbound, inbound)]

    def _carry(self, src, dst):
        """Read into the delay line while it has room; a second greenlet delivers when due."""
        line: deque = deque()
        queued = 0
        room, waiting = gevent.event.Event(), gevent.event.Event()
        room.set()

        def deliver():
            nonlocal queued
            try:
                while True:
                    waiting.wait()
                    due, data = line[0]
                    gevent.sleep(max(0.0, due - time.monotonic()))
                    while self.stalled:
                        gevent.sleep(0.01)
                    if not data:
                        dst.shutdown(gsocket.SHUT_WR)
                        return
                    dst.sendall(data)
                    line.popleft()
                    queued -= len(data)
                    if queued < self.buffer:
                        room.set()
                    if not line:
                        waiting.clear()
            except OSError:
                src.close()
        self._greenlets.append(gevent.spawn(deliver))
        try:
            while True:
                room.wait()
                data = src.recv(65536)
                line.append((time.monotonic() + self.delay, data))
                waiting.set()
                if not data:
                    return
                queued += len(data)
                if queued >= self.buffer:
                    room.clear()
        except OSError:
            line.append((0.0, b""))
            waiting.set()

    def close(self):
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        for sock in self._sockets + [self.listener]:
            sock.close()


def main(argv=None) -> None:
    """A relay in a process of its own. It prints ``ready PORT`` (the port to connect to;
    a gateway is at 127.0.0.2) and then reads lines: ``block`` cuts the path off both
    ways (UDP dropped, TCP stalled), ``firewall`` drops UDP only, ``unblock`` restores
    it; end of input ends it."""
    import argparse
    import gevent.os
    import sys
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("udp", "gateway", "tcp"))
    parser.add_argument("ports", type=int, nargs="+", help="server port (gateway: TCP port, UDP port)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each way")
    parser.add_argument("--buffer", type=int, default=1 << 20, help="tcp: bytes in flight each way")
    args = parser.parse_args(argv)
    if args.kind == "udp":
        relay = Relay(("127.0.0.1", args.ports[0]), delay=args.delay)
        port = relay.address[1]
    elif args.kind == "gateway":
        relay = Gateway(args.ports[0], args.ports[1], delay=args.delay)
        port = relay.port
    else:
        relay = DelayedTcp(("127.0.0.1", args.ports[0]), delay=args.delay, buffer=args.buffer)
        port = relay.address[1]
    path = relay.relay if args.kind == "gateway" else relay
    print(f"ready {port}", flush=True)
    gevent.os.make_nonblocking(0)
    pending = b""
    while chunk := gevent.os.nb_read(0, 1024):
        pending += chunk
        while b"\n" in pending:
            command, pending = pending.split(b"\n", 1)
            word = command.strip()
            blocked = word in (b"block", b"firewall")
            if isinstance(path, DelayedTcp):
                path.stalled = blocked
            else:
                if isinstance(relay, Gateway):       # "block": the network gone; "firewall":
                    relay.stall_tcp = word == b"block"   # UDP dropped, TCP going on
                path.block_up = path.block_down = blocked
            sys.stdout.write(f"{command.strip().decode()}ed\n")
            sys.stdout.flush()
    relay.close()


if __name__ == "__main__":
    main()
