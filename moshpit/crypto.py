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
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from moshpit import codec, protect
from moshpit.errors import (DatagramDropped, LocalProtocolError,
                            RemoteProtocolError)
from moshpit.replay import ReplayWindow

_openssl_hmac: Callable | None
try:                                   # OpenSSL's HMAC object itself: hmac.new wraps it in
    from _hashlib import hmac_new as _openssl_hmac      # Python, a third of a MAC's cost
except ImportError:                    # (an interpreter built without OpenSSL's hashes)
    _openssl_hmac = None


def keyed_hmac_sha512(key: bytes):
    """A pre-keyed HMAC-SHA-512, to be ``copy()``-ed per datagram (the key schedule
    is paid once): OpenSSL's own object where the interpreter offers it."""
    if _openssl_hmac is not None:
        try:
            return _openssl_hmac(key, digestmod="sha512")
        except (TypeError, ValueError):
            pass
    return hmac.new(key, digestmod="sha512")


AEAD_KEY_SIZE = 32
MAC_KEY_SIZE = 64
MAX_SEQ = codec.MAX_SEQ



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
        self._mac = keyed_hmac_sha512(keys.mac_key)
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
        seq = self._next_seq
        return seq, self.seal_many((payload,))[0]

    def seal_many(self, payloads) -> list[bytes]:
        """Seal a run of payloads under consecutive sequence numbers, from ``next_seq``.

        One call for everything a send turn makes: the checks are made here, once
        for the run, and the loop runs compiled (``_ext/moshpit/protect.pyx``)."""
        payloads = list(payloads)
        for payload in payloads:
            size = memoryview(payload).nbytes
            if size > codec.MAX_PAYLOAD_SIZE:
                raise LocalProtocolError(f"payload of {size} bytes exceeds {codec.MAX_PAYLOAD_SIZE}")
        first = self._next_seq
        if first + len(payloads) - 1 > MAX_SEQ:
            raise LocalProtocolError("sequence numbers exhausted; rekey the connection")
        self._next_seq = first + len(payloads)
        return protect.seal_run(self._aead.encrypt, self._mac, self._direction, self._conn_id,
                                first, payloads)


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
        result = self.open_many((datagram,))[0]
        if isinstance(result, DatagramDropped):
            raise result
        return result

    def open_many(self, datagrams) -> list:
        """Open a run of datagrams (one receive turn's): for each, ``(seq, payload)``,
        or the :class:`DatagramDropped` saying why it was refused (not raised: the
        rest of the run is still opened). The order of the checks is the module's;
        the loop runs compiled (``_ext/moshpit/protect.pyx``)."""
        return protect.open_run(self._aead.decrypt, self._mac, self.replay, self._direction,
                                self._conn_id, datagrams)


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
