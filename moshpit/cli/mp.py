"""mp: the moshpit client.

Usage:
  mp [-v... | -q...] [-c PATH] [-t PATH] [-p KEY] [-k PUB] [-s PORT] [--diff-mode MODE] [--predict MODE] [--host-key-check POLICY] [--local] [DEST]
  mp (-h | --help)
  mp (-V | --version)

Arguments:
  DEST                     [USER@]HOST: a host name, an IPv4 address or an IPv6 address
                           (bare or in brackets).

Options:
  -v                       More log detail (repeatable).
  -q                       Less log detail (repeatable).
  -c PATH                  Configuration file [default: ~/.config/moshpit/moshpit.toml].
  -t PATH                  Log file [default: ~/.config/moshpit/logs/moshpit.log].
  -p KEY                   Identity private key (default: ~/.mp/id_ed25519).
  -k PUB                   Identity public key, checked against the private key.
  -s PORT                  Server key-exchange port (default: 40404).
  --diff-mode MODE         reliable, datagram or statesync (default: reliable).
  --predict MODE           adaptive, always or never. Has no effect yet: prediction is to come.
  --host-key-check POLICY  ask, accept-new or strict (default: ask).
  --local                  Start a private server on loopback with throwaway keys and connect
                           to it: the quickest way to try moshpit.
  -h --help                Show this help.
  -V --version             Show the version.

Keys while connected: Ctrl-^ .  quit;  Ctrl-^ Ctrl-Z  suspend;  Ctrl-^ ^  a literal Ctrl-^.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from pathlib import Path

from docopt import DocoptExit, docopt

from moshpit import __version__
from moshpit.cli.common import load_signing_key, setup_logging
from moshpit.config import ConfigError, load
from moshpit.errors import MoshpitError
from moshpit.keys import HostKeyPolicy, KnownHosts
from moshpit.sessionfile import SessionFile, terminal_name


def parse_destination(dest: str) -> tuple[str | None, str]:
    """``[user@]host`` -> (user or None, host); IPv6 may be bare or in brackets."""
    user, sep, host = dest.rpartition("@")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise MoshpitError(f"no host in {dest!r}")
    return (user if sep else None), host


def ask_on_tty(prompt: str) -> bool:
    try:
        with open("/dev/tty", "r+") as tty:
            tty.write(prompt)
            tty.flush()
            return tty.readline().strip().lower() in ("y", "yes")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__, argv=argv, version=f"mp {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return 2
    if not args["--local"] and not args["DEST"]:
        print("mp: say where to connect ([USER@]HOST), or use --local", file=sys.stderr)
        return 2
    cli = {"server_port": args["-s"], "diff_mode": args["--diff-mode"], "predict": args["--predict"],
           "host_key_check": args["--host-key-check"], "identity": args["-p"]}
    try:
        config = load("moshpit", os.path.expanduser(args["-c"]), cli=cli)
        setup_logging(False, config.log.file or args["-t"], args["-v"] - args["-q"])
        from moshpit.gevent.client import Client     # gevent only once the arguments are good
        from moshpit.protocol.handshake import DiffMode
        if args["--local"]:
            client, server = _local_client(config)
        else:
            user, host = parse_destination(args["DEST"])
            user = user or getpass.getuser()
            sessions = SessionFile(os.path.expanduser("~"), terminal_name(0))
            identity = load_signing_key(config.identity, args["-k"],
                                        missing="no identity key at {path}; create one with: mp-keygen generate")
            client = Client(host, config.server_port, identity=identity,
                            user=user, known_hosts=KnownHosts(os.path.expanduser(config.known_hosts)),
                            policy=HostKeyPolicy(config.host_key_check), diff_mode=DiffMode(config.diff_mode),
                            term=os.environ.get("TERM", config.term), ask=ask_on_tty,
                            env={k: v for k, v in os.environ.items() if k in ("LANG", "TZ") or k.startswith("LC_")},
                            resume_token=sessions.load(host, config.server_port, user),
                            max_reconnect_backoff=config.max_reconnect_backoff_secs,
                            on_resumed=lambda params: sessions.save(host, config.server_port, user,
                                                                    params.resume_token))
            server = None
        client.connect()
        if server is None:
            sessions.save(host, config.server_port, user, client.params.resume_token)
    except (ConfigError, MoshpitError) as exc:
        print(f"mp: {exc}", file=sys.stderr)
        return 1
    from moshpit.terminal.tty import RawMode
    with RawMode(client.stdin_fd, (client.stdout_fd,)):
        code = client.run()
    if server is not None:
        server.stop(timeout=1)
    elif client.session_over:
        sessions.remove()
    if client.exit_message:
        print(f"mp: {client.exit_message}", file=sys.stderr)
    return code


def _local_client(config):
    """A private server on loopback with throwaway keys, and a client for it."""
    import nacl.signing
    from moshpit.gevent.client import Client
    from moshpit.gevent.server import Server
    from moshpit.keys import format_public_key
    from moshpit.protocol.handshake import DiffMode
    workdir = Path(tempfile.mkdtemp(prefix="mp-local-"))
    workdir.chmod(0o700)
    client_key = nacl.signing.SigningKey.generate()
    keys = workdir / "authorized_keys"
    keys.write_text(format_public_key(bytes(client_key.verify_key)) + "\n")
    keys.chmod(0o600)
    server = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0),
                    authorized_keys=str(keys))
    server.start()
    client = Client("127.0.0.1", server.address[1], identity=client_key, user=server.user.pw_name,
                    known_hosts=KnownHosts(workdir / "known_hosts"), policy=HostKeyPolicy.ACCEPT_NEW,
                    diff_mode=DiffMode(config.diff_mode), term=os.environ.get("TERM", config.term),
                    max_reconnect_backoff=config.max_reconnect_backoff_secs)
    return client, server


def main_exit() -> None:
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
