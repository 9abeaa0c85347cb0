"""A brief, seeded run of every fuzz target (tests/fuzz/): no crash, no slow input.

The long runs are ``python tests/fuzz/run.py --inputs 1000000`` (seeded) and
``python tests/fuzz/run.py --atheris --seconds 300`` (coverage-guided). Here each
target gets a fixed number of inputs from a fixed seed, so every run is the same run.
"""

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

FUZZ = Path(__file__).parent / "fuzz"


def _load(name: str, filename: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FUZZ / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


runner = _load("moshpit_fuzz_run", "run.py")
targets = runner.load_targets()

# Inputs per target: a few seconds in all on a 2-core machine.
BRIEF = {"codec": 6000, "frames": 6000, "handshake_server": 1500, "handshake_client": 1500,
         "screen_reassembly": 3000, "channel_reliable": 400, "channel_datagram": 300,
         "channel_statesync": 300, "terminal_stream": 300, "link": 6000}


def test_every_target_has_a_brief_run():
    assert set(BRIEF) == set(targets.TARGETS) == set(targets.SEEDS)


@pytest.mark.parametrize("name", sorted(BRIEF))
def test_seeds_run_clean(name):
    """Every seed is a valid input the target handles (a seed that fails is a harness bug)."""
    seeds = targets.SEEDS[name]()
    assert seeds
    for seed in seeds:
        targets.TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(BRIEF))
def test_brief_seeded_fuzz(name, tmp_path):
    report = runner.fuzz_seeded(name, inputs=BRIEF[name], seed=0, max_ms=50.0, crash_dir=tmp_path,
                                quiet=True, do_minimize=False)
    assert report.inputs == BRIEF[name]
    crashes = "\n".join(f"{sig}: input {c['input'].hex()}\n{c['traceback']}" for sig, c in report.crashes.items())
    assert report.crash_count == 0, crashes
    slow = [f"{s['cpu'] * 1000:.1f} ms cpu: {s['input'].hex()}" for s in report.slow]
    assert not slow, "inputs slower than 50 ms:\n" + "\n".join(slow)


def test_the_runner_is_deterministic(tmp_path):
    """Same seed, same inputs: a reported input reproduces."""
    runs = [[], []]
    original = targets.TARGETS["codec"]
    try:
        for seen in runs:
            targets.TARGETS["codec"] = lambda data, seen=seen: (seen.append(data), original(data))[1]
            runner.fuzz_seeded("codec", inputs=300, seed=7, crash_dir=tmp_path, quiet=True)
    finally:
        targets.TARGETS["codec"] = original
    assert len(runs[0]) >= 300 and runs[0][:300] == runs[1][:300]   # (then: the slowest, again)


def test_the_runner_reports_a_crash_and_a_slow_input(tmp_path):
    def fragile(data: bytes):
        if data[:1] == b"\x01":
            raise KeyError("boom")
        if data[:1] == b"\x02":                       # 60 ms of CPU: slow however busy the machine
            end = time.thread_time() + 0.060
            while time.thread_time() < end:
                pass
        return data[:1]

    seeds = [b"\x00", b"\x02", b"\x01abc"]
    targets.TARGETS["fragile"], targets.SEEDS["fragile"] = fragile, lambda: seeds
    try:
        report = runner.fuzz_seeded("fragile", inputs=3, crash_dir=tmp_path, quiet=True)
    finally:
        del targets.TARGETS["fragile"], targets.SEEDS["fragile"]
    assert report.failed and report.crash_count == 1 and len(report.slow) == 1
    crash = next(iter(report.crashes.values()))
    assert crash["input"] == b"\x01"                  # minimised
    assert crash["path"].read_bytes() == b"\x01"
    assert report.slow[0]["input"] == b"\x02" and report.slow[0]["cpu"] > 0.050


# The Cython kernels through their Python-visible surface, with hypothesis as well.

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_codec_target_on_hypothesis_bytes(data):
    targets.fuzz_codec(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(targets._RULES)), st.binary(max_size=40)), max_size=8))
def test_frames_target_on_well_framed_payloads(frame_list):
    payload = b"".join(bytes([t]) + len(b).to_bytes(2, "big") + b for t, b in frame_list)
    targets.fuzz_codec(payload)
    targets.fuzz_frames(payload)

