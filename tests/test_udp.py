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


@pytest.mark.parametrize("gro", [True, False], ids=["gro", "plain"])
def test_a_run_received_in_one_read_is_cut_into_the_datagrams_sent(gro):
    import gevent
    receiver = udp.open_udp(socket.AF_INET)
    receiver.bind(("127.0.0.1", 0))
    if gro and not udp.enable_gro(receiver):
        pytest.skip("this kernel has no UDP GRO")
    sender = udp.open_udp(socket.AF_INET)
    sizes = [1232] * 70 + [700, 1232, 1232, 90, 5]
    datagrams = [os.urandom(size) for size in sizes]
    assert udp.send_many(sender, datagrams, receiver.getsockname()) == len(datagrams)
    readable = udp.Readable(receiver.fileno())
    received, reads = [], 0
    with gevent.Timeout(5):
        while len(received) < len(datagrams):
            batch = udp.receive_batch(receiver, readable, 2048, limit=1)   # one read a call
            reads += 1
            received += batch
    assert [data for data, _ in received] == datagrams     # whole, in order, cut where sent
    assert all(addr == ("127.0.0.1", sender.getsockname()[1]) for _, addr in received)
    if gro:
        assert reads < len(datagrams) / 4                  # runs came in single reads
    else:
        assert reads == len(datagrams)
    readable.close()
    receiver.close()
    sender.close()


def test_a_gro_read_cuts_an_oversized_datagram_as_recvfrom_would():
    receiver = udp.open_udp(socket.AF_INET)
    receiver.bind(("127.0.0.1", 0))
    if not udp.enable_gro(receiver):
        pytest.skip("this kernel has no UDP GRO")
    sender = udp.open_udp(socket.AF_INET)
    sender.sendto(b"x" * 3000, receiver.getsockname())
    batch = []
    receiver.settimeout(2)
    receiver.setblocking(True)
    udp._receive_run(receiver, 2048, batch)
    assert [len(data) for data, _ in batch] == [2048]
    receiver.close()
    sender.close()
