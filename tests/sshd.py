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
    def __init__(self, directory: Path):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
                           check=True)
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        (directory / "authorized_keys").chmod(0o600)
        self.port = free_port()
        config = directory / "sshd_config"
        config.write_text(f"""ListenAddress 127.0.0.1:{self.port}
HostKey {directory / 'host_key'}
AuthorizedKeysFile {directory / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
""")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)     # privilege separation
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                assert time.monotonic() < deadline, "sshd did not start"
                time.sleep(0.05)

    def ssh_command(self) -> str:
        """What ``mp --ssh=...`` is given: our key, our port, this sshd's host key trusted."""
        (self.dir / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} " + (self.dir / "host_key.pub").read_text())
        return (f"ssh -F none -p {self.port} -i {self.dir / 'client_key'} -o IdentitiesOnly=yes "
                f"-o UserKnownHostsFile={self.dir / 'known_hosts'} -o StrictHostKeyChecking=yes")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
