"""Events the sans-IO state machines hand to their caller through ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


# --- channel ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """Bytes of the peer's ordered, reliable stream (keystrokes, or PTY output in reliable mode)."""
    data: bytes


@dataclass(frozen=True, slots=True)
class OutputSkipped(Event):
    """The server's output goes on from ``offset`` (``lines`` newlines before it): what
    came between was more than it keeps for an absent client. A repaint follows."""
    offset: int
    lines: int


@dataclass(frozen=True, slots=True)
class Resized(Event):
    """The client's window changed size."""
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class ScreenUpdate(Event):
    """A screen message: ``data`` turns state ``base`` (0 = blank) into state ``state``.

    The client applies it if it still holds ``base`` and then calls
    ``Channel.screen_applied(state)``.
    """
    base: int
    state: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamGap(Event):
    """Datagrams ``first..last`` of the peer's ordered stream were given up; a repaint follows."""
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class PeerSilent(Event):
    """Nothing authentic heard from the peer for ``seconds`` (reported about once a second)."""
    seconds: float


@dataclass(frozen=True, slots=True)
class PeerReachable(Event):
    """The peer is heard again after ``silent_for`` seconds of silence."""
    silent_for: float


@dataclass(frozen=True, slots=True)
class AddressChanged(Event):
    """The server adopted a new client address (roaming); it is not validated yet."""
    old: object
    new: object


@dataclass(frozen=True, slots=True)
class EchoAcknowledged(Event):
    """Client: screen state ``state`` and later (in ``reliable``: the output received so
    far) account for ``keystrokes`` bytes of input; ``flags`` say whether the shell's
    terminal echoes (1) and is in canonical mode (2). For keystroke prediction."""
    state: int
    keystrokes: int
    flags: int


@dataclass(frozen=True, slots=True)
class MoveRequested(Event):
    """Client: move to a new socket now (the runtime re-opens it and calls
    ``Channel.path_changed``): the path has been silent while we wait for an answer."""
    silent_for: float


@dataclass(frozen=True, slots=True)
class AddressValidated(Event):
    """The client proved it receives at ``addr``: the anti-amplification limit is lifted."""
    addr: object


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The channel is closed. ``by_peer``: the peer asked; ``timed_out``: no answer came;
    ``exit_status``: the shell's (0..255, 128+N for signal N) when ``code`` is SHELL_EXITED."""
    code: int
    reason: str
    by_peer: bool
    timed_out: bool = False
    exit_status: int = 0


# --- handshake --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HostKeyReceived(Event):
    """Client side: the server proved it holds this host key; accept or reject it."""
    host_key: bytes
    fingerprint: str


@dataclass(frozen=True, slots=True)
class AuthRequested(Event):
    """Server side: a client proved it holds ``client_key``; accept or refuse it."""
    user: str
    client_key: bytes
    fingerprint: str
    resume_token: bytes | None
    diff_mode: str
    cols: int
    rows: int
    env: dict
    resume_only: bool = False     # reconnecting by itself: refuse rather than open a new session
    shown: tuple[int, int] | None = None   # (bytes, lines) of output its terminal has, if known
    forward_agent: bool = False   # it forwards its ssh agent (mp -A)


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    """Both sides are authenticated; ``params`` holds everything the channel needs."""
    params: object


@dataclass(frozen=True, slots=True)
class HandshakeRefused(Event):
    """Client side: the server refused us (``reason`` is all it chose to say)."""
    code: int
    reason: str
