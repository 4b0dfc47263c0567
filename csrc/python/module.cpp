// The one binding entry point: ppfast._core, one register_<area>() per file.
#include <cstdio>
#include <cstdlib>

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
  // A simulator that calls exit() in the middle of an embedded run ends this process with
  // the simulator's status: say why on the way out.
  std::atexit([] {
    if (ppfast::ActiveRun::any()) {
      std::fprintf(stderr,
                   "ppfast: the process is exiting in the middle of a simulation run (did the simulator call "
                   "exit()?). Run simulators that may exit in shared-memory mode (ppfast.ShmModel): there a "
                   "process that exits costs one trace, not the host.\n");
      std::fflush(stderr);
    }
  });
}
