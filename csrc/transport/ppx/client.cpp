#include <cerrno>
#include "client.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <condition_variable>
#include <deque>
#include <optional>

#include <sched.h>
#include <zmq.h>

#include "core/address_table.hpp"

namespace ppfast::ppx {
namespace {

// A blocking receive wakes up this often to look for a disconnected peer, so a simulator
// that dies mid-trace is reported at once rather than after the whole timeout.
constexpr int kSliceMs = 50;
// A first connection that keeps being refused this long means nothing listens there.
constexpr int kNoPeerMs = 2000;

std::atomic<uint64_t> g_monitor_counter{0};

std::string shape_text(const TensorView& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.rank(); ++i) s += (i ? ", " : "") + std::to_string(t.dim(i));
  return s + "]";
}

}  // namespace

bool valid_utf8(std::string_view s) noexcept {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // No overlong forms, no surrogates, nothing past U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

bool parse_protocol_version(std::string_view name, int* major, int* minor, int* patch) {
  for (size_t at = name.find("PPX"); at != std::string_view::npos; at = name.find("PPX", at + 1)) {
    size_t i = at + 3;
    while (i < name.size() && (name[i] == ' ' || name[i] == 'v')) ++i;
    int parts[3] = {0, 0, 0};
    int n = 0;
    while (n < 3 && i < name.size() && name[i] >= '0' && name[i] <= '9') {
      int v = 0;
      while (i < name.size() && name[i] >= '0' && name[i] <= '9' && v < 100000) v = v * 10 + (name[i++] - '0');
      parts[n++] = v;
      if (n < 3 && i < name.size() && name[i] == '.') ++i;
      else break;
    }
    if (n >= 2) {
      *major = parts[0];
      *minor = parts[1];
      *patch = parts[2];
      return true;
    }
  }
  return false;
}

// --------------------------------------------------------------------------- Connection

Connection::Connection(zmq::context_t& context, std::string address, const ClientOptions& options)
    : context_(context), address_(std::move(address)), options_(options) {}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
  handshaken_ = false;
  try {
    if (socket_) {
      zmq_socket_monitor(socket_->handle(), nullptr, 0);
      socket_->close();
    }
    if (monitor_) monitor_->close();
  } catch (...) {  // closing never throws in practice; never let it escape
  }
  socket_.reset();
  monitor_.reset();
}

void Connection::open() {
  close();
  try {
    socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::req);
    // Linger 0: a request stuck to a dead peer must not hold the context at shutdown.
    socket_->set(zmq::sockopt::linger, 0);
    socket_->set(zmq::sockopt::rcvtimeo, std::min(kSliceMs, std::max(1, options_.timeout_ms)));
    socket_->set(zmq::sockopt::sndtimeo, std::max(1, options_.timeout_ms));
    if (options_.max_message_bytes > 0) socket_->set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
    monitor_endpoint_ = "inproc://ppfast-ppx-monitor-" + std::to_string(g_monitor_counter.fetch_add(1));
    ever_connected_ = refused_ = false;
    if (zmq_socket_monitor(socket_->handle(), monitor_endpoint_.c_str(),
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED) != 0)
      throw zmq::error_t();
    monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(monitor_endpoint_);
    socket_->connect(address_);
  } catch (const zmq::error_t& e) {
    close();
    throw ClientError(ClientErrorKind::kProtocol, "cannot connect a ZeroMQ REQ socket to '" + address_ +
                                                      "': " + e.what() +
                                                      " (expected an address like ipc://@name or tcp://host:port)");
  }
  ++stats_.reconnects;
}

bool Connection::peer_disconnected() noexcept {
  bool gone = false;
  try {
    zmq::message_t event, endpoint;
    while (monitor_ && monitor_->recv(event, zmq::recv_flags::dontwait)) {
      if (event.more()) (void)monitor_->recv(endpoint, zmq::recv_flags::dontwait);
      uint16_t id = 0;
      if (event.size() >= sizeof(id)) std::memcpy(&id, event.data(), sizeof(id));
      if (id == ZMQ_EVENT_DISCONNECTED) gone = true;
      if (id == ZMQ_EVENT_CONNECTED) ever_connected_ = true;
      if (id == ZMQ_EVENT_CONNECT_RETRIED) refused_ = true;
    }
  } catch (...) {
  }
  return gone;
}

std::string Connection::context(Body sent) const {
  std::string s = std::string("in reply to ") + body_name(sent);
  if (sent == Body::kSampleResult || sent == Body::kObserveResult || sent == Body::kTagResult)
    s += " for address '" + AddressTable::global().name(site_) + "'";
  if (sent != Body::kHandshake) s += " (trace " + std::to_string(trace_) + ")";
  return s;
}

void Connection::fail(ClientErrorKind kind, const std::string& what) {
  close();
  throw ClientError(kind, "PPX peer " + address_ + ": " + what);
}

const MessageView& Connection::exchange(Bytes request, Body sent, const char* expected) {
  // A disconnect reported before this request belongs to an earlier connection: the
  // REQ socket reconnects by itself, so only events during the wait below count.
  (void)peer_disconnected();
  try {
    if (!socket_->send(zmq::const_buffer(request.data, request.size), zmq::send_flags::none))
      fail(ClientErrorKind::kTimeout, std::string("could not send ") + body_name(sent) + " within " +
                                          std::to_string(options_.timeout_ms) + " ms (expected a connected peer)");
    const auto start = std::chrono::steady_clock::now();
    bool got = false;
    if (options_.spin_us > 0) {
      // Poll before sleeping: a fast simulator answers within tens of microseconds, and
      // a thread that never sleeps is not woken up (the wake-up is most of a round trip).
      const auto until = start + std::chrono::microseconds(options_.spin_us);
      while (!(got = socket_->recv(reply_, zmq::recv_flags::dontwait).has_value()) &&
             std::chrono::steady_clock::now() < until)
        sched_yield();
    }
    for (; !got;) {
      try {
        if (socket_->recv(reply_, zmq::recv_flags::none)) break;
      } catch (const zmq::error_t& e) {
        // A signal (e.g. SIGCHLD of an exiting simulator) interrupted the wait: the
        // checks below decide whether to go on waiting.
        if (e.num() != EINTR) throw;
      }
      if (options_.stop && options_.stop->load()) {
        close();  // the reply, if one comes, belongs to no one now: the next run reconnects
        throw Stopped();
      }
      if (peer_disconnected())
        fail(ClientErrorKind::kPeerGone, std::string("disconnected: expected ") + expected + " " + context(sent) +
                                             ", got no reply (did the simulator exit or crash? or did a message "
                                             "exceed a max_message_bytes limit: the simulator's, or this "
                                             "engine's of " +
                                             std::to_string(options_.max_message_bytes) + " bytes?)");
      const auto waited =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      if (!patient_ && !ever_connected_ && refused_ && waited >= std::min(kNoPeerMs, options_.timeout_ms))
        fail(ClientErrorKind::kPeerGone, "no simulator at " + address_ + ": nothing accepts connections there "
                                         "(is the simulator running and bound to this address?)");
      if (waited >= options_.timeout_ms)
        fail(ClientErrorKind::kTimeout, std::string("no reply within ") + std::to_string(options_.timeout_ms) +
                                            " ms: expected " + expected + " " + context(sent));
    }
  } catch (const zmq::error_t& e) {
    fail(ClientErrorKind::kProtocol, std::string("ZeroMQ error while exchanging ") + body_name(sent) + ": " +
                                         e.what());
  }
  ++stats_.round_trips;
  decoded_ = decoder_.decode(static_cast<const uint8_t*>(reply_.data()), reply_.size());
  if (!decoded_.ok())
    fail(ClientErrorKind::kProtocol, std::string("malformed reply (") + error_code_name(decoded_.code) + ": " +
                                         decoded_.error + "); expected " + expected + " " + context(sent));
  if (decoded_.message.type == Body::kReset)
    fail(ClientErrorKind::kProtocol, std::string("answered Reset; expected ") + expected + " " + context(sent) +
                                         ": the simulator rejected ppfast's " + body_name(sent) +
                                         " or gave up on the trace (see its log)");
  return decoded_.message;
}

void Connection::connect(bool patient) {
  if (handshaken_) return;
  patient_ = patient;
  open();
  trace_ = 0;
  const MessageView& m = exchange(encode_handshake(fbb_, options_.system_name), Body::kHandshake, "HandshakeResult");
  if (m.type != Body::kHandshakeResult)
    fail(ClientErrorKind::kProtocol, std::string("out of order: expected HandshakeResult in reply to Handshake, got ") +
                                         body_name(m.type));
  peer_system_.assign(m.system_name);
  peer_model_.assign(m.model_name);
  int major = 0, minor = 0, patch = 0;
  // pyprob_cpp announces no PPX version ("pyprob_cpp 1.0.0 (...)"): it speaks 1.0.0.
  if (parse_protocol_version(m.system_name, &major, &minor, &patch) && (major != 1 || minor != 0))
    fail(ClientErrorKind::kVersion, "speaks PPX " + std::to_string(major) + "." + std::to_string(minor) + "." +
                                        std::to_string(patch) + " (system '" + peer_system_ +
                                        "'); ppfast speaks PPX " + kProtocolVersion);
  handshaken_ = true;
}

uint32_t Connection::intern(std::string_view s) {
  key_.assign(s.data(), s.size());
  auto it = ids_.find(key_);
  if (it != ids_.end()) return it->second;
  // Checked once per distinct string: addresses become Python str.
  if (!valid_utf8(s))
    fail(ClientErrorKind::kProtocol, "an address or name in trace " + std::to_string(trace_) +
                                         " is not valid UTF-8 (" + std::to_string(s.size()) + " bytes)");
  const uint32_t id = AddressTable::global().intern(s);
  ids_.emplace(key_, id);
  return id;
}

namespace {

/// A PPX distribution as a ppfast Dist over `params`; the value's shape goes to `shape`.
/// Returns "" or what is wrong.
std::string to_dist(const DistView& v, std::vector<double>& params, std::vector<int32_t>& shape, Dist& d) {
  shape.clear();
  const size_t np = v.num_params;
  for (size_t i = 0; i < np; ++i)
    if (!v.params[i].present)
      return std::string(dist_name(v.kind)) + " parameter '" + dist_param_name(v.kind, i) + "' has no data";
  if (v.kind == DistKind::kCategorical) {
    const TensorView& p = v.params[0];
    const size_t k = p.rank() ? static_cast<size_t>(p.dim(p.rank() - 1)) : p.size;
    if (k == 0 || p.size != k)
      return "Categorical probs of shape " + shape_text(p) + ": ppfast takes one distribution per site (shape [k])";
    // torch (hence PyProb) normalizes Categorical probs; do the same where that is defined.
    double sum = 0;
    bool ok = true;
    for (size_t i = 0; i < k; ++i) {
      ok = ok && p.data[i] >= 0 && std::isfinite(p.data[i]);
      sum += p.data[i];
    }
    params.assign(p.data, p.data + k);
    // (Only when off by more than rounding, so that normalized probs pass unchanged.)
    if (ok && sum > 0 && std::isfinite(sum) && std::fabs(sum - 1.0) > 1e-12 * static_cast<double>(k))
      for (double& x : params) x /= sum;
    for (size_t i = 0; i + 1 < p.rank(); ++i) shape.push_back(static_cast<int32_t>(p.dim(i)));
    d = Dist{::ppfast::DistKind::Categorical, 1, static_cast<uint32_t>(k), params.data()};
    return "";
  }
  // Element-wise parameters: broadcast size-1 ones against the largest.
  size_t size = 1, widest = 0;
  for (size_t i = 0; i < np; ++i) {
    const TensorView& p = v.params[i];
    if (p.size > size || (p.size == size && p.rank() > v.params[widest].rank())) widest = i;
    size = std::max(size, p.size);
  }
  for (size_t i = 0; i < np; ++i)
    if (v.params[i].size != 1 && v.params[i].size != size)
      return std::string(dist_name(v.kind)) + " parameters of shapes " + shape_text(v.params[widest]) + " and " +
             shape_text(v.params[i]) + " do not broadcast";
  if (size > std::numeric_limits<uint32_t>::max() / kMaxDistParams) return "distribution too large";
  params.resize(np * size);
  for (size_t i = 0; i < np; ++i) {
    const TensorView& p = v.params[i];
    double* dst = params.data() + i * size;
    if (p.size == 1) std::fill(dst, dst + size, p.data[0]);
    else std::memcpy(dst, p.data, size * sizeof(double));
  }
  const TensorView& w = v.params[widest];
  for (size_t i = 0; i < w.rank(); ++i) shape.push_back(static_cast<int32_t>(w.dim(i)));
  d = Dist{static_cast<::ppfast::DistKind>(v.kind), static_cast<uint32_t>(size), static_cast<uint32_t>(np * size),
           params.data()};
  return "";
}

}  // namespace

Bytes Connection::answer_sample(Recorder& r, const MessageView& m) {
  const uint32_t address = intern(m.address);
  const uint32_t name = m.name.empty() ? 0 : intern(m.name);
  site_ = address;
  Dist d{};
  std::string bad = to_dist(m.dist, params_, shape_, d);
  if (!bad.empty()) {
    // The simulator waits for a value: fail the trace, answer NaN, and let it finish.
    r.fail("invalid distribution at sample '" + std::string(m.address) + "' from PPX peer " + address_ + ": " + bad,
           ::ppfast::ErrorCode::InvalidDistribution);
    value_.assign(1, std::nan(""));
    return encode_sample_result(fbb_, TensorView::scalar(value_.data()));
  }
  value_.resize(d.size);
  const uint32_t flags = (m.control ? uint32_t(kControl) : 0u) | (m.replace ? uint32_t(kReplace) : 0u);
  r.sample(d, address, name, flags, value_.data());
  return encode_sample_result(fbb_, TensorView::of(value_.data(), value_.size(), shape_.data(), shape_.size()));
}

Bytes Connection::answer_observe(Recorder& r, const MessageView& m) {
  const uint32_t address = intern(m.address);
  const uint32_t name = m.name.empty() ? 0 : intern(m.name);
  site_ = address;
  Dist d{};
  std::string bad = to_dist(m.dist, params_, shape_, d);
  if (!bad.empty()) {
    r.fail("invalid distribution at observe '" + std::string(m.address) + "' from PPX peer " + address_ + ": " + bad,
           ::ppfast::ErrorCode::InvalidDistribution);
  } else if (m.value.present) {
    r.observe(d, address, name, m.value.data, static_cast<uint32_t>(m.value.size));
  } else {
    r.observe(d, address, name, nullptr, 0);
  }
  return encode_observe_result(fbb_);
}

Bytes Connection::answer_tag(Recorder& r, const MessageView& m) {
  const uint32_t address = intern(m.address);
  const uint32_t name = m.name.empty() ? 0 : intern(m.name);
  site_ = address;
  if (m.value.present) r.tag(address, name, m.value.data, static_cast<uint32_t>(m.value.size));
  else r.tag(address, name, nullptr, 0);
  return encode_tag_result(fbb_);
}

void Connection::end_with_result(Recorder& r, const TensorView& v) {
  if (!v.present) return (void)r.end_trace(std::nan(""));
  if (v.size == 1 && v.rank() <= 1) return (void)r.end_trace(v.data[0]);
  // A tensor result (PyProb keeps it whole): packed with its shape into a Tag record.
  const uint32_t id = intern(kResultAddress);
  packed_result_.clear();
  packed_result_.push_back(static_cast<double>(v.rank()));
  for (size_t i = 0; i < v.rank(); ++i) packed_result_.push_back(static_cast<double>(v.dim(i)));
  packed_result_.insert(packed_result_.end(), v.data, v.data + v.size);
  r.tag(id, id, packed_result_.data(), static_cast<uint32_t>(packed_result_.size()));
  r.end_trace(std::nan(""));
}

void Connection::run_trace(Recorder& r, uint64_t index) {
  r.begin_trace(index);
  try {
    connect();
    trace_ = index;
    Bytes request = encode_run(fbb_);
    Body sent = Body::kRun;
    for (uint64_t messages = 0;; ++messages) {
      if (options_.max_trace_records && messages > options_.max_trace_records)
        fail(ClientErrorKind::kProtocol, "trace " + std::to_string(index) + " has more than " +
                                             std::to_string(options_.max_trace_records) +
                                             " Sample / Observe / Tag messages (the max_trace_records limit; a "
                                             "simulator in a runaway loop?)");
      const MessageView& m = exchange(request, sent, "Sample, Observe, Tag or RunResult");
      switch (m.type) {
        case Body::kSample:
          request = answer_sample(r, m), sent = Body::kSampleResult;
          break;
        case Body::kObserve:
          request = answer_observe(r, m), sent = Body::kObserveResult;
          break;
        case Body::kTag:
          request = answer_tag(r, m), sent = Body::kTagResult;
          break;
        case Body::kRunResult:
          end_with_result(r, m.value);
          ++stats_.traces;
          return;
        default:
          fail(ClientErrorKind::kProtocol, std::string("out of order: expected Sample, Observe, Tag or RunResult ") +
                                               context(sent) + ", got " + body_name(m.type));
      }
    }
  } catch (const ClientError& e) {
    // Keep the batch consistent: the half-done trace is recorded as failed.
    r.fail(e.what(), ::ppfast::ErrorCode::Simulator);
    r.end_trace(std::nan(""));
    throw;
  } catch (const Stopped&) {
    r.discard_trace();  // stopped part-way: not a finished trace
    throw;
  }
}

// --------------------------------------------------------------------------- Client

Client::Client(std::vector<std::string> addresses, ClientOptions options)
    : context_(1), pool_(static_cast<int>(std::max<size_t>(1, addresses.size()))) {
  if (addresses.empty()) throw std::invalid_argument("a PPX client needs at least one address");
  options.stop = &stop_;
  for (auto& a : addresses) connections_.push_back(std::make_unique<Connection>(context_, std::move(a), options));
}

Client::~Client() { close(); }

void Client::close() noexcept {
  for (auto& c : connections_) c->close();
}

namespace {
/// The first error thrown by any worker, kept to be rethrown on the calling thread.
struct FirstError {
  std::mutex mutex;
  std::optional<ClientError> error;
  std::exception_ptr other;
  std::atomic<bool> stop{false};

  void keep_current() {
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
    if (error || other) return;
    try {
      throw;
    } catch (const ClientError& e) {
      error.emplace(e);
    } catch (...) {
      other = std::current_exception();
    }
  }
  void rethrow() {
    if (error) throw *error;
    if (other) std::rethrow_exception(other);
  }
};
}  // namespace

void Client::connect() {
  if (connections_.size() == 1) return connections_[0]->connect();
  FirstError first;
  pool_.run(connections_.size(), [&](size_t task, int) {
    try {
      connections_[task]->connect();
    } catch (...) {
      first.keep_current();
    }
  });
  first.rethrow();
}

std::optional<ClientError> Client::run(uint64_t seed, uint64_t first, uint64_t count,
                                       const Observations* observations, TraceBatch& out,
                                       const PolicyFactory& policies, bool skip_errors) {
  if (count == 0) return std::nullopt;
  stop_ = false;
  const size_t n = connections_.size();
  // Chunks small enough to balance peers of different speeds, each its own batch part
  // so that the merged batch keeps trace order.
  const uint64_t chunk = n == 1 ? count : std::clamp<uint64_t>((count + 4 * n - 1) / (4 * n), 1, 256);
  const size_t nchunks = static_cast<size_t>((count + chunk - 1) / chunk);
  struct Work {
    size_t part;
    uint64_t begin, end;
  };
  std::deque<Work> queue;
  for (size_t c = 0; c < nchunks; ++c)
    queue.push_back({c, first + c * chunk, std::min(first + count, first + (c + 1) * chunk)});
  std::vector<std::shared_ptr<TraceBatch>> parts(nchunks);
  std::vector<std::unique_ptr<Policy>> worker_policies(n);
  if (policies)
    for (size_t w = 0; w < n; ++w) worker_policies[w] = policies(static_cast<int>(w));

  FirstError error;                  // the error that stops the run (not skipping)
  std::optional<ClientError> last;   // the latest error skipped
  std::mutex mutex;                  // guards queue, busy, last
  std::condition_variable changed;   // queue or busy changed
  size_t busy = 0;                   // workers holding a work item (which they may hand back)

  auto work = [&](int worker) {
    if (static_cast<size_t>(worker) >= n) return;
    Connection& connection = *connections_[static_cast<size_t>(worker)];
    for (;;) {
      Work w;
      {
        std::unique_lock<std::mutex> lock(mutex);
        // Wait while another worker may still hand back work (its peer died).
        changed.wait(lock, [&] { return error.stop || !queue.empty() || busy == 0; });
        if (error.stop || queue.empty()) return changed.notify_all();
        w = queue.front();
        queue.pop_front();
        ++busy;
      }
      if (!parts[w.part]) parts[w.part] = BatchPool::global().acquire();
      Recorder r(*parts[w.part], observations, seed, worker_policies[static_cast<size_t>(worker)].get());
      bool gone = false;
      for (uint64_t i = w.begin; i < w.end && !error.stop && !gone; ++i) {
        try {
          if (stop_) throw Stopped();
          connection.run_trace(r, i);  // a trace cut short is recorded as failed
        } catch (const ClientError& e) {
          if (!skip_errors) {
            error.keep_current();
            break;
          }
          {
            std::lock_guard<std::mutex> lock(mutex);
            last.emplace(e);
          }
          try {
            connection.connect(/*patient=*/true);  // waits up to the timeout for the peer
          } catch (const ClientError& again) {
            std::lock_guard<std::mutex> lock(mutex);
            last.emplace(again);
            if (i + 1 < w.end) queue.push_front({w.part, i + 1, w.end});  // for the live connections
            gone = true;
          }
        } catch (...) {
          error.keep_current();
          break;
        }
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        --busy;
      }
      changed.notify_all();
      if (gone) return;
    }
  };
  if (n == 1) work(0);
  else pool_.run_on_each(work);

  // Whatever happened, keep every trace that finished, in trace order.
  size_t traces = 0, records = 0;
  for (auto& p : parts)
    if (p) traces += p->num_traces(), records += p->num_records();
  out.reserve(out.num_traces() + traces, out.num_records() + records);
  for (auto& p : parts)
    if (p) out.append(*p);
  if (error.other) std::rethrow_exception(error.other);
  if (error.error) return error.error;
  if (!queue.empty()) {
    uint64_t missing = 0;
    for (const Work& w : queue) missing += w.end - w.begin;
    return ClientError(last ? last->kind : ClientErrorKind::kPeerGone,
                       "no PPX simulator left to run the last " + std::to_string(missing) + " of " +
                           std::to_string(count) + " traces; the last error: " + (last ? last->what() : "?"));
  }
  return std::nullopt;
}

// --------------------------------------------------------------------------- ping

double ping(const std::string& address, uint64_t count, size_t payload, int timeout_ms) {
  zmq::context_t context(1);
  zmq::socket_t s(context, zmq::socket_type::req);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, timeout_ms);
  s.set(zmq::sockopt::sndtimeo, timeout_ms);
  s.connect(address);
  std::vector<uint8_t> request(std::max<size_t>(payload, 1), 0x5a);
  zmq::message_t reply;
  auto round_trip = [&] {
    if (!s.send(zmq::const_buffer(request.data(), request.size()), zmq::send_flags::none) ||
        !s.recv(reply, zmq::recv_flags::none))
      throw ClientError(ClientErrorKind::kTimeout, "echo peer " + address + ": no reply within " +
                                                       std::to_string(timeout_ms) + " ms");
  };
  round_trip();  // connection set up outside the clock
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < count; ++i) round_trip();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace ppfast::ppx
