"""Forwarding specs as ssh reads them, and the server's policy as sshd applies it."""

import pytest

from moshpit.forwarding import Forward, ForwardPolicy, SpecError, parse_dynamic, parse_forward


@pytest.mark.parametrize("spec, expected", [
    ("8080:localhost:80", Forward("127.0.0.1", 8080, "localhost", 80)),
    ("0.0.0.0:8080:db:5432", Forward("0.0.0.0", 8080, "db", 5432)),
    ("*:8080:db:5432", Forward("0.0.0.0", 8080, "db", 5432)),
    (":8080:db:5432", Forward("0.0.0.0", 8080, "db", 5432)),
    ("localhost:8080:db:5432", Forward("127.0.0.1", 8080, "db", 5432)),
    ("[::1]:8080:[2001:db8::5]:22", Forward("::1", 8080, "2001:db8::5", 22)),
    ("0:h:1", Forward("127.0.0.1", 0, "h", 1)),                  # any free port (-R)
])
def test_forward_specs_read_as_ssh_reads_them(spec, expected):
    assert parse_forward(spec) == expected


@pytest.mark.parametrize("spec", ["", "80", "80:h", "a:b:c:d:e", "x:h:80", "80:h:0", "80:h:65536",
                                  "[::1:80:h:1", "80:h:1]", "80: :22", "80:h\n:22"])
def test_nonsense_specs_are_refused_with_a_reason(spec):
    with pytest.raises(SpecError):
        parse_forward(spec)


def test_dynamic_specs():
    assert parse_dynamic("1080") == Forward("127.0.0.1", 1080)
    assert parse_dynamic("*:1080") == Forward("0.0.0.0", 1080)
    with pytest.raises(SpecError):
        parse_dynamic("h:1080:2")


def test_the_default_policy_is_sshds():
    policy = ForwardPolicy()
    assert policy.may_open("example.com", 443) is None
    assert policy.may_listen("127.0.0.1", 8080) is None
    assert policy.may_forward_agent() is None
    assert "gateway_ports" in policy.may_listen("0.0.0.0", 8080)
    assert ForwardPolicy(gateway_ports=True).may_listen("0.0.0.0", 8080) is None


def test_permit_lists_and_switches():
    policy = ForwardPolicy(permit_open=("localhost:5432", "*:443", "db:*"), permit_listen=("8022",))
    assert policy.may_open("127.0.0.1", 5432) is None
    assert policy.may_open("anything", 443) is None
    assert policy.may_open("db", 1) is None
    assert "permit_open" in policy.may_open("db2", 5432)
    assert policy.may_listen("127.0.0.1", 8022) is None
    assert "permit_listen" in policy.may_listen("127.0.0.1", 8023)
    off = ForwardPolicy(allow_tcp_forwarding=False, allow_agent_forwarding=False)
    assert "allow_tcp_forwarding" in off.may_open("h", 1)
    assert "allow_tcp_forwarding" in off.may_listen("127.0.0.1", 1)
    assert "allow_agent_forwarding" in off.may_forward_agent()
