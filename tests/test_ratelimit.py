"""The server's key-exchange limiter: bursts, refill, the total cap and a bounded table."""

from moshpit.protocol.ratelimit import HandshakeLimiter, source_key


def test_a_burst_then_one_per_refill_interval():
    limiter = HandshakeLimiter(burst=3, per_second=0.5)
    assert [limiter.admit("192.0.2.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert not limiter.admit("192.0.2.1", 1.0)          # half a token so far
    assert limiter.admit("192.0.2.1", 2.1)
    assert limiter.admit("192.0.2.9", 2.1)              # another address has its own bucket
    assert limiter.refused == 2


def test_handshakes_in_progress_are_capped_whatever_their_source():
    limiter = HandshakeLimiter(max_in_progress=2)
    assert limiter.admit("192.0.2.1", 0.0) and limiter.admit("192.0.2.2", 0.0)
    assert not limiter.admit("192.0.2.3", 0.0)
    limiter.done("192.0.2.1")
    assert limiter.admit("192.0.2.3", 0.0)


def test_one_source_cannot_hold_every_slot_with_unfinished_handshakes():
    limiter = HandshakeLimiter(max_in_progress=64, max_in_progress_per_source=4)
    assert [limiter.admit("192.0.2.1", 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert limiter.admit("198.51.100.7", 0.0)            # someone else still gets in
    limiter.done("192.0.2.1")
    assert limiter.admit("192.0.2.1", 0.0)


def test_ipv6_addresses_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4():
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert source_key("2001:db8:0:1::1") != source_key("2001:db8::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"


def test_the_table_stays_bounded_under_a_flood_of_sources():
    limiter = HandshakeLimiter(burst=2, max_sources=100, max_in_progress=10 ** 9)
    for i in range(5000):
        limiter.admit(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", i * 0.001)
    assert len(limiter._buckets) <= 100
