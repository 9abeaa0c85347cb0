"""A real sshd on loopback for tests: a throwaway host key, one authorized client key,
root allowed in by that key alone. Needs root and openssh-server (CI installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def available() -> bool:
    return os.getuid() == 0 and os.path.exists(SSHD) and shutil.which("ssh") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sshd:
    """Its logins get ``MPTEST_FROM_SSHD=hello`` (as PAM or ``SetEnv`` would give a
    variable). ``listen``: the addresses to listen on (loopback unless given); ``wrap``: an argv
    prefix to run it under (``ip netns exec NS``, a host of the test's own), where it
    takes port 22."""

    def __init__(self, directory: Path, *, listen: tuple[str, ...] = ("127.0.0.1",),
                 wrap: list[str] | None = None):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
                           check=True)
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        (directory / "authorized_keys").chmod(0o600)
        self.port = 22 if wrap else free_port()
        addresses = "\n".join(f"ListenAddress {f'[{a}]' if ':' in a else a}:{self.port}" for a in listen)
        config = directory / "sshd_config"
        config.write_text(f"""{addresses}
HostKey {directory / 'host_key'}
AuthorizedKeysFile {directory / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
SetEnv MPTEST_FROM_SSHD=hello
""")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)     # privilege separation
        self.log = directory / "sshd.log"                       # a file: sshd never waits on us
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*(wrap or []), SSHD, "-D", "-e", "-f", str(config)], stderr=log)
        waiting = set(listen)                     # "Server listening on ADDRESS port N."
        deadline = time.monotonic() + 10
        while waiting:
            said = self.log.read_text(errors="replace")
            assert self.proc.poll() is None, said
            assert time.monotonic() < deadline, f"sshd did not start: {said}"
            waiting = {a for a in waiting if f"listening on {a} port" not in said}
            time.sleep(0.05)

    def ssh_command(self, host: str = "127.0.0.1") -> str:
        """What ``mp --ssh=...`` is given: our key, our port, this sshd's host key trusted
        under the name ``host`` (whatever address it has)."""
        name = host if self.port == 22 else f"[{host}]:{self.port}"
        (self.dir / "known_hosts").write_text(f"{name} " + (self.dir / "host_key.pub").read_text())
        return (f"ssh -F none -p {self.port} -i {self.dir / 'client_key'} -o IdentitiesOnly=yes "
                f"-o UserKnownHostsFile={self.dir / 'known_hosts'} -o StrictHostKeyChecking=yes "
                f"-o CheckHostIP=no")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
