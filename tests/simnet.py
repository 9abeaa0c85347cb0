"""A simulated network and toy screen for driving channel pairs with a fake clock.

Nothing here touches a socket: addresses are labels, time is a float the
simulation advances from one event to the next. Loss, duplication, reordering
and delay are seeded random choices, so every run of a test is the same run.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import nacl.signing

from moshpit.protocol.channel import Channel, ChannelConfig, Role
from moshpit.protocol.events import DataReceived, ScreenUpdate
from moshpit.protocol.handshake import ClientHandshake, DiffMode, ServerHandshake
from moshpit.protocol.sessions import PortPool, SessionRegistry
from moshpit.protocol.streampath import StreamAddress, is_stream

CLIENT_ADDR = ("127.0.0.1", 41000)
SERVER_ADDR = ("127.0.0.1", 50001)
STREAM = StreamAddress("tcp", 1)      # the key exchange's connection, kept as a path


# --- a toy screen: states are byte strings, a diff keeps a common prefix -----

def make_diff(old: bytes, new: bytes) -> bytes:
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    return prefix.to_bytes(4, "big") + new[prefix:]


def apply_diff(old: bytes, diff: bytes) -> bytes:
    prefix = int.from_bytes(diff[:4], "big")
    assert prefix <= len(old), "diff applied to the wrong base"
    return old[:prefix] + diff[4:]


class ServerScreen:
    def __init__(self):
        self.states = {0: b""}
        self.current = 0
        self.diffs_made = []

    def update(self, text: bytes) -> int:
        self.current += 1
        self.states[self.current] = text
        return self.current

    def source(self, base: int, state: int) -> bytes:
        self.diffs_made.append((base, state))
        return make_diff(self.states[base], self.states[state])


class ClientScreen:
    def __init__(self):
        self.held = {0: b""}
        self.state = 0
        self.missing_base = 0

    @property
    def text(self) -> bytes:
        return self.held[self.state]

    def apply(self, event: ScreenUpdate, channel: Channel) -> None:
        if event.state <= self.state:
            return
        if event.base not in self.held:
            self.missing_base += 1
            channel.request_repaint()
            return
        self.held[event.state] = apply_diff(self.held[event.base], event.data)
        self.state = event.state
        for old in [s for s in self.held if s < event.base]:
            del self.held[old]
        channel.screen_applied(event.state)


# --- handshake in memory ------------------------------------------------------

def pump_handshake(client: ClientHandshake, server: ServerHandshake, now: float = 0.0) -> None:
    """Shuttle bytes until neither side has anything more to say."""
    for _ in range(10):
        moved = False
        for a, b in ((client, server), (server, client)):
            data = a.data_to_send()
            if data and not b.finished:
                b.receive_data(data, now)
                moved = True
        if not moved:
            return


def handshake(diff_mode=DiffMode.RELIABLE, *, registry=None, client_key=None, host_key=None,
              token=None, now=0.0):
    """A full, accepting handshake; returns (client params, server params, admission)."""
    client_key = client_key or nacl.signing.SigningKey.generate()
    host_key = host_key or nacl.signing.SigningKey.generate()
    registry = registry if registry is not None else SessionRegistry(PortPool(range(50000, 50010)))
    c = ClientHandshake(client_key, "alice", now=now, diff_mode=diff_mode, resume_token=token)
    s = ServerHandshake(host_key, now=now)
    pump_handshake(c, s, now)
    c.next_event()
    c.accept_host_key()
    pump_handshake(c, s, now)
    request = s.next_event()
    admission = registry.admit(request.user, request.client_key, request.resume_token)
    server_params = s.accept(conn_id=admission.session.conn_id, udp_port=admission.session.udp_port,
                             session_id=admission.session.session_id,
                             resume_token=admission.resume_token, resumed=admission.resumed)
    pump_handshake(c, s, now)
    return c.params, server_params, admission


# --- the network --------------------------------------------------------------

@dataclass(order=True)
class _InFlight:
    arrival: float
    order: int
    data: bytes = field(compare=False)
    src: object = field(compare=False)
    dst: object = field(compare=False)


@dataclass
class Link:
    """Impairments of one direction."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0      # chance a datagram is held back an extra delay
    delay: float = 0.025
    jitter: float = 0.005
    up: bool = True           # False: everything is lost (a tunnel, a lid closed)
    black_hole: object = None  # callable(datagram) -> True to lose that datagram every time


class Peeker:
    """Reads the OSN inside a datagram, as only a test (holding the keys) can."""

    def __init__(self, params):
        self.keys = params.keys
        self.conn_id = params.conn_id

    def osn(self, datagram: bytes, direction: int) -> int | None:
        from moshpit import codec
        from moshpit.crypto import PacketOpener
        from moshpit.errors import DatagramDropped
        from moshpit.replay import ReplayWindow
        keys = self.keys.server_to_client if direction else self.keys.client_to_server
        opener = PacketOpener(keys, conn_id=self.conn_id, direction=direction,
                              replay=ReplayWindow(max_ahead=2**63))
        try:
            _, payload = opener.open(datagram)
        except DatagramDropped:
            return None
        for frame_type, body in codec.decode_frames(payload):
            if frame_type == codec.FRAME_OSN:
                return int.from_bytes(body, "big")
        return None


class Endpoint:
    def __init__(self, name, channel, addr):
        self.name, self.channel, self.addr = name, channel, addr
        self.events = []
        self.received = bytearray()


class SimNet:
    """A client and a server channel joined by two impaired links and one fake clock."""

    def __init__(self, diff_mode=DiffMode.RELIABLE, *, seed=0, down: Link | None = None,
                 up: Link | None = None, config: ChannelConfig | None = None, params=None,
                 screen_source=None, event_hook=None):
        self.rng = random.Random(seed)
        self.now = 0.0
        client_params, server_params, self.admission = params or handshake(diff_mode)
        self.peek = Peeker(client_params)
        self.server_screen = ServerScreen()
        self.client_screen = ClientScreen()
        self.client = Endpoint("client", Channel.from_params(
            Role.CLIENT, client_params, now=0.0, peer_addr=SERVER_ADDR, config=config), CLIENT_ADDR)
        self.server = Endpoint("server", Channel.from_params(
            Role.SERVER, server_params, now=0.0, config=config,
            screen_source=screen_source or self.server_screen.source), SERVER_ADDR)
        self.event_hook = event_hook
        # "stream": the kept TCP connection, both ways: in order, nothing lost (``up`` False:
        # stalled, everything held back... here, as good as lost)
        self.links = {"down": down or Link(), "up": up or Link(), "stream": Link(jitter=0)}
        self.queue: list[_InFlight] = []
        self._order = 0
        self.sent = {"client": 0, "server": 0}
        self.tap = []                    # every datagram put on the wire: (time, src, dst, bytes)

    # -- helpers for tests
    def server_output(self, data: bytes):
        self.server.channel.send_data(data)

    def screen(self, text: bytes):
        self.server.channel.screen_changed(self.server_screen.update(text))

    def inject(self, data: bytes, src, dst_endpoint: Endpoint, delay: float = 0.0):
        """Put an arbitrary datagram on the wire (an attacker's, or a replay)."""
        self._order += 1
        heapq.heappush(self.queue, _InFlight(self.now + delay, self._order, data, src, dst_endpoint))

    # -- the engine
    def _transmit(self, src: Endpoint, data: bytes, dst_addr):
        self.sent[src.name] += 1
        self.tap.append((self.now, src.addr, dst_addr, data))
        dst = self.server if src is self.client else self.client
        if is_stream(dst_addr):
            if dst_addr == STREAM and self.links["stream"].up:
                self._order += 1
                heapq.heappush(self.queue, _InFlight(self.now + self.links["stream"].delay, self._order,
                                                     data, STREAM, dst))
            return
        link = self.links["up" if src is self.client else "down"]
        if dst_addr != dst.addr and dst is self.client:
            return  # sent to an address nobody listens on any more
        copies = 1 + (self.rng.random() < link.duplicate)
        for _ in range(copies):
            if not link.up or self.rng.random() < link.loss:
                continue
            if link.black_hole is not None and link.black_hole(data):
                continue
            delay = link.delay + self.rng.uniform(0, link.jitter)
            if self.rng.random() < link.reorder:
                delay += link.delay
            self._order += 1
            heapq.heappush(self.queue, _InFlight(self.now + delay, self._order, data, src.addr, dst))

    def _flush(self):
        for ep in (self.client, self.server):
            for data, addr in ep.channel.datagrams_to_send(self.now):
                self._transmit(ep, data, addr)

    def _drain_events(self):
        for ep in (self.client, self.server):
            while (event := ep.channel.next_event()) is not None:
                ep.events.append((self.now, event))
                if self.event_hook is not None:
                    self.event_hook(ep, event)
                    continue
                if ep is self.client and isinstance(event, ScreenUpdate):
                    self.client_screen.apply(event, ep.channel)
                if isinstance(event, DataReceived):
                    ep.received += event.data

    def step(self, until: float) -> bool:
        """Advance to the next event no later than ``until``; False when nothing happens before it."""
        self._flush()
        candidates = [until]
        if self.queue:
            candidates.append(self.queue[0].arrival)
        for ep in (self.client, self.server):
            timer = ep.channel.get_timer()
            if timer is not None:
                candidates.append(timer)
        self.now = max(self.now, min(candidates))
        progressed = False
        while self.queue and self.queue[0].arrival <= self.now:
            item = heapq.heappop(self.queue)
            item.dst.channel.receive_datagram(item.data, item.src, self.now)
            progressed = True
        for ep in (self.client, self.server):
            timer = ep.channel.get_timer()
            if timer is not None and timer <= self.now:
                ep.channel.handle_timer(self.now)
                progressed = True
        self._drain_events()
        self._flush()
        return progressed or self.now < until

    def run_until(self, predicate, timeout: float) -> bool:
        deadline = self.now + timeout
        stuck, last = 0, self.now
        while self.now < deadline:
            if predicate():
                return True
            self.step(deadline)
            stuck = stuck + 1 if self.now == last else 0
            last = self.now
            assert stuck < 10_000, "a channel timer keeps firing without time moving on"
        return predicate()

    def run_for(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def move_client(self, new_addr):
        """The client roams: same channel, new source address."""
        self.client.addr = new_addr
        self.client.channel.path_changed()


def random_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)

