// PPX client for Python: ppfast.RemoteModel's engine.  Whole runs happen in C++ with the
// GIL released; Python gets finished trace batches and typed errors.
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "python/bindings.hpp"
#include "transport/ppx/client.hpp"
#include "transport/ppx/zmq_table.hpp"

namespace ppfast::python {
namespace {

namespace px = ppfast::ppx;

/// ZeroMQ comes from ppfast._zmq, loaded by ppfast.models.remote.load_zmq() on first use.
void require_zmq() {
  if (!px::zmq_bound())
    throw std::runtime_error("PPX: ZeroMQ is not loaded yet; call ppfast.models.remote.load_zmq() first");
}

const char* error_class(px::ClientErrorKind kind) {
  switch (kind) {
    case px::ClientErrorKind::kVersion: return "ProtocolVersionError";
    case px::ClientErrorKind::kTimeout: return "PeerTimeoutError";
    case px::ClientErrorKind::kPeerGone: return "PeerGoneError";
    default: return "ProtocolError";
  }
}

/// The message may quote bytes a peer sent: never fail on them.
py::object message_text(const char* what) {
  return py::reinterpret_steal<py::object>(
      PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace"));
}

/// Forwards to a policy owned by Python (kept alive by the shared_ptr).
class SharedPolicy : public Policy {
 public:
  explicit SharedPolicy(std::shared_ptr<Policy> p) : p_(std::move(p)) {}
  void begin_trace(uint64_t trace) override { p_->begin_trace(trace); }
  bool propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out, double* log_q) override {
    return p_->propose(address, instance, d, rng, out, log_q);
  }

 private:
  std::shared_ptr<Policy> p_;
};

class PpxClient {
 public:
  PpxClient(std::vector<std::string> addresses, int timeout_ms, std::string system_name, int spin_us,
            int64_t max_message_bytes, uint64_t max_trace_records)
      : client_((require_zmq(), std::move(addresses)),
                make_options(timeout_ms, std::move(system_name), spin_us, max_message_bytes, max_trace_records)) {}

  void connect() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    client_.connect();
  }

  /// (batch, None) or (batch of the traces finished, (error class name, message)).
  py::tuple run(uint64_t seed, uint64_t first, uint64_t count, std::shared_ptr<Observations> obs,
                std::vector<std::shared_ptr<Policy>> policies, bool skip_errors) {
    if (!policies.empty() && policies.size() != client_.size())
      throw py::value_error("PpxClient.run: " + std::to_string(policies.size()) + " policies for " +
                            std::to_string(client_.size()) + " connections (expected one per connection, or none)");
    PolicyFactory factory;
    if (!policies.empty())
      factory = [&policies](int worker) -> std::unique_ptr<Policy> {
        auto& p = policies[static_cast<size_t>(worker)];
        return p ? std::make_unique<SharedPolicy>(p) : nullptr;
      };
    PyTraceBatch out{BatchPool::global().acquire()};
    std::optional<px::ClientError> error;
    std::exception_ptr failure;
    bool raised = false;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);  // one run at a time on these sockets
      // The run goes on another thread so that this one can watch for Ctrl-C.
      std::mutex m;
      std::condition_variable finished;
      bool done = false;
      std::thread runner([&] {
        try {
          error = client_.run(seed, first, count, obs.get(), *out.batch, factory, skip_errors);
        } catch (const px::Stopped&) {
        } catch (...) {
          failure = std::current_exception();
        }
        std::lock_guard<std::mutex> l(m);
        done = true;
        finished.notify_all();
      });
      std::unique_lock<std::mutex> l(m);
      while (!finished.wait_for(l, std::chrono::milliseconds(5), [&] { return done; })) {
        if (raised) continue;
        l.unlock();
        {
          py::gil_scoped_acquire gil;
          if (PyErr_CheckSignals() != 0) {
            raised = true;  // the handler's exception stays set until we are back
            client_.stop();
          }
        }
        l.lock();
      }
      l.unlock();
      runner.join();
    }
    if (raised) raise_with_partial(std::move(out));
    if (failure) std::rethrow_exception(failure);
    if (!error) return py::make_tuple(out, py::none());
    return py::make_tuple(out, py::make_tuple(error_class(error->kind), message_text(error->what())));
  }

  void close() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    client_.close();
  }

  py::list peers() const {
    py::list out;
    for (size_t i = 0; i < client_.size(); ++i) {
      const px::Connection& c = client_.connection(i);
      py::dict d;
      d["address"] = c.address();
      d["connected"] = c.connected();
      d["system_name"] = c.system_name();
      d["model_name"] = c.model_name();
      d["round_trips"] = c.stats().round_trips;
      d["traces"] = c.stats().traces;
      d["connects"] = c.stats().reconnects;
      out.append(d);
    }
    return out;
  }

  size_t size() const { return client_.size(); }

 private:
  static px::ClientOptions make_options(int timeout_ms, std::string system_name, int spin_us,
                                       int64_t max_message_bytes, uint64_t max_trace_records) {
    if (timeout_ms <= 0) throw py::value_error("PPX timeout must be > 0 ms, got " + std::to_string(timeout_ms));
    if (spin_us < 0) throw py::value_error("PPX spin must be >= 0 us, got " + std::to_string(spin_us));
    if (max_message_bytes <= 0)
      throw py::value_error("PPX max_message_bytes must be > 0, got " + std::to_string(max_message_bytes));
    px::ClientOptions o;
    o.max_message_bytes = max_message_bytes;
    o.max_trace_records = max_trace_records;
    o.timeout_ms = timeout_ms;
    o.spin_us = spin_us;
    if (!system_name.empty()) o.system_name = std::move(system_name);
    return o;
  }

  px::Client client_;
  std::mutex mutex_;
};

}  // namespace

void register_ppx(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const px::ClientError& e) {
      py::object type = py::module_::import("ppfast.errors").attr(error_class(e.kind));
      PyErr_SetObject(type.ptr(), message_text(e.what()).ptr());
    }
  });

  py::class_<PpxClient>(m, "PpxClient", "PPX engine side: REQ connections to PPX simulators.")
      .def(py::init<std::vector<std::string>, int, std::string, int, int64_t, uint64_t>(), py::arg("addresses"),
           py::arg("timeout_ms"), py::arg("system_name") = "", py::arg("spin_us") = 0,
           py::arg("max_message_bytes") = int64_t{256} << 20, py::arg("max_trace_records") = 10'000'000)
      .def("connect", &PpxClient::connect, "Handshakes with every peer not yet connected.")
      .def("run", &PpxClient::run, py::arg("seed"), py::arg("first"), py::arg("count"), py::arg("observations"),
           py::arg("policies") = std::vector<std::shared_ptr<Policy>>{}, py::arg("skip_errors") = false,
           "Traces [first, first + count): trace i uses RNG stream i of seed. Returns (batch, error): error is "
           "None or (class name in ppfast.errors, message), the batch then holding the traces finished.")
      .def("close", &PpxClient::close)
      .def_property_readonly("peers", &PpxClient::peers)
      .def("__len__", &PpxClient::size);

  m.def(
      "ppx_ping",
      [](const std::string& address, uint64_t count, size_t payload, int timeout_ms) {
        require_zmq();
        py::gil_scoped_release release;
        return px::ping(address, count, payload, timeout_ms);
      },
      py::arg("address"), py::arg("count"), py::arg("payload") = 64, py::arg("timeout_ms") = 10000,
      "Seconds for `count` bare ZeroMQ REQ/REP round trips against an echo server.");
  m.def(
      "ppx_bind_zmq",
      [](const py::capsule& table) {
        const char* name = table.name();
        if (!name || std::strcmp(name, "ppfast._zmq.table") != 0)
          throw py::type_error(std::string("ppx_bind_zmq: expected the capsule ppfast._zmq.table, got '") +
                               (name ? name : "(unnamed)") + "'");
        try {
          px::bind_zmq(table.get_pointer<px::ZmqTable>());
        } catch (const std::invalid_argument& e) {
          throw py::import_error(e.what());
        }
      },
      py::arg("table"), "Routes the PPX client's ZeroMQ calls to ppfast._zmq (which links libzmq).");
  m.def("ppx_zmq_bound", &px::zmq_bound, "True once ppx_bind_zmq has been called.");
  m.def(
      "ppx_protocol_version", [] { return std::string(px::kProtocolVersion); },
      "The PPX protocol version ppfast speaks.");
}

}  // namespace ppfast::python
