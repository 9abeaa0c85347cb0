"""tmux as an independent terminal: what does a real emulator show for these bytes?

``TmuxScreen.show(data)`` plays raw bytes into a fresh tmux pane (output
post-processing off, so nothing is translated) and returns what tmux displays:
every row with its attributes (``capture-pane -e``), the cursor, and whether
the alternate screen is on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_RESET = {"fg": "d", "bg": "d", "bold": 0, "dim": 0, "italic": 0, "under": 0, "blink": 0,
          "reverse": 0, "strike": 0}
_FLAGS = {1: ("bold", 1), 2: ("dim", 1), 3: ("italic", 1), 4: ("under", 1), 5: ("blink", 1),
          7: ("reverse", 1), 9: ("strike", 1), 23: ("italic", 0), 24: ("under", 0),
          25: ("blink", 0), 27: ("reverse", 0), 29: ("strike", 0)}


def _apply_sgr(state: dict, params: list[int]) -> None:
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            state.update(_RESET)
        elif p in _FLAGS:
            key, value = _FLAGS[p]
            state[key] = value
        elif p == 22:
            state["bold"] = state["dim"] = 0
        elif 30 <= p <= 37 or 90 <= p <= 97:
            state["fg"] = str(p)
        elif 40 <= p <= 47 or 100 <= p <= 107:
            state["bg"] = str(p)
        elif p == 39:
            state["fg"] = "d"
        elif p == 49:
            state["bg"] = "d"
        elif p in (38, 48):
            key = "fg" if p == 38 else "bg"
            if i + 1 < len(params) and params[i + 1] == 5:
                state[key] = f"5;{params[i + 2] if i + 2 < len(params) else 0}"
                i += 2
            else:
                state[key] = "2;" + ";".join(map(str, params[i + 2:i + 5]))
                i += 4
        i += 1


def parse_capture(text: str, rows: int) -> tuple:
    """``capture-pane -e`` output -> per row, the (character, attributes) of each cell
    up to the last visible one. SGR state runs on from one row to the next, as tmux
    writes it; trailing spaces that show nothing are dropped."""
    state = dict(_RESET)
    out = []
    for line in text.split("\n")[:rows]:
        cells = []
        pos = 0
        while pos < len(line):
            match = _SGR.match(line, pos)
            if match:
                raw = match.group(1).replace(":", ";")
                _apply_sgr(state, [int(p or 0) for p in raw.split(";")] if raw else [0])
                pos = match.end()
                continue
            cells.append((line[pos], tuple(sorted(state.items()))))
            pos += 1
        while cells and cells[-1][0] == " " and _invisible(dict(cells[-1][1])):
            cells.pop()
        out.append(tuple(cells))
    return tuple(out)


def _invisible(attrs: dict) -> bool:
    return attrs["bg"] == "d" and not attrs["reverse"] and not attrs["under"] and not attrs["strike"]


def available() -> bool:
    return shutil.which("tmux") is not None


class TmuxScreen:
    def __init__(self, cols: int = 80, rows: int = 24):
        self.cols, self.rows = cols, rows
        self.socket = f"moshpit-test-{uuid.uuid4().hex[:8]}"
        self.dir = Path(tempfile.mkdtemp(prefix="moshpit-tmux-"))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=20).stdout

    def show(self, data: bytes) -> tuple:
        name = uuid.uuid4().hex[:8]
        payload = self.dir / f"{name}.bin"
        done = self.dir / f"{name}.done"
        payload.write_bytes(data)
        script = f"stty -opost -echo; cat {payload}; touch {done}; exec sleep 120"
        self._tmux("new-session", "-d", "-s", name, "-x", str(self.cols), "-y", str(self.rows),
                   "sh", "-c", script)
        try:
            deadline = time.monotonic() + 15
            while not done.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("tmux did not finish playing the stream")
                time.sleep(0.02)
            time.sleep(0.15)                # let tmux digest what cat wrote
            capture = self._tmux("capture-pane", "-p", "-e", "-N", "-t", name)
            info = self._tmux("display-message", "-p", "-t", name,
                              "#{cursor_x} #{cursor_y} #{alternate_on} #{cursor_flag}")
        finally:
            self._tmux("kill-session", "-t", name)
        cursor_x, cursor_y, alternate, visible = info.split()
        return (parse_capture(capture, self.rows), (int(cursor_x), int(cursor_y)),
                alternate == "1", visible == "1")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def env_ok() -> bool:
    return available() and os.name == "posix"
