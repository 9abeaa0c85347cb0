"""Packet protection: every datagram sealed with AES-256-GCM-SIV and HMAC-SHA-512/256.

Wire layout (see docs/protocol.md)::

    header (13) | AES-256-GCM-SIV(payload) + tag (16) | HMAC-SHA-512(header | ciphertext)[:32]

* Keys are per direction: a sealer and the peer's opener share one
  ``DirectionKeys``; the reverse direction has its own, so a datagram reflected
  back at its sender fails authentication (and is refused earlier still by the
  direction bit).
* Nonce rule: the AEAD nonce is header bytes 1..12, i.e. the 32-bit connection
  id followed by the 64-bit sequence number. The sealer owns the sequence
  counter and never reuses a number, so a (key, nonce) pair is never repeated;
  GCM-SIV would still not leak plaintext if it were.
* The header is authenticated twice over (AEAD associated data and HMAC input)
  and never encrypted: the receiver must read the sequence number before any
  cryptography to run its replay check.

Receive order: decode header, direction and connection checks, replay check,
HMAC verify, decrypt, replay commit. Only an authentic datagram ever moves the
replay window.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import nacl.bindings
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from moshpit import codec
from moshpit.errors import (DatagramDropped, DecodeError, DropReason, LocalProtocolError,
                            RemoteProtocolError)
from moshpit.replay import ReplayWindow

AEAD_KEY_SIZE = 32
MAC_KEY_SIZE = 64
MAX_SEQ = codec.MAX_SEQ

_VERDICT_REASON = {
    1: DropReason.DUPLICATE,
    2: DropReason.TOO_OLD,
    3: DropReason.TOO_FAR_AHEAD,
}


@dataclass(frozen=True, repr=False, eq=False)  # eq=False: no non-constant-time key compare
class DirectionKeys:
    """The two keys protecting one direction of one connection."""

    aead_key: bytes
    mac_key: bytes

    def __post_init__(self):
        if len(self.aead_key) != AEAD_KEY_SIZE:
            raise LocalProtocolError(f"AEAD key must be {AEAD_KEY_SIZE} bytes")
        if len(self.mac_key) != MAC_KEY_SIZE:
            raise LocalProtocolError(f"MAC key must be {MAC_KEY_SIZE} bytes")

    def __repr__(self):  # never print key material into a log
        return "DirectionKeys(<redacted>)"


def _check_direction(direction: int) -> int:
    if direction not in (codec.CLIENT_TO_SERVER, codec.SERVER_TO_CLIENT):
        raise LocalProtocolError(f"direction must be 0 or 1, not {direction!r}")
    return direction


class _Protection:
    __slots__ = ("_aead", "_mac", "_direction", "_conn_id")

    def __init__(self, keys: DirectionKeys, conn_id: int, direction: int):
        if not 0 <= conn_id <= 0xFFFFFFFF:
            raise LocalProtocolError("connection id must fit in 32 bits")
        self._aead = AESGCMSIV(keys.aead_key)
        # A pre-keyed HMAC is copied per datagram: the key schedule is paid once.
        self._mac = hmac.new(keys.mac_key, digestmod="sha512")
        self._direction = _check_direction(direction)
        self._conn_id = conn_id

    @property
    def conn_id(self) -> int:
        return self._conn_id

    @property
    def direction(self) -> int:
        return self._direction


class PacketSealer(_Protection):
    """Seals the outgoing datagrams of one direction, numbering them itself."""

    __slots__ = ("_next_seq",)

    def __init__(self, keys: DirectionKeys, *, conn_id: int, direction: int, first_seq: int = 0):
        super().__init__(keys, conn_id, direction)
        if not 0 <= first_seq <= MAX_SEQ:
            raise LocalProtocolError(f"first_seq must lie in 0..{MAX_SEQ}")
        self._next_seq = first_seq

    @property
    def next_seq(self) -> int:
        """The sequence number the next sealed datagram will carry."""
        return self._next_seq

    def seal(self, payload) -> tuple[int, bytes]:
        """Return ``(seq, datagram)`` for ``payload`` (encoded frames)."""
        size = memoryview(payload).nbytes
        if size > codec.MAX_PAYLOAD_SIZE:
            raise LocalProtocolError(f"payload of {size} bytes exceeds {codec.MAX_PAYLOAD_SIZE}")
        seq = self._next_seq
        if seq > MAX_SEQ:
            raise LocalProtocolError("sequence numbers exhausted; rekey the connection")
        self._next_seq = seq + 1
        header = codec.header(self._direction, self._conn_id, seq)
        body = self._aead.encrypt(header[1:], payload, header)
        mac = self._mac.copy()
        mac.update(header)
        mac.update(body)
        return seq, b"".join((header, body, mac.digest()[: codec.MAC_SIZE]))


class PacketOpener(_Protection):
    """Checks and opens the incoming datagrams of one direction.

    Raises :class:`DatagramDropped` with the reason for anything it refuses;
    the caller counts it and moves on. The replay window may be shared or
    inspected through ``replay``.
    """

    __slots__ = ("replay",)

    def __init__(self, keys: DirectionKeys, *, conn_id: int, direction: int,
                 replay: ReplayWindow | None = None):
        super().__init__(keys, conn_id, direction)
        self.replay = replay if replay is not None else ReplayWindow()

    def open(self, datagram) -> tuple[int, bytes]:
        """Return ``(seq, payload)`` of an authentic, fresh datagram."""
        try:
            direction, conn_id, seq = codec.decode_header(datagram)
        except DecodeError as exc:
            raise DatagramDropped(DropReason.MALFORMED, str(exc)) from None
        except (TypeError, ValueError) as exc:  # not a buffer of bytes at all
            raise DatagramDropped(DropReason.MALFORMED, str(exc)) from None
        if direction != self._direction:
            raise DatagramDropped(DropReason.REFLECTED)
        if conn_id != self._conn_id:
            raise DatagramDropped(DropReason.WRONG_CONNECTION, f"connection {conn_id:#010x}")
        verdict = self.replay.check(seq)
        if verdict:
            raise DatagramDropped(_VERDICT_REASON[verdict], f"sequence {seq}")
        view = memoryview(datagram)
        mac_at = len(view) - codec.MAC_SIZE
        mac = self._mac.copy()
        mac.update(view[:mac_at])
        if not hmac.compare_digest(mac.digest()[: codec.MAC_SIZE], view[mac_at:]):
            raise DatagramDropped(DropReason.AUTH_FAILED, f"bad MAC on sequence {seq}")
        try:
            payload = self._aead.decrypt(view[1:codec.HEADER_SIZE], view[codec.HEADER_SIZE:mac_at],
                                         view[:codec.HEADER_SIZE])
        except InvalidTag:
            raise DatagramDropped(DropReason.AUTH_FAILED, f"bad AEAD tag on sequence {seq}") from None
        self.replay.commit(seq)
        return seq, payload


# --- key schedule ------------------------------------------------------------
#
#   shared  = X25519(own ephemeral private, peer ephemeral public)
#   prk     = HKDF-Extract(salt = "moshpit v1", shared)              (SHA-512)
#   k_c_hs  = HKDF-Expand(prk, "moshpit v1 c hs"  | th2, 32)   handshake messages, client -> server
#   k_s_hs  = HKDF-Expand(prk, "moshpit v1 s hs"  | th2, 32)   handshake messages, server -> client
#   traffic = HKDF-Expand(prk, "moshpit v1 c2s aead" | th3, 32), "c2s mac" 64, "s2c aead" 32, "s2c mac" 64
#
# th2 and th3 are SHA-512 transcript hashes (see moshpit.protocol.handshake and
# docs/protocol.md): every key depends on both ephemerals and on everything
# both identities signed.

KDF_SALT = b"moshpit v1"
_LABEL = b"moshpit v1 "


@dataclass(frozen=True, repr=False, eq=False)
class TrafficKeys:
    """Both directions' keys of one connection, as derived by both ends alike."""

    client_to_server: DirectionKeys
    server_to_client: DirectionKeys

    def __repr__(self):
        return "TrafficKeys(<redacted>)"


def x25519_shared_secret(private_key: bytes, peer_public_key: bytes) -> bytes:
    """The X25519 shared secret; a low-order peer key (all-zero result) is the peer's fault."""
    try:
        shared = nacl.bindings.crypto_scalarmult(private_key, peer_public_key)
    except Exception as exc:  # pynacl raises RuntimeError for a rejected point
        raise RemoteProtocolError(f"unusable ephemeral key: {exc}") from None
    if not any(shared):
        raise RemoteProtocolError("ephemeral key of low order")
    return shared


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, "sha512").digest()


def hkdf_expand(prk: bytes, label: bytes, context: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA512(), length, _LABEL + label + b"\0" + context).derive(prk)


def handshake_keys(prk: bytes, th2: bytes) -> tuple[bytes, bytes]:
    """(client -> server, server -> client) keys sealing the encrypted handshake messages."""
    return hkdf_expand(prk, b"c hs", th2, 32), hkdf_expand(prk, b"s hs", th2, 32)


def traffic_keys(prk: bytes, th3: bytes) -> TrafficKeys:
    return TrafficKeys(
        DirectionKeys(hkdf_expand(prk, b"c2s aead", th3, AEAD_KEY_SIZE),
                      hkdf_expand(prk, b"c2s mac", th3, MAC_KEY_SIZE)),
        DirectionKeys(hkdf_expand(prk, b"s2c aead", th3, AEAD_KEY_SIZE),
                      hkdf_expand(prk, b"s2c mac", th3, MAC_KEY_SIZE)),
    )
