"""Throughput of the protocol core, beside the pure-Python models and the bare crypto.

    python benchmarks/bench_core.py [--quick] [--baseline DIR]

Prints operations per second for each kernel (Cython, and the reference model
from tests/models.py for comparison), then the full seal+open path for
1200-byte payloads, a datagram a call and a run of 16 a call (as the channel
seals a send turn and opens a read), against the cost of the cryptographic
primitives alone on the same sizes (the same HMAC object as ours), and the
ratio between the two (target: at most 1.15). Last, a keystroke's seal+open
the first time after 50 ms asleep, beside the same at once: a process woken
by a keystroke finds its caches cold, and that, not the work, is most of what
an echo costs in a Python process (see docs/performance.md).

``--baseline DIR`` also runs the replay, retransmit and seqtrack kernels of
another build (a checkout where ``setup.py build_ext --inplace`` was run: its
``moshpit/*.so``), in the same run, for before-and-after figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

import moshpit
from moshpit import codec
from moshpit.crypto import DirectionKeys, PacketOpener, PacketSealer, keyed_hmac_sha512
from moshpit.replay import ReplayWindow
from moshpit.retransmit import RetransmitBuffer
from moshpit.seqtrack import SeqTracker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import ReplayModel, RetransmitModel, SeqTrackModel  # noqa: E402

PAYLOAD_SIZE = 1200


def best_rate(make_run, ops: int, repeats: int) -> float:
    """Operations per second of the fastest of ``repeats`` runs (each on fresh state)."""
    best = float("inf")
    for _ in range(repeats):
        run = make_run()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return ops / best


def codec_encode(n):
    body = os.urandom(PAYLOAD_SIZE - codec.FRAME_HEADER_SIZE)
    header, encode_frame = codec.encode_header, codec.encode_frame

    def run():
        for seq in range(n):
            buf = bytearray(PAYLOAD_SIZE + codec.HEADER_SIZE)
            header(buf, 1, 7, seq)
            encode_frame(buf, codec.HEADER_SIZE, codec.FRAME_DATA, body)
    return run


def codec_decode(n):
    payload = codec.encode_frames([(codec.FRAME_ACK, bytes(8)),
                                   (codec.FRAME_DATA, os.urandom(PAYLOAD_SIZE - 14))])
    datagram = codec.header(1, 7, 42) + payload + bytes(48)
    decode_header, decode_frames = codec.decode_header, codec.decode_frames

    def run():
        for _ in range(n):
            decode_header(datagram)
            decode_frames(payload)
    return run


def replay(cls, n):
    def make():
        window = cls()

        def run():
            for seq in range(n):
                if window.check(seq) == 0:
                    window.commit(seq)
        return run
    return make


def retransmit(cls, n):
    datagram = os.urandom(PAYLOAD_SIZE)

    def make():
        ring = cls(512)

        def run():
            for seq in range(100, n + 100):
                ring.store(seq, datagram)
                ring.lookup(seq - 100)
        return run
    return make


def retransmit_acked(cls, n):
    """What a sender does: store each datagram, a cumulative ACK every 16."""
    datagram = os.urandom(PAYLOAD_SIZE)

    def make():
        ring = cls(512)

        def run():
            for seq in range(64, n + 64):
                ring.store(seq, datagram)
                if seq % 16 == 15:
                    ring.discard_through(seq - 32)
        return run
    return make


def load_baseline(directory: str) -> dict:
    """The kernels built in another checkout, loaded beside ours under other names."""
    import glob
    import importlib.util
    found = {}
    for name in ("replay", "retransmit", "seqtrack"):
        paths = glob.glob(os.path.join(directory, "moshpit", f"{name}.*.so"))
        if not paths:
            raise SystemExit(f"no built {name} kernel under {directory}/moshpit (run setup.py build_ext --inplace)")
        spec = importlib.util.spec_from_file_location(f"baseline.{name}", paths[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found[name] = module
    return found


def seqtrack(cls, n):
    def make():
        tracker = cls()

        def run():
            # Pairs swapped (1,0,3,2,...): every other datagram opens a one-number gap.
            for base in range(0, n, 2):
                tracker.ingest(base + 1, b"x", 0.0)
                tracker.ingest(base, b"y", 0.0)
                tracker.pop_ready()
        return run
    return make


def seal_open(n):
    keys = DirectionKeys(os.urandom(32), os.urandom(64))
    payload = os.urandom(PAYLOAD_SIZE)

    def make():
        sealer = PacketSealer(keys, conn_id=7, direction=1)
        opener = PacketOpener(keys, conn_id=7, direction=1)

        def run():
            for _ in range(n):
                opener.open(sealer.seal(payload)[1])
        return run
    return make


def seal_open_runs(n, run=16):
    """The same, a run per call, as a send turn and a receive turn make them."""
    keys = DirectionKeys(os.urandom(32), os.urandom(64))
    payloads = [os.urandom(PAYLOAD_SIZE)] * run

    def make():
        sealer = PacketSealer(keys, conn_id=7, direction=1)
        opener = PacketOpener(keys, conn_id=7, direction=1)

        def run_():
            for _ in range(n // run):
                opener.open_many(sealer.seal_many(payloads))
        return run_
    return make


def after_sleep(rounds=40, asleep=0.05):
    """Median microseconds of one seal and one open, each the first since sleeping
    ``asleep`` seconds, and again at once (warm): what a keystroke finds."""
    keys = DirectionKeys(os.urandom(32), os.urandom(64))
    sealer = PacketSealer(keys, conn_id=7, direction=1)
    opener = PacketOpener(keys, conn_id=7, direction=1)
    payload = os.urandom(40)
    cold, warm = [], []
    for _ in range(rounds):
        time.sleep(asleep)
        t0 = time.perf_counter()
        opener.open(sealer.seal(payload)[1])
        t1 = time.perf_counter()
        opener.open(sealer.seal(payload)[1])
        t2 = time.perf_counter()
        cold.append(t1 - t0)
        warm.append(t2 - t1)
    return sorted(cold)[rounds // 2] * 1e6, sorted(warm)[rounds // 2] * 1e6


def primitives(n, what):
    """The same cryptographic work as seal+open, with none of our code around it."""
    aead = AESGCMSIV(os.urandom(32))
    mac = keyed_hmac_sha512(os.urandom(64))   # the fastest HMAC object Python offers, as ours
    payload = os.urandom(PAYLOAD_SIZE)
    header = os.urandom(codec.HEADER_SIZE)
    nonce = header[1:]
    sealed = aead.encrypt(nonce, payload, header)

    def seal():
        for _ in range(n):
            aead.encrypt(nonce, payload, header)

    def open_():
        for _ in range(n):
            aead.decrypt(nonce, sealed, header)

    def mac_once():
        for _ in range(n):
            m = mac.copy()
            m.update(header)
            m.update(sealed)
            m.digest()

    def all_four():
        for _ in range(n):
            ct = aead.encrypt(nonce, payload, header)
            for _ in range(2):
                m = mac.copy()
                m.update(header)
                m.update(ct)
                m.digest()
            aead.decrypt(nonce, ct, header)
    return {"seal": seal, "open": open_, "mac": mac_once, "all": all_four}[what]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--baseline", metavar="DIR", help="also run the kernels built in DIR")
    args = parser.parse_args(argv)
    baseline = load_baseline(args.baseline) if args.baseline else None
    n = 20_000 if args.quick else 200_000
    n_crypto = 5_000 if args.quick else 40_000
    repeats = 3 if args.quick else 5

    print(f"moshpit {moshpit.__version__} core benchmark: Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cpus, best of {repeats}")
    print()
    rows = [
        ("codec encode (header + 1200 B DATA frame)", best_rate(lambda: codec_encode(n), n, repeats), None),
        ("codec decode (header + 2 frames)", best_rate(lambda: codec_decode(n), n, repeats), None),
        ("replay check+commit", best_rate(replay(ReplayWindow, n), n, repeats),
         best_rate(replay(ReplayModel, n), n, repeats)),
        ("retransmit store+lookup", best_rate(retransmit(RetransmitBuffer, n), n, repeats),
         best_rate(retransmit(RetransmitModel, n), n, repeats)),
        ("retransmit store, ACK every 16", best_rate(retransmit_acked(RetransmitBuffer, n), n, repeats),
         best_rate(retransmit_acked(RetransmitModel, n), n, repeats)),
        ("seqtrack ingest (half reordered)", best_rate(seqtrack(SeqTracker, n), n, repeats),
         best_rate(seqtrack(SeqTrackModel, n), n, repeats)),
    ]
    print("Python model: the reference model from tests/models.py that the property tests compare with")
    print(f"{'kernel':<44}{'Cython ops/s':>14}{'Python model':>14}{'speedup':>9}")
    for name, fast, slow in rows:
        model = f"{slow:>14,.0f}" if slow else f"{'-':>14}"
        speedup = f"{fast / slow:>8.1f}x" if slow else f"{'-':>9}"
        print(f"{name:<44}{fast:>14,.0f}{model}{speedup}")
    if baseline is not None:
        print()
        print(f"Before and after, this run: the kernels of {args.baseline} beside these")
        print(f"{'kernel':<44}{'before ops/s':>14}{'after ops/s':>14}{'after/before':>13}")
        pairs = [("replay check+commit", replay, baseline["replay"].ReplayWindow, ReplayWindow),
                 ("retransmit store+lookup", retransmit, baseline["retransmit"].RetransmitBuffer, RetransmitBuffer),
                 ("retransmit store, ACK every 16", retransmit_acked, baseline["retransmit"].RetransmitBuffer,
                  RetransmitBuffer),
                 ("seqtrack ingest (half reordered)", seqtrack, baseline["seqtrack"].SeqTracker, SeqTracker)]
        for name, bench, old, new in pairs:
            before, after = (best_rate(bench(cls, n), n, repeats) for cls in (old, new))
            print(f"{name:<44}{before:>14,.0f}{after:>14,.0f}{after / before:>12.2f}x")

    print()
    full = best_rate(seal_open(n_crypto), n_crypto, repeats)
    runs = best_rate(seal_open_runs(n_crypto), n_crypto // 16 * 16, repeats)
    prim = {k: best_rate(lambda k=k: primitives(n_crypto, k), n_crypto, repeats)
            for k in ("seal", "open", "mac", "all")}
    us = lambda rate: 1e6 / rate  # noqa: E731
    print(f"{'crypto, 1200-byte payload':<44}{'us/op':>14}")
    print(f"{'  AES-256-GCM-SIV seal (primitive)':<44}{us(prim['seal']):>14.2f}")
    print(f"{'  AES-256-GCM-SIV open (primitive)':<44}{us(prim['open']):>14.2f}")
    print(f"{'  HMAC-SHA-512 over header+ciphertext':<44}{us(prim['mac']):>14.2f}")
    print(f"{'  primitives alone: seal+2 MAC+open':<44}{us(prim['all']):>14.2f}")
    print(f"{'  moshpit seal+open (full path)':<44}{us(full):>14.2f}")
    print(f"{'  moshpit seal+open, runs of 16 a call':<44}{us(runs):>14.2f}")
    cold, warm = after_sleep(10 if args.quick else 40)
    print(f"{'  seal+open of a keystroke, after 50 ms asleep':<44}{cold:>14.2f}")
    print(f"{'  the same again at once (warm)':<44}{warm:>14.2f}")
    print()
    for name, rate in (("full path", full), ("runs of 16", runs)):
        ratio = us(rate) / us(prim["all"])
        print(f"{name} / primitives = {ratio:.3f}  (target <= 1.15: "
              f"{'met' if ratio <= 1.15 else 'NOT met'}); {rate:,.0f} datagrams/s sealed and opened")


if __name__ == "__main__":
    main()
