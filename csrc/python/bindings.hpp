#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "core/recorder.hpp"
#include "core/trace_batch.hpp"

namespace ppfast::python {
namespace py = pybind11;

/// A recorder failure carried to Python; translated once, in register_errors.
struct RecorderError : std::runtime_error {
  RecorderError(ErrorCode c, const std::string& m) : std::runtime_error(m), code(c) {}
  ErrorCode code;
};

/// A finished, immutable batch shared with Python; numpy views keep it alive.
struct PyTraceBatch {
  std::shared_ptr<TraceBatch> batch;
};

/// Observations from a Python dict {name id: float | array}.
std::shared_ptr<Observations> make_observations(const py::dict& values, bool required);

void register_errors(py::module_& m);
void register_distributions(py::module_& m);
void register_trace(py::module_& m);
void register_recorder(py::module_& m);
void register_native(py::module_& m);
void register_ppx(py::module_& m);
void register_shm(py::module_& m);
void register_guided(py::module_& m);
void register_mcmc(py::module_& m);

}  // namespace ppfast::python
