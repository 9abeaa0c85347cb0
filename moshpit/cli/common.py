"""What the command lines share: argument checks, logging set-up and loading a key to use."""

from __future__ import annotations

import getpass
import logging
import os
import re
import sys
from pathlib import Path

from docopt import DocoptExit, docopt

from moshpit.errors import MoshpitError

LEVELS = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]

INTERRUPTED = 130           # 128 + SIGINT, as shells report a command stopped by Ctrl-C


class UsageError(MoshpitError):
    """The command line cannot be used as given; the message names the word at fault."""


def _known_options(doc: str) -> dict[str, bool]:
    """Every option the ``Options:`` section of ``doc`` defines -> whether it takes a value.
    An option line is ``-x VALUE --long=VALUE  description``, as docopt reads it."""
    known: dict[str, bool] = {}
    for line in doc.split("Options:", 1)[-1].splitlines():
        line = line.strip()
        if not line.startswith("-"):
            continue
        words = re.split(r"[ ,=]+", re.split(r"\s{2,}", line, maxsplit=1)[0])
        takes_value = any(not word.startswith("-") for word in words)
        for word in words:
            if word.startswith("-"):
                known[word] = takes_value
    return known


def _check_options(argv: list[str], known: dict[str, bool], hints: dict[str, str]) -> list[str]:
    """Name the first option ``doc`` does not define, rather than let docopt print its
    internals; returns the arguments that are not options or their values."""
    args = iter(argv)
    positional: list[str] = []
    for arg in args:
        if arg == "--":
            return positional + list(args)
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
        elif arg.startswith("--"):
            name = arg.split("=", 1)[0]
            if name not in known:
                raise UsageError(f"unknown option {name}" + hints.get(name, ""))
            if known[name] and "=" not in arg and next(args, None) is None:
                raise UsageError(f"option {name} needs a value")
        elif arg.startswith("-") and len(arg) > 1:
            for i, letter in enumerate(arg[1:], 1):
                name = "-" + letter
                if name not in known:
                    raise UsageError(f"unknown option {name}" + hints.get(name, ""))
                if known[name]:
                    if i == len(arg) - 1 and next(args, None) is None:
                        raise UsageError(f"option {name} needs a value")
                    break
    return positional


def positional_arguments(doc: str, argv: list[str]) -> list[str]:
    """The words of ``argv`` that are neither options nor their values."""
    return _check_options(argv, _known_options(doc), {})


def parse_args(doc: str, argv: list[str] | None, *, prog: str, version: str,
               hints: dict[str, str] | None = None, max_positional: int | None = None,
               extra_hint: str = "") -> dict:
    """docopt, with one line for a mistake instead of docopt's internals: an unknown option
    is named (with a ``hints`` entry for a habit from ssh), an argument past
    ``max_positional`` is named with ``extra_hint``, anything else shows the usage."""
    argv = sys.argv[1:] if argv is None else argv
    positional = _check_options(argv, _known_options(doc), hints or {})
    if max_positional is not None and len(positional) > max_positional:
        raise UsageError(f"unexpected argument {positional[max_positional]!r}{extra_hint}")
    try:
        return docopt(doc, argv=argv, version=version)
    except DocoptExit:
        usage = doc.split("Usage:", 1)[1].split("\n\n", 1)[0]
        raise UsageError("cannot make sense of: " + " ".join(argv) + "\nUsage:" + usage) from None


def run_main(prog: str, main) -> int:
    """Call ``main()``: a usage mistake or Ctrl-C is one line and a status, never a traceback."""
    try:
        return main()
    except UsageError as exc:
        print(f"{prog}: {exc}\nTry '{prog} --help' for more.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED


def stderr_is_the_journal() -> bool:
    """systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to
    the journal; stderr is that stream only if they match (a child's redirected stderr
    inherits the variable but not the stream)."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stat = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def setup_logging(to_stderr: bool, path: str, verbosity: int, base: str = "info") -> None:
    """Log to stderr or ``path``, at the ``base`` level name moved by -v/-q (``verbosity``)."""
    start = [logging.getLevelName(level).lower() for level in LEVELS].index(base)
    level = LEVELS[max(0, min(len(LEVELS) - 1, start + verbosity))]
    fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
    if to_stderr:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        if stderr_is_the_journal():
            fmt = "%(name)s %(levelname)s %(message)s"      # the journal stamps each line itself
    else:
        log_path = Path(os.path.expanduser(path))
        try:
            log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handler = logging.FileHandler(log_path)
        except OSError as exc:                   # a read-only home, a full disk, a typo
            raise MoshpitError(f"cannot write the log file {log_path}: {exc.strerror or exc} "
                               f"(-t PATH names another)") from None
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def load_signing_key(private: str, public: str | None, *, missing: str):
    """The private key at ``private`` (asking for its passphrase on a terminal), checked
    against ``public`` (default: beside it, ``.pub``). ``missing`` says what to do if absent."""
    from moshpit.keyfiles import PassphraseRequired, read_private_key, read_public_key   # nacl: not at start
    path = Path(os.path.expanduser(private))
    if not path.exists():
        raise MoshpitError(missing.format(path=path))
    try:
        key = read_private_key(path)
    except PassphraseRequired:
        if not sys.stdin.isatty():
            raise MoshpitError(f"{path} is protected by a passphrase and there is no terminal to ask on") from None
        key = read_private_key(path, getpass.getpass(f"Enter passphrase for {path}: "))
    pub_path = Path(os.path.expanduser(public)) if public else path.with_name(path.name + ".pub")
    if pub_path.exists() and read_public_key(pub_path)[0] != bytes(key.verify_key):
        raise MoshpitError(f"{pub_path} does not match the private key {path}")
    return key
