"""Capture at the generator (ppfast::uniform, ppfast::Generator): every call is a controlled
Uniform(0, 1) site addressed by the call stack, as demangled names with module-relative
offsets that are the same in every process, with or without frame pointers."""

import re
import shutil
import subprocess
import sys

import pytest

from conftest import build_external

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")

SIM = """
#include <cstdlib>
#include <random>
#include <ppfast/ppfast.hpp>

__attribute__((noinline)) double leaf_draw() { return ppfast::uniform(); }
__attribute__((noinline, noclone)) double middle(int n) {
  double s = 0;
#pragma GCC unroll 1
  for (int i = 0; i < n; ++i) s += leaf_draw();
  return s;
}
// Standard-library code over the generator: one captured call per double.
__attribute__((noinline)) double with_std() {
  ppfast::Generator g;
  std::uniform_real_distribution<double> u(2.0, 3.0);
  return u(g) * 10 + u(g);
}
// Two callers of middle() alike in frame size: their draws come from the same frames, with
// the same words, but for the return address into the caller.
__attribute__((noinline, noclone)) double outer_a() { return middle(1) + 1; }
__attribute__((noinline, noclone)) double outer_b() { return middle(1) + 2; }
double model() {
  if (const char* m = std::getenv("SIM_STACK")) ppfast::stack_options(std::atoi(m), 0, std::atoi(m + 2));
  if (std::getenv("SIM_ALTERNATE")) {
    double s = 0;
    for (int i = 0; i < 6; ++i) s += i % 3 == 1 ? outer_b() : outer_a();
    return s;
  }
  static volatile int three = 3;
  return middle(three) + with_std();
}
PPFAST_MODEL(stacksim, model)
"""

CMAKE = """
foreach(variant fp nofp)
  add_library(sim_${variant} MODULE sim.cpp)
  target_link_libraries(sim_${variant} PRIVATE ppfast::ppfast)
  set_target_properties(sim_${variant} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
endforeach()
target_compile_options(sim_fp PRIVATE -fno-omit-frame-pointer)
target_compile_options(sim_nofp PRIVATE -fomit-frame-pointer)
add_executable(sim_exe sim.cpp)
target_compile_options(sim_exe PRIVATE -fno-omit-frame-pointer)
target_link_libraries(sim_exe PRIVATE ppfast::main ppfast::ppfast)
"""

DUMP = """
import sys, ppfast
from ppfast.trace import address_name
b = ppfast.{model}.prior_batch(4, seed=1)
assert not b.failed.any(), b.error(0)
for a, v in zip(b.records["address"], b.records["value"]):
    print(address_name(int(a)), v)
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_external(tmp_path_factory.mktemp("stack"), CMAKE, SIM)


def run(model, env=None):
    import os
    done = subprocess.run([sys.executable, "-c", DUMP.format(model=model)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    return [ln.rsplit(" ", 1)[0] for ln in lines], [float(ln.rsplit(" ", 1)[1]) for ln in lines]


def functions(address):
    return re.sub(r"\+0x[0-9a-f]+", "", address)


def test_stack_addresses_name_the_callers_and_are_stable_across_processes(built):
    native = f"NativeModel({str(built / 'sim_fp.so')!r})"
    addresses, values = run(native)
    assert len(addresses) == 4 * 5  # 3 uniform() calls and 2 std::uniform_real_distribution draws per trace
    assert all(0 < v < 1 for v in values)
    chain = functions(addresses[0])
    assert chain.endswith("middle(int);leaf_draw()"), chain  # outermost first
    assert len(set(addresses[:3])) == 1  # one call site in a loop: one address, three instances
    assert "with_std()" in addresses[3] and addresses[3] != addresses[4]  # two call sites in with_std()
    assert not any("0x7f" in a for a in addresses)  # module-relative, never absolute program counters
    # Another process (other load addresses), the general unwinder, and the shared-memory binary.
    assert run(native)[0] == addresses
    assert run(native, {"SIM_STACK": "8 1"})[0] == addresses
    assert run(f"ShmModel([{str(built / 'sim_exe')!r}], workers=1)")[0] == addresses
    # Depth 1: the direct caller only.
    direct = [functions(a) for a in run(native, {"SIM_STACK": "1 0"})[0]]
    assert direct[0] == "leaf_draw()" and ";" not in "".join(direct)


def test_a_draw_from_the_same_frames_under_another_caller_gets_that_callers_address(built):
    # The frame-pointer path remembers the frames each walk read: a draw whose frames differ
    # from a remembered walk only further up the stack must still get its own address.
    native = f"NativeModel({str(built / 'sim_fp.so')!r})"
    addresses, _ = run(native, {"SIM_ALTERNATE": "1"})
    callers = ["outer_b" if i % 3 == 1 else "outer_a" for i in range(6)] * 4
    assert [functions(a).split(";")[-3] for a in addresses] == [f"{c}()" for c in callers]
    assert run(native, {"SIM_ALTERNATE": "1", "SIM_STACK": "8 1"})[0] == addresses  # the general unwinder


def test_code_without_frame_pointers_gets_the_same_chains(built):
    fp, _ = run(f"NativeModel({str(built / 'sim_fp.so')!r})")
    nofp, _ = run(f"NativeModel({str(built / 'sim_nofp.so')!r})")
    # Other code, so other offsets; the same functions.
    assert [functions(a) for a in nofp] == [functions(a) for a in fp]
    assert run(f"NativeModel({str(built / 'sim_nofp.so')!r})")[0] == nofp


# Generator draws take a shorter path through the recorder (sample_unit, records filled a
# block at a time): their records must be those of the general path, field for field,
# around other records and across block boundaries.
UNIT_SIM = """
#include <cstdlib>
#include <vector>
#include <ppfast/ppfast.hpp>

double model() {
  const bool general = std::getenv("SIM_GENERAL") != nullptr;
  double s = 0;
  for (int i = 0; i < 150; ++i) {
    // Named: the general path; unnamed, a captured generator draw.
    s += general ? ppfast::sample(ppfast::Uniform(0.0, 1.0), "u", "u") : ppfast::uniform();
    if (i % 50 == 7) {
      ppfast::tag(std::vector<double>{s, 2 * s, 3 * s}, "partial");
      s += ppfast::sample(ppfast::Normal(0.0, 1.0), "n");
    }
  }
  return s;
}
PPFAST_MODEL(unitsim, model)
"""

UNIT_DUMP = """
import pickle, sys, ppfast
b = ppfast.NativeModel({path!r}).prior_batch(3, seed=11)
assert not b.failed.any(), b.error(0)
pickle.dump(({{k: v.copy() for k, v in b.records.items()}}, {{k: v.copy() for k, v in b.traces.items()}},
             {{k: v.copy() for k, v in b.arenas.items()}}), sys.stdout.buffer)
"""


def test_generator_draws_record_what_the_general_path_records(tmp_path_factory):
    import os
    import pickle

    import numpy as np

    build = build_external(tmp_path_factory.mktemp("unit"), """
        add_library(unitsim MODULE sim.cpp)
        target_link_libraries(unitsim PRIVATE ppfast::ppfast)
        target_compile_options(unitsim PRIVATE -fno-omit-frame-pointer)
        set_target_properties(unitsim PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
        """, UNIT_SIM)

    def dump(env):
        done = subprocess.run([sys.executable, "-c", UNIT_DUMP.format(path=str(build / "unitsim.so"))],
                              capture_output=True, timeout=300, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return pickle.loads(done.stdout)

    unit, general = dump({}), dump({"SIM_GENERAL": "1"})
    assert len(unit[0]["value"]) == 3 * (150 + 2 * 3)
    for part in range(3):
        for key in unit[part]:
            if key in ("address", "name", "trace_type"):
                continue
            np.testing.assert_array_equal(unit[part][key], general[part][key], err_msg=key)
    # The generator's draws share one stack address; the tags and Normals keep their own.
    records = unit[0]
    uniform = records["dist"] == records["dist"][0]
    assert len(np.unique(records["address"][uniform])) == 1
    assert set(records["instance"][uniform][:150]) == set(range(150))
