// Metropolis-Hastings chains for Python: the chain logic and replay policy live in
// csrc/core/mcmc.*; Python models drive a chain step by step through the recorder,
// embedded simulators run whole chains here on worker threads without the GIL.
#include "core/mcmc.hpp"
#include "python/bindings.hpp"

namespace ppfast::python {
namespace {

std::vector<MHChain*> raw(const std::vector<std::shared_ptr<MHChain>>& chains) {
  std::vector<MHChain*> out;
  out.reserve(chains.size());
  for (const auto& c : chains) {
    if (!c) throw py::value_error("chains must not contain None");
    out.push_back(c.get());
  }
  return out;
}

TraceBatch& one_trace(PyTraceBatch& b) {
  if (!b.batch || b.batch->num_traces() == 0) throw py::value_error("expected a batch holding the executed trace, got an empty one");
  return *b.batch;
}

ErrorCode error_code(int code) {
  if (code < 0 || code > int(ErrorCode::Proposal)) throw py::value_error("unknown error code " + std::to_string(code));
  return ErrorCode(code);
}

class NativeChains {
 public:
  NativeChains(uintptr_t entry, int threads, std::shared_ptr<Observations> observations, uint64_t seed)
      : runner_(reinterpret_cast<ppfast_model_fn>(entry), threads, std::move(observations), seed) {
    if (!entry) throw py::value_error("the model's entry function is null");
  }
  void initialize(const std::vector<std::shared_ptr<MHChain>>& chains, uint32_t max_attempts, bool stop_on_error) {
    auto c = raw(chains);
    py::gil_scoped_release release;
    runner_.initialize(c, max_attempts, stop_on_error);
  }
  void run(const std::vector<std::shared_ptr<MHChain>>& chains, uint64_t steps, bool stop_on_error) {
    auto c = raw(chains);
    py::gil_scoped_release release;
    runner_.run(c, steps, stop_on_error);
  }
  int threads() const { return runner_.threads(); }

 private:
  MHNativeRunner runner_;
};

}  // namespace

void register_mcmc(py::module_& m) {
  // The recorder's pluggable policy; other areas may have registered it already.
  if (!py::detail::get_type_info(typeid(Policy)))
    py::class_<Policy, std::shared_ptr<Policy>>(m, "Policy", "Decides values at controlled sample sites.");

  m.attr("MH_ACCEPTED") = int(kMHAccepted);
  m.attr("MH_KEPT") = int(kMHKept);
  m.attr("MH_REJECTED_INVALID") = int(kMHRejectedInvalid);
  m.attr("MH_ERROR") = int(kMHError);

  py::class_<MHChain, std::shared_ptr<MHChain>>(m, "MHChain")
      .def(py::init([](int kernel, double scale, double prior_mix, uint64_t burn_in, uint64_t thinning, uint64_t seed,
                       uint32_t chain) {
             if (kernel != 0 && kernel != 1) throw py::value_error("kernel must be 0 (prior) or 1 (random walk)");
             if (!(scale > 0) || !std::isfinite(scale)) throw py::value_error("scale must be > 0 and finite");
             if (!(prior_mix >= 0 && prior_mix <= 1)) throw py::value_error("prior_mix must be in [0, 1]");
             if (thinning < 1) throw py::value_error("thinning must be >= 1");
             MHOptions o;
             o.kernel = MHKernel(kernel);
             o.scale = scale;
             o.prior_mix = prior_mix;
             o.burn_in = burn_in;
             o.thinning = thinning;
             return std::make_shared<MHChain>(o, seed, chain);
           }),
           py::arg("kernel"), py::arg("scale"), py::arg("prior_mix"), py::arg("burn_in"), py::arg("thinning"),
           py::arg("seed"), py::arg("chain"))
      .def_property_readonly(
          "policy", [](const std::shared_ptr<MHChain>& c) { return std::shared_ptr<Policy>(c, c->policy()); },
          "The replay policy to run executions under (keeps the chain alive).")
      .def(
          "set_start",
          [](MHChain& c, const PyTraceBatch& b, uint32_t trace) {
            if (!b.batch || trace >= b.batch->num_traces())
              throw py::index_error("trace " + std::to_string(trace) + " is not in the batch");
            c.set_start(b.batch, trace);
          },
          py::arg("batch"), py::arg("trace"))
      .def("initial_index", &MHChain::initial_index)
      .def("prepare_initial", &MHChain::prepare_initial)
      .def("offer_initial",
           [](MHChain& c, PyTraceBatch& b, int code) { return c.offer_initial(one_trace(b), error_code(code)); })
      .def("prepare", &MHChain::prepare)
      .def("finish", [](MHChain& c, PyTraceBatch& b, int code) { return c.finish(one_trace(b), error_code(code)); },
           "Takes the executed proposal (the batch's contents may be swapped with the state).")
      .def("take_output", [](MHChain& c) { return PyTraceBatch{c.take_output()}; })
      .def_readwrite("target_steps", &MHChain::target_steps)
      .def_property_readonly("started", &MHChain::started)
      .def_property_readonly("num_sites", &MHChain::num_sites)
      .def_property_readonly("steps", &MHChain::steps)
      .def_property_readonly("accepted", &MHChain::accepted)
      .def_property_readonly("rejected_invalid", &MHChain::rejected_invalid)
      .def_property_readonly("errors", &MHChain::errors)
      .def_property_readonly("last_error", &MHChain::last_error)
      .def_property_readonly("last_error_code", [](const MHChain& c) { return int(c.last_error_code()); })
      .def_property_readonly("chain", &MHChain::chain_id);

  py::class_<NativeChains>(m, "MHNativeRunner")
      .def(py::init<uintptr_t, int, std::shared_ptr<Observations>, uint64_t>(), py::arg("entry"), py::arg("threads"),
           py::arg("observations"), py::arg("seed"))
      .def("initialize", &NativeChains::initialize, py::arg("chains"), py::arg("max_attempts"),
           py::arg("stop_on_error"))
      .def("run", &NativeChains::run, py::arg("chains"), py::arg("steps"), py::arg("stop_on_error"))
      .def_property_readonly("threads", &NativeChains::threads);
}

}  // namespace ppfast::python
