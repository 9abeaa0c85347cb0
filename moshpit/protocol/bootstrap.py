"""The lines ``mps --ssh-session`` writes first on the ssh channel (docs/protocol.md, 6.1),
shared by the side that writes them (cli/ssh_session.py) and the side that reads
them (gevent/routes.py)."""

PREAMBLE = b"MOSHPIT-SSH 1 "       # + the address ssh reached the server at, or "-"; then the handshake
GONE = b"MOSHPIT-SSH-GONE 1"       # instead, to --resume-only: no server holds that session
