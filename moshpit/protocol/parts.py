"""The channel's settings and its components, built once per connection (no I/O).

``Channel`` (the facade: calls in, frames dispatched, timers) and ``Transmitter``
(what goes out, and when) share one ``ChannelParts``: each component owns one
concern (recovery.py, receive.py, path.py, screenflow.py, closing.py, rtt.py), and
what crosses between them (the send intent, the close state, the RTT) is named here.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from dataclasses import dataclass, field

from moshpit import codec
from moshpit.errors import LocalProtocolError
from moshpit.protocol.closing import Closing
from moshpit.protocol.events import Event
from moshpit.protocol.handshake import DiffMode
from moshpit.protocol.path import ClientPath, NetworkPath
from moshpit.protocol.receive import ReceiveFlow
from moshpit.protocol.recovery import RenoWindow, SendFlow
from moshpit.protocol.rtt import PingClock, RttEstimator
from moshpit.protocol.screenflow import EchoAcks, ScreenReceiver, ScreenSender


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class ChannelConfig:
    max_datagram_size: int = 1232       # 1280 minus IPv6 and UDP headers: no path fragments it
    keepalive_interval: float = 3.0
    silence_threshold: float = 6.5      # report the peer silent after this long
    silence_report_interval: float = 1.0
    # At most one screen message per frame_interval, after frame_burst at once following a
    # quiet spell (so a command's output follows its echo without the wait).
    frame_interval: float = 0.050
    frame_burst: int = 2
    # Acknowledge within ack_delay, or at once after ack_every bundles.
    ack_delay: float = 0.020
    ack_every: int = 16
    initial_window: int = 64            # bundles in flight (congestion window)
    min_window: int = 32                # random loss is not congestion: keep a floor
    max_window: int = 448               # below the ring size: NAKed data is still there
    # The screen modes' output flow (scrollback lines) is second to the screens: this few
    # bundles in flight, so it never queues up far ahead of a screen on a slow path.
    lines_window: int = 32
    retransmit_capacity: int = 512      # bundles kept for resending (a power of two)
    close_timeout: float = 3.0
    amplification_factor: int = 3
    max_screen_bytes: int = 8 << 20

    def __post_init__(self):
        if not codec.OVERHEAD + 100 <= self.max_datagram_size <= codec.MAX_DATAGRAM_SIZE:
            raise LocalProtocolError("max_datagram_size out of range")
        if not 1 <= self.min_window <= self.initial_window <= self.max_window < self.retransmit_capacity:
            raise LocalProtocolError("need min_window <= initial_window <= max_window < retransmit_capacity")


@dataclass
class SendIntent:
    """Why the next datagram should go even with nothing else due, set from wherever the
    reason arises (a keepalive, a path change, an echo ack, a PADDING probe heard) and
    cleared when a datagram goes."""
    force: bool = False      # send one now
    pad: bool = False        # client: fill it to the full size (earns the server an answer budget)
    elicit: bool = False     # add an empty PADDING frame: "answer me now" (validates an address)

    def clear(self) -> None:
        self.force = self.pad = self.elicit = False


@dataclass
class ChannelParts:
    config: ChannelConfig
    is_client: bool
    # Both directions have an ordered, reliable flow in every mode (keystrokes up; the
    # output stream, or in the screen modes the scrollback's lines, down). ``send_reliable``
    # says whether the screen, echo acks and CLOSE we send travel in it too.
    send_reliable: bool
    rtt: RttEstimator
    clock: PingClock
    network: NetworkPath
    path: ClientPath | None            # client: when to move sockets, hello again
    intent: SendIntent
    send: SendFlow
    receive: ReceiveFlow
    echo_acks: EchoAcks
    screens_out: ScreenSender | None   # the server's
    screens_in: ScreenReceiver
    closing: Closing
    events: deque[Event] = field(default_factory=deque)
    stats: Counter = field(default_factory=Counter)

    @classmethod
    def build(cls, is_client: bool, diff_mode: DiffMode, config: ChannelConfig, *, now: float,
              peer_addr, screen_source) -> ChannelParts:
        reliable_down = diff_mode is DiffMode.RELIABLE
        window_cap = (config.lines_window if not (is_client or reliable_down)
                      else config.retransmit_capacity - 1)
        rtt = RttEstimator()
        return cls(
            config=config, is_client=is_client, send_reliable=is_client or reliable_down,
            rtt=rtt, clock=PingClock(now, rtt),
            network=NetworkPath(peer_addr, validated=is_client and peer_addr is not None,
                                factor=config.amplification_factor),
            path=ClientPath(now) if is_client else None,
            intent=SendIntent(force=is_client, pad=is_client),   # the client speaks first, padded
            send=SendFlow(config.retransmit_capacity,
                          RenoWindow(config.initial_window, config.min_window, config.max_window), window_cap),
            receive=ReceiveFlow(max_retries=10 if is_client else -1,
                                ack_delay=config.ack_delay, ack_every=config.ack_every),
            echo_acks=EchoAcks(),
            screens_out=None if is_client else ScreenSender(
                screen_source, config.frame_interval, config.frame_burst, diffs=diff_mode is DiffMode.STATESYNC),
            screens_in=ScreenReceiver(config.max_screen_bytes),
            closing=Closing(config.close_timeout))

    @property
    def screen_state(self) -> int:
        """Server: the newest screen; client: the newest applied."""
        return self.screens_out.state if self.screens_out is not None else self.screens_in.state
