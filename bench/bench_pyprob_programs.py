"""PyProb example programs run unchanged: the same file through PyProb 1.5.0 (baseline) and
through ``ppfast.pyprob`` (``examples/pyprob/``), importance sampling with the prior."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Case, Runner, benchmark

PROGRAMS = Path(__file__).resolve().parents[1] / "examples" / "pyprob"


def _case(name: str) -> Case:
    def side(backend: str) -> Runner:
        from ppfast.pyprob.programs import load_program

        if backend == "pyprob":
            from bench.pyprob_models import load_pyprob

            load_pyprob()  # BaselineUnavailable (skipped) without PyProb 1.5.0
        program = load_program(PROGRAMS / f"{name}.py", backend=backend)
        program.pyprob.set_verbosity(0)
        return program.run

    return Case(ppfast=lambda: side("ppfast"), baseline=lambda: side("pyprob"))


@benchmark("pyprob_program_gum_marsaglia", unit="traces/s", target=10.0)
def pyprob_program_gum_marsaglia() -> Case:
    return _case("gum_marsaglia")


@benchmark("pyprob_program_hmm", unit="traces/s", target=10.0)
def pyprob_program_hmm() -> Case:
    return _case("hmm")


@benchmark("pyprob_program_branching", unit="traces/s", target=10.0)
def pyprob_program_branching() -> Case:
    return _case("branching")
