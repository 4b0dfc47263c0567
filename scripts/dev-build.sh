#!/usr/bin/env bash
# Rebuilds the editable install.  Serialized with a lock so concurrent rebuilds in one
# tree never share the build directory at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/ppfast-build.lock python3 -m pip install -q --no-build-isolation --root-user-action=ignore -e . "$@"
