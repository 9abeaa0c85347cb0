"""The server's key-exchange limiter: two stages, buckets aggregated by prefix, a bounded
table that denies new sources rather than forgetting old ones, and a wait to tell."""

from moshpit.protocol.ratelimit import HandshakeLimiter, retry_after, source_key, source_keys


def admitted(limiter, host, now):
    return limiter.admit(host, now) is None


def test_a_burst_then_one_per_refill_interval_and_the_wait_is_told():
    limiter = HandshakeLimiter(burst=3, per_second=0.5)
    assert [admitted(limiter, "192.0.2.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("192.0.2.1", 1.0) == 1.0        # half a token so far: one more second
    assert retry_after(limiter.admit("192.0.2.1", 1.5)) == 1
    assert admitted(limiter, "192.0.2.1", 2.1)
    assert admitted(limiter, "192.0.2.9", 2.1)           # another address has its own bucket
    assert limiter.refused == 3


def test_handshakes_in_progress_are_capped_whatever_their_source():
    limiter = HandshakeLimiter(max_in_progress=2)
    assert admitted(limiter, "192.0.2.1", 0.0) and admitted(limiter, "192.0.2.2", 0.0)
    assert not admitted(limiter, "192.0.2.3", 0.0)
    limiter.done("192.0.2.1")
    assert admitted(limiter, "192.0.2.3", 0.0)


def test_one_source_cannot_hold_every_slot_with_unfinished_handshakes():
    limiter = HandshakeLimiter(max_in_progress=64, max_in_progress_per_source=4)
    assert [admitted(limiter, "192.0.2.1", 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert admitted(limiter, "198.51.100.7", 0.0)         # someone else still gets in
    limiter.done("192.0.2.1")
    assert admitted(limiter, "192.0.2.1", 0.0)


def test_connections_waiting_for_a_hello_are_counted_apart_and_capped_per_source():
    limiter = HandshakeLimiter(max_waiting=100, max_waiting_per_source=3)
    assert [limiter.connect("192.0.2.1", 0.0) for _ in range(4)] == [None] * 3 + [1.0]
    assert limiter.connect("192.0.2.2", 0.0) is None
    assert limiter.in_progress == 0 and limiter.waiting == 4   # idle sockets hold no slot
    limiter.disconnect("192.0.2.1")
    assert limiter.connect("192.0.2.1", 0.0) is None


def test_ipv6_sources_draw_from_their_64_56_and_48_and_mapped_ipv4_is_ipv4():
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert source_key("2001:db8:0:1::1") != source_key("2001:db8::1")
    assert [key for key, _ in source_keys("2001:db8:0:1::1")] == \
        ["2001:db8:0:1::/64", "2001:db8::/56", "2001:db8::/48"]
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"


def test_rotating_through_64s_buys_no_more_than_the_48_allows():
    """The review rotated 5,000 /64s and got 150,000 of 150,000 attempts in."""
    limiter = HandshakeLimiter(burst=10, per_second=1.0, max_in_progress=10 ** 9,
                               max_in_progress_per_source=10 ** 9)
    ok = 0
    for i in range(5000):
        host = f"2001:db8:0:{i % 65536:x}::1"          # a fresh /64 each time, one /48
        if admitted(limiter, host, i * 0.0001):
            ok += 1
            limiter.done(host)
    assert ok <= 10 * 8 + 0.5 * 8 + 1                    # the /48's burst, and 0.5 s of refill
    assert admitted(limiter, "2001:db8:1::1", 1.0)       # the next /48 is not held up


def test_sixteen_64s_of_a_home_60_cannot_hold_every_slot():
    limiter = HandshakeLimiter(max_in_progress=64, max_in_progress_per_source=4)
    held = sum(admitted(limiter, f"2001:db8:0:{n:x}::1", 0.0) for n in range(16) for _ in range(4))
    assert held == 4 * 4                                 # the /56 cap, not 64
    assert admitted(limiter, "198.51.100.7", 0.0)


def test_a_full_table_denies_new_sources_instead_of_forgetting_old_buckets():
    limiter = HandshakeLimiter(burst=2, per_second=0.01, max_sources=100, max_in_progress=10 ** 9,
                               max_in_progress_per_source=10 ** 9)
    outcomes = []
    for i in range(5000):
        host = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        outcomes.append(admitted(limiter, host, i * 0.001))
        limiter.done(host)
    assert len(limiter._buckets) <= 100
    assert sum(outcomes) <= 100                          # no fresh burst for an evicted source
    assert admitted(limiter, "10.0.0.0", 5.0)            # the first source's bucket was kept:
    limiter.done("10.0.0.0")
    assert not admitted(limiter, "10.0.0.0", 5.0)        # one token left of two, not a fresh burst
