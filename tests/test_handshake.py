"""The TCP key exchange: agreement, both identities proven, and everything a peer can get wrong."""

import os

import nacl.signing
import pytest
from hypothesis import given, settings, strategies as st

from moshpit.crypto import PacketOpener, PacketSealer
from moshpit.errors import LocalProtocolError, RemoteProtocolError
from moshpit.keys import fingerprint
from moshpit.protocol.events import AuthRequested, HandshakeComplete, HandshakeRefused, HostKeyReceived
from moshpit.protocol.handshake import (ClientHandshake, DiffMode, Failure, HandshakeError,
                                        NotMoshpitPeer, VERSION, RefuseCode, ServerHandshake, State,
                                        excerpt)
from moshpit.protocol.sessions import PortPool, SessionGone, SessionRegistry
from simnet import handshake, pump_handshake

CLIENT_KEY = nacl.signing.SigningKey(bytes(range(32)))
HOST_KEY = nacl.signing.SigningKey(bytes(range(32, 64)))


def started(**kw):
    c = ClientHandshake(CLIENT_KEY, "alice", now=0.0, cols=100, rows=30,
                        env={"TERM": "xterm-256color", "LANG": "C.UTF-8"}, **kw)
    s = ServerHandshake(HOST_KEY, now=0.0)
    return c, s


def trusted(deliver=True):
    """A pair where the client has accepted the host key (and, if ``deliver``, the
    server has read CLIENT_AUTH and waits for its accept/refuse decision)."""
    c, s = started()
    pump_handshake(c, s)
    c.next_event()
    c.accept_host_key()
    if deliver:
        pump_handshake(c, s)
        s.next_event()
    return c, s


def test_full_exchange_agrees_on_keys_and_proves_both_identities():
    c, s = started(diff_mode=DiffMode.STATESYNC)
    pump_handshake(c, s)
    event = c.next_event()
    assert isinstance(event, HostKeyReceived)
    assert event.host_key == bytes(HOST_KEY.verify_key)
    assert event.fingerprint == fingerprint(bytes(HOST_KEY.verify_key))
    c.accept_host_key()
    pump_handshake(c, s)
    request = s.next_event()
    assert isinstance(request, AuthRequested)
    assert (request.user, request.client_key, request.diff_mode) == (
        "alice", bytes(CLIENT_KEY.verify_key), "statesync")
    assert (request.cols, request.rows, request.env["TERM"]) == (100, 30, "xterm-256color")
    assert request.resume_token is None
    params = s.accept(conn_id=7, udp_port=50123, session_id=bytes(16), resume_token=bytes(32))
    pump_handshake(c, s)
    done = c.next_event()
    assert isinstance(done, HandshakeComplete) and c.state is s.state is State.DONE
    cp = done.params
    assert (cp.conn_id, cp.udp_port, cp.diff_mode) == (7, 50123, DiffMode.STATESYNC)
    # Same keys on both ends, and different keys per direction.
    for a, b in ((cp.keys.client_to_server, params.keys.client_to_server),
                 (cp.keys.server_to_client, params.keys.server_to_client)):
        assert (a.aead_key, a.mac_key) == (b.aead_key, b.mac_key)
    assert cp.keys.client_to_server.aead_key != cp.keys.server_to_client.aead_key
    assert cp.keys.client_to_server.mac_key != cp.keys.server_to_client.mac_key
    # And they work: a datagram sealed by the client opens on the server.
    sealer = PacketSealer(cp.keys.client_to_server, conn_id=7, direction=0)
    opener = PacketOpener(params.keys.client_to_server, conn_id=7, direction=0)
    assert opener.open(sealer.seal(b"")[1])[1] == b""


def test_every_handshake_derives_fresh_keys():
    a, _, _ = handshake()
    b, _, _ = handshake()
    assert a.keys.client_to_server.aead_key != b.keys.client_to_server.aead_key


def test_client_rejecting_the_host_key_reveals_nothing_and_stops():
    c, s = started()
    pump_handshake(c, s)
    c.next_event()
    c.reject_host_key()
    assert c.state is State.FAILED and c.failure.code is Failure.HOST_KEY_REJECTED
    data = c.data_to_send()
    assert bytes(CLIENT_KEY.verify_key) not in data and b"alice" not in data
    with pytest.raises(HandshakeError) as info:
        s.receive_data(data, 0.0)
    assert info.value.code is Failure.PEER_ERROR


def test_refusal_says_only_not_authorised():
    c, s = trusted()
    s.refuse()
    pump_handshake(c, s)
    event = c.next_event()
    assert isinstance(event, HandshakeRefused)
    assert (event.code, event.reason) == (1, "not authorised")
    assert c.state is State.REFUSED and s.state is State.REFUSED


def test_a_refusal_reason_reaches_the_client_printable():
    """The server's words are printed on the user's terminal: no escape sequence or line
    break of a hostile (or buggy) server may ride along."""
    c, s = trusted()
    s.refuse(reason="busy\x1b]52;c;aGk=\x07\r\nmp: fake")
    pump_handshake(c, s)
    event = c.next_event()
    assert event.reason == "busy?]52;c;aGk=???mp: fake"


def test_man_in_the_middle_swapping_the_host_key_is_caught():
    c, s = started()
    s.receive_data(c.data_to_send(), 0.0)
    s_hello = bytearray(s.data_to_send())
    mallory = nacl.signing.SigningKey.generate()
    s_hello[3 + 65:3 + 97] = bytes(mallory.verify_key)       # claim another host key
    with pytest.raises(HandshakeError) as info:
        c.receive_data(bytes(s_hello), 0.0)
    assert info.value.code is Failure.BAD_SIGNATURE


def test_client_signature_binds_this_handshake():
    # A CLIENT_AUTH recorded from one handshake is useless in another: the keys differ.
    c1, _ = trusted(deliver=False)
    recorded = c1.data_to_send()
    c2, s2 = started()
    s2.receive_data(c2.data_to_send(), 0.0)
    with pytest.raises(HandshakeError) as info:
        s2.receive_data(recorded, 0.0)
    assert info.value.code is Failure.DECRYPT_FAILED


def test_forged_client_identity_fails_signature():
    # A client that claims a key it does not hold: sign with one key, present another.
    class Liar:
        verify_key = HOST_KEY.verify_key       # claims this key...
        sign = CLIENT_KEY.sign                 # ...but signs with another
    liar = Liar()
    c = ClientHandshake(liar, "alice", now=0.0)
    s = ServerHandshake(HOST_KEY, now=0.0)
    pump_handshake(c, s)
    c.next_event()
    c.accept_host_key()
    with pytest.raises(HandshakeError) as info:
        s.receive_data(c.data_to_send(), 0.0)
    assert info.value.code is Failure.BAD_SIGNATURE


@pytest.mark.parametrize("wire, code", [
    (b"\x01\x00\x41" + bytes([VERSION + 1]) + bytes(64), Failure.UNSUPPORTED_VERSION),
    (b"\x01\x00\x41" + bytes([VERSION - 1]) + bytes(64), Failure.UNSUPPORTED_VERSION),
    (b"\x01\x00\x40" + bytes(64), Failure.UNSUPPORTED_VERSION),
    (b"\x01\x00\x03" + bytes([VERSION]) + b"\x00\x00", Failure.MALFORMED),
    (b"\x01\x00\x42" + bytes([VERSION]) + bytes(65), Failure.MALFORMED),
    (b"\x03\x00\x10" + bytes(16), Failure.UNEXPECTED_MESSAGE),
    (b"\x09\x00\x00", Failure.UNEXPECTED_MESSAGE),
    (b"\x01\xff\xff", Failure.OVERSIZED),
    (b"\x01\x00\x41" + bytes([VERSION]) + bytes(64), Failure.BAD_KEY),   # all-zero ephemeral key
])
def test_bad_client_hello(wire, code):
    s = ServerHandshake(HOST_KEY, now=0.0)
    with pytest.raises(HandshakeError) as info:
        s.receive_data(wire, 0.0)
    assert info.value.code is code
    assert isinstance(info.value, RemoteProtocolError)
    assert s.state is State.FAILED
    assert s.data_to_send()[:1] == b"\x06"        # the peer is told why, in an ERROR message


def test_truncation_and_timeout():
    s = ServerHandshake(HOST_KEY, now=0.0)
    s.receive_data(b"\x01\x00", 0.0)               # half a header: wait for more
    with pytest.raises(HandshakeError) as info:
        s.receive_data(b"", 0.1)                   # EOF
    assert info.value.code is Failure.TRUNCATED
    c, s = started()
    assert c.get_timer() == 10.0
    c.handle_timer(9.9)
    with pytest.raises(HandshakeError) as info:
        c.handle_timer(10.0)
    assert info.value.code is Failure.TIMEOUT and c.get_timer() is None


# What other services really send first. The client has already sent its hello when
# these arrive; the server reads them as the first bytes of a connection.
HTTP_RESPONSE = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.24.0\r\nContent-Type: text/html\r\n"
                 b"Content-Length: 157\r\nConnection: close\r\n\r\n<html>\r\n")
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"
SMTP_GREETING = b"220 mail.example.com ESMTP Postfix (Ubuntu)\r\n"
RANDOM_BYTES = bytes.fromhex("8f3a01c2d45e6b7f0011223344556677")     # fixed, so the test is stable
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: example.com:40404\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
TLS_CLIENT_HELLO = bytes.fromhex("160301020001000200030376")        # what a browser's https:// sends


@pytest.mark.parametrize("sent, shown", [
    (HTTP_RESPONSE, "'HTTP/1.1 400 Bad Request'"),
    (SSH_BANNER, "'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5'"),
    (SMTP_GREETING, "'220 mail.example.com ESMTP Postfix (Ubuntu)'"),
    (RANDOM_BYTES, "bytes 8f 3a 01 c2 d4 5e 6b 7f ..."),
    (b"\x02\x41\x41", "bytes 02 41 41"),        # a hello's type, then a length only text would have
])
def test_client_says_plainly_that_a_foreign_service_is_not_a_moshpit_server(sent, shown):
    c, _ = started()
    with pytest.raises(RemoteProtocolError) as info:
        c.receive_data(sent, 0.0)
    assert isinstance(info.value, NotMoshpitPeer) and c.state is State.FAILED
    assert str(info.value) == f"this is not a moshpit server (it sent {shown})"


def test_foreign_server_is_recognised_from_its_first_byte():
    c, _ = started()
    with pytest.raises(NotMoshpitPeer) as info:
        c.receive_data(b"H", 0.0)                  # no need to wait for the rest of "HTTP/1.1"
    assert str(info.value) == "this is not a moshpit server (it sent 'H')"
    c, _ = started()
    c.receive_data(b"\x02", 0.0)                   # could be a SERVER_HELLO: wait for the length
    with pytest.raises(NotMoshpitPeer) as info:
        c.receive_data(b"\x21\x44", 0.0)            # a length of 8516: no moshpit server says that
    assert info.value.code is Failure.OVERSIZED


def test_excerpt_is_short_printable_and_one_line():
    hostile = b"\x1b]0;pwned\x07\x1b[2J" + b"A" * 200 + b"\nsecond line"
    shown = excerpt(hostile)
    assert shown.startswith("'") and shown.endswith("'...") and len(shown) <= 70
    assert all(0x20 <= ord(ch) < 0x7f for ch in shown) and "second" not in shown
    assert excerpt(b"\xff\xfe\x00\x01") == "bytes ff fe 00 01"
    # Non-ASCII (and with it bidi tricks such as U+202E) never passes, even in mostly-text lines.
    assert excerpt("220 mail.example.com ESMTP bienvenue au caf\u00e9 \u202eevil".encode()) == \
        "'220 mail.example.com ESMTP bienvenue au caf?? ???evil'"


def test_a_real_moshpit_error_is_not_mistaken_for_a_foreign_server():
    c, _ = started()
    error = b"\x06\x00\x18\x02UNSUPPORTED_VERSION\x1b[2J"     # an older server turning us away
    with pytest.raises(HandshakeError) as info:
        c.receive_data(error, 0.0)
    assert not isinstance(info.value, NotMoshpitPeer) and info.value.code is Failure.PEER_ERROR
    assert str(info.value) == "peer error: peer reported code 2: UNSUPPORTED_VERSION?[2J"   # no escape


@pytest.mark.parametrize("sent, shown", [
    (HTTP_REQUEST, "'GET / HTTP/1.1'"),
    (TLS_CLIENT_HELLO, "bytes 16 03 01 02 00 01 00 02 ..."),
    (SSH_BANNER, "'SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5'"),
])
def test_server_log_names_a_foreign_client_plainly(sent, shown):
    s = ServerHandshake(HOST_KEY, now=0.0)
    with pytest.raises(NotMoshpitPeer) as info:
        s.receive_data(sent, 0.0)
    assert str(info.value) == f"this is not a moshpit client (it sent {shown})"
    assert s.state is State.FAILED and s.data_to_send()[:1] == b"\x06"


def test_a_peer_that_closes_without_a_word_is_described_plainly():
    c, _ = started()
    c.data_to_send()                               # the hello went out; nothing came back
    with pytest.raises(HandshakeError) as info:
        c.receive_data(b"", 0.0)
    assert info.value.code is Failure.TRUNCATED and c.state is State.FAILED
    assert str(info.value) == ("the server closed the connection without answering "
                               "(not a moshpit server, or one turning away too many connections)")
    assert c.data_to_send() == b""                 # nobody left to tell
    s = ServerHandshake(HOST_KEY, now=0.0)
    with pytest.raises(HandshakeError) as info:
        s.receive_data(b"", 0.0)
    assert str(info.value) == "the client closed the connection without sending anything"
    c, s = started()                               # a moshpit server that stops mid-hello
    c.receive_data(b"\x02\x00", 0.0)
    with pytest.raises(HandshakeError) as info:
        c.receive_data(b"", 0.0)
    assert str(info.value) == "truncated: connection closed mid-handshake"


def test_byte_at_a_time_delivery_works():
    c, s = started()
    for byte in c.data_to_send():
        s.receive_data(bytes([byte]), 0.0)
    for byte in s.data_to_send():
        c.receive_data(bytes([byte]), 0.0)
    assert isinstance(c.next_event(), HostKeyReceived)


@settings(max_examples=150)
@given(st.data())
def test_tampering_with_any_server_byte_fails_cleanly(data):
    c, s = trusted()
    s.accept(conn_id=1, udp_port=50000, session_id=bytes(16), resume_token=bytes(32))
    accept = bytearray(s.data_to_send())
    i = data.draw(st.integers(0, len(accept) - 1))
    accept[i] ^= data.draw(st.integers(1, 255))
    try:
        c.receive_data(bytes(accept), 0.0)
    except HandshakeError:
        assert c.state is State.FAILED
    else:
        assert c.state is State.SENT_AUTH        # a grown length field: still waiting for bytes
    assert c.params is None


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_garbage_only_ever_raises_handshake_error(garbage):
    for side in (ServerHandshake(HOST_KEY, now=0.0), started()[0]):
        try:
            side.receive_data(garbage, 0.0)
        except HandshakeError:
            pass


def test_caller_misuse_is_local_error():
    c, s = started()
    with pytest.raises(LocalProtocolError):
        c.accept_host_key()                         # no host key yet
    with pytest.raises(LocalProtocolError):
        s.accept(conn_id=1, udp_port=1, session_id=bytes(16), resume_token=bytes(32))
    with pytest.raises(LocalProtocolError):
        ClientHandshake(CLIENT_KEY, "a", now=0.0, resume_token=b"short")


# --- resume ---------------------------------------------------------------------

def test_resume_reattaches_the_same_session_with_fresh_keys():
    registry = SessionRegistry(PortPool(range(50000, 50010)))
    key = nacl.signing.SigningKey.generate()
    first, _, admission = handshake(registry=registry, client_key=key)
    again, _, admission2 = handshake(registry=registry, client_key=key, token=first.resume_token)
    assert admission2.resumed and again.resumed
    assert again.session_id == first.session_id and again.udp_port == first.udp_port
    assert again.conn_id != first.conn_id
    assert again.keys.client_to_server.aead_key != first.keys.client_to_server.aead_key
    assert again.resume_token != first.resume_token          # tokens are single-use
    assert len(registry) == 1
    # Until the new connection is heard from, the old token may be presented again (its
    # accept may have been lost); after that it no longer resumes anything.
    retry, _, admission_retry = handshake(registry=registry, client_key=key, token=first.resume_token)
    assert admission_retry.resumed and retry.session_id == first.session_id
    registry.confirm(first.session_id)
    third, _, admission3 = handshake(registry=registry, client_key=key, token=first.resume_token)
    assert not admission3.resumed and third.session_id != first.session_id


def test_resume_only_request_is_refused_when_its_session_is_gone():
    registry = SessionRegistry(PortPool(range(50000, 50010)))
    key = nacl.signing.SigningKey.generate()
    first, _, _ = handshake(registry=registry, client_key=key)
    c = ClientHandshake(key, "alice", now=0.0, resume_token=first.resume_token, resume_only=True)
    s = ServerHandshake(HOST_KEY, now=0.0)
    pump_handshake(c, s, 0.0)
    c.next_event()
    c.accept_host_key()
    pump_handshake(c, s, 0.0)
    request = s.next_event()
    assert request.resume_only and request.resume_token == first.resume_token
    registry.close(first.session_id)                    # the shell ended meanwhile
    with pytest.raises(SessionGone):
        registry.admit(request.user, request.client_key, request.resume_token, resume_only=True)
    assert len(registry) == 0                           # no new session was opened instead
    s.refuse(RefuseCode.NO_SESSION, "the session no longer exists")
    pump_handshake(c, s, 0.0)
    refused = c.next_event()
    assert isinstance(refused, HandshakeRefused) and refused.code == RefuseCode.NO_SESSION
    with pytest.raises(LocalProtocolError):
        ClientHandshake(key, "alice", now=0.0, resume_only=True)      # nothing to resume


def test_accept_tells_a_resuming_client_how_much_input_the_shell_got():
    c, s = trusted()
    s.next_event()
    s.accept(conn_id=7, udp_port=50001, session_id=bytes(16), resume_token=bytes(32), resumed=True,
             input_received=2 ** 40 + 5)
    pump_handshake(c, s, 0.0)
    assert c.params.resumed and c.params.input_received == 2 ** 40 + 5


def test_only_the_newest_two_tokens_resume_and_only_for_their_owner():
    registry = SessionRegistry(PortPool(range(50000, 50010)))
    key, thief = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    first, _, _ = handshake(registry=registry, client_key=key)
    second, _, _ = handshake(registry=registry, client_key=key, token=first.resume_token)
    third, _, _ = handshake(registry=registry, client_key=key, token=second.resume_token)
    _, _, stale = handshake(registry=registry, client_key=key, token=first.resume_token)
    assert not stale.resumed                          # two generations back: spent
    _, _, stolen = handshake(registry=registry, client_key=thief, token=third.resume_token)
    assert not stolen.resumed


def test_stolen_token_never_yields_someone_elses_session():
    registry = SessionRegistry(PortPool(range(50000, 50010)))
    alice_params, _, _ = handshake(registry=registry)
    thief, _, admission = handshake(registry=registry, token=alice_params.resume_token)
    assert not admission.resumed and "another identity" in admission.note
    assert thief.session_id != alice_params.session_id
    assert thief.udp_port != alice_params.udp_port


def test_ports_return_to_the_pool():
    pool = PortPool(range(50000, 50002))
    registry = SessionRegistry(pool)
    a = registry.admit("u", os.urandom(32), None)
    registry.admit("u", os.urandom(32), None)
    assert pool.free == 0
    registry.close(a.session.session_id)
    assert pool.free == 1 and len(registry) == 1


def authorise(handshake_server, home, uid, request):
    """What a server runtime does with an AuthRequested: check the file, accept or refuse."""
    from moshpit.keys import check_authorized
    verdict = check_authorized(request.client_key, user=request.user, home=str(home), uid=uid)
    if verdict.allowed:
        handshake_server.accept(conn_id=1, udp_port=50000, session_id=bytes(16), resume_token=bytes(32))
    else:
        handshake_server.refuse()
    return verdict


@pytest.mark.parametrize("setup, allowed, logged", [
    ("listed", True, "authorized_keys:1"),
    ("unlisted", False, "is not in"),
    ("readable-file", True, "authorized_keys:1"),    # public keys: only who may write matters
    ("loose-file", False, "mode 0664"),
    ("loose-dir", False, "mode 0775"),
])
def test_authorised_keys_decide_and_the_client_learns_only_yes_or_no(tmp_path, setup, allowed, logged):
    from moshpit.keys import format_public_key
    mp = tmp_path / ".mp"
    mp.mkdir(mode=0o700)
    listed = CLIENT_KEY if setup != "unlisted" else nacl.signing.SigningKey.generate()
    (mp / "authorized_keys").write_text(format_public_key(bytes(listed.verify_key)) + "\n")
    (mp / "authorized_keys").chmod({"loose-file": 0o664, "readable-file": 0o644}.get(setup, 0o600))
    if setup == "loose-dir":
        mp.chmod(0o775)
    c, s = trusted()
    verdict = authorise(s, tmp_path, os.getuid(), s.request)
    pump_handshake(c, s)
    assert verdict.allowed is allowed and logged in verdict.reason
    event = c.next_event()
    if allowed:
        assert isinstance(event, HandshakeComplete)
    else:
        assert isinstance(event, HandshakeRefused) and event.reason == "not authorised"


def test_sessions_per_user_and_per_key_are_limited_but_resumes_are_not():
    from moshpit.protocol.sessions import TooManySessions
    registry = SessionRegistry(PortPool(range(50000, 50010)), max_per_user=3, max_per_key=2)
    alice_1, alice_2 = b"a" * 32, b"b" * 32
    first = registry.admit("alice", alice_1, None)
    registry.admit("alice", alice_1, None)
    with pytest.raises(TooManySessions, match="this key already has 2"):
        registry.admit("alice", alice_1, None)
    registry.admit("alice", alice_2, None)
    with pytest.raises(TooManySessions, match="alice already has 3"):
        registry.admit("alice", alice_2, None)
    assert registry.admit("bob", b"c" * 32, None)                     # others are not held up
    again = registry.admit("alice", alice_1, first.resume_token)      # a resume is not a new one
    assert again.resumed and again.session is first.session
    registry.close(first.session.session_id)
    assert registry.admit("alice", alice_1, None)                    # room again
    assert registry.ports.free == 10 - 4                               # none taken by a refusal
