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


# --- the handshake vector (section 10) ------------------------------------------------

def deterministic_rng(label: bytes):
    """SHA-256(label | counter) blocks, as section 10 defines them."""
    counter = 0
    buffered = b""

    def rng(n: int) -> bytes:
        nonlocal counter, buffered
        while len(buffered) < n:
            buffered += hashlib.sha256(label + counter.to_bytes(4, "big")).digest()
            counter += 1
        out, buffered = buffered[:n], buffered[n:]
        return out
    return rng


def handshake_vector():
    block, = re.findall(r"```handshake\n(.*?)```", SPEC.read_text(), re.S)
    return {k.strip(): bytes.fromhex(v.strip()) for k, v in
            (line.split(":", 1) for line in block.strip().splitlines())}


CLIENT_SEED, HOST_SEED = bytes(range(32)), bytes(range(32, 64))


def test_handshake_vector_through_moshpit():
    import nacl.signing
    from moshpit.protocol.handshake import ClientHandshake, DiffMode, ServerHandshake

    v = handshake_vector()
    c = ClientHandshake(nacl.signing.SigningKey(CLIENT_SEED), "alice", now=0.0,
                        diff_mode=DiffMode.STATESYNC, cols=80, rows=24,
                        env={"TERM": "xterm-256color"}, rng=deterministic_rng(b"client"))
    s = ServerHandshake(nacl.signing.SigningKey(HOST_SEED), now=0.0, rng=deterministic_rng(b"server"))
    assert c.data_to_send() == v["client_hello"]
    s.receive_data(v["client_hello"], 0.0)
    assert s.data_to_send() == v["server_hello"]
    c.receive_data(v["server_hello"], 0.0)
    c.next_event()
    c.accept_host_key()
    assert c.data_to_send() == v["client_auth"]
    s.receive_data(v["client_auth"], 0.0)
    s.next_event()
    params = s.accept(conn_id=0x01020304, udp_port=50000, session_id=bytes(range(16)),
                      resume_token=bytes(range(100, 132)))
    assert s.data_to_send() == v["server_accept"]
    c.receive_data(v["server_accept"], 0.0)
    for side in (params, c.params):
        assert side.keys.client_to_server.aead_key == v["c2s_aead"]
        assert side.keys.client_to_server.mac_key == v["c2s_mac"]
        assert side.keys.server_to_client.aead_key == v["s2c_aead"]
        assert side.keys.server_to_client.mac_key == v["s2c_mac"]


def test_handshake_vector_from_primitives():
    # Sections 6 and 7 with nothing of moshpit: X25519, Ed25519, HKDF, GCM-SIV.
    import nacl.bindings
    import nacl.signing
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    v = handshake_vector()
    ch, sh = v["client_hello"], v["server_hello"]
    client_eph_private = deterministic_rng(b"client")(32)
    server_eph_public, host_key, sig = sh[4:36], sh[68:100], sh[100:164]
    assert ch[4:36] == nacl.bindings.crypto_scalarmult_base(client_eph_private)
    assert host_key == bytes(nacl.signing.SigningKey(HOST_SEED).verify_key)
    nacl.signing.VerifyKey(host_key).verify(
        b"moshpit v1 server signature\0" + hashlib.sha512(ch + sh[3:100]).digest(), sig)
    shared = nacl.bindings.crypto_scalarmult(client_eph_private, server_eph_public)
    prk = hmac.new(b"moshpit v1", shared, hashlib.sha512).digest()

    def expand(label, th, n):
        return HKDFExpand(hashes.SHA512(), n, b"moshpit v1 " + label + b"\0" + th).derive(prk)

    th2 = hashlib.sha512(ch + sh).digest()
    ca = v["client_auth"]
    plaintext = AESGCMSIV(expand(b"c hs", th2, 32)).decrypt(bytes(12), ca[3:], ca[:3])
    assert plaintext[:6] == b"\x05alice"
    client_key = plaintext[6:38]
    nacl.signing.VerifyKey(client_key).verify(
        b"moshpit v1 client signature\0" + hashlib.sha512(ch + sh + plaintext[:-64]).digest(),
        plaintext[-64:])
    th3 = hashlib.sha512(ch + sh + plaintext).digest()
    assert expand(b"c2s aead", th3, 32) == v["c2s_aead"]
    assert expand(b"c2s mac", th3, 64) == v["c2s_mac"]
    assert expand(b"s2c aead", th3, 32) == v["s2c_aead"]
    assert expand(b"s2c mac", th3, 64) == v["s2c_mac"]
    accept = AESGCMSIV(expand(b"s hs", th2, 32)).decrypt(bytes(12), v["server_accept"][3:],
                                                          v["server_accept"][:3])
    assert accept[:6] == bytes.fromhex("01020304c350")          # connection id, port 50000
    assert accept[6:22] == bytes(range(16)) and accept[22:54] == bytes(range(100, 132))
    assert accept[54:] == bytes(9)                               # not resumed, no input yet
