#!/usr/bin/env bash
# The whole CI job, runnable by hand from a clean clone: bash ci/ci.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== python: $(python3 --version) on $(uname -m)"

# tmux is the independent oracle of the terminal tests; iproute2 makes the network
# namespaces of the roaming tests; a real sshd and ssh carry the mp --ssh tests (they
# run as root, and are skipped otherwise); libutempter writes mp --ssh's login records;
# nftables is the firewall of the tests where UDP is blocked.
missing=""
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -x /usr/sbin/nft ] || command -v nft >/dev/null 2>&1 || missing="$missing nftables"
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
ldconfig -p 2>/dev/null | grep 'libutempter\.so\.0' >/dev/null || missing="$missing libutempter0"
if [ -n "$missing" ]; then
    echo "== installing$missing"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null
    else
        sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq $missing >/dev/null
    fi
fi

# The README's test command, read from the README so the two cannot drift apart.
test_cmd=$(awk '/^Run the tests:/ {getline; getline; sub(/^    /, ""); print; exit}' README.md)
if [ -z "$test_cmd" ]; then
    echo "ci: no test command found under 'Run the tests:' in README.md" >&2
    exit 1
fi
echo "== README test command: $test_cmd"
eval "$test_cmd"

echo "== lint: ruff (E, F, W, B; pyproject.toml) and mypy"
.venv/bin/pip install -q 'ruff>=0.5' 'mypy>=1.10'      # (the lint extra, without rebuilding moshpit)
.venv/bin/ruff check moshpit tests benchmarks
echo "== types: mypy (pyproject.toml)"
.venv/bin/mypy

echo "== wheels (manylinux, sdist, cibuildwheel settings)"
bash ci/wheels.sh

echo "== wheel check (the manylinux wheel, no compiler)"
bash ci/wheel_check.sh

echo "== benchmark smoke runs"
.venv/bin/python benchmarks/bench_core.py --quick
.venv/bin/python benchmarks/bench_terminal.py --quick
.venv/bin/python benchmarks/bench_loss.py --quick
.venv/bin/python benchmarks/bench_e2e.py --quick
.venv/bin/python benchmarks/bench_load.py --quick
.venv/bin/python benchmarks/bench_predict.py --quick
.venv/bin/python benchmarks/bench_forward.py --quick
.venv/bin/python benchmarks/bench_fallback.py --quick
