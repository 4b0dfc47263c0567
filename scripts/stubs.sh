#!/usr/bin/env bash
# Regenerates ppfast/_core.pyi, the type stubs of the compiled module, with
# pybind11-stubgen (PyPI) from the installed build.  Run after changing the bindings;
# tests/test_typing.py fails on stale entries and warns about missing ones.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A few signatures name the C++ class ppfast::Policy (bound before its Python class is
# registered): kept as written, then renamed to the Python class.
(cd "$out" && python3 -m pybind11_stubgen ppfast._core --ignore-invalid-expressions 'ppfast::.*' \
   --print-invalid-expressions-as-is -o "$out" >/dev/null)
# Bare dict / list / tuple (py::dict ...) get type arguments, so the stubs pass mypy --strict.
python3 - "$out/ppfast/_core.pyi" ppfast/_core.pyi <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("ppfast::Policy", "Policy")
full = {"dict": "dict[typing.Any, typing.Any]", "list": "list[typing.Any]", "tuple": "tuple[typing.Any, ...]"}
bare = re.compile(r"(?<![\w.])(dict|list|tuple)(?![\w\[])")
lines = [bare.sub(lambda m: full[m.group(1)], line) if line.lstrip().startswith("def ") else line
         for line in text.splitlines(keepends=True)]
open(sys.argv[2], "w").write("".join(lines))
PY
echo "wrote ppfast/_core.pyi"
