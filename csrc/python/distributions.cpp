// Distributions for standalone use from Python (Distribution.sample / log_prob).
#include <random>

#include "core/distributions.hpp"
#include "python/bindings.hpp"

namespace ppfast::python {
namespace {

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

Dist view(int kind, uint32_t size, const Array& params) {
  return Dist{DistKind(kind), size, static_cast<uint32_t>(params.size()), params.data()};
}

void check(const Dist& d) {
  std::string msg = validate(d);
  if (!msg.empty()) throw RecorderError(ErrorCode::InvalidDistribution, msg);
}

Rng& python_rng() {
  static Rng rng = [] {
    Rng r;
    std::random_device dev;
    r.seed((uint64_t(dev()) << 32) ^ dev(), 0);
    return r;
  }();
  return rng;
}

}  // namespace

void register_distributions(py::module_& m) {
  m.def("dist_validate", [](int kind, uint32_t size, const Array& params) { return validate(view(kind, size, params)); });
  m.def(
      "dist_sample",
      [](int kind, uint32_t size, const Array& params, size_t n, py::object seed) {
        Dist d = view(kind, size, params);
        check(d);
        Array out({n, size_t(size)});
        Rng local;
        Rng* rng = &python_rng();
        if (!seed.is_none()) {
          local.seed(seed.cast<uint64_t>(), 0);
          rng = &local;
        }
        double* o = out.mutable_data();
        for (size_t i = 0; i < n; ++i) {
          sample(d, *rng, o + i * size);
          if (!std::isfinite(log_prob(d, o + i * size)))
            throw py::value_error("a draw fell outside the support (" + std::to_string(o[i * size]) +
                                  "): the parameters are too extreme for double precision");
        }
        return out;
      },
      py::arg("kind"), py::arg("size"), py::arg("params"), py::arg("n"), py::arg("seed") = py::none());
  m.def("dist_log_prob", [](int kind, uint32_t size, const Array& params, const Array& values) {
    Dist d = view(kind, size, params);
    check(d);
    const size_t n = values.size() / size;
    if (n * size != size_t(values.size()))
      throw py::value_error("value has " + std::to_string(values.size()) + " elements, expected a multiple of " +
                            std::to_string(size));
    Array out(n);
    for (size_t i = 0; i < n; ++i) out.mutable_data()[i] = log_prob(d, values.data() + i * size);
    return out;
  });
  m.def("dist_log_prob_elements", [](int kind, uint32_t size, const Array& params, const Array& values) {
    // Per-element log-densities (PyProb's batch semantics) of an element-wise family:
    // `values` holds n * size elements; the result has shape (n, size).
    Dist d = view(kind, size, params);
    check(d);
    const int arrays = dist_num_param_arrays(d.kind);
    if (arrays < 1 || arrays > 4 || d.kind == DistKind::Categorical)
      throw py::value_error(std::string(dist_name(d.kind)) + " has no per-element log_prob");
    const size_t n = values.size() / size;
    if (n * size != size_t(values.size()))
      throw py::value_error("value has " + std::to_string(values.size()) + " elements, expected a multiple of " +
                            std::to_string(size));
    Array out({n, size_t(size)});
    double* o = out.mutable_data();
    const double* v = values.data();
    double p[4];
    for (uint32_t i = 0; i < size; ++i) {
      for (int j = 0; j < arrays; ++j) p[j] = params.data()[size_t(j) * size + i];
      const Dist element{d.kind, 1, uint32_t(arrays), p};
      for (size_t t = 0; t < n; ++t) o[t * size + i] = log_prob(element, v + t * size + i);
    }
    return out;
  });
  m.def("dist_moments", [](int kind, uint32_t size, const Array& params) {
    Dist d = view(kind, size, params);
    check(d);
    Array mu(size), sd(size);
    mean(d, mu.mutable_data());
    stddev(d, sd.mutable_data());
    return py::make_tuple(mu, sd);
  });
  m.def("dist_support", [](int kind, uint32_t size, const Array& params) {
    Dist d = view(kind, size, params);
    Array lo(size), hi(size);
    support(d, lo.mutable_data(), hi.mutable_data());
    return py::make_tuple(lo, hi);
  });
  m.def("dist_name", [](int kind) { return std::string(dist_name(DistKind(kind))); });
}

}  // namespace ppfast::python
