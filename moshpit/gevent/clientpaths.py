"""The client's ways to the server for one connection: its UDP link and the kept
key-exchange stream, with the PathChooser (protocol/transport.py) saying which one
the channel uses. The runtime half of "works where UDP is blocked".
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections.abc import Callable

from moshpit.protocol.channel import Channel
from moshpit.protocol.streampath import StreamAddress, is_stream
from moshpit.protocol.transport import PathChooser, Step, Transport
from moshpit.gevent import udp as udpio
from moshpit.gevent.datagramstream import DatagramStream

log = logging.getLogger("moshpit.client")

_serials = itertools.count(1)
FIREWALLED = frozenset({errno.EPERM, errno.EACCES})     # a local firewall said no to a datagram
SPOKEN = {"tcp": "TCP", "ssh": "the ssh connection"}      # a stream's kind, for the user


class ClientPaths:
    def __init__(self, udp: udpio.UdpLink, stream_sock, channel: Channel, transport: Transport, now: float, *,
                 on_stream_datagrams: Callable[[list[bytes], StreamAddress], None],
                 on_stream_closed: Callable[[], None], say: Callable[[str], None], stream_kind: str = "tcp"):
        """``stream_sock``: the key exchange's connection (or ssh's pipes), kept (None: the
        route keeps none), of ``stream_kind``. ``say``: a short-lived notice for the user
        (the status bar)."""
        self.udp, self.channel, self._say = udp, channel, say
        self._on_stream_closed = on_stream_closed
        self.stream: DatagramStream | None = None
        self._spoken = SPOKEN.get(stream_kind, stream_kind)
        if stream_sock is not None and transport is not Transport.UDP:
            self.stream = DatagramStream(stream_sock, StreamAddress(stream_kind, next(_serials)),
                                         on_stream_datagrams, self._stream_closed)
        elif stream_sock is not None:
            stream_sock.close()
        if transport is Transport.STREAM and self.stream is None:
            log.warning("transport = stream, but no connection was kept: using UDP")
        self.chooser = PathChooser(transport, now, stream=self.stream is not None)
        self.apply(self.chooser.first_steps(), now)

    @property
    def on_stream(self) -> bool:
        return self.chooser.on_stream

    def send(self, datagrams: list[tuple[bytes, object]], now: float) -> int | None:
        """Everything the channel has due, each to its path; the errno of the first local
        UDP failure (None: none). A local firewall's refusal (EPERM, EACCES) moves the
        session to the stream at once (auto), and what was due goes again there."""
        error = self._send(datagrams)
        if error in FIREWALLED:
            steps = self.chooser.udp_silent(now)
            if steps:
                self.apply(steps, now)
                return self._send(self.channel.datagrams_to_send(now))
        return error

    def _send(self, datagrams: list[tuple[bytes, object]]) -> int | None:
        """One turn's datagrams, all to the channel's one path."""
        if not datagrams:
            return None
        if is_stream(datagrams[0][1]):
            if self.stream is not None:
                self.stream.send_many([data for data, _ in datagrams])
            return None
        error = None
        for data, _ in datagrams:
            failed = self.udp.send(data)
            error = error if error is not None else failed
        return error

    def heard_udp(self, now: float) -> None:
        self.apply(self.chooser.heard_udp(now), now)

    def udp_silent(self, now: float) -> None:
        self.apply(self.chooser.udp_silent(now), now)

    def get_timer(self) -> float | None:
        return self.chooser.get_timer()

    def handle_timer(self, now: float) -> None:
        self.apply(self.chooser.handle_timer(now), now)

    def apply(self, steps: list[Step], now: float) -> None:
        for step in steps:
            if step in (Step.USE_STREAM, Step.RECALL) and self.stream is not None:
                self.channel.use_path(self.stream.addr)
                if step is Step.USE_STREAM:
                    log.info("no answer over UDP: the session goes over %s now", self._spoken)
                    self._say(f"mp: UDP gets no answer here; the session goes over {self._spoken}.")
            elif step is Step.USE_UDP:
                self.channel.use_path(self.udp.server_addr)
                log.info("UDP answers again: the session goes over UDP now")
                self._say("mp: back on UDP.")
            elif step is Step.PROBE_UDP:
                self.udp.send(self.channel.probe_datagram(now))

    def _stream_closed(self, stream: DatagramStream) -> None:
        if self.chooser.stream_lost():
            log.info("%s carrying the session closed; reconnecting", stream.addr)
            self.channel.use_path(self.udp.server_addr)
            self._on_stream_closed()

    def close(self) -> None:
        self.udp.close()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream.close()                       # (closed here: not a loss to act on)
