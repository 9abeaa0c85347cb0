"""What the command lines share: logging set-up and loading a key to use."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path

from moshpit.errors import MoshpitError
from moshpit.keyfiles import PassphraseRequired, read_private_key, read_public_key

LEVELS = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]


def setup_logging(to_stderr: bool, path: str, verbosity: int) -> None:
    level = LEVELS[max(0, min(len(LEVELS) - 1, 2 + verbosity))]
    if to_stderr:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        log_path = Path(os.path.expanduser(path))
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def load_signing_key(private: str, public: str | None, *, missing: str):
    """The private key at ``private`` (asking for its passphrase on a terminal), checked
    against ``public`` (default: beside it, ``.pub``). ``missing`` says what to do if absent."""
    path = Path(os.path.expanduser(private))
    if not path.exists():
        raise MoshpitError(missing.format(path=path))
    try:
        key = read_private_key(path)
    except PassphraseRequired:
        if not sys.stdin.isatty():
            raise MoshpitError(f"{path} is protected by a passphrase and there is no terminal to ask on")
        key = read_private_key(path, getpass.getpass(f"Enter passphrase for {path}: "))
    pub_path = Path(os.path.expanduser(public)) if public else path.with_name(path.name + ".pub")
    if pub_path.exists() and read_public_key(pub_path)[0] != bytes(key.verify_key):
        raise MoshpitError(f"{pub_path} does not match the private key {path}")
    return key
