// Embedded mode: a simulator shared library loaded into this process, run on C++
// worker threads with the GIL released.
#include <dlfcn.h>

#include "core/runner.hpp"
#include "python/bindings.hpp"

namespace ppfast {
const ppfast_api* local_api();
}

namespace ppfast::python {
namespace {

class NativeModel {
 public:
  NativeModel(const std::string& path, int threads) : path_(path) {
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) throw py::value_error("cannot load simulator library '" + path + "': " + dlerror());
    auto entry = reinterpret_cast<const ppfast_model_info* (*)()>(dlsym(handle_, "ppfast_model_entry"));
    if (!entry) {
      dlclose(handle_);
      throw py::value_error("'" + path + "' exports no ppfast_model_entry: define the model with PPFAST_MODEL(name, fn)");
    }
    info_ = entry();
    if (const uint32_t abi = info_->abi_version; abi != PPFAST_ABI_VERSION) {
      dlclose(handle_);  // info_ lived in the library: only the copy above is left
      throw py::value_error("'" + path + "' was built for ppfast ABI " + std::to_string(abi) +
                            ", this ppfast speaks " + std::to_string(PPFAST_ABI_VERSION));
    }
    info_->bind(local_api());  // the library's draws reach this process's recorder
    pool_ = make_pool(threads);
  }
  // The library stays loaded: views and cached ids may refer to it.

  /// A model that is a function of this process (a numba cfunc): nothing to load or bind,
  /// its calls reach this process's recorder already.  The caller keeps the code alive.
  NativeModel(uintptr_t run, const std::string& name, int threads)
      : path_(name), own_{PPFAST_ABI_VERSION, nullptr, nullptr, nullptr, 0} {
    if (!run) throw py::value_error("NativeModel.from_function: null function pointer for model '" + name + "'");
    own_.name = path_.c_str();
    own_.run = reinterpret_cast<ppfast_model_fn>(run);
    info_ = &own_;
    pool_ = make_pool(threads);
  }

  /// Ctrl-C (any pending Python signal whose handler raises) stops the run within a few
  /// milliseconds of the simulator's next draw; the exception carries the traces finished
  /// so far as `partial` (a native batch).
  static std::unique_ptr<WorkerPool> make_pool(int threads) {
    return std::make_unique<WorkerPool>(std::max(threads, 1) + 1);
  }

  /// The run's batches, one per worker's range in trace order (their concatenation is
  /// the run; Python's TraceBatch keeps them as chunks, so nothing is merged).
  std::vector<PyTraceBatch> run(uint64_t seed, uint64_t first, uint64_t count, std::shared_ptr<Observations> obs) {
    std::vector<std::shared_ptr<TraceBatch>> parts;
    RunControl control;
    bool raised = false;
    control.supervise = [&] {
      if (raised) return;
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {
        raised = true;  // the handler's exception stays set until we are back
        control.stop = true;
      }
    };
    {
      py::gil_scoped_release release;
      parts = run_trace_parts(*pool_, info_->run, seed, first, count, obs.get(), nullptr, &control);
    }
    // A Ctrl-C that came after the last check is raised here, with the whole run as
    // `partial`; raised by the interpreter after we return, it would lose the run.
    if (!raised && PyErr_CheckSignals() != 0) raised = true;
    if (raised) {
      PyTraceBatch partial{BatchPool::global().acquire()};
      std::vector<const TraceBatch*> natives;
      for (const auto& p : parts) natives.push_back(p.get());
      partial.batch->append_all(natives);
      raise_with_partial(std::move(partial));
    }
    std::vector<PyTraceBatch> out;
    for (auto& p : parts) out.push_back(PyTraceBatch{std::move(p)});
    if (out.empty()) out.push_back(PyTraceBatch{BatchPool::global().acquire()});
    return out;
  }

  /// The simulator alone, with recording off: the floor recording is measured against.
  void run_unrecorded(uint64_t count) {
    py::gil_scoped_release release;
    const auto fn = info_->run;
    const int n = threads();
    pool_->run_supervised(
        static_cast<size_t>(n),
        [&](size_t task, int) {
          const uint64_t k = count / n + (task < count % n ? 1 : 0);
          for (uint64_t i = 0; i < k; ++i) fn();
        },
        [] {});
  }

  std::string name() const { return info_->name; }
  /// Simulation threads (the pool has one more: the caller, which supervises).
  int threads() const { return pool_->size() - 1; }
  uintptr_t entry() const { return reinterpret_cast<uintptr_t>(info_->run); }
  bool one_execution_per_thread() const { return info_->flags & PPFAST_MODEL_ONE_EXECUTION_PER_THREAD; }

 private:
  std::string path_;
  void* handle_ = nullptr;
  const ppfast_model_info* info_ = nullptr;
  std::unique_ptr<WorkerPool> pool_;
  ppfast_model_info own_{};  // the info of a model made from a function pointer
};

}  // namespace

void register_native(py::module_& m) {
  py::class_<NativeModel>(m, "NativeModel")
      .def(py::init<const std::string&, int>(), py::arg("path"), py::arg("threads"))
      .def_static(
          "from_function",
          [](uintptr_t run, const std::string& name, int threads) {
            return std::make_unique<NativeModel>(run, name, threads);
          },
          py::arg("function"), py::arg("name"), py::arg("threads"))
      .def("run", &NativeModel::run, py::arg("seed"), py::arg("first"), py::arg("count"), py::arg("observations"))
      .def("run_unrecorded", &NativeModel::run_unrecorded)
      .def_property_readonly("name", &NativeModel::name)
      .def_property_readonly("threads", &NativeModel::threads)
      .def_property_readonly("entry", &NativeModel::entry)
      .def_property_readonly("one_execution_per_thread", &NativeModel::one_execution_per_thread);
  // Address of this process's C ABI table, for numba and other in-process callers.
  m.def("api_table", [] { return reinterpret_cast<uintptr_t>(local_api()); });
}

}  // namespace ppfast::python
