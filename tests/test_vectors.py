"""The test vectors of docs/protocol.md, checked from the primitives and through our code."""

import hashlib
import hmac
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from moshpit import codec
from moshpit.crypto import DirectionKeys, PacketOpener, PacketSealer
from moshpit.replay import ReplayWindow

SPEC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
AEAD_KEY = bytes(range(0x00, 0x20))
MAC_KEY = bytes(range(0x40, 0x80))


def load_vectors():
    text = SPEC.read_text()
    vectors = []
    for block in re.findall(r"```vector\n(.*?)```", text, re.S):
        fields = dict(line.split(":", 1) for line in block.strip().splitlines())
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        vectors.append(pytest.param(
            int(fields["direction"]), int(fields["conn_id"], 16), int(fields["seq"]),
            bytes.fromhex(fields["payload"]), bytes.fromhex(fields["datagram"]),
            id=fields["name"]))
    return vectors


VECTORS = load_vectors()


def test_spec_has_vectors_and_states_the_keys():
    assert len(VECTORS) >= 4
    text = SPEC.read_text()
    assert AEAD_KEY.hex() in text
    assert MAC_KEY.hex()[:64] in text and MAC_KEY.hex()[64:] in text


@pytest.mark.parametrize("direction, conn_id, seq, payload, datagram", VECTORS)
def test_vector_from_primitives(direction, conn_id, seq, payload, datagram):
    # Section 1.3 of the spec, step by step, with no moshpit code involved.
    header = bytes([0x10 | direction]) + conn_id.to_bytes(4, "big") + seq.to_bytes(8, "big")
    sealed = AESGCMSIV(AEAD_KEY).encrypt(header[1:], payload, header)
    mac = hmac.new(MAC_KEY, header + sealed, hashlib.sha512).digest()[:32]
    assert header + sealed + mac == datagram
    assert len(datagram) == len(payload) + 61


@pytest.mark.parametrize("direction, conn_id, seq, payload, datagram", VECTORS)
def test_vector_through_moshpit(direction, conn_id, seq, payload, datagram):
    keys = DirectionKeys(AEAD_KEY, MAC_KEY)
    sealer = PacketSealer(keys, conn_id=conn_id, direction=direction, first_seq=seq)
    assert sealer.seal(payload) == (seq, datagram)
    # A window that allows any jump, since some vectors start at huge numbers.
    opener = PacketOpener(keys, conn_id=conn_id, direction=direction,
                          replay=ReplayWindow(max_ahead=2**64 - 1))
    assert opener.open(datagram) == (seq, payload)
    codec.decode_frames(payload)  # every vector payload is well-formed frames
