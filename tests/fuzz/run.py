#!/usr/bin/env python3
"""Run moshpit's fuzz targets (see targets.py), seeded or under atheris.

    python tests/fuzz/run.py [TARGET ...] [--inputs N] [--seconds S] [--atheris]
                             [--seed N] [--max-ms 50] [--crash-dir DIR] [--jobs J]
    python tests/fuzz/run.py TARGET --replay FILE [--minimize]

Seeded mode (the default, and the fallback when atheris is not installed): each input
is random bytes or a mutation of the corpus (the target's seeds, built in code from real
objects, plus every input that produced an outcome not seen before). The same seed gives
the same inputs; the Cython kernels, which atheris cannot see into, get as much as the
Python code. ``--atheris`` runs libFuzzer through atheris instead, with moshpit's Python
modules instrumented for coverage, one target per process.

For each target it prints the inputs run, the crashes (each written with its traceback
under --crash-dir, minimised where that is quick) and the slowest input. An input over
--max-ms of wall time is run again three times; it counts as slow if it is over the
limit in *CPU time* every time (so a busy machine does not make a fast input slow), and
it is written out like a crash. Exit status: 0 clean, 1 a crash or a slow input.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
import traceback
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CRASH_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "moshpit-fuzz"
MAX_CORPUS = 4000
INTERESTING_8 = (0, 1, 2, 3, 0x7F, 0x80, 0xFE, 0xFF, 0x10, 0x20, 0x40, 0x1B, 8, 16, 12, 13, 10)
INTERESTING_16 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x4C3, 0x4C0, 0x500, 0x1000, 0x7FFF, 0x8000, 0xFFFF)


def load_targets():
    """targets.py under a name of its own (no clash with any other ``targets`` module)."""
    name = "moshpit_fuzz_targets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "targets.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --------------------------------------------------------------------------- mutation

class Mutator:
    """Havoc-style mutations (as AFL and libFuzzer do them), from one seeded generator."""

    def __init__(self, rng: random.Random, max_len: int, dictionary=()):
        self.rng = rng
        self.max_len = max_len
        self.dictionary = list(dictionary)

    def random_input(self) -> bytes:
        rng = self.rng
        n = rng.choice((rng.randrange(16), rng.randrange(128), rng.randrange(self.max_len + 1)))
        return rng.randbytes(n)

    def mutate(self, data: bytes, corpus: list[bytes]) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(1 << rng.randrange(4)):       # 1, 2, 4 or 8 stacked mutations
            self._one(buf, corpus)
        if len(buf) > self.max_len and len(buf) > len(data):
            del buf[max(self.max_len, len(data)):]
        return bytes(buf)

    def _pos(self, buf, extra=0) -> int:
        return self.rng.randrange(len(buf) + extra) if len(buf) + extra > 0 else 0

    def _one(self, buf: bytearray, corpus) -> None:
        rng = self.rng
        op = rng.randrange(16)
        if not buf and op < 8:
            op = 8
        if op == 0:                                   # flip a bit
            i = self._pos(buf)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:                                 # a random byte
            buf[self._pos(buf)] = rng.randrange(256)
        elif op == 2:                                 # an interesting byte
            buf[self._pos(buf)] = rng.choice(INTERESTING_8)
        elif op == 3:                                 # an interesting big-endian u16
            if len(buf) >= 2:
                i = rng.randrange(len(buf) - 1)
                buf[i:i + 2] = rng.choice(INTERESTING_16).to_bytes(2, "big")
        elif op == 4:                                 # small arithmetic on a byte
            i = self._pos(buf)
            buf[i] = (buf[i] + rng.randrange(-16, 17)) & 0xFF
        elif op == 5:                                 # delete a range
            i = self._pos(buf)
            del buf[i:i + 1 + rng.randrange(min(64, len(buf)))]
        elif op == 6:                                 # duplicate a range in place
            i = self._pos(buf)
            n = 1 + rng.randrange(min(64, len(buf) - i))
            buf[i:i] = buf[i:i + n] * (1 + rng.randrange(4))
        elif op == 7:                                 # copy a range over another
            i, j = self._pos(buf), self._pos(buf)
            n = 1 + rng.randrange(min(32, len(buf) - max(i, j)))
            buf[j:j + n] = buf[i:i + n]
        elif op == 8:                                 # insert random bytes
            i = self._pos(buf, 1)
            buf[i:i] = rng.randbytes(1 + rng.randrange(8))
        elif op == 9:                                 # insert a repeated byte
            i = self._pos(buf, 1)
            buf[i:i] = bytes([rng.choice(INTERESTING_8)]) * (1 + rng.randrange(32))
        elif op in (10, 11) and corpus:               # splice with another corpus entry
            other = rng.choice(corpus)
            if other:
                a = rng.randrange(len(other))
                piece = other[a:a + 1 + rng.randrange(min(256, len(other) - a))]
                i = self._pos(buf, 1)
                if op == 10:
                    buf[i:i] = piece
                else:
                    buf[i:i + len(piece)] = piece
        elif op == 12 and self.dictionary:            # a dictionary token
            token = rng.choice(self.dictionary)
            i = self._pos(buf, 1)
            buf[i:i] = token
        elif op == 13:                                # truncate
            if buf:
                del buf[rng.randrange(len(buf)):]
        elif op == 14:                                # append random bytes
            buf += rng.randbytes(1 + rng.randrange(32))
        else:                                         # rewrite a big-endian length in place
            if len(buf) >= 3:
                i = rng.randrange(len(buf) - 1)
                value = int.from_bytes(buf[i:i + 2], "big")
                value = rng.choice((value + 1, value - 1, value * 2, len(buf) - i, rng.randrange(1400)))
                buf[i:i + 2] = (value & 0xFFFF).to_bytes(2, "big")


# ----------------------------------------------------------------------------- running

def _signature(exc: BaseException) -> str:
    """Where an exception came from: its type and innermost moshpit (or target) frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = next((f for f in reversed(frames) if "moshpit" in f.filename), frames[-1] if frames else None)
    where = f"{Path(place.filename).name}:{place.lineno}" if place else "?"
    if isinstance(exc, AssertionError):               # a broken invariant: which one
        return f"{type(exc).__name__}@{where}: {str(exc)[:60]}"
    return f"{type(exc).__name__}@{where}"


def _timed(fn, data: bytes):
    w0, c0 = time.perf_counter(), time.thread_time()
    fn(data)
    return time.perf_counter() - w0, time.thread_time() - c0


def confirm_slow(fn, data: bytes, limit: float, tries: int = 3):
    """Run again: (min wall, min CPU) seconds, stopping early once the CPU time is under ``limit``."""
    best_wall = best_cpu = float("inf")
    for _ in range(tries):
        try:
            wall, cpu = _timed(fn, data)
        except Exception:                             # noqa: BLE001 - a crash is reported elsewhere
            return 0.0, 0.0
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        if cpu <= limit:
            break
    return best_wall, best_cpu


def minimize(fn, data: bytes, signature: str | None, budget: float = 20.0, limit: float | None = None) -> bytes:
    """Shrink a crashing input while it crashes the same way (delta debugging, bounded);
    with ``limit`` and no ``signature``, a slow input while it stays over ``limit`` s of CPU."""
    def same(candidate: bytes) -> bool:
        try:
            if signature is None:
                return confirm_slow(fn, candidate, limit)[1] > limit
            fn(candidate)
        except Exception as exc:                      # noqa: BLE001
            return signature is not None and _signature(exc) == signature
        return False

    deadline = time.monotonic() + budget
    best = data
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, shrunk = 0, False
        while i < len(best) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk:]
            if same(candidate):
                best, shrunk = candidate, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    for i in range(len(best)):                        # then simpler bytes, where they do
        if time.monotonic() >= deadline:
            break
        for value in (0, 0x41):
            if best[i] != value:
                candidate = best[:i] + bytes([value]) + best[i + 1:]
                if same(candidate):
                    best = candidate
                    break
    return best


class Report:
    def __init__(self, name: str):
        self.name = name
        self.inputs = 0
        self.crashes: dict[str, dict] = {}            # signature -> first crash
        self.crash_count = 0
        self.slow: list[dict] = []
        self.slowest_wall = 0.0
        self.slowest_cpu = 0.0
        self.slowest_input = b""                      # the input that took the most CPU
        self.remeasured = (0.0, 0.0)                  # ...run again: best (wall, cpu) of 3
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.corpus = 0

    @property
    def failed(self) -> bool:
        return bool(self.crash_count or self.slow)

    def line(self) -> str:
        rate = self.inputs / self.elapsed if self.elapsed else 0.0
        return (f"{self.name:20s} inputs={self.inputs:<9d} crashes={self.crash_count:<3d} "
                f"slow={len(self.slow):<3d} slowest={self.slowest_wall * 1000:8.2f} ms wall "
                f"({self.slowest_cpu * 1000:.2f} ms cpu, {self.remeasured[1] * 1000:.2f} again)  "
                f"{self.elapsed:8.1f} s  {rate:8.0f}/s  corpus={self.corpus}")


def _write(crash_dir: Path, name: str, kind: str, data: bytes, text: str) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = crash_dir / f"{name}-{kind}-{digest}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(text)
    return path


def fuzz_seeded(name: str, *, inputs: int | None = None, seconds: float | None = None, seed: int = 0,
                max_ms: float = 50.0, crash_dir: Path = DEFAULT_CRASH_DIR, quiet: bool = False,
                max_crashes: int = 20, progress: float = 0.0, do_minimize: bool = True) -> Report:
    """Fuzz one target with seeded random inputs; stop after ``inputs`` or ``seconds``."""
    T = load_targets()
    fn = T.TARGETS[name]
    limit = max_ms / 1000
    rng = random.Random(zlib.crc32(name.encode()) ^ (seed * 0x9E3779B1))
    mutator = Mutator(rng, T.MAX_LEN.get(name, 1024), T.DICTIONARY.get(name, ()))
    corpus = list(T.SEEDS[name]())
    seen: set = set()
    report = Report(name)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if inputs is None and seconds is None:
        inputs = 10_000
    deadline = None if seconds is None else time.monotonic() + seconds
    next_progress = time.monotonic() + progress if progress else None
    queue = list(corpus)                              # every seed once, as it is, first
    perf, thread = time.perf_counter, time.thread_time
    while True:
        if inputs is not None and report.inputs >= inputs:
            break
        if deadline is not None and (report.inputs & 63) == 0 and time.monotonic() >= deadline:
            break
        if queue:
            data = queue.pop()
        elif rng.random() < 0.06:
            data = mutator.random_input()
        else:
            data = mutator.mutate(rng.choice(corpus), corpus)
        report.inputs += 1
        w0, c0 = perf(), thread()
        try:
            outcome = fn(data)
        except Exception as exc:                      # noqa: BLE001 - that is what we look for
            report.crash_count += 1
            signature = _signature(exc)
            if signature not in report.crashes and len(report.crashes) < max_crashes:
                text = "".join(traceback.format_exception(exc))
                small = minimize(fn, data, signature) if do_minimize else data
                path = _write(crash_dir, name, "crash", small, f"{signature}\ninput (hex): {small.hex()}\n\n{text}")
                report.crashes[signature] = dict(input=small, path=path, traceback=text)
                say(f"[{name}] CRASH {signature} -> {path}\n  input (hex): {small.hex()}\n{text}")
            continue
        wall, cpu = perf() - w0, thread() - c0
        report.slowest_wall = max(report.slowest_wall, wall)
        if cpu > report.slowest_cpu:
            report.slowest_cpu, report.slowest_input = cpu, data
        if wall > limit:
            best_wall, best_cpu = confirm_slow(fn, data, limit)
            if best_cpu > limit:
                if len(report.slow) < max_crashes:
                    path = _write(crash_dir, name, "slow", data,
                                  f"slow input: {best_wall * 1000:.1f} ms wall, {best_cpu * 1000:.1f} ms cpu "
                                  f"(best of 3)\ninput (hex): {data.hex()}\n")
                    say(f"[{name}] SLOW {best_cpu * 1000:.1f} ms cpu ({best_wall * 1000:.1f} ms wall), "
                        f"{len(data)} bytes -> {path}")
                report.slow.append(dict(input=data, wall=best_wall, cpu=best_cpu))
            continue                                  # slow inputs never seed others
        if outcome not in seen:
            seen.add(outcome)
            if len(corpus) < MAX_CORPUS:
                corpus.append(data)
        if next_progress is not None and time.monotonic() >= next_progress:
            report.elapsed = time.monotonic() - report.started
            report.corpus = len(corpus)
            say("  " + report.line())
            next_progress = time.monotonic() + progress
    report.elapsed = time.monotonic() - report.started
    report.corpus = len(corpus)
    if report.slowest_input:                          # kept, and measured again on its own
        report.remeasured = confirm_slow(fn, report.slowest_input, 0.0)
        _write(crash_dir, name, "slowest", report.slowest_input,
               f"slowest input of the run: {report.slowest_cpu * 1000:.2f} ms cpu; again, best of 3: "
               f"{report.remeasured[0] * 1000:.2f} ms wall, {report.remeasured[1] * 1000:.2f} ms cpu\n"
               f"input (hex): {report.slowest_input.hex()}\n")
    return report


# ----------------------------------------------------------------------------- atheris

def atheris_child(name: str, args) -> int:
    """One target under libFuzzer: moshpit's Python modules instrumented for coverage."""
    import atheris
    with atheris.instrument_imports(include=["moshpit"]):
        T = load_targets()
    fn = T.TARGETS[name]
    limit = args.max_ms / 1000
    stats = {"inputs": 0, "slowest": 0.0, "slowest_cpu": 0.0}
    crash_dir = Path(args.crash_dir)
    corpus_dir = crash_dir / "corpus" / name
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for seed in T.SEEDS[name]():
        (corpus_dir / hashlib.sha1(seed).hexdigest()).write_bytes(seed)

    stats_file = crash_dir / f"{name}-atheris-stats.json"
    started = time.monotonic()

    def save():                                   # libFuzzer ends the process without atexit
        stats["seconds"] = time.monotonic() - started
        stats_file.write_text(json.dumps(stats))

    def one(data: bytes) -> None:
        stats["inputs"] += 1
        w0, c0 = time.perf_counter(), time.thread_time()
        fn(data)
        wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        if wall > stats["slowest"] or cpu > stats["slowest_cpu"] or stats["inputs"] % 1000 == 0:
            stats["slowest"] = max(stats["slowest"], wall)
            stats["slowest_cpu"] = max(stats["slowest_cpu"], cpu)
            save()
        if wall > limit:
            best_wall, best_cpu = confirm_slow(fn, data, limit)
            if best_cpu > limit:
                raise TimeoutError(f"slow input: {best_cpu * 1000:.1f} ms cpu, {best_wall * 1000:.1f} ms wall")
    argv = [sys.argv[0], str(corpus_dir), f"-artifact_prefix={crash_dir}/{name}-atheris-",
            f"-max_len={T.MAX_LEN.get(name, 1024)}", "-rss_limit_mb=4096", "-print_final_stats=1"]
    if args.seconds:
        argv.append(f"-max_total_time={int(args.seconds)}")
    if args.inputs:
        argv.append(f"-runs={args.inputs}")
    argv.append(f"-seed={args.seed + 1}")
    atheris.Setup(argv, one)
    atheris.Fuzz()
    return 0


def run_atheris(names, args) -> int:
    status = 0
    for name in names:
        cmd = [sys.executable, str(Path(__file__).resolve()), name, "--atheris-child",
               "--max-ms", str(args.max_ms), "--crash-dir", str(args.crash_dir), "--seed", str(args.seed)]
        if args.seconds:
            cmd += ["--seconds", str(args.seconds)]
        if args.inputs:
            cmd += ["--inputs", str(args.inputs)]
        print(f"== {name} (atheris)", flush=True)
        stats_file = Path(args.crash_dir) / f"{name}-atheris-stats.json"
        stats_file.unlink(missing_ok=True)
        result = subprocess.run(cmd)
        if stats_file.exists():
            stats = json.loads(stats_file.read_text())
            print(f"ATHERIS {name:20s} inputs>={stats['inputs']} in {stats['seconds']:.0f} s, slowest "
                  f"{stats['slowest'] * 1000:.2f} ms wall ({stats['slowest_cpu'] * 1000:.2f} ms cpu)", flush=True)
        if result.returncode != 0:
            print(f"{name}: atheris exited with status {result.returncode} (a crash or slow input: "
                  f"see {args.crash_dir}/{name}-atheris-*)", flush=True)
            status = 1
    return status


# -------------------------------------------------------------------------------- main

def replay(name: str, path: Path, args) -> int:
    T = load_targets()
    fn = T.TARGETS[name]
    data = path.read_bytes()
    print(f"{name}: {len(data)} bytes, hex {data.hex()}")
    try:
        wall, cpu = _timed(fn, data)
    except Exception as exc:                          # noqa: BLE001
        traceback.print_exc()
        if args.minimize:
            small = minimize(fn, data, _signature(exc), budget=60.0)
            print(f"minimised to {len(small)} bytes: {small.hex()}")
        return 1
    print(f"no crash: {wall * 1000:.2f} ms wall, {cpu * 1000:.2f} ms cpu")
    limit = args.max_ms / 1000
    if wall > limit and confirm_slow(fn, data, limit)[1] > limit:
        if args.minimize:
            small = minimize(fn, data, None, budget=120.0, limit=limit)
            wall, cpu = confirm_slow(fn, small, limit)
            print(f"minimised to {len(small)} bytes ({wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms cpu): "
                  f"{small.hex()}")
        return 1
    return 0


def _worker(job):
    name, kw = job
    report = fuzz_seeded(name, **kw)
    return report


def main(argv=None) -> int:
    T = load_targets() if "--atheris-child" not in (argv or sys.argv) else None
    names_all = list(T.TARGETS) if T else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"default: all ({', '.join(names_all)})")
    parser.add_argument("--inputs", type=int, help="inputs per target (default 10000 unless --seconds)")
    parser.add_argument("--seconds", type=float, help="seconds per target (with --inputs: whichever ends first)")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, with atheris (if installed)")
    parser.add_argument("--atheris-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-ms", type=float, default=50.0, help="slowest acceptable input (default 50)")
    parser.add_argument("--crash-dir", type=Path, default=DEFAULT_CRASH_DIR,
                        help=f"where reproducers go (default {DEFAULT_CRASH_DIR})")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once, one process each")
    parser.add_argument("--progress", type=float, default=0.0, help="print a status line every N seconds")
    parser.add_argument("--replay", type=Path, help="run TARGET once on this file")
    parser.add_argument("--minimize", action="store_true", help="with --replay: shrink a crashing input")
    args = parser.parse_args(argv)

    if args.atheris_child:
        return atheris_child(args.targets[0], args)
    names = args.targets or names_all
    unknown = [n for n in names if n not in T.TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(names_all)}")
    if args.replay:
        if len(names) != 1:
            parser.error("--replay needs exactly one TARGET")
        return replay(names[0], args.replay, args)
    if args.atheris:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris): falling back to seeded inputs", flush=True)
        else:
            return run_atheris(names, args)

    kw = dict(inputs=args.inputs, seconds=args.seconds, seed=args.seed, max_ms=args.max_ms,
              crash_dir=args.crash_dir, progress=args.progress)
    if args.jobs > 1 and len(names) > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            reports = pool.map(_worker, [(n, kw) for n in names], chunksize=1)
    else:
        reports = []
        for name in names:
            reports.append(fuzz_seeded(name, **kw))
            print(reports[-1].line(), flush=True)
    print("\nsummary (seed %d, limit %.0f ms)" % (args.seed, args.max_ms))
    for report in reports:
        print(report.line())
        for signature, crash in report.crashes.items():
            print(f"    crash {signature}: {crash['path']}")
        for slow in report.slow[:5]:
            print(f"    slow {slow['cpu'] * 1000:.1f} ms cpu: {slow['input'][:64].hex()}"
                  f"{'...' if len(slow['input']) > 64 else ''} ({len(slow['input'])} bytes)")
    return 1 if any(r.failed for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
