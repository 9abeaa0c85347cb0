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
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from typing import IO

log = logging.getLogger("moshpit.client")

CONNECT_TIMEOUT = 10
DEFAULT_SERVER = "mps"
# The default server is looked for on the remote PATH, then where ``pip install --user``
# and pipx put it, which a non-interactive ssh command's PATH rarely has.
FIND_DEFAULT = 'command -v "$0" >/dev/null 2>&1 || PATH="$PATH:$HOME/.local/bin"; exec "$0" "$@"'


class SshProcess(subprocess.Popen):
    """ssh running; ``errors``: the file its stderr goes to, in the background."""
    errors: IO[bytes] | None = None


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
        """ssh, running: its stdin and stdout are the channel. Interactive, its stderr is
        the user's terminal (prompts, its own errors). In the background it has no
        terminal at all (its own session: no ssh it runs, a ProxyJump's included, can
        prompt across the user's screen, which mp holds in raw mode), and its stderr goes
        to a file (``errors``), read for the log once it is done: however much ``-vvv``
        says, ssh never waits on us."""
        argv = self.argv(interactive=interactive)
        log.info("running %s", shlex.join(argv))
        if interactive:
            return SshProcess(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        errors = tempfile.TemporaryFile()
        try:
            proc = SshProcess(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                    start_new_session=True, env=dict(os.environ, SSH_ASKPASS_REQUIRE="never"))
        except BaseException:
            errors.close()
            raise
        proc.errors = errors
        return proc
