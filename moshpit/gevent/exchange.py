"""The client's key exchange over a route (TCP to mps, or ssh), with the host key judged.

The first exchange of a session asks the user's host-key policy (known_hosts, or what
ssh vouched for, or a pinned key); every later one, a reconnect, asks nothing and
insists on the very key the session started with.
"""

from __future__ import annotations

import time

import gevent.socket as gsocket

from moshpit.errors import RemoteProtocolError
from moshpit.keys import HostKeyJudge, HostKeyPolicy
from moshpit.protocol.events import HandshakeRefused, HostKeyReceived
from moshpit.protocol.handshake import ClientHandshake, DiffMode, RefuseCode, ServerBusy
from moshpit.gevent.routes import ClientError

NOT_AUTHORISED_HINT = (". The server tells a client no more; its log says why (mps names its "
                       "log file when it starts; a common cause is an authorized_keys file or "
                       "~/.mp that others can write)")


class KeyExchange:
    def __init__(self, route, host: str, port: int, identity, user: str, diff_mode: DiffMode, env: dict,
                 known_hosts: HostKeyJudge, policy: HostKeyPolicy, ask, notice, *, forward_agent: bool = False):
        self.route, self.host, self.port = route, host, port
        self.identity, self.user, self.diff_mode, self.env = identity, user, diff_mode, env
        self.known_hosts, self.policy, self.ask, self.notice = known_hosts, policy, ask, notice
        self.trusted_just_now = False     # the user said yes to a new host key in this exchange
        self.forward_agent = forward_agent

    def run(self, cols: int, rows: int, token: bytes | None, *, resume_only: bool,
            shown: tuple[int, int] | None, same_key_as: bytes | None = None):
        """One key exchange over the route; returns the session parameters, the address
        to send UDP to, and the connection it ran over if the route keeps it (``keeps``:
        the session's datagrams may go over it where UDP is blocked), else None. A
        reconnect (``resume_only``) asks the user nothing; ``same_key_as``: the host key
        the server must hold (a reconnect's)."""
        stream, where = self.route.open(interactive=not resume_only)
        kept = None
        hs = ClientHandshake(self.identity, self.user, now=time.monotonic(), diff_mode=self.diff_mode,
                             cols=cols, rows=rows, env=self.env, resume_token=token,
                             resume_only=resume_only, shown=shown, forward_agent=self.forward_agent)
        try:
            stream.sendall(hs.data_to_send())
            while hs.params is None:
                data = stream.recv(4096)
                hs.receive_data(data, time.monotonic())
                while (event := hs.next_event()) is not None:
                    if isinstance(event, HostKeyReceived):
                        self._check_host_key(hs, stream, event.host_key, same_key_as)
                    elif isinstance(event, HandshakeRefused):
                        hint = NOT_AUTHORISED_HINT if event.code == RefuseCode.NOT_AUTHORISED else ""
                        raise ClientError(f"{self.host} refused: {event.reason}{hint}", refusal=event.code,
                                          permanent=event.code != RefuseCode.SERVER_BUSY)
                stream.sendall(hs.data_to_send())
            address = where()                        # (ssh -G's answer: after the exchange, see SshRoute.open)
            if getattr(self.route, "keeps_stream", False):
                self.route.keep(stream)              # from now on an idle path, read by a greenlet
                kept = stream
        except ServerBusy as exc:
            raise ClientError(f"{self.host} is busy (too many key exchanges); it said to try again "
                              f"in {exc.retry_after} s", retry_after=exc.retry_after) from None
        except RemoteProtocolError as exc:
            raise ClientError(f"key exchange with {self.host} failed: {exc}") from None
        except gsocket.timeout:
            raise ClientError(self.route.no_answer) from None
        except OSError as exc:
            raise ClientError(f"connection to {self.host} lost during the key exchange: {exc}") from None
        finally:
            if kept is None:
                stream.close()
        return hs.params, address, kept

    def _check_host_key(self, hs: ClientHandshake, stream, host_key: bytes, same_key_as: bytes | None) -> None:
        if same_key_as is not None:                  # reconnecting: it must be the same server
            refusal = None if host_key == same_key_as else "the server's host key changed while reconnecting"
        else:
            verdict = self.known_hosts.verify(self.host, self.port, host_key, self.policy, ask=self.ask)
            self.trusted_just_now = verdict.added and self.policy is HostKeyPolicy.ASK
            if verdict.accepted and verdict.message:
                self.notice(verdict.message)
            refusal = None if verdict.accepted else verdict.message
        if refusal is not None:
            hs.reject_host_key()
            stream.sendall(hs.data_to_send())
            raise ClientError(refusal, permanent=True)
        hs.accept_host_key()
