#include "python/bindings.hpp"

namespace ppfast::python {

void register_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const RecorderError& e) {
      // The typed Python errors live in ppfast.errors (pure Python, no _core import).
      py::module_ errors = py::module_::import("ppfast.errors");
      const char* cls = "TraceError";
      switch (e.code) {
        case ErrorCode::InvalidDistribution: cls = "DistributionError"; break;
        case ErrorCode::MissingObservation: cls = "MissingObservationError"; break;
        case ErrorCode::OutOfSupport: cls = "SupportError"; break;
        default: break;
      }
      py::object type = errors.attr(cls);
      PyErr_SetString(type.ptr(), e.what());
    }
  });
  py::enum_<ErrorCode>(m, "ErrorCode")
      .value("NONE", ErrorCode::None)
      .value("INVALID_DISTRIBUTION", ErrorCode::InvalidDistribution)
      .value("MISSING_OBSERVATION", ErrorCode::MissingObservation)
      .value("OUT_OF_SUPPORT", ErrorCode::OutOfSupport)
      .value("SIMULATOR", ErrorCode::Simulator)
      .value("PROPOSAL", ErrorCode::Proposal);
}

}  // namespace ppfast::python
