#!/usr/bin/env bash
# Installs the comparison baseline, PyProb 1.5.0, next to the torch that is already installed.
#
# `pip install pyprob==1.5.0` would resolve torch again and pin flatbuffers==2.0. Instead:
# pyprob itself without dependencies, then its runtime dependencies by hand, with the installed
# torch version held by a constraints file and flatbuffers kept at 25.x (PyProb's RemoteModel
# works with it). Idempotent: does nothing when pyprob 1.5.0 already imports.
set -euo pipefail
PY="${PYTHON:-python}"

if "$PY" - <<'PYEOF' 2>/dev/null
import sys
import pyprob
sys.exit(0 if pyprob.__version__ == "1.5.0" else 1)
PYEOF
then
    echo "pyprob 1.5.0 already installed"
    exit 0
fi

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "torch is not installed; install it first (pip install torch==2.13.0)" >&2
    exit 1
fi

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
{
    echo "torch==${TORCH_VERSION}"
    echo "flatbuffers>=25"
} > "$CONSTRAINTS"

"$PY" -m pip install --no-deps "pyprob==1.5.0"
"$PY" -m pip install -c "$CONSTRAINTS" \
    numpy scikit-learn matplotlib "termcolor==1.1.0" "pyzmq>=19.0.0" "flatbuffers>=25" \
    "pydotplus==2.0.2" "pyyaml>=3.13" "sqlitedict>=2.0.0"

"$PY" - <<'PYEOF'
import pyprob, torch, flatbuffers
print("pyprob", pyprob.__version__, "torch", torch.__version__, "flatbuffers", flatbuffers.__version__)
PYEOF
