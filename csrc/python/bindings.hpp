#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "core/recorder.hpp"
#include "core/trace_batch.hpp"

namespace ppfast {
struct RequestBatch;
}

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

/// Re-raises the Python exception a signal handler set (Ctrl-C: KeyboardInterrupt) with
/// the traces finished before it as its `partial` attribute (a native batch).
[[noreturn]] inline void raise_with_partial(PyTraceBatch finished) {
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  py::object partial = py::cast(std::move(finished));
  if (value) PyObject_SetAttrString(value, "partial", partial.ptr());
  PyErr_Restore(type, value, trace);
  throw py::error_already_set();
}

/// Observations from a Python dict {name id: float | array}.
std::shared_ptr<Observations> make_observations(const py::dict& values, bool required);

/// A guided run's pending requests as numpy arrays (what the proposal server reads).
py::dict request_dict(const ::ppfast::RequestBatch& r);

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
