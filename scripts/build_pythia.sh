#!/usr/bin/env bash
# Fetches Pythia 8.244 (inside the numpythia 1.3.1 sdist on PyPI), builds it unchanged as one
# static library outside the repository, cached by the sdist's checksum, then rebuilds ppfast so
# that the Pythia examples (pythia_z, pythia_tau) are built against it.
#   bash scripts/build_pythia.sh            fetch + build Pythia (if not cached), rebuild ppfast
#   bash scripts/build_pythia.sh --pythia-only
# Cache: $PPFAST_CACHE (default ~/.cache/ppfast)/pythia8244/<sdist sha256 prefix>.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r sha _ < cmake/pythia8/sdist.sha256
prefix="${PPFAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ppfast}/pythia8244/${sha:0:16}"
recipe=$(sha256sum cmake/pythia8/CMakeLists.txt | cut -c1-16)
if [ "$(cat "$prefix/.built" 2>/dev/null)" != "$recipe" ]; then
  mkdir -p "$prefix"
  tarball="$prefix/numpythia-1.3.1.tar.gz"
  if ! echo "$sha  $tarball" | sha256sum -c --quiet - >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation numpythia==1.3.1 -d "$prefix/dl"
    mv "$prefix/dl/numpythia-1.3.1.tar.gz" "$tarball"
    echo "$sha  $tarball" | sha256sum -c --quiet - || { echo "numpythia-1.3.1.tar.gz: checksum mismatch" >&2; exit 1; }
  fi
  rm -rf "$prefix/src" "$prefix/build"
  mkdir -p "$prefix/src"
  tar xzf "$tarball" -C "$prefix/src" --strip-components=5 numpythia-1.3.1/numpythia/src/extern/pythia8244
  cmake -S cmake/pythia8 -B "$prefix/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPYTHIA_SOURCE="$prefix/src" -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
  nice cmake --build "$prefix/build" -j "$(nproc)"
  cmake --install "$prefix/build" >/dev/null
  rm -rf "$prefix/build" "$prefix/dl"
  echo "$recipe" > "$prefix/.built"
fi
echo "Pythia 8.244: $prefix"
if [ "${1:-}" != "--pythia-only" ]; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-build-isolation -e .
fi
