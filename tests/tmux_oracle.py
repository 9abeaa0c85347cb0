"""tmux as an independent terminal: what does a real emulator show for these bytes?

``TmuxScreen.show(data)`` plays raw bytes into a fresh tmux pane (output
post-processing off, so nothing is translated) and returns what tmux displays:
every row with its attributes (``capture-pane -e``), the cursor, and whether
the alternate screen is on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


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
            rows = self._tmux("capture-pane", "-p", "-e", "-N", "-t", name).split("\n")[: self.rows]
            info = self._tmux("display-message", "-p", "-t", name,
                              "#{cursor_x} #{cursor_y} #{alternate_on} #{cursor_flag}")
        finally:
            self._tmux("kill-session", "-t", name)
        cursor_x, cursor_y, alternate, visible = info.split()
        return tuple(rows), (int(cursor_x), int(cursor_y)), alternate == "1", visible == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def env_ok() -> bool:
    return available() and os.name == "posix"
