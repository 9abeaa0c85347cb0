"""The SOCKS greeting of mp -D, parsed as its clients send it (curl, ssh -o ProxyCommand nc -X)."""

import struct

import pytest

from moshpit.socks import SocksError, SocksRequest


def test_socks5_with_a_name_in_pieces():
    request = SocksRequest()
    greeting = b"\x05\x02\x00\x02"
    ask = b"\x05\x01\x00\x03\x0bexample.com" + struct.pack("!H", 443) + b"GET"
    replies = b"".join(request.feed(bytes([b])) for b in greeting + ask)
    assert replies == b"\x05\x00"
    assert request.target == ("example.com", 443) and request.rest == b"GET"
    assert request.success()[:2] == b"\x05\x00"


@pytest.mark.parametrize("ask, target", [
    (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", ("127.0.0.1", 80)),
    (b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x16", ("::1", 22)),
])
def test_socks5_addresses(ask, target):
    request = SocksRequest()
    assert request.feed(b"\x05\x01\x00" + ask) == b"\x05\x00"
    assert request.target == target


def test_socks4_and_4a():
    four = SocksRequest()
    four.feed(b"\x04\x01\x00\x50\x0a\x00\x00\x05user\x00")
    assert four.target == ("10.0.0.5", 80) and four.success()[:2] == b"\x00\x5a"
    four_a = SocksRequest()
    four_a.feed(b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00db.internal\x00")
    assert four_a.target == ("db.internal", 443)


@pytest.mark.parametrize("data, reply", [
    (b"GET / HTTP/1.1\r\n", b""),                               # not SOCKS
    (b"\x05\x01\x02", b"\x05\xff"),                            # wants a password
    (b"\x05\x01\x00\x05\x02\x00\x01" + bytes(6), None),        # BIND
    (b"\x05\x01\x00\x05\x01\x00\x03\x03a\xffb\x00\x50", None),  # a name that is not ASCII
    (b"\x05\x01\x00" + b"\x05\x01\x00\x03\xff" + b"a" * 1100, None),   # too long
])
def test_what_is_refused(data, reply):
    request = SocksRequest()
    with pytest.raises(SocksError) as caught:
        request.feed(data)
    if reply is not None:
        assert caught.value.reply == reply
