"""The TCP key exchange, both roles, as sans-IO state machines.

Four messages, each ``type (1) | length (2) | body``::

    C -> S  CLIENT_HELLO   version, client ephemeral X25519 key, client random
    S -> C  SERVER_HELLO   version, server ephemeral key, server random, host key,
                           Ed25519 signature over the transcript so far
    C -> S  CLIENT_AUTH    sealed under k_c_hs: user, identity key, resume token,
                           diff mode, window size, environment, and the client's
                           Ed25519 signature over the whole transcript
    S -> C  SERVER_ACCEPT  sealed under k_s_hs: connection id, UDP port,
            or SERVER_REFUSE  session id, resume token / a refusal code and reason

Both identities are proven by signatures over a transcript that includes both
fresh ephemerals, so neither signature can be replayed into another handshake;
the traffic keys (see ``moshpit.crypto``) hash in everything both sides signed.
An ERROR message (clear) ends a handshake early with a code.

The caller feeds TCP bytes to ``receive_data`` (``b""`` at end of file), sends
whatever ``data_to_send`` returns, answers events (``HostKeyReceived`` on the
client, ``AuthRequested`` on the server) and arms one timer from ``get_timer``.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from moshpit import crypto
from moshpit.errors import LocalProtocolError, RemoteProtocolError, printable
from moshpit.keys import fingerprint
from moshpit.protocol.events import (AuthRequested, Event, HandshakeComplete,
                                     HandshakeRefused, HostKeyReceived)

VERSION = 6             # 2: resume-only requests, input count in SERVER_ACCEPT; 3: exit status in CLOSE;
                        # 4: ECHO_ACK frames (keystroke prediction); 5: output shown in CLIENT_AUTH, SKIP;
                        # 6: forwarded streams (STREAM_* and FORWARD frames), the agent flag
_UNKNOWN = 0xFFFFFFFFFFFFFFFF   # "shown" not known: a fresh client with nothing to go on
MAX_MESSAGE_BODY = 4096
DEFAULT_TIMEOUT = 10.0
TOKEN_SIZE = 32
SESSION_ID_SIZE = 16

_HEADER = struct.Struct("!BH")
_ZERO_NONCE = bytes(12)
_SERVER_SIG_CONTEXT = b"moshpit v1 server signature\0"
_CLIENT_SIG_CONTEXT = b"moshpit v1 client signature\0"


class MessageType(enum.IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CLIENT_AUTH = 3
    SERVER_ACCEPT = 4
    SERVER_REFUSE = 5
    ERROR = 6


class DiffMode(enum.Enum):
    RELIABLE = "reliable"
    DATAGRAM = "datagram"
    STATESYNC = "statesync"


_MODE_CODES = {DiffMode.RELIABLE: 0, DiffMode.DATAGRAM: 1, DiffMode.STATESYNC: 2}
_CODE_MODES = {v: k for k, v in _MODE_CODES.items()}
_RESUME_ONLY = 0x80        # in the diff-mode byte: re-attach or refuse, never open a new session
_FORWARD_AGENT = 0x40      # ...and: this client forwards its ssh agent (mp -A)


class Failure(enum.IntEnum):
    """Why a handshake ended without a session; carried by HandshakeError and ERROR messages."""

    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    OVERSIZED = 3
    UNEXPECTED_MESSAGE = 4
    TRUNCATED = 5
    BAD_SIGNATURE = 6
    DECRYPT_FAILED = 7
    TIMEOUT = 8
    BAD_KEY = 9
    PEER_ERROR = 10
    HOST_KEY_REJECTED = 11
    BUSY = 12                  # server: too many key exchanges now; the text says when to retry


class RefuseCode(enum.IntEnum):
    NOT_AUTHORISED = 1
    SERVER_BUSY = 2
    UNSUPPORTED = 3
    NO_SESSION = 4         # a resume-only request named a session that no longer exists


class HandshakeError(RemoteProtocolError):
    """The handshake failed because of what the peer (or the network) did.

    The message is ``code: detail``, unless ``plain`` says the detail alone is
    clearer to a user (the code is still there, for the ERROR message and callers).
    """

    def __init__(self, code: Failure, detail: str = "", *, plain: bool = False):
        self.code = code
        self.detail = detail
        name = code.name.lower().replace("_", " ")
        super().__init__(detail if plain else name + (f": {detail}" if detail else ""))


class ServerBusy(HandshakeError):
    """The server turned the key exchange away before any cryptography: try again in
    ``retry_after`` seconds. (The ERROR is in clear; a forger could as well drop packets.)"""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(Failure.BUSY, f"the server is busy; try again in {retry_after} s", plain=True)


MAX_RETRY_AFTER = 60


def busy_message(retry_after: int) -> bytes:
    """What a server sends instead of starting a handshake it has no room for: an ERROR
    with code BUSY and ``BUSY <seconds>``, built from nothing (no state, no keys)."""
    return _message(MessageType.ERROR, bytes([Failure.BUSY]) + f"BUSY {int(retry_after)}".encode())


class NotMoshpitPeer(HandshakeError):
    """The peer does not speak moshpit at all: its first bytes cannot open a handshake.

    A user who points ``mp`` at a web or SSH port should read "this is not a
    moshpit server", not a length check tripped by the bytes of an HTTP reply.
    """

    def __init__(self, code: Failure, role: str, sent: bytes):
        super().__init__(code, f"this is not a moshpit {role} (it sent {excerpt(sent)})", plain=True)


_EXCERPT_CHARS = 60
_EXCERPT_HEX_BYTES = 8


def excerpt(data: bytes) -> str:
    """A short, safe quote of what a peer sent, for an error message.

    Only the first line, at most 60 characters; bytes that are not nearly all text
    are shown as hex instead, since a row of ``?`` tells the reader nothing.
    """
    data = bytes(data)
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    text = printable(line, _EXCERPT_CHARS)
    if line and text.count("?") * 10 <= len(text):
        return f"'{text}'" + ("..." if len(line) > _EXCERPT_CHARS else "")
    shown = " ".join(f"{b:02x}" for b in data[:_EXCERPT_HEX_BYTES])
    return f"bytes {shown}" + (" ..." if len(data) > _EXCERPT_HEX_BYTES else "")


class State(enum.Enum):
    SENT_HELLO = "sent-hello"            # client: waiting for SERVER_HELLO
    WAIT_HELLO = "wait-hello"            # server: waiting for CLIENT_HELLO
    HOST_KEY_DECISION = "host-key-decision"
    SENT_AUTH = "sent-auth"              # client: waiting for ACCEPT / REFUSE
    WAIT_AUTH = "wait-auth"              # server: waiting for CLIENT_AUTH
    AUTH_DECISION = "auth-decision"      # server: waiting for accept() / refuse()
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class SessionParams:
    """What both ends agreed; enough to build a channel."""

    conn_id: int
    udp_port: int
    session_id: bytes
    resume_token: bytes
    resumed: bool
    diff_mode: DiffMode
    keys: crypto.TrafficKeys = field(repr=False)
    client_key: bytes
    host_key: bytes
    user: str
    cols: int
    rows: int
    env: dict
    input_received: int = 0    # keystroke bytes the session's shell got before this connection
    shown: tuple[int, int] | None = None   # (bytes, lines) of output the client's terminal has
    forward_agent: bool = False            # the client forwards its ssh agent (mp -A)


class _Reader:
    """Bounds-checked reads from a message body; any shortfall is MALFORMED."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise HandshakeError(Failure.MALFORMED, "message body too short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def text(self, size_bytes: int) -> str:
        n = self.u8() if size_bytes == 1 else self.u16()
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise HandshakeError(Failure.MALFORMED, "text is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise HandshakeError(Failure.MALFORMED, "trailing bytes in message")


def _message(kind: MessageType, body: bytes) -> bytes:
    if len(body) > MAX_MESSAGE_BODY:
        raise LocalProtocolError(f"handshake message of {len(body)} bytes is too long")
    return _HEADER.pack(kind, len(body)) + body


def _seal(key: bytes, kind: MessageType, plaintext: bytes) -> bytes:
    # Each handshake key seals exactly one message, so a fixed nonce is safe.
    sealed_len = len(plaintext) + 16
    return _message(kind, AESGCMSIV(key).encrypt(_ZERO_NONCE, plaintext, _HEADER.pack(kind, sealed_len)))


def _open(key: bytes, kind: MessageType, body: bytes) -> bytes:
    try:
        return AESGCMSIV(key).decrypt(_ZERO_NONCE, body, _HEADER.pack(kind, len(body)))
    except InvalidTag:
        raise HandshakeError(Failure.DECRYPT_FAILED, f"{kind.name} does not open") from None


def _verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        raise HandshakeError(Failure.BAD_SIGNATURE) from None


class _Handshake:
    """What both roles share: framing, the transcript, timers, the event queue."""

    _PEER: str                  # each role sets: what its peer is called in messages,
    _FIRST_STATE: State         # the state that waits for the peer's first message,
    _OPENERS: tuple             # the message types that may open the peer's side,
    _SILENT_CLOSE: str          # and what to say if the peer hangs up without a byte

    def __init__(self, now: float, timeout: float, rng):
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._events: list[Event] = []
        self._deadline = now + timeout
        self._rng = rng
        self._transcript: list[bytes] = []
        private = rng(32)   # drawn from rng (not pynacl) so tests can replay a handshake exactly
        self._ephemeral = (nacl.bindings.crypto_scalarmult_base(private), private)
        self._random = rng(32)
        self._prk = b""
        self._heard = False        # has the peer sent a single byte yet?
        self.state: State
        self.failure: HandshakeError | None = None
        self.params: SessionParams | None = None

    # -- caller API ------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = bytes(self._outbuf)
        self._outbuf.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        return None if self.finished else self._deadline

    def handle_timer(self, now: float) -> None:
        if not self.finished and now >= self._deadline:
            self._fail(HandshakeError(Failure.TIMEOUT, "handshake took too long"), tell_peer=True)

    @property
    def finished(self) -> bool:
        return self.state in (State.DONE, State.REFUSED, State.FAILED)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from TCP; ``b""`` means the peer closed its side."""
        if self.finished:
            return
        if now >= self._deadline:
            self._fail(HandshakeError(Failure.TIMEOUT, "handshake took too long"), tell_peer=True)
        if not data:
            self._fail(self._closed_error())
        self._inbuf += data
        self._heard = True
        if self.state is self._FIRST_STATE:
            self._check_peer_speaks_moshpit()
        while not self.finished and len(self._inbuf) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._inbuf)
            if length > MAX_MESSAGE_BODY:
                self._fail(HandshakeError(Failure.OVERSIZED, f"message of {length} bytes"), tell_peer=True)
            if len(self._inbuf) < _HEADER.size + length:
                return
            wire = bytes(self._inbuf[:_HEADER.size + length])
            del self._inbuf[:_HEADER.size + length]
            try:
                self._dispatch(kind, wire)
            except HandshakeError as exc:
                self._fail(exc, tell_peer=exc.code is not Failure.PEER_ERROR)

    # -- internals ---------------------------------------------------------
    def _closed_error(self) -> HandshakeError:
        """End of file: say plainly when the peer hung up without a single byte."""
        if not self._heard:
            return HandshakeError(Failure.TRUNCATED, self._SILENT_CLOSE, plain=True)
        return HandshakeError(Failure.TRUNCATED, "connection closed mid-handshake")

    def _check_peer_speaks_moshpit(self) -> None:
        """Judge the peer by the start of its first message, before waiting for the rest.

        Every moshpit peer, of any version, opens with one of ``_OPENERS`` and a length
        of at most 4096, so ``H`` of ``HTTP/1.1``, ``S`` of ``SSH-2.0`` or a length read
        from foreign bytes gives the peer away at once. The version byte is left to the
        hello's own check: a peer with a wrong version is a moshpit peer, differently aged.
        """
        kind = self._inbuf[0]
        if kind not in self._OPENERS:
            self._fail(NotMoshpitPeer(Failure.UNEXPECTED_MESSAGE, self._PEER, bytes(self._inbuf)), tell_peer=True)
        if len(self._inbuf) >= _HEADER.size and _HEADER.unpack_from(self._inbuf)[1] > MAX_MESSAGE_BODY:
            self._fail(NotMoshpitPeer(Failure.OVERSIZED, self._PEER, bytes(self._inbuf)), tell_peer=True)

    def _dispatch(self, kind: int, wire: bytes) -> None:
        body = wire[_HEADER.size:]
        if kind == MessageType.ERROR:
            reader = _Reader(body)
            code = reader.u8()
            words = bytes(body[1:]).split()
            if code == Failure.BUSY and len(words) == 2 and words[1].isdigit():
                raise ServerBusy(max(1, min(int(words[1]), MAX_RETRY_AFTER)))
            raise HandshakeError(Failure.PEER_ERROR, f"peer reported code {code}: {printable(body[1:])}")
        handler = self._handlers().get((self.state, kind))
        if handler is None:
            raise HandshakeError(Failure.UNEXPECTED_MESSAGE, f"message type {kind} in state {self.state.value}")
        handler(wire, body)

    def _handlers(self):
        raise NotImplementedError

    def _fail(self, error: HandshakeError, tell_peer: bool = False) -> None:
        self.state = State.FAILED
        self.failure = error
        self._inbuf.clear()
        if tell_peer:
            self._outbuf += _message(MessageType.ERROR, bytes([error.code]) + error.code.name.encode())
        raise error

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} in state {self.state.value}")

    def _th(self) -> bytes:
        return hashlib.sha512(b"".join(self._transcript)).digest()

    def _derive_handshake_keys(self, peer_ephemeral: bytes) -> None:
        shared = crypto.x25519_shared_secret(self._ephemeral[1], peer_ephemeral)
        self._prk = crypto.hkdf_extract(crypto.KDF_SALT, shared)
        self._k_c_hs, self._k_s_hs = crypto.handshake_keys(self._prk, self._th())


def _check_hello_version(reader: _Reader) -> None:
    version = reader.u8()
    if version != VERSION:
        raise HandshakeError(Failure.UNSUPPORTED_VERSION, f"peer speaks version {version}")


class ClientHandshake(_Handshake):
    """The client's side: proves ``identity`` to a server whose host key it checks."""

    _PEER = "server"
    _FIRST_STATE = State.SENT_HELLO
    _OPENERS = (MessageType.SERVER_HELLO, MessageType.ERROR)
    # A moshpit server that turns away too many key exchanges also closes unanswered.
    _SILENT_CLOSE = ("the server closed the connection without answering "
                     "(not a moshpit server, or one turning away too many connections)")

    def __init__(self, identity: nacl.signing.SigningKey, user: str, *, now: float,
                 diff_mode: DiffMode = DiffMode.RELIABLE, cols: int = 80, rows: int = 24,
                 env: dict | None = None, resume_token: bytes | None = None,
                 resume_only: bool = False, shown: tuple[int, int] | None = None,
                 forward_agent: bool = False, timeout: float = DEFAULT_TIMEOUT, rng=os.urandom):
        """``shown``: (bytes, lines) of the session's output this terminal already has,
        when resuming and known: the server goes on from there rather than repaint."""
        super().__init__(now, timeout, rng)
        if shown is not None and not 0 <= shown[1] <= shown[0] < _UNKNOWN:
            raise LocalProtocolError("shown output out of range")
        self._shown = shown
        if resume_token is not None and len(resume_token) != TOKEN_SIZE:
            raise LocalProtocolError("resume token must be 32 bytes")
        if resume_only and resume_token is None:
            raise LocalProtocolError("resume_only needs a resume token")
        self._resume_only = resume_only
        self._forward_agent = forward_agent
        if not (0 < cols < 65536 and 0 < rows < 65536):
            raise LocalProtocolError("window size out of range")
        self._identity = identity
        self._user = user
        self._mode = DiffMode(diff_mode)
        self._cols, self._rows = cols, rows
        self._env = dict(env or {})
        self._token = resume_token
        self._host_key = b""
        hello = _message(MessageType.CLIENT_HELLO, bytes([VERSION]) + self._ephemeral[0] + self._random)
        self._transcript.append(hello)
        self._outbuf += hello
        self.state = State.SENT_HELLO

    def _handlers(self):
        return {(State.SENT_HELLO, MessageType.SERVER_HELLO): self._on_server_hello,
                (State.SENT_AUTH, MessageType.SERVER_ACCEPT): self._on_accept,
                (State.SENT_AUTH, MessageType.SERVER_REFUSE): self._on_refuse}

    def _on_server_hello(self, wire: bytes, body: bytes) -> None:
        reader = _Reader(body)
        _check_hello_version(reader)
        server_ephemeral, _server_random, host_key = reader.take(32), reader.take(32), reader.take(32)
        signature = reader.take(64)
        reader.end()
        signed = _SERVER_SIG_CONTEXT + hashlib.sha512(self._transcript[0] + body[:-64]).digest()
        _verify(host_key, signature, signed)
        self._transcript.append(wire)
        try:
            self._derive_handshake_keys(server_ephemeral)
        except RemoteProtocolError as exc:
            raise HandshakeError(Failure.BAD_KEY, str(exc)) from None
        self._host_key = host_key
        self.state = State.HOST_KEY_DECISION
        self._events.append(HostKeyReceived(host_key, fingerprint(host_key)))

    def accept_host_key(self) -> None:
        """The host key is trusted: prove our identity and ask for a session."""
        self._require(State.HOST_KEY_DECISION, "accept the host key")
        user = self._user.encode("utf-8")
        token = self._token or b""
        env = [(k.encode(), v.encode()) for k, v in self._env.items()]
        if len(user) > 255 or len(env) > 255 or any(len(k) > 255 or len(v) > 1024 for k, v in env):
            raise LocalProtocolError("user name or environment too long for the handshake")
        fields = b"".join([
            bytes([len(user)]), user, bytes(self._identity.verify_key),
            bytes([len(token)]), token,
            bytes([_MODE_CODES[self._mode] | (_RESUME_ONLY if self._resume_only else 0)
                   | (_FORWARD_AGENT if self._forward_agent else 0)]),
            struct.pack("!HHQQ", self._cols, self._rows, *(self._shown or (_UNKNOWN, _UNKNOWN))),
            bytes([len(env)]),
            *(bytes([len(k)]) + k + struct.pack("!H", len(v)) + v for k, v in env),
        ])
        signed = _CLIENT_SIG_CONTEXT + hashlib.sha512(b"".join(self._transcript) + fields).digest()
        plaintext = fields + self._identity.sign(signed).signature
        self._transcript.append(plaintext)
        self._outbuf += _seal(self._k_c_hs, MessageType.CLIENT_AUTH, plaintext)
        self._keys = crypto.traffic_keys(self._prk, self._th())
        self.state = State.SENT_AUTH

    def reject_host_key(self) -> None:
        """The host key is not trusted: stop here, having revealed nothing about us."""
        self._require(State.HOST_KEY_DECISION, "reject the host key")
        self.state = State.FAILED
        self.failure = HandshakeError(Failure.HOST_KEY_REJECTED)
        self._outbuf += _message(MessageType.ERROR, bytes([Failure.HOST_KEY_REJECTED]) + b"HOST_KEY_REJECTED")

    def _on_accept(self, wire: bytes, body: bytes) -> None:
        reader = _Reader(_open(self._k_s_hs, MessageType.SERVER_ACCEPT, body))
        conn_id, port = reader.u32(), reader.u16()
        session_id, token, flags = reader.take(SESSION_ID_SIZE), reader.take(TOKEN_SIZE), reader.u8()
        input_received = reader.u64()
        reader.end()
        if port == 0:
            raise HandshakeError(Failure.MALFORMED, "UDP port 0")
        self.params = SessionParams(
            conn_id=conn_id, udp_port=port, session_id=session_id, resume_token=token,
            resumed=bool(flags & 1), diff_mode=self._mode, keys=self._keys,
            client_key=bytes(self._identity.verify_key), host_key=self._host_key,
            user=self._user, cols=self._cols, rows=self._rows, env=self._env,
            input_received=input_received, forward_agent=self._forward_agent)
        self.state = State.DONE
        self._events.append(HandshakeComplete(self.params))

    def _on_refuse(self, wire: bytes, body: bytes) -> None:
        plaintext = _open(self._k_s_hs, MessageType.SERVER_REFUSE, body)
        reader = _Reader(plaintext)
        code = reader.u8()
        reason = printable(plaintext[1:].decode("utf-8", "replace"), 200)
        self.state = State.REFUSED
        self._events.append(HandshakeRefused(code, reason))


class ServerHandshake(_Handshake):
    """The server's side: proves ``host_key`` and learns who the client is."""

    _PEER = "client"
    _FIRST_STATE = State.WAIT_HELLO
    _OPENERS = (MessageType.CLIENT_HELLO,)
    _SILENT_CLOSE = "the client closed the connection without sending anything"

    def __init__(self, host_key: nacl.signing.SigningKey, *, now: float,
                 timeout: float = DEFAULT_TIMEOUT, rng=os.urandom):
        super().__init__(now, timeout, rng)
        self._host_key = host_key
        self._request: AuthRequested | None = None
        self.state = State.WAIT_HELLO

    def _handlers(self):
        return {(State.WAIT_HELLO, MessageType.CLIENT_HELLO): self._on_client_hello,
                (State.WAIT_AUTH, MessageType.CLIENT_AUTH): self._on_client_auth}

    def _on_client_hello(self, wire: bytes, body: bytes) -> None:
        reader = _Reader(body)
        _check_hello_version(reader)
        client_ephemeral, _client_random = reader.take(32), reader.take(32)
        reader.end()
        self._transcript.append(wire)
        unsigned = (bytes([VERSION]) + self._ephemeral[0] + self._random + bytes(self._host_key.verify_key))
        signed = _SERVER_SIG_CONTEXT + hashlib.sha512(wire + unsigned).digest()
        hello = _message(MessageType.SERVER_HELLO, unsigned + self._host_key.sign(signed).signature)
        self._transcript.append(hello)
        try:
            self._derive_handshake_keys(client_ephemeral)
        except RemoteProtocolError as exc:
            raise HandshakeError(Failure.BAD_KEY, str(exc)) from None
        self._outbuf += hello
        self.state = State.WAIT_AUTH

    def _on_client_auth(self, wire: bytes, body: bytes) -> None:
        plaintext = _open(self._k_c_hs, MessageType.CLIENT_AUTH, body)
        reader = _Reader(plaintext)
        user = reader.text(1)
        client_key = reader.take(32)
        token_len = reader.u8()
        if token_len not in (0, TOKEN_SIZE):
            raise HandshakeError(Failure.MALFORMED, f"resume token of {token_len} bytes")
        token = reader.take(token_len) or None
        mode_byte = reader.u8()
        mode = _CODE_MODES.get(mode_byte & ~(_RESUME_ONLY | _FORWARD_AGENT))
        if mode is None or (mode_byte & _RESUME_ONLY and token is None):
            raise HandshakeError(Failure.MALFORMED, "unknown diff mode")
        cols, rows = reader.u16(), reader.u16()
        if not (cols and rows):
            raise HandshakeError(Failure.MALFORMED, "window size of zero")
        shown_bytes, shown_lines = struct.unpack("!QQ", reader.take(16))
        if (shown_bytes, shown_lines) == (_UNKNOWN, _UNKNOWN):
            shown = None
        elif shown_lines <= shown_bytes < _UNKNOWN:
            shown = (shown_bytes, shown_lines)
        else:
            raise HandshakeError(Failure.MALFORMED, "more lines shown than bytes")
        env = {}
        for _ in range(reader.u8()):
            key = reader.text(1)
            env[key] = reader.text(2)
        fields_end = reader.pos
        signature = reader.take(64)
        reader.end()
        signed = _CLIENT_SIG_CONTEXT + hashlib.sha512(b"".join(self._transcript) + plaintext[:fields_end]).digest()
        _verify(client_key, signature, signed)
        self._transcript.append(plaintext)
        self._keys = crypto.traffic_keys(self._prk, self._th())
        self._request = AuthRequested(user, client_key, fingerprint(client_key), token,
                                      mode.value, cols, rows, env, bool(mode_byte & _RESUME_ONLY), shown,
                                      bool(mode_byte & _FORWARD_AGENT))
        self.state = State.AUTH_DECISION
        self._events.append(self._request)

    @property
    def request(self) -> AuthRequested | None:
        return self._request

    def accept(self, *, conn_id: int, udp_port: int, session_id: bytes, resume_token: bytes,
               resumed: bool = False, input_received: int = 0) -> SessionParams:
        """Let the authenticated client in: tell it where its session's UDP port is."""
        self._require(State.AUTH_DECISION, "accept")
        if len(session_id) != SESSION_ID_SIZE or len(resume_token) != TOKEN_SIZE:
            raise LocalProtocolError("session id must be 16 bytes and resume token 32")
        if not (0 < udp_port < 65536 and 0 <= conn_id <= 0xFFFFFFFF and 0 <= input_received < 2 ** 64):
            raise LocalProtocolError("UDP port, connection id or input count out of range")
        plaintext = (struct.pack("!IH", conn_id, udp_port) + session_id + resume_token
                     + bytes([1 if resumed else 0]) + struct.pack("!Q", input_received))
        self._outbuf += _seal(self._k_s_hs, MessageType.SERVER_ACCEPT, plaintext)
        request = self._request
        assert request is not None                    # (AUTH_DECISION: the request is in)
        self.params = SessionParams(
            conn_id=conn_id, udp_port=udp_port, session_id=session_id, resume_token=resume_token,
            resumed=resumed, diff_mode=DiffMode(request.diff_mode), keys=self._keys,
            client_key=request.client_key, host_key=bytes(self._host_key.verify_key),
            user=request.user, cols=request.cols, rows=request.rows, env=request.env,
            input_received=input_received, shown=request.shown if resumed else None,
            forward_agent=request.forward_agent)
        self.state = State.DONE
        self._events.append(HandshakeComplete(self.params))
        return self.params

    def refuse(self, code: RefuseCode = RefuseCode.NOT_AUTHORISED, reason: str = "not authorised") -> None:
        """Turn the client away. Say little: the detailed reason belongs in the server's log."""
        self._require(State.AUTH_DECISION, "refuse")
        self._outbuf += _seal(self._k_s_hs, MessageType.SERVER_REFUSE,
                              bytes([code]) + reason.encode("utf-8")[:200])
        self.state = State.REFUSED
