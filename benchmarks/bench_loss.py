"""Simulated seconds for the channel to deliver under loss (fake clock, seeded network).

    python benchmarks/bench_loss.py [--quick]

Reliable mode: seconds until N bytes of PTY output arrive byte-exact at each
loss rate (both directions lossy, 5 % duplication, 10 % reordering, 25 ms
one-way delay). Statesync and datagram: seconds until the client shows the
final screen after a burst of screen changes, and the bytes that crossed the
wire. Medians over several seeds. Time is simulated, so the figures do not
depend on this machine's speed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from simnet import SERVER_ADDR, Link, SimNet, random_bytes  # noqa: E402

from moshpit.protocol.handshake import DiffMode  # noqa: E402


def lossy(loss):
    return dict(down=Link(loss=loss, duplicate=0.05, reorder=0.1),
                up=Link(loss=loss, duplicate=0.05, reorder=0.1))


def reliable_run(size, loss, seed):
    net = SimNet(DiffMode.RELIABLE, seed=seed, **lossy(loss))
    data = random_bytes(size, seed)
    for i in range(0, size, 4096):
        net.server_output(data[i:i + 4096])
    done = lambda: len(net.client.received) >= size or net.client.channel.stats["datagrams_abandoned"]  # noqa: E731
    net.run_until(done, timeout=600)
    stats = net.server.channel.stats
    exact = bytes(net.client.received) == data
    return net.now, stats["datagrams_sent"], stats["retransmitted"], stats["gone_sent"], \
        net.client.channel.stats["datagrams_abandoned"], exact


def screen_run(mode, loss, seed, changes=300):
    net = SimNet(mode, seed=seed, **lossy(loss))
    rng = random.Random(seed)
    text = random_bytes(2000, seed)
    start = 0.0
    for _ in range(changes):
        text = text[:-rng.randrange(1, 40)] + rng.randbytes(rng.randrange(1, 60))
        net.screen(text)
        net.run_for(0.01)
    start = net.now
    ok = net.run_until(lambda: net.client_screen.text == text, timeout=120)
    assert ok
    down = sum(len(d) for _, src, _, d in net.tap if src == SERVER_ADDR)
    return net.now - start, down, net.server.channel.stats["screen_messages"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seeds = range(3 if args.quick else 7)
    size = 200_000 if args.quick else 1_000_000

    print(f"reliable: {size:,} bytes of output, median of {len(seeds)} seeded runs")
    print(f"{'loss':>6}{'sim seconds':>13}{'datagrams':>11}{'resent':>8}{'goodput KB/s':>14}"
          f"{'abandoned':>11}{'exact runs':>12}")
    for loss in (0.0, 0.1, 0.3, 0.5):
        runs = [reliable_run(size, loss, seed) for seed in seeds]
        secs = statistics.median(r[0] for r in runs)
        print(f"{loss:>6.0%}{secs:>13.2f}{statistics.median(r[1] for r in runs):>11.0f}"
              f"{statistics.median(r[2] for r in runs):>8.0f}{size / secs / 1000:>14.0f}"
              f"{sum(r[4] for r in runs):>11}{sum(r[5] for r in runs):>8}/{len(runs)}")
    print()
    print("screen sync: 300 changes of a 2 KB screen, 10 ms apart; time to converge after the last")
    print(f"{'mode':>10}{'loss':>6}{'sim seconds':>13}{'bytes down':>12}{'messages':>10}")
    for mode in (DiffMode.STATESYNC, DiffMode.DATAGRAM):
        for loss in (0.0, 0.3, 0.5):
            runs = [screen_run(mode, loss, seed) for seed in seeds]
            print(f"{mode.value:>10}{loss:>6.0%}{statistics.median(r[0] for r in runs):>13.3f}"
                  f"{statistics.median(r[1] for r in runs):>12.0f}{statistics.median(r[2] for r in runs):>10.0f}")


if __name__ == "__main__":
    main()
