"""mps: the moshpit server.

Usage:
  mps [-v... | -q...] [-e] [-c PATH] [-t PATH] [-p KEY] [-k PUB] [--bind ADDR] [--port N] [--udp-ports LOW-HIGH]
  mps (-h | --help)
  mps (-V | --version)

Options:
  -v                    More log detail (repeatable).
  -q                    Less log detail (repeatable).
  -e                    Log to stderr instead of the log file.
  -c PATH               Configuration file [default: ~/.config/moshpits/moshpits.toml].
  -t PATH               Log file [default: ~/.config/moshpits/logs/moshpits.log].
  -p KEY                Host private key (default from the configuration: ~/.mp/mps_host_ed25519_key).
  -k PUB                Host public key, checked against the private key (default: KEY.pub).
  --bind ADDR           Address to listen on for the key exchange (default: ::).
  --port N              TCP port for the key exchange (default: 40404).
  --udp-ports LOW-HIGH  UDP ports for sessions (default: 50000-59999).
  -h --help             Show this help.
  -V --version          Show the version.

Every option is also a configuration key, and every key can be set by an
environment variable (MOSHPITS_PORT, MOSHPITS_UDP_PORTS, MOSHPITS_BIND, ...),
which wins over the command line.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
from pathlib import Path

from docopt import DocoptExit, docopt

from moshpit import __version__
from moshpit.config import ConfigError, load
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


def load_host_key(private: str, public: str | None):
    path = Path(os.path.expanduser(private))
    if not path.exists():
        raise MoshpitError(f"no host key at {path}; create one with: "
                           f"mp-keygen generate --host --no-passphrase -f {path}")
    try:
        key = read_private_key(path)
    except PassphraseRequired:
        if not sys.stdin.isatty():
            raise MoshpitError(f"{path} is protected by a passphrase and there is no terminal to ask on")
        key = read_private_key(path, getpass.getpass(f"Passphrase for {path}: "))
    pub_path = Path(os.path.expanduser(public)) if public else path.with_name(path.name + ".pub")
    if pub_path.exists():
        pub, _ = read_public_key(pub_path)
        if pub != bytes(key.verify_key):
            raise MoshpitError(f"{pub_path} does not match the private key {path}")
    return key


def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__, argv=argv, version=f"mps {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return 2
    cli = {"port": int(args["--port"]) if args["--port"] and args["--port"].isdigit() else args["--port"],
           "bind": args["--bind"], "udp_ports": args["--udp-ports"], "host_key": args["-p"]}
    try:
        config = load("moshpits", os.path.expanduser(args["-c"]), cli=cli)
        setup_logging(args["-e"], config.log.file or args["-t"], args["-v"] - args["-q"])
        host_key = load_host_key(config.host_key, args["-k"])
        from moshpit.gevent.server import Server       # gevent only once the arguments are good
        server = Server(host_key, bind=(config.bind, config.port), udp_ports=config.udp_ports,
                        authorized_keys=config.authorized_keys_file)
        server.start()
    except (ConfigError, MoshpitError) as exc:
        print(f"mps: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mps: cannot listen on {args['--bind'] or 'the configured address'}: {exc.strerror}",
              file=sys.stderr)
        return 1
    import gevent
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    print(f"mps: listening on {server.address[0]} port {server.address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def main_exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
