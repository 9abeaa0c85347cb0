"""Golden traces: the channel's behaviour, pinned byte for byte while it is taken apart.

Each scenario runs a client and a server channel over SimNet with fixed keys and a
fixed seed, and hashes everything the pair does: every datagram put on the wire (time,
addresses, sealed bytes, which are deterministic given the keys), every event, every
timer value after every step, and the final counters. The hashes are committed in
``tests/golden/channel_traces.json``. A refactor that changes none of the behaviour
reproduces them exactly; one that changes behaviour on purpose regenerates them with
``MOSHPIT_GOLDEN_UPDATE=1 pytest tests/test_golden_traces.py`` and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from moshpit import crypto
from moshpit.protocol.channel import CloseCode
from moshpit.protocol.handshake import DiffMode, SessionParams
from simnet import CLIENT_ADDR, SERVER_ADDR, Link, SimNet

GOLDEN = Path(__file__).parent / "golden" / "channel_traces.json"
MODES = {"reliable": DiffMode.RELIABLE, "datagram": DiffMode.DATAGRAM, "statesync": DiffMode.STATESYNC}


def fixed_params(mode: DiffMode, conn_id: int = 1, key_byte: int = 1):
    keys = crypto.TrafficKeys(crypto.DirectionKeys(bytes([key_byte]) * 32, bytes([key_byte + 1]) * 64),
                              crypto.DirectionKeys(bytes([key_byte + 2]) * 32, bytes([key_byte + 3]) * 64))
    common = dict(conn_id=conn_id, udp_port=50001, session_id=b"S" * 16, resumed=conn_id > 1, diff_mode=mode,
                  keys=keys, client_key=b"C" * 32, host_key=b"H" * 32, user="alice", cols=80, rows=24, env={})
    return (SessionParams(resume_token=b"T" * 32, **common), SessionParams(resume_token=b"", **common), None)


class Recorder:
    """Hashes what a SimNet does, as it does it."""

    def __init__(self, net: SimNet):
        self.net = net
        self.hash = hashlib.sha256()
        self.datagrams = self.events = 0
        net.tap = _Tap(self)
        net.event_hook = self._event

    def _event(self, endpoint, event) -> None:
        self.events += 1
        self.feed("event", endpoint.name, round(self.net.now, 9), repr(event))
        from moshpit.protocol.events import DataReceived, ScreenUpdate
        if endpoint is self.net.client and isinstance(event, ScreenUpdate):
            self.net.client_screen.apply(event, endpoint.channel)
        if isinstance(event, DataReceived):
            endpoint.received += event.data

    def feed(self, *parts) -> None:
        self.hash.update(repr(parts).encode())

    def step_timers(self) -> None:
        self.feed("timers", round(self.net.now, 9),
                  *(None if (t := ep.channel.get_timer()) is None else round(t, 9)
                    for ep in (self.net.client, self.net.server)))

    def finish(self) -> str:
        for ep in (self.net.client, self.net.server):
            channel = ep.channel
            self.feed("final", ep.name, sorted(channel.stats.items()), sorted((k.value if hasattr(k, "value") else k, v)
                                                                              for k, v in channel.drops.items()),
                      channel.closed, bytes(ep.received))
        return self.hash.hexdigest()


class _Tap(list):
    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder

    def append(self, item) -> None:
        when, src, dst, data = item
        self.recorder.datagrams += 1
        self.recorder.feed("datagram", round(when, 9), src, dst, hashlib.sha256(data).hexdigest())


def drive(net: SimNet, recorder: Recorder, seconds: float) -> None:
    deadline = net.now + seconds
    stuck = 0
    while net.now < deadline:
        before = net.now
        net.step(deadline)
        recorder.step_timers()
        stuck = stuck + 1 if net.now == before else 0
        assert stuck < 10_000


def workload(net: SimNet, recorder: Recorder, seconds: float = 4.0) -> None:
    """Typing, output in bursts and screens, in turns of 100 ms of simulated time."""
    for turn in range(int(seconds * 10)):
        if net.client.channel.accepts_data and turn % 2 == 0:
            net.client.channel.send_data(b"k%d" % turn)
        if turn % 3 == 0:
            net.server_output(b"line %d of output " % turn * 20 + b"\r\n")
        if turn == 5:
            net.server_output(bytes(range(32, 127)) * 2000)           # a burst: windows, bundles, NAKs
        if turn % 4 == 1:
            net.screen(b"screen %d " % turn * 30)
        if turn == 15:
            net.client.channel.send_resize(100, 30)
        drive(net, recorder, 0.1)


def scenario(mode: str, loss: float, kind: str) -> tuple[str, int, int]:
    link = lambda: Link(loss=loss, duplicate=0.02 if loss else 0.0, reorder=0.05 if loss else 0.0)  # noqa: E731
    net = SimNet(MODES[mode], seed=7, down=link(), up=link(), params=fixed_params(MODES[mode]))
    recorder = Recorder(net)
    workload(net, recorder, 3.0)
    if kind == "roam":
        net.move_client(("127.0.0.1", 41999))
        workload(net, recorder, 2.0)
    elif kind == "shell_exit":
        net.server.channel.close(CloseCode.SHELL_EXITED, "exit 3", now=net.now)
        drive(net, recorder, 3.0)
    elif kind == "displaced":
        net.server.channel.close(CloseCode.DISPLACED, "resumed elsewhere", now=net.now)
        drive(net, recorder, 3.0)
    elif kind == "spoofed":
        for _when, _src, _dst, data in _captured(net, recorder):
            net.inject(data, ("203.0.113.66", 4444), net.server)        # a copy from another address
        workload(net, recorder, 1.0)
        net.inject(b"\x00" * 40, ("203.0.113.66", 4444), net.server)    # and garbage
        drive(net, recorder, 1.0)
    else:
        workload(net, recorder, 1.0)
    drive(net, recorder, 2.0)
    return recorder.finish(), recorder.datagrams, recorder.events


def _captured(net, recorder):
    """Three client datagrams seen on the wire, re-made from the client's next sends."""
    out = []
    net.client.channel.send_data(b"replayed?")
    for data, addr in net.client.channel.datagrams_to_send(net.now):
        net._transmit(net.client, data, addr)
        out.append((net.now, CLIENT_ADDR, SERVER_ADDR, data))
    return out[:3]


CASES = [(mode, loss, "plain") for mode in MODES for loss in (0.0, 0.1, 0.3)] + \
        [(mode, 0.1, kind) for mode in MODES for kind in ("roam", "shell_exit", "displaced", "spoofed")]


def _key(mode: str, loss: float, kind: str) -> str:
    return f"{mode}-loss{int(loss * 100)}-{kind}"


@pytest.mark.parametrize("mode, loss, kind", CASES, ids=[_key(*case) for case in CASES])
def test_the_channel_does_exactly_what_it_did(mode, loss, kind):
    digest, datagrams, events = scenario(mode, loss, kind)
    assert datagrams > 50 and events > 10                        # the scenario did something
    key = _key(mode, loss, kind)
    if os.environ.get("MOSHPIT_GOLDEN_UPDATE"):
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[key] = {"sha256": digest, "datagrams": datagrams, "events": events}
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1) + "\n")
        return
    expected = json.loads(GOLDEN.read_text())[key]
    assert {"sha256": digest, "datagrams": datagrams, "events": events} == expected


def test_a_scenario_run_twice_is_the_same_run():
    """The traces can pin behaviour only if nothing in them depends on the run."""
    assert scenario("statesync", 0.1, "plain") == scenario("statesync", 0.1, "plain")
