// Shared-memory mode: simulator processes over POSIX shared memory (csrc/transport/shm).
// Their batches come back as numpy views on the shared blocks, without a copy: each
// view's base is its batch object, which keeps the block (and the mapping) alive.  A
// run is the list of the pieces the processes placed (Python's TraceBatch keeps them as
// chunks), so a block goes back to the arena only once nothing views it.
#include "python/bindings.hpp"
#include "transport/shm/host.hpp"

namespace ppfast::python {
namespace {

using shm::Batch;
using shm::HostError;
using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

struct PyShmBatch {
  std::shared_ptr<Batch> batch;
};

py::dict columns(py::object self) {
  const Batch& b = *self.cast<PyShmBatch&>().batch;
  py::dict records, traces, arenas;
  for (int c = 0; c < shm::kNumColumns; ++c) {
    const auto& info = shm::kColumns[c];
    py::dtype type(std::string(1, info.type) + std::to_string(info.size));
    py::array a(type, {b.totals.of(info.dim)}, {size_t(info.size)}, b.column(c), self);
    // Batches are immutable once handed to Python.
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    (info.group[0] == 'r' ? records : info.group[0] == 't' ? traces : arenas)[info.name] = a;
  }
  py::dict all;
  all["records"] = records;
  all["traces"] = traces;
  all["arenas"] = arenas;
  return all;
}

/// The batch copied into an ordinary TraceBatch (for TraceBatch.concat and friends).
PyTraceBatch to_batch(const PyShmBatch& s) {
  PyTraceBatch out{BatchPool::global().acquire()};
  TraceBatch& t = *out.batch;
  const Batch& b = *s.batch;
  auto fill = [&](auto& column, int c) {
    using T = typename std::decay_t<decltype(column)>::value_type;
    const T* p = reinterpret_cast<const T*>(b.column(c));
    column.assign(p, p + b.totals.of(shm::kColumns[c].dim));
  };
  fill(t.rec_trace, shm::kRecTrace);
  fill(t.rec_address, shm::kRecAddress);
  fill(t.rec_instance, shm::kRecInstance);
  fill(t.rec_name, shm::kRecName);
  fill(t.rec_kind, shm::kRecKind);
  fill(t.rec_flags, shm::kRecFlags);
  fill(t.rec_dist, shm::kRecDist);
  fill(t.rec_value, shm::kRecValue);
  fill(t.rec_log_prob, shm::kRecLogProb);
  fill(t.rec_value_offset, shm::kRecValueOffset);
  fill(t.rec_value_len, shm::kRecValueLen);
  fill(t.rec_param_offset, shm::kRecParamOffset);
  fill(t.rec_param_len, shm::kRecParamLen);
  fill(t.trace_index, shm::kTrIndex);
  fill(t.trace_begin, shm::kTrBegin);
  fill(t.trace_end, shm::kTrEnd);
  fill(t.log_prior, shm::kTrLogPrior);
  fill(t.log_likelihood, shm::kTrLogLikelihood);
  fill(t.log_weight, shm::kTrLogWeight);
  fill(t.result, shm::kTrResult);
  fill(t.trace_type, shm::kTrType);
  fill(t.status, shm::kTrStatus);
  fill(t.message, shm::kTrMessage);
  fill(t.value_arena, shm::kArenaValues);
  fill(t.param_arena, shm::kArenaParams);
  t.messages = b.messages;
  return out;
}

/// A run's pieces, in trace order, as Python batches.
py::list batches(std::vector<Batch> pieces) {
  py::list out;
  for (auto& b : pieces) out.append(PyShmBatch{std::make_shared<Batch>(std::move(b))});
  return out;
}

/// Sets `partial` (the pieces of the finished traces of a failed run, a list) on the
/// pending Python exception.
void attach_partial(std::vector<Batch> partial) {
  if (partial.empty()) return;
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  if (value) PyObject_SetAttrString(value, "partial", batches(std::move(partial)).ptr());
  PyErr_Restore(type, value, trace);
}

/// Polled by the host while it waits with the GIL released: lets Ctrl-C through.
bool interrupted() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

class ShmHost {
 public:
  ShmHost(std::vector<std::string> argv, std::vector<std::string> env, int workers, double timeout,
          double startup_timeout, int max_restarts) {
    shm::HostOptions o;
    o.argv = std::move(argv);
    o.env = std::move(env);
    o.workers = workers;
    o.timeout = timeout;
    o.startup_timeout = startup_timeout;
    o.max_restarts = max_restarts;
    bool stopped = false;
    {
      py::gil_scoped_release release;
      try {
        host_ = std::make_unique<shm::Host>(std::move(o), interrupted);
      } catch (const shm::Interrupted&) {
        stopped = true;
      }
    }
    if (stopped) throw py::error_already_set();  // the KeyboardInterrupt PyErr_CheckSignals set
  }

  /// The run's pieces in trace order (a list of ShmTraceBatch).
  py::list run(uint64_t seed, uint64_t first, uint64_t count,
               const std::vector<std::pair<std::string, Array>>& observations, bool required) {
    const auto obs = convert(observations);
    std::vector<Batch> out;
    bool stopped = false;
    std::vector<Batch> partial;
    std::unique_ptr<HostError> failed;  // one that carries finished traces
    {
      py::gil_scoped_release release;
      try {
        out = host().run(seed, first, count, obs, required, interrupted);
      } catch (shm::Interrupted& e) {
        stopped = true;
        partial = std::move(e.partial);
      } catch (HostError& e) {
        if (e.partial.empty()) throw;
        failed = std::make_unique<HostError>(e.kind, e.what());
        partial = std::move(e.partial);
      }
    }
    if (failed) {
      py::object cls = py::reinterpret_borrow<py::object>(PyExc_MemoryError);
      if (failed->kind != HostError::Memory) cls = py::module_::import("ppfast.errors").attr("SimulatorError");
      py::set_error(cls, failed->what());
    }
    if (stopped || failed) {  // the KeyboardInterrupt PyErr_CheckSignals set, or the error above
      attach_partial(std::move(partial));
      throw py::error_already_set();
    }
    return batches(std::move(out));
  }

  /// Metropolis-Hastings chains in the simulator processes: (kept states, per-chain stats).
  py::tuple run_chains(uint64_t seed, int kernel, double scale, double prior_mix, uint64_t burn_in, uint64_t thinning,
                       uint64_t max_attempts, bool stop_on_error, std::vector<uint64_t> target_steps,
                       const std::vector<std::pair<std::string, Array>>& observations, py::object start,
                       uint32_t start_trace, py::object progress) {
    shm::ChainOptions o;
    o.kernel = kernel;
    o.scale = scale;
    o.prior_mix = prior_mix;
    o.burn_in = burn_in;
    o.thinning = thinning;
    o.max_attempts = max_attempts;
    o.stop_on_error = stop_on_error;
    o.target_steps = std::move(target_steps);
    std::shared_ptr<TraceBatch> keep;  // the start trace's batch, alive during the run
    if (!start.is_none()) {
      keep = start.cast<PyTraceBatch&>().batch;
      if (!keep || start_trace >= keep->num_traces())
        throw py::index_error("start trace " + std::to_string(start_trace) + " is not in its batch");
      o.start = keep.get();
      o.start_trace = start_trace;
    }
    const auto obs = convert(observations);
    auto out = std::make_shared<Batch>();
    std::vector<shm::ChainStats> stats;
    bool stopped = false;
    {
      py::gil_scoped_release release;
      try {
        // A Ctrl-C may land while the progress callback runs Python code: it stops the run
        // then; any other error of the callback is reported and the run goes on.
        bool ctrl_c = false;
        std::function<void(uint64_t)> report;
        if (!progress.is_none())
          report = [&progress, &ctrl_c](uint64_t done) {
            py::gil_scoped_acquire gil;
            try {
              progress(done);
            } catch (py::error_already_set& e) {
              if (e.matches(PyExc_KeyboardInterrupt))
                ctrl_c = true, e.restore();
              else
                e.discard_as_unraisable("ShmModel chain progress");
            }
          };
        shm::ChainRun r = host().run_chains(
            seed, o, obs, [&ctrl_c] { return ctrl_c || interrupted(); }, report);
        *out = std::move(r.batch);
        stats = std::move(r.stats);
      } catch (const shm::Interrupted&) {
        stopped = true;
      }
    }
    if (stopped) throw py::error_already_set();
    py::dict d;
    auto column = [&](const char* name, uint64_t shm::ChainStats::*field) {
      py::array_t<int64_t> a(stats.size());
      for (size_t i = 0; i < stats.size(); ++i) a.mutable_at(i) = int64_t(stats[i].*field);
      d[name] = a;
    };
    column("started", &shm::ChainStats::started);
    column("num_sites", &shm::ChainStats::num_sites);
    column("steps", &shm::ChainStats::steps);
    column("accepted", &shm::ChainStats::accepted);
    column("rejected_invalid", &shm::ChainStats::rejected_invalid);
    column("errors", &shm::ChainStats::errors);
    column("error_code", &shm::ChainStats::error_code);
    column("kept", &shm::ChainStats::kept);
    py::list errors;
    for (const auto& st : stats) errors.append(std::string(st.last_error));
    d["last_error"] = errors;
    return py::make_tuple(PyShmBatch{out}, d);
  }

  std::unique_ptr<shm::GuidedRun> guided(uint64_t seed, uint64_t first, uint64_t count,
                                         const std::vector<std::pair<std::string, Array>>& observations,
                                         bool required, uint32_t slots, uint64_t stack_bytes) {
    const auto obs = convert(observations);
    std::unique_ptr<shm::GuidedRun> run;
    bool stopped = false;
    {
      py::gil_scoped_release release;
      try {
        run = host().guided(seed, first, count, obs, required, slots, stack_bytes, interrupted);
      } catch (const shm::Interrupted&) {
        stopped = true;
      }
    }
    if (stopped) throw py::error_already_set();
    return run;
  }

  static std::vector<shm::Observation> convert(const std::vector<std::pair<std::string, Array>>& observations) {
    std::vector<shm::Observation> obs;
    for (const auto& [name, value] : observations)
      obs.push_back({name, std::vector<double>(value.data(), value.data() + value.size())});
    return obs;
  }

  void close() {
    if (!host_) return;
    py::gil_scoped_release release;
    host_->close();
  }

  shm::Host& host() {
    if (!host_) throw HostError(HostError::Closed, "this ShmModel is closed");
    return *host_;
  }

 private:
  std::unique_ptr<shm::Host> host_;
};

template <class T>
using In = py::array_t<T, py::array::c_style | py::array::forcecast>;

/// Runs `f` without the GIL; a Ctrl-C seen meanwhile becomes the KeyboardInterrupt.
template <class F>
auto released(F&& f) {
  bool stopped = false;
  decltype(f()) out{};
  {
    py::gil_scoped_release release;
    try {
      out = f();
    } catch (const shm::Interrupted&) {
      stopped = true;
    }
  }
  if (stopped) throw py::error_already_set();
  return out;
}

}  // namespace

void register_shm(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const HostError& e) {
      if (e.kind == HostError::Memory) {
        PyErr_SetString(PyExc_MemoryError, e.what());
        return;
      }
      py::object cls = py::module_::import("ppfast.errors").attr("SimulatorError");
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  py::class_<PyShmBatch>(m, "ShmTraceBatch")
      .def_property_readonly("num_traces", [](const PyShmBatch& b) { return b.batch->totals.n[1]; })
      .def_property_readonly("num_records", [](const PyShmBatch& b) { return b.batch->totals.n[0]; })
      .def_property_readonly("messages", [](const PyShmBatch& b) { return b.batch->messages; })
      .def_property_readonly(
          "lost",
          [](const PyShmBatch& b) {
            return py::array_t<uint64_t>(b.batch->lost.size(), b.batch->lost.data());
          },
          "Positions (in this batch) of the traces lost to a simulator process that crashed or hung.")
      .def_property_readonly("block", [](const PyShmBatch& b) {
        return py::make_tuple(reinterpret_cast<uintptr_t>(b.batch->block->data()), b.batch->block->size());
      })
      .def("columns", &columns)
      .def("to_batch", &to_batch, "A copy as an ordinary TraceBatch.");

  // A guided run over shared memory: the same advance / requests / answer / take as
  // GuidedNative, so ppfast.inference.guided serves both alike.
  py::class_<shm::GuidedRun>(m, "ShmGuidedRun")
      .def("advance", [](shm::GuidedRun& g) { return released([&] { return g.advance(interrupted); }); })
      .def("requests", [](const shm::GuidedRun& g) { return request_dict(g.requests()); })
      .def("answer",
           [](shm::GuidedRun& g, const In<uint8_t>& kinds, const In<uint32_t>& offsets, const In<uint32_t>& lens,
              const In<double>& params) {
             const size_t n = kinds.size();
             if (size_t(offsets.size()) != n || size_t(lens.size()) != n)
               throw py::value_error("answer: kinds, offsets and lens must have one entry per request");
             try {
               g.answer(kinds.data(), offsets.data(), lens.data(), n, params.data(), params.size());
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           })
      .def("abort", &shm::GuidedRun::abort, "Gives the run up (the proposal server failed).")
      .def("take", [](shm::GuidedRun& g) {
        auto out = std::make_shared<Batch>();
        released([&] {
          *out = g.take(interrupted);
          return 0;
        });
        return PyShmBatch{out};
      });

  py::class_<ShmHost>(m, "ShmHost")
      .def(py::init<std::vector<std::string>, std::vector<std::string>, int, double, double, int>(), py::arg("argv"),
           py::arg("env"), py::arg("workers"), py::arg("timeout"), py::arg("startup_timeout"),
           py::arg("max_restarts"))
      .def("run", &ShmHost::run, py::arg("seed"), py::arg("first"), py::arg("count"), py::arg("observations"),
           py::arg("required"))
      .def("run_chains", &ShmHost::run_chains, py::arg("seed"), py::arg("kernel"), py::arg("scale"),
           py::arg("prior_mix"), py::arg("burn_in"), py::arg("thinning"), py::arg("max_attempts"),
           py::arg("stop_on_error"), py::arg("target_steps"), py::arg("observations"), py::arg("start"),
           py::arg("start_trace"), py::arg("progress") = py::none())
      .def("guided", &ShmHost::guided, py::arg("seed"), py::arg("first"), py::arg("count"), py::arg("observations"),
           py::arg("required"), py::arg("slots"), py::arg("stack_bytes"), py::keep_alive<0, 1>())
      .def("close", &ShmHost::close)
      .def_property_readonly("name", [](ShmHost& h) { return h.host().model_name(); })
      .def_property_readonly("workers", [](ShmHost& h) { return h.host().workers(); })
      .def_property_readonly("pids", [](ShmHost& h) { return h.host().pids(); })
      .def_property_readonly("restarts", [](ShmHost& h) { return h.host().restarts(); })
      .def_property_readonly(
          "arena",
          [](ShmHost& h) {
            const auto& a = h.host().arena();
            return py::make_tuple(reinterpret_cast<uintptr_t>(a.base()), a.mapped(), a.file_size());
          },
          "(address, mapped bytes, file bytes) of the shared data arena.");
}

}  // namespace ppfast::python
