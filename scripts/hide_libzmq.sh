#!/usr/bin/env bash
# Runs a command with the system's ZeroMQ library unloadable: in a private mount namespace
# (needs root), every libzmq*.so* under the system library directories is covered by an
# empty file, so the dynamic loader rejects it ("file too short").  Nothing changes outside
# the namespace.  Usage: scripts/hide_libzmq.sh COMMAND [ARGS...]
set -euo pipefail
exec unshare --mount --propagation private bash -c '
  set -euo pipefail
  empty=$(mktemp)
  for f in $(find /usr/lib /usr/lib64 /usr/local/lib /lib /lib64 -name "libzmq*.so*" -type f 2>/dev/null | sort -u); do
    mount --bind "$empty" "$f"
  done
  exec "$@"' hide_libzmq "$@"
