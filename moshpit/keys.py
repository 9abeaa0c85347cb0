"""Identity keys as text, fingerprints, authorized_keys and known_hosts.

Key material lives in pynacl objects; this module deals with how keys are
written down and which keys are trusted. The file checks here are the policy a
runtime plugs into the sans-IO handshake: the handshake proves who holds a key,
these decide whether that key may log in or be trusted as a host.
"""

from __future__ import annotations

import base64
import binascii
import enum
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moshpit.errors import MoshpitError

KEY_TYPE = "moshpit"
DEFAULT_PORT = 40404
PUBLIC_KEY_SIZE = 32


class KeyFormatError(MoshpitError, ValueError):
    """A key line or key file that is not what it claims to be."""


def fingerprint(public_key: bytes) -> str:
    """``SHA256:<base64>`` of the raw 32-byte key, the form OpenSSH users know."""
    digest = hashlib.sha256(bytes(public_key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def format_public_key(public_key: bytes, comment: str = "") -> str:
    line = f"{KEY_TYPE} {base64.b64encode(bytes(public_key)).decode()}"
    return f"{line} {comment}" if comment else line


def parse_public_key(text: str) -> tuple[bytes, str]:
    """``moshpit <base64> [comment]`` -> (key, comment)."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] != KEY_TYPE:
        raise KeyFormatError(f"expected '{KEY_TYPE} <base64-key> [comment]'")
    try:
        key = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("key is not valid base64") from None
    if len(key) != PUBLIC_KEY_SIZE:
        raise KeyFormatError(f"key is {len(key)} bytes, not {PUBLIC_KEY_SIZE}")
    return key, parts[2] if len(parts) > 2 else ""


# --- authorized_keys ---------------------------------------------------------

DEFAULT_AUTHORIZED_KEYS = "%h/.mp/authorized_keys"


@dataclass(frozen=True)
class Authorization:
    """The outcome of an authorized-keys check; ``reason`` is for the server's log only."""

    allowed: bool
    reason: str


def expand_path_template(template: str, user: str, home: str) -> Path:
    """Expand ``%h`` (home), ``%u`` (user) and ``%%`` in a configured path."""
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            token = template[i + 1]
            out.append({"h": home, "u": user, "%": "%"}.get(token, "%" + token))
            i += 2
        else:
            out.append(ch)
            i += 1
    return Path("".join(out))


MAX_AUTHORIZED_KEYS_SIZE = 256 * 1024


def check_authorized(client_key: bytes, *, user: str, home: str, uid: int,
                     template: str = DEFAULT_AUTHORIZED_KEYS) -> Authorization:
    """May ``client_key`` log in as ``user``? Refuses unless the file and its directory
    are owned by ``uid`` (or root) and writable by nobody else, as sshd's StrictModes:
    the keys are public, what matters is who could add one."""
    path = expand_path_template(template, user, home)
    try:
        dir_stat = os.stat(path.parent)
        # Opened without following a link or blocking on a FIFO, checked on the open file
        # (no swap between check and read), read up to a bound: the user owns this file
        # and a root server must not let it stall or bloat the process.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Authorization(False, f"{path} does not exist")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Authorization(False, f"{path} is not a regular file")
        return Authorization(False, f"cannot read {path}: {exc.strerror}")
    try:
        file_stat = os.fstat(fd)
        if not stat.S_ISREG(file_stat.st_mode):
            return Authorization(False, f"{path} is not a regular file")
        for what, st in (("directory " + str(path.parent), dir_stat), ("file " + str(path), file_stat)):
            if st.st_uid not in (uid, 0):
                return Authorization(False, f"{what} is owned by uid {st.st_uid}, not {user} ({uid})")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o022:
                return Authorization(False, f"{what} has mode {mode:04o}: it is writable by others "
                                            f"(fix: chmod go-w {what.split(' ', 1)[1]})")
        if file_stat.st_size > MAX_AUTHORIZED_KEYS_SIZE:
            return Authorization(False, f"{path} is larger than {MAX_AUTHORIZED_KEYS_SIZE} bytes")
        text = os.read(fd, MAX_AUTHORIZED_KEYS_SIZE).decode("utf-8", errors="replace")
    except OSError as exc:
        return Authorization(False, f"cannot read {path}: {exc.strerror}")
    finally:
        os.close(fd)
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            key, _ = parse_public_key(line)
        except KeyFormatError:
            continue  # one bad line must not lock everyone out
        if key == bytes(client_key):
            return Authorization(True, f"{path}:{number}")
    return Authorization(False, f"key {fingerprint(client_key)} is not in {path}")


# --- known_hosts -------------------------------------------------------------

class HostKeyPolicy(enum.Enum):
    ASK = "ask"
    ACCEPT_NEW = "accept-new"
    STRICT = "strict"


@dataclass(frozen=True)
class HostKeyVerdict:
    accepted: bool
    message: str          # what to tell the user ("" when there is nothing to say)
    added: bool = False


def host_id(host: str, port: int = DEFAULT_PORT) -> str:
    """How a host is written in known_hosts: ``host``, or ``[host]:port`` off the default port."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


CHANGED_WARNING = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that the host key has just been changed.
The fingerprint for the {kind} key sent by the remote host is
{fingerprint}.
Offending {kind} key for {host} in {path}:{line}
Remove that line if the change is expected.
Host key verification failed."""


class KnownHosts:
    """The client's trust-on-first-use record of server host keys."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def entries(self) -> list[tuple[int, str, bytes]]:
        """``(line number, host id, key)`` for every well-formed line."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            parts = line.split(None, 1)
            if len(parts) != 2 or line.lstrip().startswith("#"):
                continue
            try:
                key, _ = parse_public_key(parts[1])
            except KeyFormatError:
                continue
            for name in parts[0].split(","):
                found.append((number, name, key))
        return found

    def lookup(self, host: str, port: int = DEFAULT_PORT) -> list[tuple[int, bytes]]:
        wanted = host_id(host, port)
        return [(number, key) for number, name, key in self.entries() if name == wanted]

    def add(self, host: str, port: int, key: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(f"{host_id(host, port)} {format_public_key(key)}\n")

    def verify(self, host: str, port: int, key: bytes, policy: HostKeyPolicy,
               ask=None) -> HostKeyVerdict:
        """Decide on the key a server proved it holds.

        A known, matching key is accepted; a known host with another key is
        always refused with the OpenSSH-style warning; an unknown host is added
        (accept-new), refused (strict) or put to the user: ``ask(prompt)`` returns
        the line typed, or None when there is no one to ask.
        """
        known = self.lookup(host, port)
        if any(k == bytes(key) for _, k in known):
            return HostKeyVerdict(True, "")
        name, shown = host_id(host, port), fingerprint(key)
        if known:
            return HostKeyVerdict(False, CHANGED_WARNING.format(
                kind=KEY_TYPE, fingerprint=shown, host=name, path=self.path, line=known[0][0]))
        if policy is HostKeyPolicy.STRICT:
            return HostKeyVerdict(False, f"No {KEY_TYPE} host key is known for {name} and host key "
                                         f"checking is strict.\nIts key fingerprint is {shown}.\n"
                                         + _HOW_TO_TRUST + "\nHost key verification failed.")
        if policy is HostKeyPolicy.ASK:
            refusal = _ask_to_trust(name, shown, ask)
            if refusal:
                return HostKeyVerdict(False, refusal)
        self.add(host, port, key)
        return HostKeyVerdict(True, f"Permanently added '{name}' ({KEY_TYPE}) to the list of known hosts.",
                              added=True)


_HOW_TO_TRUST = ("Compare it with what `mp-keygen fingerprint ~/.mp/mps_host_ed25519_key.pub` prints "
                 "on the server, then connect once with --host-key-check accept-new.")


def _ask_to_trust(name: str, shown: str, ask) -> str:
    """Ask as OpenSSH does: ``yes``, ``no`` or the fingerprint itself (checked here, so a
    user who pastes the one they were given cannot be fooled). "" means trusted, else why not."""
    prompt = (f"The authenticity of host '{name}' can't be established.\n"
              f"{KEY_TYPE} key fingerprint is {shown}.\n"
              "Are you sure you want to continue connecting (yes/no/[fingerprint])? ")
    while True:
        answer = ask(prompt) if ask is not None else None
        if answer is None:
            return (f"The authenticity of host '{name}' can't be established, and there is no "
                    f"terminal to ask on.\nIts {KEY_TYPE} key fingerprint is {shown}.\n"
                    + _HOW_TO_TRUST + "\nHost key verification failed.")
        answer = answer.strip()
        if answer.lower() == "yes" or answer == shown:
            return ""
        if answer.lower() == "no":
            return "Host key verification failed."
        if answer.startswith("SHA256:"):
            return (f"The fingerprint you gave, {answer}, is not the one host '{name}' proved it "
                    f"holds ({shown}).\nSomeone may be in the middle, or you were given the wrong "
                    "fingerprint.\nHost key verification failed.")
        prompt = "Please type 'yes', 'no' or the fingerprint: "


class HostKeyJudge(Protocol):
    """What a client asks of whoever decides on a host key: ``KnownHosts`` (mps),
    ``VouchedBySsh`` (mp --ssh) or ``PinnedHostKey`` (mp --local)."""

    def verify(self, host: str, port: int, key: bytes, policy: HostKeyPolicy,
               ask=None) -> HostKeyVerdict: ...


class VouchedBySsh:
    """A session started over ssh (``mp --ssh``): its one-session server's key is fresh
    each time and came over the channel ssh authenticated, so there is nothing to look
    up; a reconnect still checks it is the same key. Same ``verify`` as ``KnownHosts``."""

    def verify(self, host: str, port: int, key: bytes, policy: HostKeyPolicy = HostKeyPolicy.STRICT,
               ask=None) -> HostKeyVerdict:
        return HostKeyVerdict(True, "")


class PinnedHostKey:
    """Trust exactly one host key, known in advance (``mp --local`` made the server's):
    nothing to ask, nothing written to known_hosts. Same ``verify`` as ``KnownHosts``."""

    def __init__(self, key: bytes):
        self.key = bytes(key)

    def verify(self, host: str, port: int, key: bytes, policy: HostKeyPolicy = HostKeyPolicy.STRICT,
               ask=None) -> HostKeyVerdict:
        if bytes(key) == self.key:
            return HostKeyVerdict(True, "")
        return HostKeyVerdict(False, f"{host_id(host, port)} proved it holds {fingerprint(key)}, not the "
                                     f"expected {fingerprint(self.key)}.\nHost key verification failed.")
