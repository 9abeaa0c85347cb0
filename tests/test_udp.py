"""Datagram sends in runs (GSO): the same datagrams arrive, whole and in order."""

import os
import socket

import pytest

from moshpit.gevent import udp


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "one-by-one"])
def test_a_run_of_datagrams_arrives_as_the_same_datagrams(monkeypatch, gso):
    monkeypatch.setattr(udp, "_gso_works", gso)
    receiver = udp.open_udp(socket.AF_INET)
    receiver.bind(("127.0.0.1", 0))
    sender = udp.open_udp(socket.AF_INET)
    sizes = [1232] * 70 + [700, 1232, 1232, 90]          # past the 64-segment limit, short ones mid-run
    datagrams = [os.urandom(size) for size in sizes]
    assert udp.send_many(sender, datagrams, receiver.getsockname()) == len(datagrams)
    received = []
    receiver.settimeout(2)
    while len(received) < len(datagrams):
        received.append(receiver.recv(2048))
    assert received == datagrams                           # sizes on the wire unchanged, in order
    receiver.close()
    sender.close()


def test_a_kernel_without_gso_falls_back_to_one_datagram_per_send(monkeypatch):
    monkeypatch.setattr(udp, "_gso_works", True)
    receiver = udp.open_udp(socket.AF_INET)
    receiver.bind(("127.0.0.1", 0))

    class NoGso:
        """A socket whose kernel refuses UDP_SEGMENT, as an old one does."""
        def __init__(self, real):
            self.real = real

        def sendmsg(self, *args):
            raise OSError(22, "Invalid argument")

        def sendto(self, data, addr):
            return self.real.sendto(data, addr)

    real = udp.open_udp(socket.AF_INET)
    datagrams = [os.urandom(1232) for _ in range(5)]
    assert udp.send_many(NoGso(real), datagrams, receiver.getsockname()) == 5
    assert udp._gso_works is False
    receiver.settimeout(2)
    assert [receiver.recv(2048) for _ in range(5)] == datagrams
    receiver.close()
    real.close()
