// The one binding entry point: ppfast._core, one register_<area>() per file.
#include "python/bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "ppfast native core (private: use the ppfast package)";
  ppfast::python::register_errors(m);
  ppfast::python::register_distributions(m);
  ppfast::python::register_trace(m);
  ppfast::python::register_recorder(m);
  ppfast::python::register_native(m);
  ppfast::python::register_ppx(m);
  ppfast::python::register_shm(m);
  ppfast::python::register_guided(m);
  ppfast::python::register_mcmc(m);
}
