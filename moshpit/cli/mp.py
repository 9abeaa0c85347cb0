"""mp: the moshpit client.

Usage:
  mp [-v... | -q...] [-c PATH] [-t PATH] [-l USER] [-p PORT] [-i KEY] [-k PUB] [--diff-mode MODE] [--predict MODE] [--transport KIND] [--host-key-check POLICY] [-A] [-L SPEC]... [-R SPEC]... [-D SPEC]... [--] DEST
  mp [-v... | -q...] [-c PATH] [-t PATH] [-l USER] [--diff-mode MODE] [--predict MODE] [--transport KIND] [-A] [-L SPEC]... [-R SPEC]... [-D SPEC]... --ssh=COMMAND [--server=COMMAND] [--udp-ports LOW-HIGH] [--] DEST [COMMAND...]
  mp [-v... | -q...] [-c PATH] [-t PATH] [--diff-mode MODE] [--predict MODE] --local
  mp (-h | --help)
  mp (-V | --version)

Arguments:
  DEST                     [USER@]HOST: a host name, an IPv4 address or an IPv6 address
                           (bare or in brackets).

Options:
  -l USER                  Log in as USER (default: the USER in DEST, else your own name).
  -p PORT --port=PORT      Server key-exchange port (default: 40404).
  -i KEY                   Identity private key (default: ~/.mp/id_ed25519).
  -k PUB                   Identity public key, checked against the private key.
  --diff-mode MODE         reliable, datagram or statesync (default: reliable).
  --predict MODE           Keystroke prediction: adaptive (on slow links), always or never.
  --transport KIND         auto, udp or stream (default: auto): the session's datagrams go
                           over UDP, and where UDP gets no answer (a firewall), over the key
                           exchange's TCP connection (with --ssh: the ssh connection),
                           moving back to UDP once it answers.
  --host-key-check POLICY  ask, accept-new or strict (default: ask): what to do about a
                           server whose host key is not in ~/.mp/known_hosts yet.
  --ssh=COMMAND            Start the session through ssh, as mosh does: no mps needs to be
                           running and ssh's keys, agent, ~/.ssh/config and jump hosts do
                           the logging in. COMMAND is how to run ssh (e.g. "ssh -p 2222");
                           Given as plain --ssh: ssh. A remote COMMAND may follow DEST.
  --server=COMMAND         With --ssh: the moshpit server command on the remote host
                           (default: mps, found on the remote PATH).
  --udp-ports LOW-HIGH     With --ssh: the UDP ports the server may use (default: its own).
  -A                       Forward your ssh agent (SSH_AUTH_SOCK): the remote shell's ssh
                           and ssh-add use it. Anyone who can use the socket on the server
                           (you, and root) can use your keys while you are connected.
  -L SPEC                  [BIND:]PORT:HOST:HOSTPORT: connections to BIND:PORT here (default
                           BIND: loopback) go to HOST:HOSTPORT as seen from the server.
  -R SPEC                  [BIND:]PORT:HOST:HOSTPORT: the server listens on BIND:PORT (loopback
                           unless its gateway_ports allows more) and connections go to
                           HOST:HOSTPORT as seen from here.
  -D SPEC                  [BIND:]PORT: a SOCKS4/5 proxy here whose connections are made
                           from the server. Forwarded connections survive roaming, outages
                           and sleep, as the session does.
  --local                  Start a private server on loopback with throwaway keys and connect
                           to it: the quickest way to try moshpit. Leaves nothing behind.
  -c PATH                  Configuration file (default: ~/.config/moshpit/moshpit.toml).
  -t PATH                  Log file (default: ~/.config/moshpit/logs/moshpit.log).
  -v                       More log detail (repeatable).
  -q                       Less log detail (repeatable).
  -h --help                Show this help.
  -V --version             Show the version.

Every setting is a key of the configuration file and an environment variable
named after it: server_port is MOSHPIT_SERVER_PORT, diff_mode MOSHPIT_DIFF_MODE,
and so on (docs/guide.md lists them). The command line wins over the
environment, and the environment over the file.

Keys while connected: Ctrl-^ .  end the session;  Ctrl-^ Ctrl-Z  suspend mp;
Ctrl-^ ^  a literal Ctrl-^. If the network goes away, mp reconnects by itself;
run mp again on the same terminal to resume a session it left (with --ssh, the
same DEST: the resume is logged in by ssh again).

Exit status: the remote shell's, as ssh; 0 after Ctrl-^ .; 1 when mp cannot
connect or the server ends the session; 2 for a usage mistake; 128+N after
signal N (the session is then kept, to be resumed).
"""

from __future__ import annotations

import getpass
import os
import sys

from moshpit import __version__
from moshpit.cli.common import load_signing_key, parse_args, positional_arguments, run_main, setup_logging
from moshpit.config import ConfigError, load
from moshpit.errors import MoshpitError
from moshpit.sessionfile import SessionFile, terminal_name
from moshpit.terminal.tty import window_size

# Options an ssh user reaches for, and what to do instead.
SSH_HABITS = {
    "-X": ": mp forwards no X11", "-Y": ": mp forwards no X11",
    "-J": ": mp has no jump hosts", "-o": ": settings go in ~/.config/moshpit/moshpit.toml "
    "or MOSHPIT_* variables (see mp --help)", "-s": ": the server port is -p PORT",
    "-N": ": mp always opens a shell",
}
REMOTE_COMMAND_HINT = (": mp opens a login shell on the server; a remote command needs --ssh "
                       "(mp --ssh HOST -- COMMAND)")


def parse_destination(dest: str) -> tuple[str | None, str]:
    """``[user@]host`` -> (user or None, host); IPv6 may be bare or in brackets."""
    user, sep, host = dest.rpartition("@")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise MoshpitError(f"no host in {dest!r}")
    return (user if sep else None), host


def ask_on_tty(prompt: str) -> str | None:
    """The line typed at the controlling terminal (stdin may be a pipe), or None if there
    is no terminal or it closed. Blocking is fine: nothing else runs during a first connect."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.write(fd, prompt.encode())
        line = bytearray()
        while not line.endswith(b"\n"):
            chunk = os.read(fd, 1024)
            if not chunk:
                return None
            line += chunk
        return line.decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _quiet_interrupts() -> None:
    """Ctrl-C while gevent's hub runs becomes a KeyboardInterrupt in ``main`` (and one line)
    instead of a hub traceback first."""
    import gevent
    hub = gevent.get_hub()
    hub.NOT_ERROR = tuple(hub.NOT_ERROR) + (KeyboardInterrupt,)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    end = argv.index("--") if "--" in argv else len(argv)
    via_ssh = any(arg == "--ssh" or arg.startswith("--ssh=") for arg in argv[:end])
    # "--ssh" alone means "with the configured ssh": docopt wants a value, so it gets ""
    argv = ["--ssh=" if arg == "--ssh" else arg for arg in argv[:end]] + argv[end:]
    remote_command: list[str] = []
    if via_ssh and end < len(argv) and positional_arguments(__doc__, argv[:end]):
        argv, remote_command = argv[:end], argv[end + 1:]  # DEST -- COMMAND: keep docopt off its options
    args = parse_args(__doc__, argv, prog="mp", version=f"mp {__version__}", hints=SSH_HABITS,
                      max_positional=None if via_ssh else 1, extra_hint=REMOTE_COMMAND_HINT)
    args["COMMAND"] = (args["COMMAND"] or []) + remote_command
    cli = {"server_port": args["--port"], "diff_mode": args["--diff-mode"], "predict": args["--predict"],
           "transport": args["--transport"],
           "host_key_check": args["--host-key-check"], "identity": args["-i"]}
    try:
        config = load("moshpit", os.path.expanduser(args["-c"]) if args["-c"] else None, cli=cli,
                      required=bool(args["-c"]))
        setup_logging(False, args["-t"] or config.log.file or "~/.config/moshpit/logs/moshpit.log",
                      args["-v"] - args["-q"], config.log.level)
        args["forwards"] = _forwards(config, args)     # a spec that means nothing: before anything
        if via_ssh:
            return _run_ssh(config, args)
        _quiet_interrupts()
        if args["--local"]:
            return _run_local(config)
        return _run_remote(config, args)
    except (ConfigError, MoshpitError) as exc:
        print(f"mp: {exc}", file=sys.stderr)
        return 1


def _run_ssh(config, args) -> int:
    """A session started through ssh (routes.SshRoute). This terminal's session file
    keeps its name, its throwaway key and its token, so running it again resumes."""
    import secrets
    from moshpit.sshcommand import SshCommand
    user, host = parse_destination(args["DEST"])
    if any(c.isspace() for c in args["DEST"]):        # `--ssh "ssh -p 2222" host`: mosh's habit
        raise MoshpitError(f"{args['DEST']!r} is not a host; an ssh command goes after '=': "
                           f"mp --ssh='{args['DEST']}' HOST")
    login = args["-l"] or user                     # ssh takes an IPv6 address bare, not in brackets
    destination = f"{login}@{host}" if login else host
    sessions = SessionFile(os.path.expanduser("~"), terminal_name(0))
    kept = sessions.load_ssh(destination)
    name = kept["name"] if kept else secrets.token_hex(8)
    env = _forwarded_env(config)
    command = SshCommand(args["--ssh"] or config.ssh_command, destination, host,
                         server=args["--server"] or config.ssh_server, name=name, command=args["COMMAND"],
                         udp_ports=args["--udp-ports"], window=window_size(1), env=env,
                         agent=args["forwards"].agent is not None)
    try:
        first = command.start(interactive=True)        # ssh connects while we load the rest
    except OSError as exc:
        raise MoshpitError(f"cannot run {command.ssh[0]}: {exc.strerror}") from None
    import nacl.signing
    from moshpit.gevent.client import Client
    from moshpit.gevent.routes import SshRoute
    from moshpit.keys import HostKeyPolicy, VouchedBySsh
    from moshpit.protocol.handshake import DiffMode
    _quiet_interrupts()
    identity = nacl.signing.SigningKey(bytes.fromhex(kept["key"])) if kept else nacl.signing.SigningKey.generate()
    route = SshRoute(command, first=first)

    def remember(params) -> None:
        sessions.save_ssh(destination, name, bytes(identity), params.resume_token)

    client = Client(host, 0, identity=identity, user=args["-l"] or user or getpass.getuser(),
                    known_hosts=VouchedBySsh(), policy=HostKeyPolicy.STRICT, route=route,
                    diff_mode=DiffMode(config.diff_mode), predict=config.predict,
                    term=env["TERM"], env={k: v for k, v in env.items() if k != "TERM"},
                    resume_token=bytes.fromhex(kept["token"]) if kept else None,
                    max_reconnect_backoff=config.max_reconnect_backoff_secs,
                    clipboard_max_bytes=config.clipboard_max_bytes, on_resumed=remember,
                    shown=sessions.load_shown(), on_output=sessions.shown_writer(),
                    forwards=args["forwards"], transport=config.transport)
    client.connect()
    remember(client.params)
    code = client.run()
    if client.session_over:
        sessions.remove()
    _say_goodbye(client)
    return code


def _forwards(config, args):
    """What to forward: the configuration's, then the command line's (as ssh adds -L to
    LocalForward); a spec that means nothing is one clear line."""
    from moshpit.forwarding import SpecError, parse_dynamic, parse_forward
    from moshpit.gevent.client import ClientForwards
    agent = None
    if args["-A"] or config.forward_agent:
        agent = os.environ.get("SSH_AUTH_SOCK") or None
        if agent is None:
            print("mp: -A: no ssh agent here (SSH_AUTH_SOCK is not set); none is forwarded", file=sys.stderr)
    parsed = {}
    for flag, key, parse in (("-L", "local_forward", parse_forward), ("-R", "remote_forward", parse_forward),
                             ("-D", "dynamic_forward", parse_dynamic)):
        specs = list(getattr(config, key)) + list(args.get(flag) or [])
        try:
            parsed[flag] = tuple(parse(spec) for spec in specs)
        except SpecError as exc:
            raise MoshpitError(f"bad {flag}: {exc}") from None
    return ClientForwards(agent=agent, local=parsed["-L"], remote=parsed["-R"], dynamic=parsed["-D"])


def _forwarded_env(config) -> dict:
    """What the server is told of our environment: TERM, the locale and the time zone."""
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "TZ") or k.startswith("LC_")}
    return {"TERM": os.environ.get("TERM", config.term), **env}


def _run_remote(config, args) -> int:
    from moshpit.gevent.client import Client     # gevent only once the arguments are good
    from moshpit.keys import HostKeyPolicy, KnownHosts
    from moshpit.protocol.handshake import DiffMode
    user, host = parse_destination(args["DEST"])
    user = args["-l"] or user or getpass.getuser()
    sessions = SessionFile(os.path.expanduser("~"), terminal_name(0))
    identity = load_signing_key(config.identity, args["-k"],
                                missing="no identity key at {path}; create one with: mp-keygen generate")
    client = Client(host, config.server_port, identity=identity,
                    user=user, known_hosts=KnownHosts(os.path.expanduser(config.known_hosts)),
                    policy=HostKeyPolicy(config.host_key_check), diff_mode=DiffMode(config.diff_mode),
                    predict=config.predict, term=os.environ.get("TERM", config.term), ask=ask_on_tty,
                    env={k: v for k, v in os.environ.items() if k in ("LANG", "TZ") or k.startswith("LC_")},
                    resume_token=sessions.load(host, config.server_port, user),
                    max_reconnect_backoff=config.max_reconnect_backoff_secs,
                    clipboard_max_bytes=config.clipboard_max_bytes,
                    on_resumed=lambda params: sessions.save(host, config.server_port, user,
                                                            params.resume_token),
                    shown=sessions.load_shown(), on_output=sessions.shown_writer(),
                    forwards=args["forwards"], transport=config.transport)
    client.connect()
    assert client.params is not None                  # (connected)
    sessions.save(host, config.server_port, user, client.params.resume_token)
    code = client.run()
    if client.session_over:
        sessions.remove()
    _say_goodbye(client)
    return code


def _run_local(config) -> int:
    """A private server on loopback with throwaway keys, held in memory only (nothing is
    written anywhere), and a client that trusts exactly that server's key."""
    import nacl.signing
    from moshpit.gevent.client import Client
    from moshpit.gevent.server import Server
    from moshpit.keys import Authorization, HostKeyPolicy, PinnedHostKey
    from moshpit.protocol.handshake import DiffMode
    client_key, host_key = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    client_public = bytes(client_key.verify_key)

    def authorize(key: bytes, user) -> Authorization:
        return Authorization(key == client_public, "the --local client's key")

    server = Server(host_key, bind=("127.0.0.1", 0), authorize=authorize)
    server.start()
    try:
        client = Client("127.0.0.1", server.address[1], identity=client_key, user=server.user.pw_name,
                        known_hosts=PinnedHostKey(bytes(host_key.verify_key)), policy=HostKeyPolicy.STRICT,
                        diff_mode=DiffMode(config.diff_mode), term=os.environ.get("TERM", config.term),
                        predict=config.predict, max_reconnect_backoff=config.max_reconnect_backoff_secs,
                        clipboard_max_bytes=config.clipboard_max_bytes)
        client.connect()
        code = client.run()
    finally:
        server.stop(timeout=1)
    _say_goodbye(client)
    return code


def _say_goodbye(client) -> None:
    if client.exit_message:
        print(f"mp: {client.exit_message}", file=sys.stderr)


def main_exit() -> None:
    sys.exit(run_main("mp", main))


if __name__ == "__main__":
    main_exit()
