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

import os
import signal
import sys

from docopt import DocoptExit, docopt

from moshpit import __version__
from moshpit.cli.common import load_signing_key, setup_logging
from moshpit.config import ConfigError, load
from moshpit.errors import MoshpitError

def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__, argv=argv, version=f"mps {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return 2
    cli = {"port": args["--port"], "bind": args["--bind"], "udp_ports": args["--udp-ports"], "host_key": args["-p"]}
    try:
        config = load("moshpits", os.path.expanduser(args["-c"]), cli=cli)
        setup_logging(args["-e"], config.log.file or args["-t"], args["-v"] - args["-q"])
        host_key = load_signing_key(config.host_key, args["-k"], missing=(
            "no host key at {path}; create one with: mp-keygen generate --host --no-passphrase -f {path}"))
        from moshpit.gevent.server import Server       # gevent only once the arguments are good
        server = Server(host_key, bind=(config.bind, config.port), udp_ports=config.udp_ports,
                        authorized_keys=config.authorized_keys_file, accept_env=config.accept_env,
                        detached_timeout=config.detached_timeout_secs)
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
