// Guided execution for inference compilation: the batched proposal-request drivers
// (fibers for embedded simulators, host threads for Python models) and the
// inflated-prior runner used to make training data.
#include "core/guided.hpp"

#include <cstring>

#include "core/runner.hpp"
#include "python/bindings.hpp"

namespace ppfast::python {
namespace {

template <class T>
using In = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
py::array_t<T> copy(const std::vector<T>& v) {
  py::array_t<T> a(v.size());
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

template <class Run>
void answer(Run& run, const In<uint8_t>& kinds, const In<uint32_t>& offsets, const In<uint32_t>& lens,
            const In<double>& params) {
  const size_t n = kinds.size();
  if (size_t(offsets.size()) != n || size_t(lens.size()) != n)
    throw py::value_error("answer: kinds, offsets and lens must have one entry per request (got " +
                          std::to_string(n) + ", " + std::to_string(offsets.size()) + ", " +
                          std::to_string(lens.size()) + ")");
  try {
    run.answer(kinds.data(), offsets.data(), lens.data(), n, params.data(), params.size());
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

class GuidedNative {
 public:
  GuidedNative(uintptr_t entry, uint64_t seed, uint64_t first, uint64_t count, std::shared_ptr<Observations> obs,
               uint32_t slots, int threads, size_t stack_bytes, bool one_execution_per_thread) {
    FiberRun::Options o;
    o.one_execution_per_thread = one_execution_per_thread;
    o.slots = slots;
    o.threads = threads;
    o.stack_bytes = stack_bytes;
    run_ = std::make_unique<FiberRun>(reinterpret_cast<ppfast_model_fn>(entry), seed, first, count, std::move(obs),
                                      o);
  }
  size_t advance() {
    py::gil_scoped_release release;
    return run_->advance();
  }
  py::dict requests() const { return request_dict(run_->requests()); }
  void reply(const In<uint8_t>& kinds, const In<uint32_t>& offsets, const In<uint32_t>& lens,
             const In<double>& params) {
    answer(*run_, kinds, offsets, lens, params);
  }
  PyTraceBatch take() {
    PyTraceBatch out{nullptr};
    {
      py::gil_scoped_release release;
      out.batch = run_->take();
    }
    return out;
  }

 private:
  std::unique_ptr<FiberRun> run_;
};

class GuidedThreads {
 public:
  explicit GuidedThreads(uint32_t slots)
      : run_(std::make_unique<ThreadRun>(slots, [](const std::function<void()>& wait) {
          py::gil_scoped_release release;
          wait();
        })) {}
  std::shared_ptr<Policy> policy(uint32_t slot) { return run_->policy(slot); }
  void finish(uint32_t slot) { run_->finish(slot); }
  size_t advance() {
    py::gil_scoped_release release;
    return run_->advance();
  }
  py::dict requests() const { return request_dict(run_->requests()); }
  void reply(const In<uint8_t>& kinds, const In<uint32_t>& offsets, const In<uint32_t>& lens,
             const In<double>& params) {
    answer(*run_, kinds, offsets, lens, params);
  }
  void abort() { run_->abort(); }

 private:
  std::unique_ptr<ThreadRun> run_;
};

// Training data from a widened prior for an embedded simulator.
class InflatedRunner {
 public:
  InflatedRunner(uintptr_t entry, int threads)
      : fn_(reinterpret_cast<ppfast_model_fn>(entry)), pool_(std::make_unique<WorkerPool>(threads)) {}
  PyTraceBatch run(uint64_t seed, uint64_t first, uint64_t count, std::shared_ptr<Observations> obs, double factor) {
    PyTraceBatch out{BatchPool::global().acquire()};
    py::gil_scoped_release release;
    run_inflated(*pool_, fn_, seed, first, count, obs.get(), *out.batch, factor);
    return out;
  }

 private:
  ppfast_model_fn fn_;
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace

py::dict request_dict(const RequestBatch& r) {
  py::dict d;
  d["slot"] = copy(r.slot);
  d["address"] = copy(r.address);
  d["instance"] = copy(r.instance);
  d["dist"] = copy(r.dist);
  d["first"] = copy(r.first);
  d["param_offset"] = copy(r.param_offset);
  d["param_len"] = copy(r.param_len);
  d["prev_address"] = copy(r.prev_address);
  d["prev_instance"] = copy(r.prev_instance);
  d["prev_dist"] = copy(r.prev_dist);
  d["prev_value"] = copy(r.prev_value);
  d["prev_param_offset"] = copy(r.prev_param_offset);
  d["prev_param_len"] = copy(r.prev_param_len);
  d["params"] = copy(r.params);
  return d;
}

void register_guided(py::module_& m) {
  py::class_<Policy, std::shared_ptr<Policy>>(m, "Policy", "An execution policy (set on a Recorder).");
  m.def(
      "inflated_prior", [](double factor) -> std::shared_ptr<Policy> { return std::make_shared<InflatedPrior>(factor); },
      py::arg("factor"), "A policy drawing controlled sites from a widened prior.");

  py::class_<GuidedNative>(m, "GuidedNative")
      .def(py::init<uintptr_t, uint64_t, uint64_t, uint64_t, std::shared_ptr<Observations>, uint32_t, int, size_t,
                    bool>(),
           py::arg("entry"), py::arg("seed"), py::arg("first"), py::arg("count"), py::arg("observations"),
           py::arg("slots"), py::arg("threads"), py::arg("stack_bytes"), py::arg("one_execution_per_thread") = false)
      .def("advance", &GuidedNative::advance)
      .def("requests", &GuidedNative::requests)
      .def("answer", &GuidedNative::reply)
      .def("take", &GuidedNative::take);

  py::class_<GuidedThreads>(m, "GuidedThreads")
      .def(py::init<uint32_t>(), py::arg("slots"))
      .def("policy", &GuidedThreads::policy)
      .def("finish", &GuidedThreads::finish)
      .def("advance", &GuidedThreads::advance)
      .def("requests", &GuidedThreads::requests)
      .def("answer", &GuidedThreads::reply)
      .def("abort", &GuidedThreads::abort);

  py::class_<InflatedRunner>(m, "InflatedRunner")
      .def(py::init<uintptr_t, int>(), py::arg("entry"), py::arg("threads"))
      .def("run", &InflatedRunner::run);
}

}  // namespace ppfast::python
