"""The client's roaming decisions (moshpit/protocol/roaming.py), on a fake clock."""

import errno

from moshpit.protocol.roaming import (MAX_HOP_INTERVAL, MIN_HOP_SILENCE, REOPEN_INTERVAL,
                                      UNREACHABLE_AFTER, PathMonitor)

KEEPALIVE = 3.0


def test_a_wait_for_an_answer_moves_after_two_rtos_and_at_least_a_second():
    path = PathMonitor(now=0.0)
    path.on_heard(9.9)
    path.on_sent(10.0)
    assert path.hop_deadline(rto=0.2, keepalive_interval=KEEPALIVE) == 10.0 + MIN_HOP_SILENCE
    assert path.hop_deadline(rto=0.9, keepalive_interval=KEEPALIVE) == 10.0 + 1.8
    path.on_sent(10.5)                                   # still the first unanswered send that counts
    assert path.hop_deadline(rto=0.2, keepalive_interval=KEEPALIVE) == 11.0
    path.on_heard(10.6)                                  # answered: nothing to wait for
    assert path.hop_deadline(rto=0.2, keepalive_interval=KEEPALIVE) == 10.6 + KEEPALIVE + 1.0


def test_moving_again_and_again_backs_off_to_the_cap_and_contact_resets_it():
    path = PathMonitor(now=0.0)
    now, gaps = 0.0, []
    for _ in range(6):
        path.on_sent(now)
        deadline = path.hop_deadline(rto=0.2, keepalive_interval=KEEPALIVE)
        gaps.append(deadline - now)
        now = deadline
        path.moved(now)
    assert gaps == [1.0, 2.0, 4.0, MAX_HOP_INTERVAL, MAX_HOP_INTERVAL, MAX_HOP_INTERVAL]
    path.on_heard(now)
    path.on_sent(now)
    assert path.hop_deadline(rto=0.2, keepalive_interval=KEEPALIVE) == now + 1.0
    assert path.moves == 6


def test_send_errors_that_say_the_address_went_reopen_at_once_but_not_in_a_loop():
    path = PathMonitor(now=0.0)
    assert not path.send_failed(errno.ENOBUFS, 5.0)       # a full queue is a loss, not a move
    assert path.send_failed(errno.EADDRNOTAVAIL, 5.0)
    path.moved(5.0)
    assert not path.send_failed(errno.EINVAL, 5.0 + REOPEN_INTERVAL / 2)
    assert path.send_failed(errno.EPERM, 5.0 + 2 * REOPEN_INTERVAL)


def test_no_route_again_and_again_means_this_family_is_gone_until_heard_from():
    path = PathMonitor(now=0.0)
    for i in range(UNREACHABLE_AFTER - 1):
        path.send_failed(errno.ENETUNREACH, float(i))
        assert not path.unreachable
    path.send_failed(errno.EPERM, 9.0)                    # a firewall's no is not a missing route
    assert not path.unreachable
    path.send_failed(errno.ENETUNREACH, 10.0)
    assert path.unreachable
    path.on_heard(11.0)
    assert not path.unreachable


def test_a_channel_asks_to_move_when_its_keystrokes_go_unanswered():
    """The simulated path goes dark after a keystroke: the client channel raises
    MoveRequested about a second later (well before the status bar at 6.5 s), and
    the move itself re-sends padded, so the server gets a budget to answer."""
    from moshpit.protocol.events import MoveRequested, PeerSilent
    from moshpit.protocol.handshake import DiffMode
    from simnet import SimNet
    net = SimNet(DiffMode.RELIABLE, seed=3)
    net.run_for(1.0)
    net.links["up"].up = net.links["down"].up = False
    started = net.now
    net.client.channel.send_data(b"x")
    assert net.run_until(lambda: any(isinstance(e, MoveRequested) for _, e in net.client.events), timeout=5)
    assert 1.0 <= net.now - started < 1.5
    assert not any(isinstance(e, PeerSilent) for _, e in net.client.events)


def test_a_move_resends_the_newest_unacknowledged_keystrokes_at_once():
    """What was in flight on the old path is likely lost: the first datagrams from the
    new socket carry it again, rather than an RTO later."""
    from moshpit.protocol.handshake import DiffMode
    from simnet import SimNet
    net = SimNet(DiffMode.RELIABLE, seed=4)
    net.run_for(1.0)
    net.links["up"].up = False
    net.client.channel.send_data(b"typed before the move")
    net.run_for(0.01)
    channel = net.client.channel
    assert channel.in_flight == 1 and channel.stats["retransmitted"] == 0
    channel.path_changed()
    channel.datagrams_to_send(net.now)
    assert channel.stats["retransmitted"] == 1
