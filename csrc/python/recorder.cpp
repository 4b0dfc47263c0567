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
  bool in_trace() const { return rec_->in_trace(); }
  /// Drops the trace in progress (interrupted part-way).
  void discard() {
    current_recorder() = nullptr;
    rec_->discard_trace();
  }
  /// Policy for controlled sites (inflated prior, IC proposals); kept across take().
  void set_policy(std::shared_ptr<Policy> p) {
    policy_ = std::move(p);
    rec_->set_policy(policy_.get());
  }

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
    rec_ = std::make_unique<Recorder>(*batch_, obs_.get(), seed_, policy_.get());
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

 public:
  Recorder& recorder() { return *rec_; }

 private:
  std::shared_ptr<Observations> obs_;
  std::shared_ptr<TraceBatch> batch_;
  std::unique_ptr<Recorder> rec_;
  uint64_t seed_;
  std::shared_ptr<Policy> policy_;
};

// --- Fast path --------------------------------------------------------------------
// The per-site calls of a Python model (begin, end, scalar sample / observe) as
// METH_FASTCALL builtins: pybind11's generic argument conversion costs several times the
// recorder's own work.  `self` is a capsule holding the PyRecorder and a reference to its
// Python object.

struct FastSelf {
  PyRecorder* rec;
  PyObject* owner;
};

PyRecorder* fast_self(PyObject* capsule) {
  return static_cast<FastSelf*>(PyCapsule_GetPointer(capsule, "ppfast.fast"))->rec;
}

bool fast_args(const char* fn, Py_ssize_t nargs, Py_ssize_t expected) {
  if (nargs == expected) return true;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, expected, nargs);
  return false;
}

PyObject* fast_failed(const Recorder& r) {
  // Route through the one translator (register_errors) by raising the C++ error there.
  try {
    throw RecorderError(r.error_code(), r.error());
  } catch (...) {
    py::detail::try_translate_exceptions();
  }
  return nullptr;
}

PyObject* fast_begin(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!fast_args("begin", nargs, 1)) return nullptr;
  unsigned long long i = PyLong_AsUnsignedLongLong(args[0]);
  if (PyErr_Occurred()) return nullptr;
  fast_self(self)->begin(i);
  Py_RETURN_NONE;
}

PyObject* fast_end(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!fast_args("end", nargs, 1)) return nullptr;
  double v = PyFloat_AsDouble(args[0]);
  if (v == -1.0 && PyErr_Occurred()) return nullptr;
  return PyBool_FromLong(fast_self(self)->end(v));
}

// sample(kind, a, b, address, name, flags) -> float
PyObject* fast_sample(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!fast_args("sample", nargs, 6)) return nullptr;
  long kind = PyLong_AsLong(args[0]);
  double params[2] = {PyFloat_AsDouble(args[1]), PyFloat_AsDouble(args[2])};
  unsigned long address = PyLong_AsUnsignedLong(args[3]);
  unsigned long name = PyLong_AsUnsignedLong(args[4]);
  unsigned long flags = PyLong_AsUnsignedLong(args[5]);
  if (PyErr_Occurred()) return nullptr;
  Recorder& r = fast_self(self)->recorder();
  const uint32_t np = (kind == 4 || kind == 5 || kind == 7) ? 1 : 2;
  double out;
  r.sample(Dist{DistKind(kind), 1, np, params}, uint32_t(address), uint32_t(name), uint32_t(flags), &out);
  if (r.failed()) return fast_failed(r);
  return PyFloat_FromDouble(out);
}

// observe(kind, a, b, address, name, value or None) -> float (log-likelihood term)
PyObject* fast_observe(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!fast_args("observe", nargs, 6)) return nullptr;
  long kind = PyLong_AsLong(args[0]);
  double params[2] = {PyFloat_AsDouble(args[1]), PyFloat_AsDouble(args[2])};
  unsigned long address = PyLong_AsUnsignedLong(args[3]);
  unsigned long name = PyLong_AsUnsignedLong(args[4]);
  if (PyErr_Occurred()) return nullptr;
  Recorder& r = fast_self(self)->recorder();
  const uint32_t np = (kind == 4 || kind == 5 || kind == 7) ? 1 : 2;
  Dist d{DistKind(kind), 1, np, params};
  double lp;
  if (args[5] == Py_None) {
    lp = r.observe(d, uint32_t(address), uint32_t(name), nullptr, 0);
  } else if (PyFloat_Check(args[5]) || PyLong_Check(args[5])) {
    double v = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred()) return nullptr;
    lp = r.observe(d, uint32_t(address), uint32_t(name), &v, 1);
  } else {
    try {
      Array v = py::reinterpret_borrow<py::object>(args[5]);
      lp = r.observe(d, uint32_t(address), uint32_t(name), v.data(), static_cast<uint32_t>(v.size()));
    } catch (...) {
      py::detail::try_translate_exceptions();
      return nullptr;
    }
  }
  if (r.failed()) return fast_failed(r);
  return PyFloat_FromDouble(lp);
}

PyMethodDef kFastDefs[] = {
    {"begin", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(fast_begin)), METH_FASTCALL,
     "begin(trace_index)"},
    {"end", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(fast_end)), METH_FASTCALL,
     "end(result) -> ok"},
    {"sample", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(fast_sample)), METH_FASTCALL,
     "sample(kind, a, b, address, name, flags) -> float"},
    {"observe", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(fast_observe)), METH_FASTCALL,
     "observe(kind, a, b, address, name, value) -> float"},
};

py::tuple fast_methods(py::object owner) {
  auto* holder = new FastSelf{owner.cast<PyRecorder*>(), owner.inc_ref().ptr()};
  py::capsule cap(holder, "ppfast.fast", [](PyObject* c) {
    auto* h = static_cast<FastSelf*>(PyCapsule_GetPointer(c, "ppfast.fast"));
    Py_XDECREF(h->owner);
    delete h;
  });
  py::tuple out(std::size(kFastDefs));
  for (size_t i = 0; i < std::size(kFastDefs); ++i)
    out[i] = py::reinterpret_steal<py::object>(PyCFunction_New(&kFastDefs[i], cap.ptr()));
  return out;
}

}  // namespace

void register_recorder(py::module_& m) {
  py::class_<Observations, std::shared_ptr<Observations>>(m, "Observations")
      .def(py::init(&make_observations), py::arg("values"), py::arg("required"));
  py::class_<PyRecorder>(m, "Recorder")
      .def(py::init<uint64_t, std::shared_ptr<Observations>>())
      .def("begin", &PyRecorder::begin)
      .def("end", &PyRecorder::end)
      .def("fail", &PyRecorder::fail)
      .def("set_policy", &PyRecorder::set_policy)
      .def("sample", &PyRecorder::sample)
      .def("sample_array", &PyRecorder::sample_array)
      .def("observe", &PyRecorder::observe)
      .def("observe_array", &PyRecorder::observe_array)
      .def("tag", &PyRecorder::tag)
      .def("factor", &PyRecorder::factor)
      .def_property_readonly("failed", &PyRecorder::failed)
      .def_property_readonly("error", &PyRecorder::error)
      .def("take", &PyRecorder::take)
      .def("discard", &PyRecorder::discard, "Drops the trace in progress (interrupted part-way).")
      .def_property_readonly("in_trace", &PyRecorder::in_trace)
      .def("fast", &fast_methods, "(begin, end, sample, observe) as fast builtins bound to this recorder");
}

}  // namespace ppfast::python
