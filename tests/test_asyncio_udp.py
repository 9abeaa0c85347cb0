"""The sans-IO core driven from asyncio over real loopback TCP and UDP: no gevent involved.

The driver below is the whole of what an event loop must do: shuttle bytes,
re-arm one timer after every input, and read events.
"""

import asyncio
import socket
import sys

import nacl.signing
import pytest

from moshpit.protocol.channel import Channel, CloseCode, Role
from moshpit.protocol.events import ConnectionClosed, DataReceived, HandshakeComplete
from moshpit.protocol.handshake import ClientHandshake, DiffMode, ServerHandshake
from moshpit.protocol.sessions import PortPool, SessionRegistry
from simnet import random_bytes

LOOPBACK = "127.0.0.1"


class AsyncioDriver(asyncio.DatagramProtocol):
    """Runs one Channel on an asyncio UDP endpoint."""

    def __init__(self, make_channel):
        self.make_channel = make_channel
        self.channel = None
        self.transport = None
        self.timer = None
        self.received = bytearray()
        self.events = []
        self.changed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.channel = self.make_channel(self.loop.time(), transport.get_extra_info("peername"))
        self.service()

    def datagram_received(self, data, addr):
        self.channel.receive_datagram(data, addr, self.loop.time())
        self.service()

    def on_timer(self):
        self.timer = None
        self.channel.handle_timer(self.loop.time())
        self.service()

    def service(self):
        now = self.loop.time()
        for data, addr in self.channel.datagrams_to_send(now):
            if self.transport.get_extra_info("peername") is not None:
                self.transport.sendto(data)
            else:
                self.transport.sendto(data, addr)
        while (event := self.channel.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.received += event.data
            self.changed.set()
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.channel.get_timer()
        self.timer = None if deadline is None else self.loop.call_at(max(deadline, now), self.on_timer)

    def send(self, data: bytes):
        self.channel.send_data(data)
        self.service()

    async def wait_for(self, predicate, timeout=20.0):
        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
        self.transport.close()


async def run_session(diff_mode: DiffMode):
    host_key, client_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    registry = SessionRegistry(PortPool(range(50000, 60000)))
    servers = []
    loop = asyncio.get_running_loop()

    async def serve(reader, writer):
        hs = ServerHandshake(host_key, now=loop.time())
        while hs.params is None:
            hs.receive_data(await reader.read(4096), loop.time())
            request = hs.next_event()
            if request is not None:
                admission = registry.admit(request.user, request.client_key, request.resume_token)
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((LOOPBACK, 0))        # the session's UDP port, bound before we name it
                params = hs.accept(conn_id=admission.session.conn_id,
                                   udp_port=sock.getsockname()[1],
                                   session_id=admission.session.session_id,
                                   resume_token=admission.resume_token)
                _, driver = await loop.create_datagram_endpoint(
                    lambda: AsyncioDriver(lambda now, _peer: Channel.from_params(
                        Role.SERVER, params, now=now, screen_source=lambda base, state: b"")),
                    sock=sock)
                servers.append(driver)
            writer.write(hs.data_to_send())
            await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(serve, LOOPBACK, 0)
    port = tcp.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    hs = ClientHandshake(client_key, "alice", now=loop.time(), diff_mode=diff_mode)
    writer.write(hs.data_to_send())
    while hs.params is None:
        hs.receive_data(await reader.read(4096), loop.time())
        while (event := hs.next_event()) is not None:
            if not isinstance(event, HandshakeComplete):
                assert event.host_key == bytes(host_key.verify_key)
                hs.accept_host_key()
        writer.write(hs.data_to_send())
        await writer.drain()
    writer.close()
    params = hs.params
    _, client = await loop.create_datagram_endpoint(
        lambda: AsyncioDriver(lambda now, peer: Channel.from_params(Role.CLIENT, params, now=now,
                                                                   peer_addr=peer)),
        remote_addr=(LOOPBACK, params.udp_port))
    tcp.close()
    return client, servers[0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")
def test_reliable_session_over_real_udp_from_asyncio():
    async def main():
        client, server = await run_session(DiffMode.RELIABLE)
        try:
            await server.wait_for(lambda: server.channel.peer_addr is not None)
            output = random_bytes(300_000, 7)
            for i in range(0, len(output), 8192):
                server.send(output[i:i + 8192])
            await client.wait_for(lambda: len(client.received) >= len(output))
            assert bytes(client.received) == output
            client.send(b"echo hello\r")
            await server.wait_for(lambda: server.received == b"echo hello\r")
            server.channel.close(CloseCode.SHELL_EXITED, "exit 0", now=asyncio.get_running_loop().time())
            server.service()
            await client.wait_for(lambda: any(isinstance(e, ConnectionClosed) for e in client.events))
            closed = [e for e in client.events if isinstance(e, ConnectionClosed)][0]
            assert (closed.code, closed.by_peer) == (CloseCode.SHELL_EXITED, True)
            assert client.channel.srtt is not None and client.channel.srtt < 0.5
            assert not client.channel.drops and not server.channel.drops
        finally:
            client.close()
            server.close()

    asyncio.run(main())
