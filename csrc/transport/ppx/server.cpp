#include "server.hpp"

#include <sched.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "codec.hpp"
#include "core/address_table.hpp"

namespace ppfast {
const ppfast_api* local_api();  // api.cpp: the standalone (prior) table

namespace {

namespace px = ppfast::ppx;

constexpr const char* kSystemName = "ppfast (PPX 1.0.0)";
// Blocking receives wake up this often to honour stop_ppx() and the timeouts.
constexpr int kSliceMs = 100;

std::atomic<bool> g_stop{false};

using Clock = std::chrono::steady_clock;

long long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

/// One served connection: the REP socket, the current request and the state of the run.
class Session {
 public:
  Session(zmq::socket_t& socket, const PpxServeOptions& options) : socket_(socket), options_(options) {}

  /// Waits for the next request (at most `timeout_ms`, -1 forever) into request_.
  /// False on stop_ppx() or timeout.
  bool receive(int timeout_ms) {
    const auto start = Clock::now();
    if (options_.spin_us > 0) {
      const auto until = start + std::chrono::microseconds(options_.spin_us);
      do {
        if (socket_.recv(request_, zmq::recv_flags::dontwait)) return whole_request();
        sched_yield();
      } while (Clock::now() < until && !g_stop.load(std::memory_order_relaxed));
    }
    for (;;) {
      if (g_stop.load(std::memory_order_relaxed)) return false;
      try {
        if (socket_.recv(request_, zmq::recv_flags::none)) return whole_request();
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;  // a signal (SIGINT) interrupts the wait: check the stop flag
      }
      if (timeout_ms >= 0 && elapsed_ms(start) >= timeout_ms) return false;
    }
  }

  /// PPX requests are single frames. A REP socket must read every frame of a multipart
  /// request before it may reply (otherwise send() fails and the server used to exit), so
  /// the rest is read and dropped here, and decode() reports the request as malformed.
  bool whole_request() {
    multipart_ = false;
    zmq::message_t rest;
    while (request_.more()) {
      multipart_ = true;
      if (!socket_.recv(rest, zmq::recv_flags::dontwait)) break;  // frames arrive together
      if (!rest.more()) break;
    }
    return true;
  }

  void reply(px::Bytes b) { socket_.send(zmq::const_buffer(b.data, b.size), zmq::send_flags::none); }

  void log(const std::string& what) const {
    if (options_.log) std::fprintf(stderr, "ppfast ppx server: %s\n", what.c_str());
  }

  /// Handles request_ outside a run.
  void handle(const ppfast_model_info& model, const std::string& model_name) {
    const px::DecodeResult& r = decode();
    if (!r.ok()) {
      log(std::string("malformed request (") + px::error_code_name(r.code) + ": " + r.error +
          "); expected Handshake or Run; answering Reset");
      return reply(px::encode_reset(fbb_));
    }
    switch (r.message.type) {
      case px::Body::kHandshake:
        return reply(px::encode_handshake_result(fbb_, kSystemName, model_name));
      case px::Body::kRun:
        return run(model);
      case px::Body::kReset:
        return reply(px::encode_reset(fbb_));
      default:
        log(std::string("unexpected ") + px::body_name(r.message.type) +
            " outside a trace (expected Handshake or Run); answering Reset");
        return reply(px::encode_reset(fbb_));
    }
  }

  bool pending() const { return pending_; }
  void clear_pending() { pending_ = false; }
  uint64_t traces() const { return traces_; }

  // ---- the C ABI while a trace runs ------------------------------------------------

  double sample(const ppfast_dist& d, uint32_t address, uint32_t name, uint32_t flags, double* out) {
    for (uint32_t i = 0; i < d.size; ++i) out[i] = std::nan("");
    if (stopped_ || !within_record_limit(address)) return out[0];
    px::DistView v;
    if (!to_ppx(d, address, "sample", v)) return out[0];
    const px::MessageView* m = call(px::encode_sample(fbb_, name_of(address), name_of(name), v,
                                                      (flags & PPFAST_CONTROL) != 0, (flags & PPFAST_REPLACE) != 0),
                                    px::Body::kSampleResult, address);
    if (!m) return out[0];
    if (m->value.size != d.size) {
      abort_with_reset("SampleResult for address '" + name_of(address) + "' has " + std::to_string(m->value.size) +
                       " values, its " + px::dist_name(px::DistKind(d.kind)) + " has " + std::to_string(d.size));
      return out[0];
    }
    std::memcpy(out, m->value.data, d.size * sizeof(double));
    return out[0];
  }

  double observe(const ppfast_dist& d, uint32_t address, uint32_t name, const double* value, uint32_t n) {
    if (stopped_ || !within_record_limit(address)) return 0;
    px::DistView v;
    if (!to_ppx(d, address, "observe", v)) return 0;
    int32_t shape = static_cast<int32_t>(n);
    px::TensorView t = value && n ? (n == 1 ? px::TensorView::scalar(value) : px::TensorView::of(value, n, &shape, 1))
                                  : px::TensorView{};
    call(px::encode_observe(fbb_, name_of(address), name_of(name), v, t), px::Body::kObserveResult, address);
    return 0;  // the engine keeps the likelihood
  }

  void tag(uint32_t address, uint32_t name, const double* value, uint32_t n) {
    if (stopped_ || !within_record_limit(address)) return;
    int32_t shape = static_cast<int32_t>(n);
    px::TensorView t = value && n ? (n == 1 ? px::TensorView::scalar(value) : px::TensorView::of(value, n, &shape, 1))
                                  : px::TensorView{};
    call(px::encode_tag(fbb_, name_of(address), name_of(name), t), px::Body::kTagResult, address);
  }

  // PPX has no factor message: an observe of Exponential(rate = e^lp) at 0 has
  // log-density exactly lp, for PyProb as for ppfast.
  void factor(double log_prob) {
    if (stopped_) return;
    const double rate = std::exp(log_prob), zero = 0.0;
    const double params[1] = {rate};
    observe(ppfast_dist{PPFAST_EXPONENTIAL, 1, 1, params}, factor_address(), 0, &zero, 1);
  }

  int failed() const { return stopped_ || failed_; }

  void fail(const char* message) {
    if (failed_ || stopped_) return;
    failed_ = true;
    error_ = message ? message : "simulator error";
  }

 private:
  const px::DecodeResult& decode() {
    if (multipart_) {
      decoded_ = px::DecodeResult{};
      decoded_.code = px::ErrorCode::kVerificationFailed;
      decoded_.error = "a multipart ZeroMQ message (PPX messages are single frames)";
      return decoded_;
    }
    decoded_ = decoder_.decode(static_cast<const uint8_t*>(request_.data()), request_.size());
    return decoded_;
  }

  /// Counts one more Sample / Observe / Tag of the current trace; past the limit the
  /// trace is abandoned with Reset (a simulator in a runaway loop).
  bool within_record_limit(uint32_t address) {
    if (!options_.max_trace_records || ++records_ <= options_.max_trace_records) return true;
    abort_with_reset("the simulator made more than " + std::to_string(options_.max_trace_records) +
                     " sample / observe / tag calls in one trace (max_trace_records; last at address '" +
                     name_of(address) + "')");
    return false;
  }

  const std::string& name_of(uint32_t id) {
    if (id >= names_.size()) names_.resize(id + 1), known_.resize(id + 1, 0);
    if (!known_[id]) {
      names_[id] = AddressTable::global().name(id);
      known_[id] = 1;
    }
    return names_[id];
  }

  uint32_t factor_address() {
    if (!factor_id_) factor_id_ = AddressTable::global().intern("ppfast_factor");
    return factor_id_;
  }

  /// A ppfast distribution as PPX tensors over its parameters (no copy).
  bool to_ppx(const ppfast_dist& d, uint32_t address, const char* site, px::DistView& v) {
    const px::DistKind kind = px::DistKind(d.kind);
    const size_t np = px::dist_param_count(kind);
    if (np == 0 || d.kind > px::kMaxDistKind) {
      abort_with_reset(std::string("the ") + site + " at address '" + name_of(address) + "' uses a distribution (kind " +
                       std::to_string(d.kind) + ") that PPX 1.0.0 cannot express (Normal ... Weibull only)");
      return false;
    }
    v.kind = kind;
    v.num_params = np;
    if (kind == px::DistKind::kCategorical) {
      v.params[0] = px::TensorView::vector(d.params, d.nparams, &shapes_[0]);
      return true;
    }
    if (d.size == 0 || d.nparams != np * d.size) {
      abort_with_reset(std::string("the ") + site + " at address '" + name_of(address) + "' has " +
                       std::to_string(d.nparams) + " parameters for " + std::to_string(d.size) + " values of a " +
                       px::dist_name(kind) + " (expected " + std::to_string(np * d.size) + ")");
      return false;
    }
    for (size_t i = 0; i < np; ++i) {
      const double* p = d.params + i * d.size;
      v.params[i] = d.size == 1 ? px::TensorView::scalar(p) : px::TensorView::vector(p, d.size, &shapes_[i]);
    }
    return true;
  }

  /// Replies with `b` (a Sample / Observe / Tag) and returns the engine's answer if it is
  /// an `expected`; otherwise ends the trace (nullptr) after answering or keeping the
  /// request for the main loop.
  const px::MessageView* call(px::Bytes b, px::Body expected, uint32_t address) {
    reply(b);
    if (!receive(options_.answer_timeout_ms)) {
      if (!g_stop.load())
        log("no " + std::string(px::body_name(expected)) + " for address '" + name_of(address) + "' within " +
            std::to_string(options_.answer_timeout_ms) + " ms; abandoning the trace");
      stopped_ = true;
      return nullptr;
    }
    const px::DecodeResult& r = decode();
    if (!r.ok()) {
      abort_with_reset(std::string("malformed request (") + px::error_code_name(r.code) + ": " + r.error +
                       "); expected " + px::body_name(expected) + " for address '" + name_of(address) + "'");
      return nullptr;
    }
    if (r.message.type == expected) return &r.message;
    if (r.message.type == px::Body::kHandshake || r.message.type == px::Body::kRun) {
      // An engine started over (e.g. it reconnected after an error): the trace ends here
      // and the main loop answers this request.
      log(std::string("got ") + px::body_name(r.message.type) + " while expecting " + px::body_name(expected) +
          " for address '" + name_of(address) + "'; abandoning the trace");
      stopped_ = true;
      pending_ = true;
      return nullptr;
    }
    abort_with_reset(std::string("out of order: expected ") + px::body_name(expected) + " for address '" +
                     name_of(address) + "', got " + px::body_name(r.message.type));
    return nullptr;
  }

  void abort_with_reset(const std::string& why) {
    log(why + "; answering Reset and abandoning the trace");
    reply(px::encode_reset(fbb_));
    stopped_ = true;
  }

  void run(const ppfast_model_info& model) {
    stopped_ = failed_ = false;
    records_ = 0;
    error_.clear();
    double result = std::nan("");
    try {
      result = model.run();
    } catch (const std::exception& e) {
      if (!stopped_) fail((std::string("simulator threw: ") + e.what()).c_str());
    } catch (...) {
      if (!stopped_) fail("simulator threw a non-standard exception");
    }
    if (stopped_) return;  // already answered, or the main loop answers the pending request
    if (failed_) {
      // PPX cannot carry an error: Reset is the one way to refuse the trace.
      log("the simulator failed: " + error_ + "; answering Reset");
      return reply(px::encode_reset(fbb_));
    }
    ++traces_;
    reply(px::encode_run_result(fbb_, px::TensorView::scalar(&result)));
  }

  zmq::socket_t& socket_;
  const PpxServeOptions& options_;
  zmq::message_t request_;
  px::Decoder decoder_;
  px::DecodeResult decoded_;
  flatbuffers::FlatBufferBuilder fbb_{1024};
  std::deque<std::string> names_;  // a deque: growing it keeps references from name_of() valid
  std::vector<uint8_t> known_;
  int32_t shapes_[px::kMaxDistParams] = {0, 0};
  uint32_t factor_id_ = 0;
  bool stopped_ = false;  // the trace was abandoned (protocol problem or stop): answer NaN, send nothing
  bool failed_ = false;   // the simulator reported a failure (fail() or an exception)
  bool pending_ = false;  // request_ holds a request for the main loop
  bool multipart_ = false;  // request_ was the first frame of a multipart message
  uint64_t records_ = 0;    // Sample / Observe / Tag messages of the current trace
  std::string error_;
  uint64_t traces_ = 0;
};

thread_local Session* t_session = nullptr;

uint32_t srv_intern(const char* s) { return local_api()->intern(s); }
double srv_sample(const ppfast_dist* d, uint32_t address, uint32_t name, uint32_t flags, double* out) {
  if (Session* s = t_session) return s->sample(*d, address, name, flags, out);
  return local_api()->sample(d, address, name, flags, out);
}
double srv_observe(const ppfast_dist* d, uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (Session* s = t_session) return s->observe(*d, address, name, value, n);
  return local_api()->observe(d, address, name, value, n);
}
void srv_tag(uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (Session* s = t_session) return s->tag(address, name, value, n);
  local_api()->tag(address, name, value, n);
}
void srv_factor(double log_prob) {
  if (Session* s = t_session) return s->factor(log_prob);
  local_api()->factor(log_prob);
}
int srv_failed() {
  if (Session* s = t_session) return s->failed();
  return local_api()->failed();
}
void srv_fail(const char* message) {
  if (Session* s = t_session) return s->fail(message);
  local_api()->fail(message);
}
void srv_locate(uint32_t address, const char* location) { local_api()->locate(address, location); }

const ppfast_api kPpxApi{PPFAST_ABI_VERSION, srv_intern, srv_sample, srv_observe, srv_tag,
                         srv_factor,         srv_failed, srv_fail,   srv_locate};

/// Binds `address`; on failure logs and returns false.
bool bind(zmq::socket_t& socket, const std::string& address, const PpxServeOptions& options) {
  try {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, kSliceMs);
    if (options.max_message_bytes > 0) socket.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
    socket.bind(address);
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "ppfast ppx server: cannot bind '%s': %s (expected e.g. tcp://*:5555 or ipc://@name)\n",
                 address.c_str(), e.what());
    return false;
  }
  if (options.on_ready) options.on_ready(socket.get(zmq::sockopt::last_endpoint));
  return true;
}

struct SessionScope {
  explicit SessionScope(Session* s) : previous(t_session) { t_session = s; }
  ~SessionScope() { t_session = previous; }
  Session* previous;
};

}  // namespace

void stop_ppx() noexcept { g_stop.store(true); }

int serve_ppx(const std::string& address, const ppfast_model_info* model, const PpxServeOptions& options) {
  if (!model || !model->run) {
    std::fprintf(stderr, "ppfast ppx server: no model to serve\n");
    return 2;
  }
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::rep);
  if (!bind(socket, address, options)) return 2;
  const std::string model_name = options.model_name.empty() ? (model->name ? model->name : "") : options.model_name;

  // The simulator's calls reach this connection (they may come from the model's own
  // copy of the C ABI when it was built as a separate library).
  const ppfast_api* previous = ppfast_current_api();
  ppfast_bind(&kPpxApi);
  if (model->bind && model->bind != &ppfast_bind) model->bind(&kPpxApi);

  Session session(socket, options);
  SessionScope scope(&session);
  int status = 0;
  try {
    while (!g_stop.load()) {
      if (!session.pending()) {
        if (!session.receive(options.idle_timeout_ms)) break;
      }
      session.clear_pending();
      session.handle(*model, model_name);
      if (options.max_traces && session.traces() >= options.max_traces) break;
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "ppfast ppx server: ZeroMQ error: %s\n", e.what());
    status = 1;
  }
  if (model->bind && model->bind != &ppfast_bind) model->bind(previous);
  ppfast_bind(previous);
  return status;
}

int serve_ppx(const std::string& address, ppfast_model_fn run, const std::string& model_name,
              const PpxServeOptions& options) {
  const ppfast_model_info info{PPFAST_ABI_VERSION, model_name.c_str(), run, nullptr, 0};
  return serve_ppx(address, &info, options);
}

int serve_echo(const std::string& address, const PpxServeOptions& options) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::rep);
  if (!bind(socket, address, options)) return 2;
  zmq::message_t message;
  auto idle_since = Clock::now();
  try {
    while (!g_stop.load()) {
      bool got = false;
      try {
        got = socket.recv(message, zmq::recv_flags::none).has_value();
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
      if (!got) {
        if (options.idle_timeout_ms >= 0 && elapsed_ms(idle_since) >= options.idle_timeout_ms) break;
        continue;
      }
      idle_since = Clock::now();
      socket.send(message, zmq::send_flags::none);
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "ppfast echo server: ZeroMQ error: %s\n", e.what());
    return 1;
  }
  return 0;
}

namespace {

void on_stop_signal(int) { stop_ppx(); }

void usage(const char* exe, const char* model) {
  std::fprintf(stderr,
               "usage: %s [--ppx] ADDRESS [options]\n"
               "Serves the simulator '%s' over PPX 1.0.0 (ZeroMQ REP) for PyProb or ppfast.\n"
               "  ADDRESS               e.g. tcp://*:5555 or ipc://@name\n"
               "  --model-name NAME     name announced in the HandshakeResult\n"
               "  --max-traces N        exit after N traces\n"
               "  --idle-timeout S      exit after S seconds without a request\n"
               "  --answer-timeout S    abandon a trace after S seconds without the engine's answer\n"
               "  --spin-us N           poll N microseconds for the next message before sleeping\n"
               "  --max-message-bytes N drop a connection that sends a message over N bytes (default 256 MiB)\n"
               "  --max-trace-records N abandon a trace after N sample/observe/tag calls (default 1e7; 0: none)\n"
               "  --echo                serve a bare ZeroMQ echo instead (benchmark floor)\n"
               "  --quiet               do not log rejected requests\n",
               exe, model);
}

bool parse_seconds(const char* text, int* ms) {
  char* end = nullptr;
  const double s = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(s >= 0) || s > 1e6) return false;
  *ms = static_cast<int>(s * 1000.0);
  return true;
}

}  // namespace

int ppx_server_main(int argc, char** argv, const ppfast_model_info* model) {
  const char* exe = argc > 0 ? argv[0] : "simulator";
  const char* model_label = model && model->name ? model->name : "?";
  PpxServeOptions options;
  std::string address;
  bool echo = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "-h" || a == "--help") {
      usage(exe, model_label);
      return 0;
    } else if (a == "--ppx" && has_value) {
      address = argv[++i];
    } else if (a == "--model-name" && has_value) {
      options.model_name = argv[++i];
    } else if (a == "--max-traces" && has_value) {
      char* end = nullptr;
      options.max_traces = std::strtoull(argv[++i], &end, 10);
      if (*end != '\0') return usage(exe, model_label), 2;
    } else if (a == "--idle-timeout" && has_value) {
      if (!parse_seconds(argv[++i], &options.idle_timeout_ms)) return usage(exe, model_label), 2;
    } else if (a == "--answer-timeout" && has_value) {
      if (!parse_seconds(argv[++i], &options.answer_timeout_ms)) return usage(exe, model_label), 2;
    } else if (a == "--spin-us" && has_value) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < 0 || v > 1000000) return usage(exe, model_label), 2;
      options.spin_us = static_cast<int>(v);
    } else if ((a == "--max-message-bytes" || a == "--max-trace-records") && has_value) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(argv[++i], &end, 10);
      if (*end != '\0' || argv[i][0] == '-') return usage(exe, model_label), 2;
      if (a == "--max-trace-records") options.max_trace_records = v;
      else if (v == 0 || v > (1ull << 62)) return usage(exe, model_label), 2;
      else options.max_message_bytes = static_cast<int64_t>(v);
    } else if (a == "--echo") {
      echo = true;
    } else if (a == "--quiet") {
      options.log = false;
    } else if (!a.empty() && a[0] != '-' && address.empty()) {
      address = a;
    } else {
      std::fprintf(stderr, "%s: unknown or incomplete argument '%s'\n", exe, a.c_str());
      usage(exe, model_label);
      return 2;
    }
  }
  if (address.empty()) {
    usage(exe, model_label);
    return 2;
  }
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  options.on_ready = [](const std::string& endpoint) {
    std::printf("ready %s\n", endpoint.c_str());
    std::fflush(stdout);
  };
  return echo ? serve_echo(address, options) : serve_ppx(address, model, options);
}

}  // namespace ppfast
