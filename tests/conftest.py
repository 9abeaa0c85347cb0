"""Shared test setup: the helpers beside this file, hypothesis profiles, and a real server."""

import os
import sys
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, settings

from moshpit.keys import format_public_key

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # importlib mode keeps test dirs off sys.path



settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))



# --- a real server for the runtime tests: a home with an authorised key, and the server ---

@pytest.fixture
def home(tmp_path):
    key = nacl.signing.SigningKey.generate()
    mp = tmp_path / ".mp"
    mp.mkdir(mode=0o700)
    (mp / "authorized_keys").write_text(format_public_key(bytes(key.verify_key)) + "\n")
    (mp / "authorized_keys").chmod(0o600)
    return tmp_path, key


@pytest.fixture
def server(home):
    from moshpit.gevent.server import Server
    path, _ = home
    srv = Server(nacl.signing.SigningKey.generate(), bind=("127.0.0.1", 0), udp_ports=(52000, 52100),
                 authorized_keys=str(path / ".mp" / "authorized_keys"), command=["/bin/sh"])
    srv.start()
    yield srv
    srv.stop()



@pytest.fixture
def system_utmp():
    """/var/run/utmp, there for the test (see tests/utmp.py); root only."""
    if os.getuid() != 0:
        pytest.skip("needs root to make the system's utmp")
    import utmp
    with utmp.system_utmp() as path:
        yield path
