#!/usr/bin/env bash
# Trace-generation scaling over MPI ranks (and nodes): traces/s of R ranks, each one
# simulator thread, against 1 rank; efficiency = rate(R) / (R x rate(1)).
#
#   bash bench/mpi_scale.sh                    # R = 1 2 on this machine, embedded GUM
#   RANKS="1 2 4 8" MODEL=tau_decay TRACES=4000 PER_FILE=500 bash bench/mpi_scale.sh
#   MPIEXEC="mpiexec -f hosts -ppn 16" RANKS="16 32 64" OUT=/shared/scratch bash bench/mpi_scale.sh
#
# MODE=save (simulate and write shards, default) or MODE=simulate (simulate only).  OUT
# must be visible to every rank for MODE=save across nodes (the manifest lists every
# rank's shards).  Each size runs REPEATS timed commands after one warm-up; the median
# is reported.  The pool of ranks is started once per size (bench/mpi_gen_worker.py), so
# the launcher's start-up is not in the clock.
set -euo pipefail
cd "$(dirname "$0")/.."

RANKS=${RANKS:-"1 2"}
MODEL=${MODEL:-gum}
MODE=${MODE:-save}
TRACES=${TRACES:-2000000}
PER_FILE=${PER_FILE:-250000}
REPEATS=${REPEATS:-3}
if [ -z "${OUT:-}" ]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT  # our own scratch directory only
fi
PY=${PYTHON:-python3}
if [ -z "${MPIEXEC:-}" ]; then
  MPIEXEC=$("$PY" -c 'import pathlib, shutil, sys
p = pathlib.Path(sys.executable).parent / "mpiexec"
print(p if p.exists() else (shutil.which("mpiexec") or ""))')
  [ -n "$MPIEXEC" ] || { echo "mpiexec not found: pip install mpich mpi4py" >&2; exit 1; }
fi

echo "model=$MODEL mode=$MODE traces=$TRACES per_file=$PER_FILE out=$OUT mpiexec=$MPIEXEC"
printf "%6s %14s %10s\n" ranks traces/s efficiency
base=""
for r in $RANKS; do
  cmds=$( (echo "$TRACES"; for _ in $(seq "$REPEATS"); do echo "$TRACES"; done; echo quit) )
  times=$(echo "$cmds" | PPFAST_PROGRESS=0 $MPIEXEC -n "$r" "$PY" bench/mpi_gen_worker.py "$MODEL" "$OUT/ds-$r" \
          "$PER_FILE" "$MODE" | awk '$1 == "done" {print $2}' | tail -n "$REPEATS")
  rate=$("$PY" -c "import statistics, sys; t = [float(x) for x in sys.argv[2:]]; print(int(sys.argv[1]) / statistics.median(t))" \
         "$TRACES" $times)
  [ -n "$base" ] || base=$rate
  eff=$("$PY" -c "import sys; print(f'{float(sys.argv[1]) / ($r * float(sys.argv[2])):.3f}')" "$rate" "$base")
  printf "%6s %14.0f %10s\n" "$r" "$rate" "$eff"
  rm -rf "$OUT/ds-$r"
done
