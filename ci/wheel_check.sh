#!/usr/bin/env bash
# The manylinux wheel that ci/wheels.sh made (made now if there is none): install
# it into a fresh virtual environment with binaries only (nothing may compile), prove
# it carries no sources or C files, and run mp --version and the test suite against
# it from outside the source tree: the kernels' own tests, the protocol and terminal
# units, and the commands end to end (test_mp.py, test_mps.py). Left to the source
# pass, which has just run them on the same compiled kernels: the slow end-to-end
# files (network namespaces, 50 MB transfers, outages, reconnects, real sshd, the tmux
# oracle, session processes, privilege separation) and the long pure-Python ones
# (terminal emulation, the gevent server, the session). The pass went from about 6
# minutes to 2, and the whole CI run from 29 to 23.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ls wheelhouse/moshpit-*manylinux*.whl >/dev/null 2>&1 || bash ci/wheels.sh
wheel=$(ls "$root"/wheelhouse/moshpit-*manylinux*.whl)
echo "checking $(basename "$wheel")"

python3 - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
compiled = [n for n in names if n.endswith((".so", ".pyd"))]
sources = [n for n in names if n.endswith((".c", ".pyx", ".pxd"))]
expected = {"codec", "replay", "seqtrack", "retransmit", "protect", "vtscan"}
found = {n.split("/")[-1].split(".")[0] for n in compiled}
assert expected <= found, f"missing compiled kernels: {expected - found}"
assert not sources, f"wheel carries sources: {sources}"
print("wheel holds", len(compiled), "compiled modules and no C or Cython sources")
PY

python3 -m venv "$work/venv"
# --only-binary: nothing may be built from source; CC points nowhere, so any
# attempt to compile would fail loudly.
CC=/nonexistent-cc "$work/venv/bin/pip" install -q --only-binary=:all: "$wheel[test]"
cd "$work"
"$work/venv/bin/mp" --version
"$work/venv/bin/python" -c "
import moshpit, moshpit.codec, moshpit.replay, moshpit.seqtrack, moshpit.retransmit, moshpit.protect, moshpit.vtscan, moshpit.crypto, moshpit.terminal.model
assert '$root' not in moshpit.__file__, moshpit.__file__
print('imports from', moshpit.__file__)"
slow="test_forward_roaming test_roaming_netns test_udp_blocked test_forward_e2e test_interrupt_e2e test_predict_e2e
      test_reconnect test_ssh_bootstrap test_terminal_tmux test_mp_tmux
      test_terminal_emulation test_gevent_server test_session test_privsep test_session_processes test_e2e_network"
ignores=()
for name in $slow; do ignores+=(--ignore="$root/tests/$name.py"); done
"$work/venv/bin/pytest" -q --rootdir="$root" -c "$root/pyproject.toml" "$root/tests" "$root/_ext" -p no:cacheprovider \
    "${ignores[@]}"
