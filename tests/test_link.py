"""The link between the listener and a session process: what the listener believes of it."""

import json

import pytest
from hypothesis import given, strategies as st

from moshpit import crypto
from moshpit.errors import RemoteProtocolError
from moshpit.protocol import link
from moshpit.protocol.handshake import DiffMode, SessionParams


def test_connection_parameters_cross_whole_but_the_resume_token_stays_behind():
    keys = crypto.TrafficKeys(crypto.DirectionKeys(b"a" * 32, b"b" * 64), crypto.DirectionKeys(b"c" * 32, b"d" * 64))
    params = SessionParams(conn_id=7, udp_port=50001, session_id=b"s" * 16, resume_token=b"secret" * 4,
                           resumed=True, diff_mode=DiffMode.STATESYNC, keys=keys, client_key=b"k" * 32,
                           host_key=b"h" * 32, user="alice", cols=132, rows=50, env={"LANG": "C.UTF-8"},
                           input_received=12345)
    wire = link.encode({"op": link.ATTACH, "params": link.params_to_json(params)})
    assert b"secret".hex().encode() not in wire
    back = link.params_from_json(link.decode(wire)["params"])
    assert back.resume_token == b""
    for name in ("conn_id", "udp_port", "session_id", "resumed", "diff_mode", "client_key", "host_key",
                 "user", "cols", "rows", "env", "input_received"):
        assert getattr(back, name) == getattr(params, name)
    assert back.keys.client_to_server.mac_key == b"b" * 64 and back.keys.server_to_client.aead_key == b"c" * 32


@pytest.mark.parametrize("message", [
    {"op": "started", "shell_pid": 0, "tty": "pts/1"},
    {"op": "started", "shell_pid": True, "tty": "pts/1"},
    {"op": "started", "shell_pid": 12, "tty": "../../etc/passwd"},
    {"op": "started", "shell_pid": 12, "tty": "pts/1\nforged"},
    {"op": "ready", "input_received": -1},
    {"op": "ready", "input_received": 1 << 64},
    {"op": "ready", "input_received": "12"},
    {"op": "status", "attached": True, "peer": "\x1b]0;x\x07"},
    {"op": "status", "attached": True, "peer": "root was here"},             # a listing shows addresses
    {"op": "status", "attached": True, "peer": "2001:db8::1:4000"},          # v6 without brackets
    {"op": "status", "attached": True, "peer": "192.0.2.1:99999"},
    {"op": "attach"},                                   # an order, not something a session says
    {"op": "become-root"},
    {"op": "started", "shell_pid": 4242, "tty": "pts/7", "uid": 0},        # a field nobody asked for
    {"op": "heard", "padding": "x" * 900},
    {"op": "log", "level": 20, "message": "x" * (link.MAX_LOG_TEXT + 1)},
    {"op": "log", "level": 60, "message": "hi"},
    {"op": "log", "level": 20, "message": ["hi"]},
])
def test_what_a_session_process_cannot_make_the_listener_believe(message):
    with pytest.raises(RemoteProtocolError):
        link.decode_from_session(json.dumps(message).encode())


@pytest.mark.parametrize("peer", ["192.0.2.1:4000", "[2001:db8::1]:4000", ""])
def test_a_status_names_an_address_or_none(peer):
    message = json.dumps({"op": "status", "attached": True, "peer": peer}).encode()
    assert link.decode_from_session(message)["peer"] == peer


def test_well_formed_session_messages_are_taken_as_checked_values():
    started = link.decode_from_session(b'{"op":"started","shell_pid":4242,"tty":"pts/7"}')
    assert started == {"op": "started", "shell_pid": 4242, "tty": "pts/7"}
    record = link.decode_from_session(b'{"op":"log","level":31,"message":"disk \\u001b[2J full"}')
    assert record == {"op": "log", "level": 30, "message": "disk \x1b[2J full"}    # sanitised where logged
    ready = link.decode_from_session(b'{"op":"ready","input_received":99,"ended":1}')
    assert ready == {"op": "ready", "input_received": 99, "ended": False}     # only true is true


@given(st.binary(max_size=300))
def test_any_bytes_from_a_session_are_a_message_or_a_remote_error(data):
    try:
        link.decode_from_session(data)
    except RemoteProtocolError:
        pass


def test_oversized_and_deeply_nested_messages_are_refused():
    with pytest.raises(RemoteProtocolError):
        link.decode_from_session(b" " * (link.MAX_FROM_SESSION + 1))
    with pytest.raises(RemoteProtocolError):
        link.decode_from_session(b"[" * (link.MAX_FROM_SESSION - 1))
