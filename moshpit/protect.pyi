"""Types of the compiled sealing loop (protect.pyx)."""
from collections.abc import Callable, Sequence
from typing import Any

from moshpit.errors import DatagramDropped
from moshpit.replay import ReplayWindow

def seal_run(encrypt: Callable[[bytes, bytes, bytes], bytes], keyed_mac: Any, direction: int, conn_id: int,
             first_seq: int, payloads: list[bytes]) -> list[bytes]: ...
def open_run(decrypt: Callable[[bytes, bytes, bytes], bytes], keyed_mac: Any, replay: ReplayWindow, direction: int,
             conn_id: int, datagrams: Sequence[bytes]) -> list[tuple[int, bytes] | DatagramDropped]: ...
