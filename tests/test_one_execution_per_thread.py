"""Simulators that keep state per thread across an execution (an event generator object,
a static engine) declare PPFAST_MODEL_ONE_EXECUTION_PER_THREAD; guided runs then never
interleave two executions on one thread, embedded or in shared-memory processes."""

import shutil
import sys

import numpy as np
import pytest
from conftest import build_external

import ppfast
from ppfast import InferenceEngine
from ppfast.models.shm import ShmModel

IC = InferenceEngine.IMPORTANCE_SAMPLING_WITH_INFERENCE_NETWORK
pytestmark = [pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fibers and futexes: Linux only")]

# The simulator notices a second execution starting on a thread whose first one is still
# in progress: the failure an event generator's shared state would cause, made explicit.
SOURCE = """
    #include <stdexcept>
    #include <ppfast/ppfast.hpp>
    static thread_local bool running = false;
    struct Running {
      Running() {
        if (running) throw std::runtime_error("two executions interleaved on one thread");
        running = true;
      }
      ~Running() { running = false; }
    };
    static double sim() {
      Running guard;
      double x = ppfast::sample(ppfast::Normal(0.0, 1.0), "x");
      double y = ppfast::sample(ppfast::Normal(x, 1.0), "y");
      ppfast::observe(ppfast::Normal(y, 1.0), "obs");
      return x;
    }
    #ifdef ONE_PER_THREAD
    PPFAST_MODEL_WITH_FLAGS(stateful, sim, PPFAST_MODEL_ONE_EXECUTION_PER_THREAD)
    #else
    PPFAST_MODEL(stateful, sim)
    #endif
"""


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return build_external(tmp_path_factory.mktemp("stateful"), """
        foreach(kind declared plain)
          add_library(stateful_${kind} MODULE sim.cpp)
          target_link_libraries(stateful_${kind} PRIVATE ppfast::ppfast)
          set_target_properties(stateful_${kind} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden)
          add_executable(stateful_${kind}_sim sim.cpp)
          target_link_libraries(stateful_${kind}_sim PRIVATE ppfast::ppfast ppfast::main)
        endforeach()
        target_compile_definitions(stateful_declared PRIVATE ONE_PER_THREAD)
        target_compile_definitions(stateful_declared_sim PRIVATE ONE_PER_THREAD)
    """, SOURCE)


@pytest.fixture(scope="module")
def network(builds):
    import torch

    torch.manual_seed(0)
    model = ppfast.NativeModel(builds / "stateful_declared.so", threads=1)
    return model.learn_inference_network(256, batch_size=64, seed=0, lstm_dim=16, observe_embedding_dim=8,
                                         address_embedding_dim=4, proposal_dim=8)


@pytest.mark.usefixtures("one_torch_thread")
def test_guided_embedded_runs_one_execution_per_thread(builds, network):
    declared = ppfast.NativeModel(builds / "stateful_declared.so", threads=2)
    plain = ppfast.NativeModel(builds / "stateful_plain.so", threads=2)
    assert declared._native.one_execution_per_thread and not plain._native.one_execution_per_thread
    run = dict(observe={"obs": 0.5}, seed=3, slots=16, network=network, on_error="skip")
    # Undeclared, the fibers interleave and the simulator's state check fails them:
    # this is what the flag prevents.
    assert len(plain.posterior_batch(64, IC, **run).failed) > 0
    batch = declared.posterior_batch(64, IC, **run)
    assert len(batch.failed) == 0
    np.testing.assert_array_equal(batch.traces["index"], np.arange(64))


@pytest.mark.usefixtures("one_torch_thread")
def test_guided_shm_runs_one_execution_per_process(builds, network):
    run = dict(observe={"obs": 0.5}, seed=3, slots=16, network=network, on_error="skip")
    with ShmModel([builds / "stateful_plain_sim"], workers=2) as plain:
        assert len(plain.posterior_batch(64, IC, **run).failed) > 0
    with ShmModel([builds / "stateful_declared_sim"], workers=2) as declared:
        batch = declared.posterior_batch(64, IC, **run)
    assert len(batch.failed) == 0
    # The same traces as two embedded threads, to the float32 network step's rounding (its
    # batches hold other traces at a time: see test_shm_inference.py).
    embedded = ppfast.NativeModel(builds / "stateful_declared.so", threads=2).posterior_batch(64, IC, **run)
    np.testing.assert_allclose(batch.records["value"], embedded.records["value"], rtol=1e-6)
