"""The ssh command line ``mp --ssh`` runs (no gevent here: mp starts ssh first thing).

``ssh [OPTIONS] -T -- DESTINATION 'SERVER --ssh-session NAME [-- COMMAND]'``: the
user's ssh command and server command are split as a shell would, so aliases,
agents, ``-p``, ``-i`` and ProxyJump work as they do for ssh itself; the remote
words are quoted for the remote user's shell. The default server, ``mps``, is
also looked for in ``~/.local/bin`` (pip's ``--user`` and pipx's place).
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import subprocess
import threading
from collections.abc import Sequence

from moshpit.errors import printable

log = logging.getLogger("moshpit.client")

CONNECT_TIMEOUT = 10
DEFAULT_SERVER = "mps"
STDERR_KEPT = 4096                # of ssh's stderr, the tail is kept for messages and the log
# The default server is looked for on the remote PATH, then where ``pip install --user``
# and pipx put it, which a non-interactive ssh command's PATH rarely has.
FIND_DEFAULT = 'command -v "$0" >/dev/null 2>&1 || PATH="$PATH:$HOME/.local/bin"; exec "$0" "$@"'


class SshStderr:
    """ssh's stderr, read by a thread of its own from the moment ssh starts (before mp
    has loaded gevent) so that ssh never waits on us, however much ``-vvv`` says.

    While ``echo`` (an interactive login) each chunk is copied to our stderr, the
    user's terminal, as if ssh had it: its warnings land in order with its prompts
    (which it writes to /dev/tty). ``quiet()`` stops that once mp draws the session
    in raw mode or lets ssh go: what ssh says from then on ("Broken pipe" from a kept
    ssh) goes to the log, line by line, never to the screen. The last STDERR_KEPT
    bytes are kept for messages."""

    def __init__(self, pipe, *, echo: bool):
        self._pipe, self._echo = pipe, echo
        self.echoed = False                   # the user has seen some of it
        self._logging = False                 # quiet: each line to the log as it comes
        self._tail, self._line = bytearray(), b""
        self._lock = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self._run, name="ssh-stderr", daemon=True).start()

    def _run(self) -> None:
        try:
            while chunk := os.read(self._pipe.fileno(), 65536):
                with self._lock:
                    if self._echo:
                        _write_all(2, chunk)
                        self.echoed = True
                    self._tail += chunk
                    del self._tail[:-STDERR_KEPT]
                    if self._logging:
                        *lines, self._line = (self._line + chunk).split(b"\n")
                        for line in lines:
                            log.info("ssh: %s", printable(line, 300))
        except OSError:
            pass
        finally:
            with self._lock:
                if self._logging and self._line.strip():
                    log.info("ssh: %s", printable(self._line, 300))
            self._pipe.close()
            self.done.set()

    def quiet(self) -> None:
        """No more to the screen; what was said so far goes to the log now, in one line."""
        with self._lock:
            self._echo = False
            if not self._logging:
                self._logging = True
                said = bytes(self._tail)
                if said.strip():
                    log.info("ssh said: %s", " | ".join(printable(line, 300) for line in
                                                        said.strip().splitlines()[-20:]))
                self._line = b"" if said.endswith(b"\n") else said.rsplit(b"\n", 1)[-1]

    def tail(self) -> bytes:
        with self._lock:
            return bytes(self._tail)


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``, which may be non-blocking (a terminal mp shares)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return


class SshProcess(subprocess.Popen):
    """ssh running; ``said``: its stderr, read as it comes."""
    said: SshStderr


class SshCommand:
    def __init__(self, ssh: str, destination: str, host: str, *, server: str = DEFAULT_SERVER, name: str,
                 command: Sequence[str] = (), udp_ports: str | None = None, window: tuple[int, int] | None = None,
                 env: dict | None = None, agent: bool = False):
        """``name`` picks the session on the server (the same name resumes it); ``window``
        and ``env`` (TERM, the locale) let a new session's shell start before the key
        exchange, as mosh passes them on its command line."""
        self.ssh = shlex.split(ssh) or ["ssh"]
        self.server = shlex.split(server) or [DEFAULT_SERVER]       # its words, for messages
        self.server_text = server.strip() or DEFAULT_SERVER         # as given: a remote shell's
        self.destination, self.host, self.name = destination, host, name
        self.command = list(command)
        self.udp_ports = udp_ports
        self.window, self.env = window, dict(env or {})
        self.agent = agent                                        # mp --ssh -A

    def remote_command(self, *, resume_only: bool = False) -> str:
        """One string, as ssh hands it to the remote user's shell. The server command is
        passed as given (``--server='~/venv/bin/mps'`` expands there, as with mosh); our
        words after it are quoted. The default server's search runs in ``sh``."""
        words = ["--ssh-session", self.name]
        if self.udp_ports:
            words += ["--udp-ports", self.udp_ports]
        if resume_only:
            words += ["--resume-only"]
        if self.window:
            words += ["--window", f"{self.window[0]}x{self.window[1]}"]
            for key, value in self.env.items():
                words += ["--env", f"{key}={value}"]
            if self.agent:
                words += ["--agent"]
        if self.command:
            words += ["--", *self.command]
        if self.server_text == DEFAULT_SERVER:
            return shlex.join(["sh", "-c", FIND_DEFAULT, DEFAULT_SERVER, *words])
        return f"{self.server_text} {shlex.join(words)}"

    def argv(self, *, interactive: bool) -> list[str]:
        # No terminal on the channel: it carries bytes. A reconnect in the background
        # asks nothing (no password prompt across the user's screen).
        batch = [] if interactive else ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
        return [*self.ssh, *batch, "-T", "--", self.destination, self.remote_command(resume_only=not interactive)]

    def start(self, *, interactive: bool) -> SshProcess:
        """ssh, running: its stdin and stdout are the channel, its stderr a pipe we read
        (SshStderr), copied to the user's terminal during an interactive login. In the
        background it has no terminal at all (its own session: no ssh it runs, a
        ProxyJump's included, can prompt across the user's screen, which mp holds in raw
        mode) and nothing it says is shown."""
        argv = self.argv(interactive=interactive)
        log.info("running %s", shlex.join(argv))
        if interactive:
            proc = SshProcess(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        else:
            proc = SshProcess(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True, env=dict(os.environ, SSH_ASKPASS_REQUIRE="never"))
        proc.said = SshStderr(proc.stderr, echo=interactive)
        return proc
