#!/usr/bin/env bash
# The clean-machine test: builds the repaired manylinux wheel, installs it into a fresh
# virtual environment (no system site-packages, no editable install; torch 2.13.0 from
# pip), and there, with the system's libzmq hidden (scripts/hide_libzmq.sh: a private
# mount namespace where every system libzmq*.so* is covered by an empty file), runs the
# demo, a Python model, an embedded and a shared-memory example, a PPX round trip and an
# out-of-tree CMake simulator built against the installed wheel
# (scripts/clean_machine_check.py).  Needs root (for the mount namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d /tmp/ppfast-clean.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building the wheel"
wheel=$(bash scripts/build_wheel.sh "$work/dist" | tail -1)
echo "$wheel"

echo "== installing it into a fresh virtual environment"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
pip_install() { "$py" -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
# torch 2.13.0 first: it is the CPU build, and the wheel's torch>=2.1 then installs nothing more.
pip_install torch==2.13.0
pip_install "$wheel" cmake ninja
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")

echo "== every binary of the wheel resolves its libraries without the system libzmq"
status=0
while IFS= read -r -d '' f; do
  head -c4 "$f" | grep -q ELF || continue
  deps=$(ldd "$f" 2>&1 || true)
  if grep -q "not found" <<<"$deps" || grep -q "/usr/lib/x86_64-linux-gnu/libzmq" <<<"$deps"; then
    echo "FAIL $f"; echo "$deps"; status=1
  fi
  zmq=$(grep -o "libzmq[^ ]* => [^ ]*" <<<"$deps" || true)
  [ -n "$zmq" ] && echo "  ${f#$site/}: $zmq"
done < <(find "$site/ppfast" "$site/ppfast.libs" -type f -print0)
[ "$status" = 0 ] || exit 1

echo "== with the system libzmq hidden"
cd "$work"   # not the checkout: only the installed package is importable
PPFAST_PROGRESS=0 PATH="$work/venv/bin:$PATH" bash "$repo/scripts/hide_libzmq.sh" \
  "$py" "$repo/scripts/clean_machine_check.py" "$work/external"
echo "clean machine: all checks passed"
