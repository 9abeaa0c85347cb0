"""An impairment relay on loopback: UDP in from the client, out to the server, with loss.

The kernel here has no netem, so loss, duplication and roaming are made in
user space: the client talks to the relay's front port; the relay forwards
each datagram (or not) from its back socket, whose source port is the client's
address as the server sees it. ``roam()`` swaps the back socket: the server
sees the client move to a new address mid-session.
"""

from __future__ import annotations

import random

import gevent
import gevent.socket as gsocket


class Relay:
    def __init__(self, server_addr, *, loss: float = 0.0, duplicate: float = 0.0, seed: int = 0):
        self.server_addr = server_addr
        self.loss, self.duplicate = loss, duplicate
        self.rng = random.Random(seed)
        self.front = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.address = self.front.getsockname()
        self.client_addr = None
        self.back = self._new_back()
        self.forwarded = self.dropped = 0
        self._greenlets = [gevent.spawn(self._up)]

    def _new_back(self):
        sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self._greenlets = getattr(self, "_greenlets", [])
        self._greenlets.append(gevent.spawn(self._down, sock))
        return sock

    def _pass(self) -> int:
        if self.rng.random() < self.loss:
            self.dropped += 1
            return 0
        self.forwarded += 1
        return 2 if self.rng.random() < self.duplicate else 1

    def _up(self):
        while True:
            data, addr = self.front.recvfrom(2048)
            self.client_addr = addr
            for _ in range(self._pass()):
                self.back.sendto(data, self.server_addr)

    def _down(self, sock):
        while True:
            data, _ = sock.recvfrom(2048)
            if self.client_addr is None or sock is not self.back:
                continue            # the server still answers an old address: nobody is there
            for _ in range(self._pass()):
                self.front.sendto(data, self.client_addr)

    def roam(self) -> None:
        """The client's address changes (a new Wi-Fi, a NAT rebinding)."""
        self.back = self._new_back()

    def close(self):
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self.front.close()
