"""Two hosts of the test's own: network namespaces joined by a veth pair.

The server host has 10.77.0.1 and fd77::1, the client host 10.77.0.2 and fd77::2
(addresses that exist only inside these namespaces). ``readdress`` replaces a
client address the way a laptop moving to another network sees it: the new one
is added, then the old one removed. Needs root and iproute2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def firewall_available() -> bool:
    """nftables, for ``block_udp`` (ci/ci.sh installs it)."""
    return available() and shutil.which("nft") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoHosts:
    SERVER4, CLIENT4 = "10.77.0.1", "10.77.0.2"
    SERVER6, CLIENT6 = "fd77::1", "fd77::2"

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.server_ns, self.client_ns = f"mpt-s-{tag}", f"mpt-c-{tag}"
        self.server_if, self.client_if = f"mps{tag}", f"mpc{tag}"
        _ip("netns", "add", self.server_ns)
        _ip("netns", "add", self.client_ns)
        try:
            _ip("link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if)
            for ns, ifname, v4, v6 in ((self.server_ns, self.server_if, self.SERVER4, self.SERVER6),
                                       (self.client_ns, self.client_if, self.CLIENT4, self.CLIENT6)):
                _ip("link", "set", ifname, "netns", ns)
                # The old address goes, the new one stays (systemd sets this too; without
                # it, deleting a subnet's first address deletes the others with it).
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv4.conf.{ifname}.promote_secondaries=1"], check=True)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifname)
                _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
                _ip("-n", ns, "link", "set", ifname, "up")
        except BaseException:
            self.close()
            raise

    def in_server(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *argv]

    def in_client(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def readdress(self, old: str, new: str) -> None:
        """The client's address ``old`` is replaced by ``new`` (same interface)."""
        prefix = "64" if ":" in new else "24"
        extra = ["nodad"] if ":" in new else []
        _ip("-n", self.client_ns, "addr", "add", f"{new}/{prefix}", "dev", self.client_if, *extra)
        self.remove(old)

    def remove(self, address: str) -> None:
        prefix = "64" if ":" in address else "24"
        _ip("-n", self.client_ns, "addr", "del", f"{address}/{prefix}", "dev", self.client_if)

    def block_udp(self, where: str = "client", *, inbound_only: bool = False) -> None:
        """A firewall that drops every UDP datagram, both ways, TCP going on: in the
        client's host (its sends fail: EPERM), or in the server's (the client hears
        nothing, as behind a hotel's firewall). ``inbound_only``: only what arrives
        there is dropped (UDP goes out, no answer comes back)."""
        rules = ("add table inet mptblock\n"
                 "add chain inet mptblock out { type filter hook output priority 0 ; }\n"
                 "add chain inet mptblock in { type filter hook input priority 0 ; }\n"
                 + ("" if inbound_only else "add rule inet mptblock out meta l4proto udp drop\n")
                 + "add rule inet mptblock in meta l4proto udp drop\n")
        ns = self.client_ns if where == "client" else self.server_ns
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True,
                       check=True, capture_output=True)
        self._blocked = ns

    def allow_udp(self) -> None:
        subprocess.run(["ip", "netns", "exec", self._blocked, "nft", "delete", "table", "inet", "mptblock"],
                       check=True, capture_output=True)

    def close(self) -> None:
        for ns in (self.server_ns, self.client_ns):          # the veth pair goes with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
