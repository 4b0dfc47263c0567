// The recorder as seen by Python models: ppfast.sample / observe / tag in a Python
// forward() land here, one call per site, on the C++ recorder.
#include "core/address_table.hpp"
#include "python/bindings.hpp"

namespace ppfast::python {

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::shared_ptr<Observations> make_observations(const py::dict& values, bool required) {
  auto obs = std::make_shared<Observations>();
  obs->required = required;
  for (auto item : values) {
    auto name = item.first.cast<uint32_t>();
    Array a = py::reinterpret_borrow<py::object>(item.second);
    obs->set(name, std::vector<double>(a.data(), a.data() + a.size()));
  }
  return obs;
}

namespace {

class PyRecorder {
 public:
  PyRecorder(uint64_t seed, std::shared_ptr<Observations> obs)
      : obs_(std::move(obs)), batch_(BatchPool::global().acquire()), rec_(std::make_unique<Recorder>(*batch_, obs_.get(), seed)), seed_(seed) {}
  ~PyRecorder() {
    if (current_recorder() == rec_.get()) current_recorder() = nullptr;
  }

  void begin(uint64_t index) {
    rec_->begin_trace(index);
    current_recorder() = rec_.get();  // C ABI calls from this thread (numba, ctypes) land here too
  }
  bool end(double result) {
    current_recorder() = nullptr;
    return rec_->end_trace(result);
  }
  void fail(const std::string& message) { rec_->fail(message, ErrorCode::Simulator); }

  double sample(int kind, double a, double b, uint32_t address, uint32_t name, uint32_t flags) {
    double params[2] = {a, b};
    double out;
    rec_->sample(Dist{DistKind(kind), 1, nparams(kind), params}, address, name, flags, &out);
    raise_if_failed();
    return out;
  }
  py::object sample_array(int kind, uint32_t size, const Array& params, uint32_t address, uint32_t name,
                          uint32_t flags) {
    Array out(size);
    rec_->sample(Dist{DistKind(kind), size, static_cast<uint32_t>(params.size()), params.data()}, address, name,
                 flags, out.mutable_data());
    raise_if_failed();
    return std::move(out);
  }
  double observe(int kind, double a, double b, uint32_t address, uint32_t name, py::object value) {
    double params[2] = {a, b};
    return observe_dist(Dist{DistKind(kind), 1, nparams(kind), params}, address, name, value);
  }
  double observe_array(int kind, uint32_t size, const Array& params, uint32_t address, uint32_t name,
                       py::object value) {
    return observe_dist(Dist{DistKind(kind), size, static_cast<uint32_t>(params.size()), params.data()}, address,
                        name, value);
  }
  void tag(uint32_t address, uint32_t name, const Array& value) {
    rec_->tag(address, name, value.data(), static_cast<uint32_t>(value.size()));
  }
  void factor(double lp) {
    rec_->factor(lp);
    raise_if_failed();
  }
  bool failed() const { return rec_->failed(); }
  std::string error() const { return rec_->error(); }

  /// Hands the finished traces to Python and starts a fresh batch.
  PyTraceBatch take() {
    PyTraceBatch out{batch_};
    batch_ = BatchPool::global().acquire();
    rec_ = std::make_unique<Recorder>(*batch_, obs_.get(), seed_);
    return out;
  }

 private:
  static uint32_t nparams(int kind) {
    switch (DistKind(kind)) {
      case DistKind::Poisson:
      case DistKind::Bernoulli:
      case DistKind::Exponential:
        return 1;
      default:
        return 2;
    }
  }
  double observe_dist(const Dist& d, uint32_t address, uint32_t name, const py::object& value) {
    double lp;
    if (value.is_none()) {
      lp = rec_->observe(d, address, name, nullptr, 0);
    } else {
      Array v = value;
      lp = rec_->observe(d, address, name, v.data(), static_cast<uint32_t>(v.size()));
    }
    raise_if_failed();
    return lp;
  }
  void raise_if_failed() const {
    if (rec_->failed()) throw RecorderError(rec_->error_code(), rec_->error());
  }

  std::shared_ptr<Observations> obs_;
  std::shared_ptr<TraceBatch> batch_;
  std::unique_ptr<Recorder> rec_;
  uint64_t seed_;
};

}  // namespace

void register_recorder(py::module_& m) {
  py::class_<Observations, std::shared_ptr<Observations>>(m, "Observations")
      .def(py::init(&make_observations), py::arg("values"), py::arg("required"));
  py::class_<PyRecorder>(m, "Recorder")
      .def(py::init<uint64_t, std::shared_ptr<Observations>>())
      .def("begin", &PyRecorder::begin)
      .def("end", &PyRecorder::end)
      .def("fail", &PyRecorder::fail)
      .def("sample", &PyRecorder::sample)
      .def("sample_array", &PyRecorder::sample_array)
      .def("observe", &PyRecorder::observe)
      .def("observe_array", &PyRecorder::observe_array)
      .def("tag", &PyRecorder::tag)
      .def("factor", &PyRecorder::factor)
      .def_property_readonly("failed", &PyRecorder::failed)
      .def_property_readonly("error", &PyRecorder::error)
      .def("take", &PyRecorder::take);
}

}  // namespace ppfast::python
