"""Identity key files: Ed25519 private keys, optionally sealed under a passphrase.

Private key file (text, mode 0600)::

    -----BEGIN MOSHPIT PRIVATE KEY-----
    <base64 of: magic "moshpit-key-v1\\0" | kdf (1: 0 none, 1 argon2id) |
     opslimit (4) | memlimit (8) | salt (16) | sealed or plain 32-byte seed>
    -----END MOSHPIT PRIVATE KEY-----

With a passphrase the seed is sealed with XSalsa20-Poly1305 (``nacl.secret``)
under a key derived by Argon2id, a memory-hard KDF, so a stolen file resists
guessing. The public key lives beside it in ``<path>.pub`` as
``moshpit <base64> [comment]``.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Callable
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from moshpit.errors import MoshpitError
from moshpit.keys import KEY_TYPE, KeyFormatError, format_public_key, parse_public_key

BEGIN = "-----BEGIN MOSHPIT PRIVATE KEY-----"
END = "-----END MOSHPIT PRIVATE KEY-----"
MAGIC = b"moshpit-key-v1\0"
_HEADER = struct.Struct("!BIQ16s")
KDF_NONE, KDF_ARGON2ID = 0, 1
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE * 2     # 128 MiB


class WrongPassphrase(MoshpitError):
    """The passphrase does not open the key."""


class PassphraseRequired(MoshpitError):
    """The key is sealed and no passphrase was given."""


class NotAKeyFile(KeyFormatError):
    """A file that is neither half of a moshpit key pair."""


MAX_KEY_FILE_SIZE = 64 * 1024     # key files are a few hundred bytes; never slurp /dev/zero


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"),
                                    salt, opslimit=opslimit, memlimit=memlimit)


def encode_private_key(key: nacl.signing.SigningKey, passphrase: str | None = None, *,
                       opslimit: int = OPSLIMIT, memlimit: int = MEMLIMIT) -> str:
    seed = bytes(key)
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
        body = MAGIC + _HEADER.pack(KDF_ARGON2ID, opslimit, memlimit, salt) + bytes(box.encrypt(seed))
    else:
        body = MAGIC + _HEADER.pack(KDF_NONE, 0, 0, bytes(16)) + seed
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def is_encrypted(text: str) -> bool:
    return _parse(text)[0] == KDF_ARGON2ID


def _parse(text: str):
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        raise KeyFormatError("not a moshpit private key")
    try:
        body = base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("private key is not valid base64") from None
    if not body.startswith(MAGIC) or len(body) < len(MAGIC) + _HEADER.size + 32:
        raise KeyFormatError("private key is truncated or of an unknown version")
    kdf, opslimit, memlimit, salt = _HEADER.unpack_from(body, len(MAGIC))
    rest = body[len(MAGIC) + _HEADER.size:]
    if kdf not in (KDF_NONE, KDF_ARGON2ID) or (kdf == KDF_NONE and len(rest) != 32):
        raise KeyFormatError("private key has an unknown format")
    return kdf, opslimit, memlimit, salt, rest


def decode_private_key(text: str, passphrase: str | None = None) -> nacl.signing.SigningKey:
    kdf, opslimit, memlimit, salt, rest = _parse(text)
    if kdf == KDF_NONE:
        return nacl.signing.SigningKey(rest)
    if not passphrase:
        raise PassphraseRequired("this key is protected by a passphrase")
    if not (1 <= opslimit <= 64 and 8192 <= memlimit <= 1 << 32):
        raise KeyFormatError("private key asks for unreasonable KDF limits")
    try:
        seed = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit)).decrypt(rest)
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase("wrong passphrase") from None
    if len(seed) != 32:
        raise KeyFormatError("private key has an unknown format")
    return nacl.signing.SigningKey(seed)


def _write_file(path: Path, text: str, mode: int, force: bool) -> None:
    """Write ``text`` to a fresh file beside ``path``, then move it into place: a link at
    ``path`` is replaced, never written through, and nobody sees a half-written key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path, follow_symlinks=False)   # fails if anything, even a link, is there
    except FileExistsError:
        raise FileExistsError(f"{path} already exists (use --force to overwrite)") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def write_key_pair(path: str | os.PathLike, key: nacl.signing.SigningKey, *, passphrase: str | None = None,
                   comment: str = "", force: bool = False, **kdf) -> tuple[Path, Path]:
    """Write ``path`` (0600) and ``path.pub``; the directory is created 0700.

    Refuses to overwrite unless ``force``.
    """
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not force:
        for existing in (private, public):
            if os.path.lexists(existing):
                raise FileExistsError(f"{existing} already exists (use --force to overwrite)")
    _write_file(private, encode_private_key(key, passphrase, **kdf), 0o600, force)
    _write_file(public, format_public_key(bytes(key.verify_key), comment) + "\n", 0o644, force)
    return private, public


def read_public_key(path: str | os.PathLike) -> tuple[bytes, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError(f"{path} is not a text file") from None
    return parse_public_key(text.strip().splitlines()[0] if text.strip() else "")


def read_private_key(path: str | os.PathLike, passphrase: str | None = None) -> nacl.signing.SigningKey:
    path = Path(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFormatError(f"{path} has mode {mode:04o}; a private key must be 0600")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError(f"{path} is not a moshpit private key") from None
    return decode_private_key(text, passphrase)


def public_key_of(path: str | os.PathLike, ask_passphrase: Callable[[], str]) -> tuple[bytes, str]:
    """The public key (and comment) of whichever half of a pair ``path`` is, as ``ssh-keygen -lf``.

    A public key file is read as is. For a private key, ``<path>.pub`` beside it
    is used when it is a valid public key that matches: that is where the
    comment lives, and it spares the passphrase. Only an unsealed key can be
    checked against it without asking; a sealed one is taken at its ``.pub``'s
    word, since asking for a passphrase to print a public fingerprint is what
    the ``.pub`` is there to avoid. Without a usable ``.pub`` the key itself is
    opened, calling ``ask_passphrase`` if it is sealed.
    """
    path = Path(path)
    text = _read_key_text(path)
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if first == BEGIN:
        return _public_key_of_private(path, text, ask_passphrase)
    if first.split(None, 1)[:1] == [KEY_TYPE]:
        try:
            return parse_public_key(first)
        except KeyFormatError as exc:
            raise KeyFormatError(f"{path} is a damaged moshpit public key: {exc}") from None
    raise NotAKeyFile(f"{path} is not a moshpit key file")


def _read_key_text(path: Path) -> str:
    """The file as text, read up to a bound; whatever cannot be a key file says so."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_SIZE + 1)
    except IsADirectoryError:
        raise NotAKeyFile(f"{path} is not a moshpit key file (it is a directory)") from None
    if len(data) > MAX_KEY_FILE_SIZE:
        raise NotAKeyFile(f"{path} is not a moshpit key file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAKeyFile(f"{path} is not a moshpit key file") from None


def _public_key_of_private(path: Path, text: str, ask_passphrase: Callable[[], str]) -> tuple[bytes, str]:
    """A ``.pub`` that contradicts an unsealed key is an error, not a silent choice: mp
    and mps refuse such a pair too, so the user should hear of it here first."""
    try:
        sealed = is_encrypted(text)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path} is a damaged moshpit private key: {exc}") from None
    pub_path = path.with_name(path.name + ".pub")
    beside = _public_key_beside(pub_path)
    if beside is not None and sealed:
        return beside
    key = bytes(decode_private_key(text, ask_passphrase() if sealed else None).verify_key)
    if beside is not None and beside[0] != key:
        raise KeyFormatError(f"{pub_path} does not match the private key {path}")
    return beside or (key, "")


def _public_key_beside(pub_path: Path) -> tuple[bytes, str] | None:
    """The ``.pub`` next to a private key, or None if there is none worth trusting
    (absent, unreadable or not a moshpit public key: the private key decides then)."""
    try:
        return read_public_key(pub_path)
    except (OSError, KeyFormatError):
        return None


def randomart(public_key: bytes, title: str = "MOSHPIT 256") -> str:
    """OpenSSH's "drunken bishop" picture of the key's SHA-256 digest."""
    import hashlib
    width, height = 17, 9
    field = [[0] * width for _ in range(height)]
    x, y = width // 2, height // 2
    start = (x, y)
    for byte in hashlib.sha256(bytes(public_key)).digest():
        for _ in range(4):
            x = max(0, min(width - 1, x + (1 if byte & 1 else -1)))
            y = max(0, min(height - 1, y + (1 if byte & 2 else -1)))
            field[y][x] += 1
            byte >>= 2
    symbols = " .o+=*BOX@%&#/^"
    rows = []
    for row_y, row in enumerate(field):
        chars = []
        for col_x, count in enumerate(row):
            if (col_x, row_y) == start:
                chars.append("S")
            elif (col_x, row_y) == (x, y):
                chars.append("E")
            else:
                chars.append(symbols[min(count, len(symbols) - 1)])
        rows.append("|" + "".join(chars) + "|")
    top = f"+{('[' + title + ']').center(width, '-')}+"
    bottom = f"+{'[SHA256]'.center(width, '-')}+"
    return "\n".join([top, *rows, bottom])
