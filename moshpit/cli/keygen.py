"""mp-keygen: make and check moshpit identity keys.

Usage:
  mp-keygen generate [--host] [-f PATH] [-N PASSPHRASE | --no-passphrase] [-C COMMENT] [--force]
  mp-keygen fingerprint [--randomart] KEYFILE
  mp-keygen verify [--randomart] FINGERPRINT KEYFILE
  mp-keygen (-h | --help)
  mp-keygen (-V | --version)

Commands:
  generate      Make a new Ed25519 key pair: PATH (mode 0600) and PATH.pub.
  fingerprint   Print the key's SHA256 fingerprint, the string mp shows when it
                asks whether to trust a host. KEYFILE is a public key (PATH.pub)
                or a private key: then its PATH.pub is used if it matches, else
                the key itself (asking for its passphrase if it is sealed).
  verify        Exit 0 if KEYFILE (public or private, as above) has FINGERPRINT,
                1 if not.

Options:
  --host                 A server host key: PATH defaults to ~/.mp/mps_host_ed25519_key
                         instead of ~/.mp/id_ed25519.
  -f PATH                Where to write the private key.
  -N PASSPHRASE          Seal the private key under PASSPHRASE (Argon2id).
  --no-passphrase        Leave the private key unsealed (for unattended servers).
  -C COMMENT             Comment for the public key [default: USER@HOST].
  --force                Overwrite an existing key.
  --randomart            Also draw the key as OpenSSH-style random art.
  -h --help              Show this help.
  -V --version           Show the version.
"""

from __future__ import annotations

import getpass
import hmac
import os
import socket
import sys
from pathlib import Path

import nacl.signing

from moshpit import __version__
from moshpit.cli.common import UsageError, parse_args
from moshpit.errors import MoshpitError
from moshpit.keyfiles import public_key_of, randomart, write_key_pair
from moshpit.keys import fingerprint

CLIENT_KEY = "~/.mp/id_ed25519"
HOST_KEY = "~/.mp/mps_host_ed25519_key"


def _fail(message: str) -> int:
    print(f"mp-keygen: {message}", file=sys.stderr)
    return 2


def _passphrase(args) -> str | None:
    if args["--no-passphrase"]:
        return None
    if args["-N"] is not None:
        return args["-N"]
    if not sys.stdin.isatty():
        raise MoshpitError("no passphrase given and no terminal to ask on: use -N PASSPHRASE "
                           "or --no-passphrase")
    first = getpass.getpass("Passphrase (empty for none): ")
    if first != getpass.getpass("Same passphrase again: "):
        raise MoshpitError("the passphrases do not match")
    return first or None


def generate(args) -> int:
    path = Path(os.path.expanduser(args["-f"] or (HOST_KEY if args["--host"] else CLIENT_KEY)))
    comment = args["-C"]
    if comment == "USER@HOST":
        comment = f"{getpass.getuser()}@{socket.gethostname()}"
    key = nacl.signing.SigningKey.generate()
    private, public = write_key_pair(path, key, passphrase=_passphrase(args), comment=comment,
                                     force=args["--force"])
    print(f"Your identification has been saved in {private}")
    print(f"Your public key has been saved in {public}")
    print(f"The key fingerprint is:\n{fingerprint(bytes(key.verify_key))} {comment}")
    print(randomart(bytes(key.verify_key)))
    return 0


def _ask_passphrase(path: str):
    """A prompt for ``path``'s passphrase that refuses, in one line, when there is no terminal."""
    def ask() -> str:
        if not sys.stdin.isatty():
            raise MoshpitError(f"{path} is protected by a passphrase and there is no terminal "
                               "to ask on")
        return getpass.getpass(f"Enter passphrase for {path}: ")
    return ask


def _public_key(args) -> tuple[bytes, str]:
    """KEYFILE's public key and comment, whichever half of the pair the user named."""
    path = os.path.expanduser(args["KEYFILE"])
    return public_key_of(path, _ask_passphrase(path))


def show(args) -> int:
    key, comment = _public_key(args)
    print(f"{fingerprint(key)} {comment}".rstrip())
    if args["--randomart"]:
        print(randomart(key))
    return 0


def verify(args) -> int:
    key, _ = _public_key(args)
    actual = fingerprint(key)
    if args["--randomart"]:
        print(randomart(key))
    if hmac.compare_digest(actual, args["FINGERPRINT"].strip()):
        print(f"{args['KEYFILE']}: fingerprint matches")
        return 0
    print(f"{args['KEYFILE']}: fingerprint does NOT match (it is {actual})", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(__doc__, argv, prog="mp-keygen", version=f"mp-keygen {__version__}")
    except UsageError as exc:
        print(f"mp-keygen: {exc}\nTry 'mp-keygen --help' for more.", file=sys.stderr)
        return 2
    try:
        if args["generate"]:
            return generate(args)
        if args["fingerprint"]:
            return show(args)
        return verify(args)
    except FileExistsError as exc:
        return _fail(str(exc))
    except FileNotFoundError as exc:
        return _fail(f"{exc.filename}: no such file")
    except PermissionError as exc:
        return _fail(f"{exc.filename}: permission denied")
    except (OSError, ValueError, MoshpitError) as exc:
        return _fail(str(exc))
    except (KeyboardInterrupt, EOFError):
        return _fail("interrupted")


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
