"""mps: the moshpit server.

Usage:
  mps [-v... | -q...] [-e] [-c PATH] [-t PATH] [-p KEY] [-k PUB] [--bind ADDR] [--port N] [--udp-ports LOW-HIGH]
  mps --check-config [-e] [-c PATH] [-p KEY] [-k PUB] [--bind ADDR] [--port N] [--udp-ports LOW-HIGH]
  mps sessions [-c PATH]
  mps --ssh-session NAME [-v... | -q...] [-c PATH] [-t PATH] [--udp-ports LOW-HIGH] [--detached-timeout SECS] [--resume-only] [--window COLSxROWS] [--env NAME=VALUE]... [--agent] [--] [COMMAND...]
  mps (-h | --help)
  mps (-V | --version)

Options:
  -v                    More log detail (repeatable).
  -q                    Less log detail (repeatable).
  -e                    Log to stderr instead of the log file (under systemd: the journal,
                        which timestamps each line itself, so mps does not).
  --check-config        Load and check the configuration and the host key, say what
                        would be served, and exit (0: good, 1: not).
  -c PATH               Configuration file (default: ~/.config/moshpits/moshpits.toml).
  -t PATH               Log file (default: ~/.config/moshpits/logs/moshpits.log).
  -p KEY                Host private key (default: ~/.mp/mps_host_ed25519_key).
  -k PUB                Host public key, checked against the private key (default: KEY.pub).
  --bind ADDR           Address to listen on for the key exchange (default: ::).
  --port N              TCP port for the key exchange (default: 40404).
  --udp-ports LOW-HIGH  UDP ports for sessions (default: 50000-59999).
  --detached-timeout SECS  End a session whose client has been gone this long
                        (default: a week; 0: never).
  --ssh-session NAME    What mp --ssh runs through ssh: start (or find) the one-session
                        server NAME for this user and relay its key exchange over
                        stdin/stdout. Not for typing by hand.
  --resume-only         With --ssh-session: never start a server; say so if NAME's is gone
                        (mp's reconnects in the background).
  --window COLSxROWS    With --ssh-session: the client's window, and with --env its TERM
                        and locale, to start a new session's shell before the key exchange.
  --env NAME=VALUE      (Repeatable.)
  --agent               With --window: the client forwards its ssh agent (mp --ssh -A); the
                        shell starts with SSH_AUTH_SOCK, if allow_agent_forwarding.
  -h --help             Show this help.
  -V --version          Show the version.

Who may log in: a client whose key is in the target user's authorized_keys
(setting authorized_keys_file, default %h/.mp/authorized_keys; %h is the home,
%u the user name). The file and its directory must be owned by that user and
writable by nobody else. A refused client hears only "not authorised": the
reason is in the log file (-t), or on stderr with -e.

mps sessions lists the sessions you have (root: everyone's) on this server and
those mp --ssh started, with their age, state and the client's last address. A
server that is there but does not answer is named as busy (exit status 1).

Run as root, mps serves every user, each session as its user; otherwise only
the user running it. Expired accounts, /etc/nologin and the allow_users,
deny_users and permit_root settings are honoured as sshd does.

Every option is also a configuration key, and every key an environment
variable named after it (port is MOSHPITS_PORT, udp_ports MOSHPITS_UDP_PORTS,
authorized_keys_file MOSHPITS_AUTHORIZED_KEYS_FILE, detached_timeout_secs
MOSHPITS_DETACHED_TIMEOUT_SECS: how long a session whose client is gone is
kept, default a week, 0 for ever; max_sessions_per_user, default 32, and
max_sessions_per_key, default 16; docs/guide.md lists them all). The command line wins over
the environment, and the environment over the file.
"""

from __future__ import annotations

import os
import signal
import sys

from moshpit import __version__
from moshpit.cli.common import load_signing_key, parse_args, run_main, setup_logging
from moshpit.config import ConfigError, load
from moshpit.errors import MoshpitError
from moshpit.rundir import runtime_dir

DEFAULT_LOG = "~/.config/moshpits/logs/moshpits.log"
SYSTEM_CONTROL = "/run/moshpit/mps.ctl"


def control_path(config) -> str:
    """Where this server answers ``mps sessions``: root's in /run, anyone else's in their
    runtime directory (with the sessions mp --ssh started)."""
    if config.control_socket:
        return os.path.expanduser(config.control_socket)
    if os.getuid() == 0:
        return SYSTEM_CONTROL
    return os.fspath(runtime_dir(create=True) / "mps.ctl")


def servers_to_ask(config) -> list[str]:
    """Every status socket that may list the user's sessions: this configuration's mps,
    the system's (root's mps answers each user about their own), each mp --ssh session's."""
    from moshpit import rundir
    paths = [control_path(config), *([SYSTEM_CONTROL] if os.path.exists(SYSTEM_CONTROL) else []),
             *map(os.fspath, rundir.control_sockets())]
    return list(dict.fromkeys(paths))


def list_sessions(config) -> int:
    from moshpit import rundir, sessionlist
    sessions, gone, busy = sessionlist.gather(servers_to_ask(config))
    for path in gone:                    # a server that is gone left its sockets behind
        if os.path.dirname(path) == os.fspath(rundir.runtime_dir()):
            for stale in (path, os.path.splitext(path)[0] + ".sock"):
                try:
                    os.unlink(stale)
                except OSError:
                    pass
    for path in busy:
        print(f"mps: the server at {path} is busy and did not answer; its sessions are not listed",
              file=sys.stderr)
    if sessions:
        print(sessionlist.format_table(sessions))
    elif not busy:
        print("no sessions")
    return 1 if busy else 0


def check_config(config, host_key) -> str:
    """What a server with this configuration would do, in one line."""
    from moshpit.keys import fingerprint
    low, high = config.udp_ports
    who = "every user" if os.getuid() == 0 else f"only {os.environ.get('USER') or os.getuid()}"
    return (f"mps: configuration good: key exchange on {config.bind} port {config.port}, "
            f"UDP {low}-{high}, serving {who}, sessions "
            f"{'each in a process of its own' if config.session_processes else 'in-process'}, "
            f"host key {fingerprint(bytes(host_key.verify_key))}")


def _terminal(window: str | None, env: list[str], agent: bool = False) -> dict | None:
    """--window and --env as start_shell_early takes them, or None if not given or unusable."""
    cols, _, rows = (window or "").partition("x")
    if not (cols.isdigit() and rows.isdigit()):
        return None
    pairs = dict(item.split("=", 1) for item in env if "=" in item)
    return {"cols": int(cols), "rows": int(rows), "env": pairs, "agent": agent}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, prog="mps", version=f"mps {__version__}")
    cli = {"port": args["--port"], "bind": args["--bind"], "udp_ports": args["--udp-ports"], "host_key": args["-p"],
           "detached_timeout_secs": args["--detached-timeout"]}
    if args["sessions"] or args["--ssh-session"]:
        try:
            config = load("moshpits", os.path.expanduser(args["-c"]) if args["-c"] else None, cli=cli,
                          required=bool(args["-c"]))
            if args["sessions"]:
                return list_sessions(config)
            from moshpit.cli import ssh_session
            setup_logging(False, args["-t"] or config.log.file or DEFAULT_LOG, args["-v"] - args["-q"],
                          config.log.level)
            return ssh_session.run(args["--ssh-session"], config, args["COMMAND"], servers_to_ask(config),
                                   _terminal(args["--window"], args["--env"], args["--agent"]),
                                   resume_only=args["--resume-only"])
        except (ConfigError, MoshpitError) as exc:
            print(f"mps: {exc}", file=sys.stderr)
            return 1
    if args["--check-config"]:
        try:
            config = load("moshpits", os.path.expanduser(args["-c"]) if args["-c"] else None, cli=cli,
                          required=bool(args["-c"]))
            host_key = load_signing_key(config.host_key, args["-k"], missing="no host key at {path}")
        except (ConfigError, MoshpitError) as exc:
            print(f"mps: {exc}", file=sys.stderr)
            return 1
        print(check_config(config, host_key))
        return 0
    try:
        config = load("moshpits", os.path.expanduser(args["-c"]) if args["-c"] else None, cli=cli,
                      required=bool(args["-c"]))
        log_file = args["-t"] or config.log.file or DEFAULT_LOG
        setup_logging(args["-e"], log_file, args["-v"] - args["-q"], config.log.level)
        host_key = load_signing_key(config.host_key, args["-k"], missing=(
            "no host key at {path}; create one with: mp-keygen generate --host --no-passphrase -f {path}"))
        from moshpit.accounts import LoginPolicy
        from moshpit.forwarding import ForwardPolicy
        from moshpit.gevent.server import Server       # gevent only once the arguments are good
        policy = LoginPolicy(allow_users=config.allow_users, deny_users=config.deny_users,
                             permit_root=config.permit_root)
        server = Server(host_key, bind=(config.bind, config.port), udp_ports=config.udp_ports,
                        authorized_keys=config.authorized_keys_file, accept_env=config.accept_env,
                        detached_timeout=config.detached_timeout_secs, login_policy=policy,
                        max_sessions_per_user=config.max_sessions_per_user,
                        max_sessions_per_key=config.max_sessions_per_key,
                        processes=config.session_processes, control=control_path(config),
                        control_mode=0o666 if os.getuid() == 0 else 0o600,
                        forward_policy=ForwardPolicy.from_config(config))
        server.start()
    except (ConfigError, MoshpitError) as exc:
        print(f"mps: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"mps: cannot listen on {config.bind} port {config.port}: {reason}", file=sys.stderr)
        return 1
    import gevent
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    where = "stderr" if args["-e"] else os.path.expanduser(log_file)
    print(f"mps: listening on {server.address[0]} port {server.address[1]}; logging to {where}",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def main_exit() -> None:
    sys.exit(run_main("mps", main))


if __name__ == "__main__":
    main_exit()
