// The simulator process: serves run requests from a ppfast host over shared memory, or
// runs standalone.  See protocol.hpp for the two phases of a run.
#include "transport/shm/server.hpp"

#include "ppfast/shm_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/address_table.hpp"
#include "core/guided.hpp"
#include "core/mcmc.hpp"
#include "core/recorder.hpp"
#include "core/runner.hpp"
#include "transport/shm/payload.hpp"
#include "transport/shm/protocol.hpp"
#include "transport/shm/sync.hpp"

namespace ppfast::shm {
namespace {

constexpr int64_t kSpinNs = 50'000;          // after an answer the next request often follows at once
constexpr int64_t kIdleCheckNs = 200'000'000;  // an idle process's longest sleep
constexpr useconds_t kWatchdogUs = 50'000;     // how often the watchdog checks that the host lives

/// Fault injection for tests of crash, hang and hostile-simulator handling:
/// PPFAST_SHM_FAULT=KIND@TRACE makes the process misbehave when it starts trace TRACE.
/// KIND: segv, kill, exit (status 3), hang (sleeps), spin (busy loop), layout (rewrites
/// the layout fields of its control header) or counts (reports impossible counts).
/// PPFAST_SHM_TRACE_LOG=PATH appends the number of each trace the process starts to PATH,
/// one per line (tests count what a restart runs again).
struct Fault {
  enum Kind { None, Segv, Kill, Exit, Hang, Spin, Layout, Counts } kind = None;
  uint64_t trace = 0;
  int log_fd = -1;

  void log(uint64_t i) const {
    const std::string line = std::to_string(i) + "\n";
    if (write(log_fd, line.data(), line.size()) < 0) std::perror("PPFAST_SHM_TRACE_LOG");
  }

  static Fault from_env() {
    Fault f;
    if (const char* path = std::getenv("PPFAST_SHM_TRACE_LOG"))
      f.log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const char* spec = std::getenv("PPFAST_SHM_FAULT");
    if (!spec) return f;
    const char* at = std::strchr(spec, '@');
    if (!at) return f;
    const std::string kind(spec, at);
    f.trace = std::strtoull(at + 1, nullptr, 10);
    if (kind == "segv") f.kind = Segv;
    else if (kind == "kill") f.kind = Kill;
    else if (kind == "exit") f.kind = Exit;
    else if (kind == "hang") f.kind = Hang;
    else if (kind == "spin") f.kind = Spin;
    else if (kind == "layout") f.kind = Layout;
    else if (kind == "counts") f.kind = Counts;
    return f;
  }
  /// Returns whether the run's counts should be corrupted.
  bool trigger(Control& ctrl) const {
    switch (kind) {
      case Segv: raise(SIGSEGV); break;
      case Kill: raise(SIGKILL); break;
      case Exit: _exit(3);
      case Hang:
        for (;;) pause();
      case Spin:
        for (volatile uint64_t n = 0;; n = n + 1) {
        }
      case Layout:
        ctrl.size = ctrl.names_capacity = ctrl.map_capacity = ~uint64_t(0);
        ctrl.names_offset = uint64_t(1) << 62;
        ctrl.map_offset = uint64_t(1) << 61;
        break;
      case Counts: return true;
      case None: break;
    }
    return false;
  }
};

struct ProtocolFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class T>
void copy_column(uint8_t* dst, const std::vector<T>& src) {
  if (!src.empty()) std::memcpy(dst, src.data(), src.size() * sizeof(T));
}

template <class T>
void copy_shifted(uint8_t* dst, const std::vector<T>& src, T shift) {
  T* out = reinterpret_cast<T*>(dst);
  const T* in = src.data();
  const size_t n = src.size();
  for (size_t i = 0; i < n; ++i) out[i] = in[i] + shift;
}

class Server {
 public:
  Server(const ppfast_model_info* model, int control_fd, int arena_fd) : model_(model) {
    struct stat st;
    if (fstat(control_fd, &st) != 0 || uint64_t(st.st_size) < sizeof(Control))
      throw ProtocolFailure("control segment (fd " + std::to_string(control_fd) + ") is missing or too small");
    void* c = mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, control_fd, 0);
    if (c == MAP_FAILED) throw ProtocolFailure(std::string("cannot map the control segment: ") + strerror(errno));
    ctrl_ = static_cast<Control*>(c);
    if (ctrl_->magic != kControlMagic)
      throw ProtocolFailure("fd " + std::to_string(control_fd) + " is not a ppfast control segment");
    if (ctrl_->version != kProtocolVersion) {
      fail_start("the host speaks shared-memory protocol " + std::to_string(ctrl_->version) +
                        ", this simulator " + std::to_string(kProtocolVersion) + ": rebuild it against this ppfast");
      return;
    }
    if (model_->abi_version != PPFAST_ABI_VERSION) {
      fail_start("the model was built for ppfast ABI " + std::to_string(model_->abi_version) +
                        ", its ppfast::main speaks " + std::to_string(PPFAST_ABI_VERSION));
      return;
    }
    uint64_t head[3];  // ArenaHeader's magic, version + host pid, mapped size
    if (pread(arena_fd, head, sizeof(head), 0) != ssize_t(sizeof(head)) || head[0] != kArenaMagic) {
      fail_start("fd " + std::to_string(arena_fd) + " is not a ppfast data arena");
      return;
    }
    void* a = mmap(nullptr, head[2], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, arena_fd, 0);
    if (a == MAP_FAILED) {
      fail_start(std::string("cannot map the data arena: ") + strerror(errno));
      return;
    }
    arena_ = static_cast<uint8_t*>(a);
    arena_size_ = head[2];
    arena_head_ = reinterpret_cast<ArenaHeader*>(arena_);
    names_ = reinterpret_cast<uint8_t*>(ctrl_) + ctrl_->names_offset;
    map_ = reinterpret_cast<const uint32_t*>(reinterpret_cast<uint8_t*>(ctrl_) + ctrl_->map_offset);
    close(control_fd);
    close(arena_fd);
    fault_ = Fault::from_env();
    started_ = true;
  }

  int serve() {
    if (!started_) return 2;
    start_watchdog();
    ctrl_->worker_pid = uint32_t(getpid());
    ctrl_->abi_version = PPFAST_ABI_VERSION;
    std::snprintf(ctrl_->model_name, sizeof(ctrl_->model_name), "%s", model_->name ? model_->name : "model");
    send(Message{Op::Ready, 0, 0, {uint64_t(getpid())}});
    for (;;) {
      Message m = next();
      tag_ = m.tag;
      try {
        switch (m.op) {
          case Op::Run: run(m); break;
          case Op::RunChains: run_chains(m); break;
          case Op::RunGuided: run_guided(m); break;
          case Op::Place: place(m); break;
          case Op::Shutdown: return 0;
          default: throw ProtocolFailure("unexpected message " + std::to_string(uint32_t(m.op)) + " from the host");
        }
      } catch (const std::exception& e) {
        // Bad requests, or no memory for the batch: the host turns it into an error.
        std::snprintf(ctrl_->error, sizeof(ctrl_->error), "%s", e.what());
        send(Message{Op::Error, 0, tag_, {}});
      }
    }
  }

 private:
  void fail_start(const std::string& why) {
    std::snprintf(ctrl_->error, sizeof(ctrl_->error), "%s", why.c_str());
    std::fprintf(stderr, "ppfast simulator: %s\n", why.c_str());
  }

  /// A thread that ends this process's group when the host dies (killed, crashed): a
  /// process busy in the model never looks, and nobody is left to stop it.  Not
  /// PR_SET_PDEATHSIG: that fires when the host *thread* that started us ends.
  void start_watchdog() {
    const pid_t host = pid_t(ctrl_->host_pid), parent = getppid();
    std::thread([host, parent] {
      for (;;) {
        usleep(kWatchdogUs);
        // Reparented (the parent died), or the host is gone (we were started by a wrapper).
        if (getppid() != parent || (kill(host, 0) != 0 && errno == ESRCH)) kill(0, SIGKILL);
      }
    }).detach();
  }

  Message next() {
    Ring& down = ctrl_->down;
    while (!wait_on(ctrl_->down_bell, [&] { return !down.empty(); }, kSpinNs, kIdleCheckNs)) {
    }
    Message m;
    down.pop(m);
    return m;
  }

  void send(const Message& m) {
    // The host reads every message it waits for; this is a safeguard (the watchdog ends
    // the wait if the host is gone).
    while (ctrl_->up.full()) usleep(1000);
    ctrl_->up.push(m);
    ring(arena_head_->doorbell);
  }

  void beat() { ctrl_->beat.store(ctrl_->beat.load(std::memory_order_relaxed) + 1, std::memory_order_release); }

  void run(const Message& m) {
    const uint64_t seed = m.a[0], first = m.a[1], count = m.a[2], off = m.a[3], bytes = m.a[4];
    if (off > arena_size_ || bytes > arena_size_ - off) throw ProtocolFailure("run payload outside the data arena");
    PayloadReader in(arena_ + off, bytes);
    read_observations(in, m.a[5] != 0);
    std::vector<std::pair<uint64_t, std::string>> lost;  // ascending trace index
    for (uint64_t i = 0, n = in.u64(); in.ok() && i < n; ++i) {
      uint64_t trace = in.u64();
      lost.emplace_back(trace, in.str());
    }
    if (!in.ok()) throw ProtocolFailure("malformed run payload");

    batch_.clear();
    ActiveRun active;
    const uint64_t unrecorded = unrecorded_draws();
    Recorder r(batch_, &obs_, seed);
    RecorderScope scope(&r);
    ctrl_->completed.store(0, std::memory_order_relaxed);
    size_t next_lost = 0;
    const bool faulty = fault_.kind != Fault::None;
    bool bad_counts = false;
    for (uint64_t k = 0; k < count; ++k) {
      const uint64_t i = first + k;
      r.begin_trace(i);
      if (next_lost < lost.size() && lost[next_lost].first == i) {
        r.fail(lost[next_lost++].second, ErrorCode::Simulator);
        r.end_trace(std::nan(""));
      } else {
        if (fault_.log_fd >= 0) fault_.log(i);
        if (faulty && fault_.trace == i) bad_counts = fault_.trigger(*ctrl_);
        const double result = execute(model_->run, r);
        r.end_trace(result);
      }
      ctrl_->completed.store(k + 1, std::memory_order_release);
      beat();
    }

    check_unrecorded_draws(unrecorded);
    Message counts = counts_message(m.tag);
    if (bad_counts) counts.a[kCountRecords] = uint64_t(1) << 62;
    send(counts);
  }

  /// The run's observations, at the start of every run payload.
  void read_observations(PayloadReader& in, bool required) {
    obs_ = Observations();
    obs_.required = required;
    auto& table = AddressTable::global();
    for (uint64_t i = 0, n = in.u64(); in.ok() && i < n; ++i) {
      std::string name = in.str();
      std::vector<double> value = in.f64s();
      if (in.ok()) obs_.set(table.intern(name), std::move(value));
    }
  }

  /// Phase 1's report: the sizes of batch_ and the address names interned since the last.
  Message counts_message(uint64_t tag) {
    Message counts{Op::Counts, 0, tag, {}};
    counts.a[kCountTraces] = batch_.num_traces();
    counts.a[kCountRecords] = batch_.num_records();
    counts.a[kCountValues] = batch_.value_arena.size();
    counts.a[kCountParams] = batch_.param_arena.size();
    counts.a[kCountMessages] = batch_.messages.size();
    uint64_t message_bytes = 0;
    for (const auto& s : batch_.messages) message_bytes += 4 + align_up(s.size(), 4);
    counts.a[kCountMessageBytes] = message_bytes;
    report_names(counts);
    return counts;
  }

  const uint8_t* arena_range(uint64_t off, uint64_t bytes, const char* what) const {
    if (off > arena_size_ || bytes > arena_size_ - off)
      throw ProtocolFailure(std::string(what) + " outside the data arena");
    return arena_ + off;
  }

  /// Fault injection in chain and guided runs: `n` counts the executions (steps) or
  /// rounds of this request.
  void maybe_fault(uint64_t n) {
    if (fault_.kind != Fault::None && fault_.trace == n) fault_.trigger(*ctrl_);
  }

  void step_done() {
    ctrl_->completed.store(ctrl_->completed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    beat();
    maybe_fault(ctrl_->completed.load(std::memory_order_relaxed));
  }

  // --- Metropolis-Hastings ----------------------------------------------------------

  /// The start trace of a RunChains payload, with this process's address ids.
  static std::shared_ptr<TraceBatch> read_start(PayloadReader& in) {
    const uint64_t n = in.u64();
    if (!in.ok() || n == 0) return nullptr;
    auto b = std::make_shared<TraceBatch>();
    auto& table = AddressTable::global();
    for (uint64_t r = 0; r < n && in.ok(); ++r) {
      const uint64_t packed = in.u64();
      const std::string name = in.str();
      const uint64_t instance = in.u64();
      const std::vector<double> values = in.f64s();
      const double log_prob = in.f64();
      const std::vector<double> params = in.f64s();
      if (!in.ok()) break;
      if (instance > UINT32_MAX || values.size() > UINT32_MAX || params.size() > UINT32_MAX)
        throw ProtocolFailure("malformed start trace");
      b->rec_trace.push_back(0);
      b->rec_address.push_back(table.intern(name));
      b->rec_instance.push_back(uint32_t(instance));
      b->rec_name.push_back(0);
      b->rec_kind.push_back(uint8_t(packed));
      b->rec_flags.push_back(uint8_t(packed >> 8));
      b->rec_dist.push_back(uint8_t(packed >> 16));
      b->rec_value.push_back(values.empty() ? 0.0 : values[0]);
      b->rec_log_prob.push_back(log_prob);
      b->rec_value_offset.push_back(values.size() > 1 ? uint32_t(b->value_arena.size()) : 0);
      if (values.size() > 1) b->value_arena.insert(b->value_arena.end(), values.begin(), values.end());
      b->rec_value_len.push_back(uint32_t(values.size()));
      b->rec_param_offset.push_back(uint32_t(b->param_arena.size()));
      b->param_arena.insert(b->param_arena.end(), params.begin(), params.end());
      b->rec_param_len.push_back(uint32_t(params.size()));
    }
    b->trace_index.push_back(0);
    b->trace_begin.push_back(0);
    b->trace_end.push_back(b->num_records());
    for (auto* v : {&b->log_prior, &b->log_likelihood, &b->log_weight, &b->result}) v->push_back(0.0);
    b->trace_type.push_back(0);
    b->status.push_back(uint8_t(TraceStatus::Ok));
    b->message.push_back(0);
    return b;
  }

  /// RunChains: whole chains, as MHNativeRunner runs them on a thread (same chain ids,
  /// seeds and trace numbers, so the same states).
  void run_chains(const Message& m) {
    const uint64_t seed = m.a[0], chain0 = m.a[1], nchains = m.a[2];
    PayloadReader in(arena_range(m.a[3], m.a[4], "chain payload"), m.a[4]);
    auto* stats = reinterpret_cast<ChainStats*>(const_cast<uint8_t*>(arena_range(m.a[5], m.a[6], "chain stats")));
    if (nchains > m.a[6] / kChainStatsBytes || chain0 + nchains > (uint64_t(1) << 24))
      throw ProtocolFailure("chain stats area too small");
    read_observations(in, true);
    MHOptions o;
    const uint64_t kernel = in.u64();
    o.kernel = MHKernel(kernel);
    o.scale = in.f64();
    o.prior_mix = in.f64();
    o.burn_in = in.u64();
    o.thinning = in.u64();
    const uint64_t max_attempts = in.u64();
    const bool stop_on_error = in.u64() != 0;
    if (in.u64() != nchains || !in.ok()) throw ProtocolFailure("malformed chain payload");
    std::vector<uint64_t> targets(nchains);
    for (auto& t : targets) t = in.u64();
    auto start = read_start(in);
    if (!in.done() || kernel > 1 || o.thinning == 0 || !(o.scale > 0) || !(o.prior_mix >= 0 && o.prior_mix <= 1) ||
        max_attempts > UINT32_MAX)
      throw ProtocolFailure("malformed chain payload");

    batch_.clear();
    ActiveRun active;
    const uint64_t unrecorded = unrecorded_draws();
    ctrl_->completed.store(0, std::memory_order_relaxed);
    std::vector<std::unique_ptr<MHChain>> chains;
    for (uint64_t c = 0; c < nchains; ++c) {
      chains.push_back(std::make_unique<MHChain>(o, seed, uint32_t(chain0 + c)));
      chains.back()->target_steps = targets[c];
      if (start) chains.back()->set_start(start, 0);
    }
    TraceBatch scratch;
    auto on_step = [](void* self) { static_cast<Server*>(self)->step_done(); };
    bool go = true;  // as embedded runs: no steps unless every chain found its start
    for (auto& chain : chains) {
      Recorder r(scratch, &obs_, seed, chain->policy());
      RecorderScope scope(&r);
      mh_initialize_chain(*chain, model_->run, r, scratch, uint32_t(max_attempts), stop_on_error);
      step_done();
      go = go && chain->started() && chain->num_sites() > 0;
    }
    for (auto& chain : chains) {
      if (!go) break;
      Recorder r(scratch, &obs_, seed, chain->policy());
      RecorderScope scope(&r);
      mh_run_chain(*chain, model_->run, r, scratch, chain->target_steps, stop_on_error, on_step, this);
      if (stop_on_error && chain->errors()) go = false;  // the run raises: the other chains need not run
    }
    check_unrecorded_draws(unrecorded);
    for (uint64_t c = 0; c < nchains; ++c) {
      const MHChain& ch = *chains[c];
      auto kept = chains[c]->take_output();
      batch_.append(*kept);
      ChainStats st{};
      st.started = ch.started();
      st.num_sites = ch.num_sites();
      st.steps = ch.steps();
      st.accepted = ch.accepted();
      st.rejected_invalid = ch.rejected_invalid();
      st.errors = ch.errors();
      st.error_code = uint64_t(ch.last_error_code());
      st.kept = kept->num_traces();
      std::snprintf(st.last_error, sizeof(st.last_error), "%s", ch.last_error().c_str());
      std::memcpy(&stats[c], &st, sizeof(st));
    }
    send(counts_message(m.tag));
  }

  // --- guided execution -------------------------------------------------------------

  /// RunGuided: the process's traces as fibers under ProposalSlot policies (FiberRun on
  /// this thread), one exchange with the host per round of stops.
  void run_guided(const Message& m) {
    const uint64_t seed = m.a[0], first = m.a[1], count = m.a[2], slots = m.a[6], stack_bytes = m.a[7];
    PayloadReader in(arena_range(m.a[3], m.a[4], "guided payload"), m.a[4]);
    read_observations(in, m.a[5] != 0);
    uint8_t* exchange = const_cast<uint8_t*>(arena_range(m.a[8], m.a[9], "exchange area"));
    const uint64_t capacity = m.a[9];
    if (!in.done() || slots == 0 || slots > (uint64_t(1) << 20) || stack_bytes > (uint64_t(1) << 32) ||
        first + count < first)
      throw ProtocolFailure("malformed guided run request");

    batch_.clear();
    ActiveRun active;
    const uint64_t unrecorded = unrecorded_draws();
    ctrl_->completed.store(0, std::memory_order_relaxed);
    FiberRun::Options options;
    options.slots = uint32_t(slots);
    options.threads = 1;  // this thread: the fibers never move between threads
    options.one_execution_per_thread = model_->flags & PPFAST_MODEL_ONE_EXECUTION_PER_THREAD;
    options.stack_bytes = size_t(stack_bytes);
    // Not owned: obs_ outlives the run.
    std::shared_ptr<const Observations> obs(std::shared_ptr<void>(), &obs_);
    FiberRun run(model_->run, seed, first, count, obs, options);
    uint64_t rounds = 0;
    std::vector<uint8_t> kinds;
    std::vector<uint32_t> offsets, lens;
    std::vector<double> params;
    for (;;) {
      const size_t n = run.advance();
      beat();
      maybe_fault(++rounds);
      if (n == 0) break;
      const RequestBatch& r = run.requests();
      PayloadWriter w;
      w.u64(n);
      for (size_t i = 0; i < n; ++i) {
        for (uint64_t v : {uint64_t(r.slot[i]), uint64_t(r.address[i]), uint64_t(r.instance[i]),
                           uint64_t(r.prev_address[i]), uint64_t(r.prev_instance[i]), uint64_t(r.dist[i]),
                           uint64_t(r.prev_dist[i]), uint64_t(r.first[i])})
          w.u64(v);
        w.f64(r.prev_value[i]);
        w.f64s(r.params.data() + r.param_offset[i], r.param_len[i]);
        w.f64s(r.params.data() + r.prev_param_offset[i], r.prev_param_len[i]);
      }
      if (w.bytes().size() > capacity)
        throw ProtocolFailure("the proposal requests of one round exceed the " + std::to_string(capacity >> 20) +
                              " MiB exchange area: use fewer slots");
      std::memcpy(exchange, w.bytes().data(), w.bytes().size());
      Message request{Op::ProposalRequest, 0, tag_, {n, w.bytes().size()}};
      report_names(request);
      send(request);

      const Message a = next();
      if (a.op == Op::Shutdown) _exit(0);  // the host gave up on the run and closes
      if (a.op != Op::ProposalAnswer) throw ProtocolFailure("expected proposal answers from the host");
      tag_ = a.tag;  // later messages answer this one
      if (a.a[1] > capacity) throw ProtocolFailure("proposal answers outside the exchange area");
      PayloadReader ans(exchange, a.a[1]);
      if (ans.u64() != n || a.a[0] != n) throw ProtocolFailure("proposal answers do not match the requests");
      kinds.clear();
      offsets.clear();
      lens.clear();
      params.clear();
      for (size_t i = 0; i < n && ans.ok(); ++i) {
        const uint64_t kind = ans.u64();
        if (kind > 255) throw ProtocolFailure("proposal answer of unknown kind " + std::to_string(kind));
        kinds.push_back(uint8_t(kind));
        const std::vector<double> p = ans.f64s();
        offsets.push_back(uint32_t(params.size()));
        lens.push_back(uint32_t(p.size()));
        params.insert(params.end(), p.begin(), p.end());
      }
      if (!ans.done()) throw ProtocolFailure("malformed proposal answers");
      run.answer(kinds.data(), offsets.data(), lens.data(), n, params.data(), params.size());
      beat();
    }
    std::swap(batch_, *run.take());
    check_unrecorded_draws(unrecorded);
    send(counts_message(tag_));
  }

  /// Writes the addresses interned since the last report into the names area.
  void report_names(Message& counts) {
    auto& table = AddressTable::global();
    const auto names = table.names_from(shipped_);
    if (shipped_ + names.size() > ctrl_->map_capacity)
      throw ProtocolFailure("more than " + std::to_string(ctrl_->map_capacity) +
                            " distinct addresses in one simulator process");
    uint64_t at = 0;
    for (size_t j = 0; j < names.size(); ++j) {
      const std::string where = table.location(uint32_t(shipped_ + j));
      const uint64_t need = sizeof(NameEntry) + align_up(names[j].size() + where.size(), 4);
      if (at + need > ctrl_->names_capacity)
        throw ProtocolFailure("more than " + std::to_string(ctrl_->names_capacity >> 20) +
                              " MiB of new address names in one run (are addresses built from values?)");
      NameEntry e{uint32_t(names[j].size()), uint32_t(where.size())};
      std::memcpy(names_ + at, &e, sizeof(e));
      std::memcpy(names_ + at + sizeof(e), names[j].data(), names[j].size());
      std::memcpy(names_ + at + sizeof(e) + names[j].size(), where.data(), where.size());
      at += need;
    }
    counts.a[kCountNamesFrom] = shipped_;
    counts.a[kCountNames] = names.size();
    shipped_ += names.size();
  }

  /// Phase 2: copies this process's traces into its slice of the batch block, with the
  /// host's address ids, batch-wide record / trace / arena offsets and message ids.
  void place(const Message& m) {
    Totals totals;
    totals.n[0] = m.a[kPlaceRecords];
    totals.n[1] = m.a[kPlaceTraces];
    totals.n[2] = m.a[kPlaceValues];
    totals.n[3] = m.a[kPlaceParams];
    uint64_t off[kNumColumns];
    const uint64_t block = m.a[kPlaceBlock], bytes = column_layout(totals, off);
    const uint64_t r0 = m.a[kPlaceRecord0], t0 = m.a[kPlaceTrace0], v0 = m.a[kPlaceValue0],
                   p0 = m.a[kPlaceParam0], m0 = m.a[kPlaceMessage0], strings = m.a[kPlaceStrings];
    const TraceBatch& b = batch_;
    if (block > arena_size_ || bytes > arena_size_ - block || r0 + b.num_records() > totals.n[0] ||
        t0 + b.num_traces() > totals.n[1] || v0 + b.value_arena.size() > totals.n[2] ||
        p0 + b.param_arena.size() > totals.n[3] || strings > arena_size_)
      throw ProtocolFailure("placement outside the batch block");
    uint8_t* base = arena_ + block;
    auto at = [&](int c, uint64_t first) { return base + off[c] + first * kColumns[c].size; };
    prefault(block + bytes);

    copy_shifted(at(kRecTrace, r0), b.rec_trace, uint32_t(t0));
    const size_t nrec = b.num_records();
    {
      // Simulator address ids -> host ids (map_ covers every id reported so far).
      auto* address = reinterpret_cast<uint32_t*>(at(kRecAddress, r0));
      auto* name = reinterpret_cast<uint32_t*>(at(kRecName, r0));
      for (size_t i = 0; i < nrec; ++i) {
        address[i] = map_[b.rec_address[i]];
        name[i] = map_[b.rec_name[i]];
      }
    }
    copy_column(at(kRecInstance, r0), b.rec_instance);
    copy_column(at(kRecKind, r0), b.rec_kind);
    copy_column(at(kRecFlags, r0), b.rec_flags);
    copy_column(at(kRecDist, r0), b.rec_dist);
    beat();
    copy_column(at(kRecValue, r0), b.rec_value);
    copy_column(at(kRecLogProb, r0), b.rec_log_prob);
    copy_shifted(at(kRecValueOffset, r0), b.rec_value_offset, uint32_t(v0));
    copy_column(at(kRecValueLen, r0), b.rec_value_len);
    copy_shifted(at(kRecParamOffset, r0), b.rec_param_offset, uint32_t(p0));
    copy_column(at(kRecParamLen, r0), b.rec_param_len);
    beat();
    copy_column(at(kTrIndex, t0), b.trace_index);
    copy_shifted(at(kTrBegin, t0), b.trace_begin, r0);
    copy_shifted(at(kTrEnd, t0), b.trace_end, r0);
    copy_column(at(kTrLogPrior, t0), b.log_prior);
    copy_column(at(kTrLogLikelihood, t0), b.log_likelihood);
    copy_column(at(kTrLogWeight, t0), b.log_weight);
    copy_column(at(kTrResult, t0), b.result);
    copy_column(at(kTrStatus, t0), b.status);
    copy_shifted(at(kTrMessage, t0), b.message, uint32_t(m0));
    {
      // Trace types hash address ids, so they are recomputed with the host's ids (the
      // controlled draws that count, as Recorder::end_trace hashes them).
      auto* type = reinterpret_cast<uint64_t*>(at(kTrType, t0));
      const auto* address = reinterpret_cast<const uint32_t*>(at(kRecAddress, r0));
      for (size_t t = 0; t < b.num_traces(); ++t) {
        uint64_t h = kHashSeed;
        for (uint64_t i = b.trace_begin[t]; i < b.trace_end[t]; ++i)
          if (b.rec_kind[i] == uint8_t(RecordKind::Sample) && (b.rec_flags[i] & kControl) &&
              !(b.rec_flags[i] & kDiscarded))
            h = hash_step(h, address[i]);
        type[t] = h;
      }
    }
    copy_column(at(kArenaValues, v0), b.value_arena);
    copy_column(at(kArenaParams, p0), b.param_arena);
    beat();
    uint64_t s = strings;
    for (const auto& msg : b.messages) {
      if (s + 4 + msg.size() > arena_size_) throw ProtocolFailure("strings outside the data arena");
      const uint32_t len = uint32_t(msg.size());
      std::memcpy(arena_ + s, &len, 4);
      std::memcpy(arena_ + s + 4, msg.data(), msg.size());
      s += 4 + align_up(msg.size(), 4);
    }
    send(Message{Op::Placed, 0, m.tag, {}});
  }

  /// Maps the arena below `end` into this process with one system call the first time a
  /// placement reaches past it.  Pieces land where another process's pieces lay last, or
  /// in pages the arena just grew by: each page would otherwise cost a page fault (a few
  /// times dearer) in every process, run after run until all have written it.  A
  /// speed-up only: pages the host gives back later fault in as usual.
  void prefault(uint64_t end) {
#ifdef MADV_POPULATE_WRITE
    end = align_up(end, 4096);
    if (end <= prefaulted_) return;
    madvise(arena_ + prefaulted_, end - prefaulted_, MADV_POPULATE_WRITE);
    prefaulted_ = end;
#else
    (void)end;
#endif
  }

  const ppfast_model_info* model_;
  Control* ctrl_ = nullptr;
  uint8_t* arena_ = nullptr;
  uint64_t arena_size_ = 0;
  ArenaHeader* arena_head_ = nullptr;
  uint8_t* names_ = nullptr;
  const uint32_t* map_ = nullptr;
  bool started_ = false;
  Fault fault_;
  uint64_t tag_ = 0;      // of the host's request being served (errors answer it)
  uint64_t shipped_ = 1;  // id 0 ("no name") is the same on both sides
  TraceBatch batch_;      // reused run after run: steady state allocates nothing
  uint64_t prefaulted_ = 0;  // the arena below is mapped into this process (prefault())
  Observations obs_;
};

bool parse_fds(const char* spec, int& control, int& arena) {
  return spec && std::sscanf(spec, "fd:%d,%d", &control, &arena) == 2 && control >= 0 && arena >= 0;
}

int usage(const char* argv0, const ppfast_model_info* model, FILE* out) {
  std::fprintf(out,
               "usage: %s [-n TRACES] [--seed SEED]\n"
               "Runs the ppfast model '%s' from its prior and prints each trace's result.\n"
               "Started by ppfast.ShmModel with --ppfast-shm, it serves runs over shared memory.\n",
               argv0, model && model->name ? model->name : "?");
  return out == stderr ? 2 : 0;
}

int standalone(const ppfast_model_info* model, uint64_t traces, uint64_t seed) {
  TraceBatch batch;
  Recorder r(batch, nullptr, seed);
  RecorderScope scope(&r);
  double sum = 0;
  uint64_t ok = 0;
  std::printf("# %s: %" PRIu64 " traces from the prior, seed %" PRIu64 "\n", model->name, traces, seed);
  for (uint64_t i = 0; i < traces; ++i) {
    r.begin_trace(i);
    const double result = execute(model->run, r);
    if (r.end_trace(result)) {
      ++ok;
      sum += result;
      std::printf("trace %" PRIu64 ": result %.10g  log_prior %.6g  records %" PRIu64 "\n", i, result,
                  batch.log_prior.back(), batch.trace_end.back() - batch.trace_begin.back());
    } else {
      std::printf("trace %" PRIu64 ": failed: %s\n", i, batch.messages.back().c_str());
    }
  }
  if (ok) std::printf("# mean result %.10g over %" PRIu64 " traces\n", sum / double(ok), ok);
  return 0;
}

int serve(const char* argv0, const char* spec, const ppfast_model_info* model) {
  int control_fd, arena_fd;
  if (!parse_fds(spec, control_fd, arena_fd)) {
    std::fprintf(stderr, "%s: --ppfast-shm expects fd:CONTROL,ARENA, got '%s'\n", argv0, spec);
    return 2;
  }
  try {
    Server server(model, control_fd, arena_fd);
    return server.serve();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv0, e.what());
    return 2;
  }
}

}  // namespace

int simulator_main(int argc, char** argv, const ppfast_model_info* model) {
  if (!model || !model->run) {
    std::fprintf(stderr, "%s: no ppfast model (define one with PPFAST_MODEL(name, fn))\n", argv[0]);
    return 2;
  }
  const char* shm = nullptr;
  uint64_t traces = 10;
  uint64_t seed = std::random_device()();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--ppfast-shm" && has_value) shm = argv[++i];
    else if ((arg == "-n" || arg == "--traces") && has_value) traces = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--seed" && has_value) seed = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "-h" || arg == "--help") return usage(argv[0], model, stdout);
    else return usage(argv[0], model, stderr);
  }
  if (!shm) return standalone(model, traces, seed);
  return serve(argv[0], shm, model);
}

}  // namespace ppfast::shm

namespace ppfast {

int serve_shm(int argc, char** argv, const ppfast_model_info* model) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--ppfast-shm") {
      if (!model || !model->run) {
        std::fprintf(stderr, "%s: no ppfast model (define one with PPFAST_MODEL(name, fn))\n", argv[0]);
        return 2;
      }
      return shm::serve(argv[0], argv[i + 1], model);
    }
  return -1;
}

}  // namespace ppfast
