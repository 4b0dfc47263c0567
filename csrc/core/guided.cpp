#include "core/guided.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/address_table.hpp"
#include "core/runner.hpp"

// ThreadSanitizer follows ucontext switches only when told (tests/test_sanitizers.py).
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define PPFAST_TSAN_FIBERS 1
#endif

namespace ppfast {

// ------------------------------------------------------------------------- requests

void RequestBatch::clear() {
  for (auto* v : {&slot, &address, &instance, &prev_address, &prev_instance, &param_offset, &param_len,
                  &prev_param_offset, &prev_param_len})
    v->clear();
  dist.clear();
  prev_dist.clear();
  first.clear();
  prev_value.clear();
  params.clear();
}

void RequestBatch::add(uint32_t slot_id, const SiteRequest& r) {
  slot.push_back(slot_id);
  address.push_back(r.address);
  instance.push_back(r.instance);
  prev_address.push_back(r.prev_address);
  prev_instance.push_back(r.prev_instance);
  dist.push_back(r.dist);
  prev_dist.push_back(r.prev_dist);
  first.push_back(r.first);
  prev_value.push_back(r.prev_value);
  param_offset.push_back(static_cast<uint32_t>(params.size()));
  param_len.push_back(static_cast<uint32_t>(r.params.size()));
  params.insert(params.end(), r.params.begin(), r.params.end());
  prev_param_offset.push_back(static_cast<uint32_t>(params.size()));
  prev_param_len.push_back(static_cast<uint32_t>(r.prev_params.size()));
  params.insert(params.end(), r.prev_params.begin(), r.prev_params.end());
}

void check_answers(size_t pending, const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n,
                   size_t nparams) {
  if (n != pending)
    throw std::invalid_argument("answer: " + std::to_string(n) + " answers for " + std::to_string(pending) +
                                " pending requests");
  for (size_t i = 0; i < n; ++i) {
    if (kinds[i] > kMaxDistKind && kinds[i] != kPriorAtAddress)
      throw std::invalid_argument("answer " + std::to_string(i) + ": unknown distribution kind " +
                                  std::to_string(kinds[i]));
    if (has_params(kinds[i]) && uint64_t(offsets[i]) + lens[i] > nparams)
      throw std::invalid_argument("answer " + std::to_string(i) + ": parameters [" + std::to_string(offsets[i]) +
                                  ", +" + std::to_string(lens[i]) + ") outside the " + std::to_string(nparams) +
                                  " given");
  }
}

void apply_answers(const RequestBatch& requests, const std::vector<ProposalSlot*>& slots, const uint8_t* kinds,
                   const uint32_t* offsets, const uint32_t* lens, size_t n, const double* params, size_t nparams) {
  check_answers(requests.size(), kinds, offsets, lens, n, nparams);
  for (size_t i = 0; i < n; ++i) {
    SiteAnswer& a = slots[requests.slot[i]]->answer;
    a.kind = kinds[i];
    if (has_params(a.kind))
      a.params.assign(params + offsets[i], params + offsets[i] + lens[i]);
    else
      a.params.clear();
  }
}

// ------------------------------------------------------------------------- slot policy

void ProposalSlot::begin_trace(uint64_t) {
  prev_record_ = kNone;
  have_site_ = false;
}

bool ProposalSlot::propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out,
                           double* log_q) {
  // Not a network step (the training data leaves these out too).
  if (d.size != 1 || d.kind == DistKind::Mixture || d.kind == DistKind::None) return false;
  if (address < prior_only_.size() && prior_only_[address]) return false;
  Recorder* rec = current_recorder();
  const TraceBatch& b = rec->batch();
  if (have_site_ && address == site_address_ && instance == site_instance_) {
    prev_record_ = b.num_records();  // the retry about to be recorded
    return draw(d, address, rng, out, log_q);
  }
  SiteRequest& r = request;
  r.address = address;
  r.instance = instance;
  r.dist = uint8_t(d.kind);
  r.params.assign(d.params, d.params + d.nparams);
  r.first = prev_record_ == kNone;
  if (!r.first) {
    const uint64_t p = prev_record_;
    r.prev_address = b.rec_address[p];
    r.prev_instance = b.rec_instance[p];
    r.prev_dist = b.rec_dist[p];
    r.prev_value = b.rec_value[p];
    const double* pp = b.param_arena.data() + b.rec_param_offset[p];
    r.prev_params.assign(pp, pp + b.rec_param_len[p]);
  } else {
    r.prev_address = r.prev_instance = 0;
    r.prev_dist = 0;
    r.prev_value = 0;
    r.prev_params.clear();
  }
  exchange();
  if (answer.kind == kPriorAtAddress) {  // not a network step: the previous step stays previous
    if (address >= prior_only_.size()) prior_only_.resize(address + 1, 0);
    prior_only_[address] = 1;
    return false;
  }
  have_site_ = true;
  site_address_ = address;
  site_instance_ = instance;
  prev_record_ = b.num_records();  // the recorder appends this site's record next
  return draw(d, address, rng, out, log_q);
}

bool ProposalSlot::draw(const Dist& prior, uint32_t address, Rng& rng, double* out, double* log_q) {
  if (answer.kind == 0) return false;
  const Dist q{DistKind(answer.kind), 1, static_cast<uint32_t>(answer.params.size()), answer.params.data()};
  std::string invalid = validate(q);
  if (!invalid.empty()) {
    current_recorder()->fail("inference network gave an invalid proposal for '" +
                                 AddressTable::global().name(address) + "' (prior " + dist_name(prior.kind) +
                                 "): " + invalid,
                             ErrorCode::Proposal);
    return false;
  }
  sample(q, rng, out);
  *log_q = log_prob(q, out);
  return true;
}

// ------------------------------------------------------------------------- fibers

namespace {

// A fiber stack: reserved address space with a guard page below it, so an overflow
// faults instead of overwriting a neighbour.
struct Stack {
  void* base = nullptr;
  size_t bytes = 0;
  size_t guard = 0;

  explicit Stack(size_t size) {
    guard = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    bytes = (std::max<size_t>(size, 64 * 1024) + guard - 1) / guard * guard + guard;
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
                0);
    if (base == MAP_FAILED) throw std::runtime_error("guided run: cannot reserve an execution stack");
    mprotect(base, guard, PROT_NONE);
  }
  ~Stack() {
    if (base && base != MAP_FAILED) munmap(base, bytes);
  }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* top() const { return static_cast<char*>(base) + guard; }
  size_t usable() const { return bytes - guard; }
};

}  // namespace

namespace {
/// Tells ThreadSanitizer which context runs next (nothing in other builds).
inline void* tsan_new_fiber() {
#ifdef PPFAST_TSAN_FIBERS
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}
inline void* tsan_current_fiber() {
#ifdef PPFAST_TSAN_FIBERS
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}
inline void tsan_switch_to(void* fiber) {
#ifdef PPFAST_TSAN_FIBERS
  __tsan_switch_to_fiber(fiber, 0);
#else
  (void)fiber;
#endif
}
inline void tsan_free_fiber(void* fiber) {
#ifdef PPFAST_TSAN_FIBERS
  if (fiber) __tsan_destroy_fiber(fiber);
#else
  (void)fiber;
#endif
}
}  // namespace

struct FiberRun::Worker {
  ucontext_t ctx;
  void* tsan = nullptr;  // the worker thread's own context, for ThreadSanitizer
  std::vector<Fiber*> fibers;
};

struct FiberRun::Fiber : ProposalSlot {
  enum class State : uint8_t { Ready, Waiting, Done };

  FiberRun* run = nullptr;
  Worker* worker = nullptr;
  uint32_t id = 0;
  State state = State::Ready;
  std::shared_ptr<TraceBatch> batch;
  std::unique_ptr<Recorder> rec;
  Stack stack;
  ucontext_t ctx;
  void* tsan = tsan_new_fiber();

  ~Fiber() { tsan_free_fiber(tsan); }

  Fiber(FiberRun* r, uint32_t i, size_t stack_bytes) : run(r), id(i), stack(stack_bytes) {
    batch = BatchPool::global().acquire();
    rec = std::make_unique<Recorder>(*batch, r->observations_.get(), r->seed_, this);
    getcontext(&ctx);
    ctx.uc_stack.ss_sp = stack.top();
    ctx.uc_stack.ss_size = stack.usable();
    ctx.uc_link = nullptr;
    const auto p = reinterpret_cast<uintptr_t>(this);
    makecontext(&ctx, reinterpret_cast<void (*)()>(&Fiber::entry), 2, unsigned(p >> 32), unsigned(p & 0xffffffffu));
  }

  static void entry(unsigned hi, unsigned lo) {
    auto* self = reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | uintptr_t(lo));
    self->main();
  }

  void main() {
    for (;;) {
      const uint64_t i = run->next_.fetch_add(1);
      if (i >= run->end_) break;
      rec->begin_trace(i);
      const double result = execute(run->fn_, *rec);
      rec->end_trace(result);
    }
    state = State::Done;
    tsan_switch_to(worker->tsan);
    swapcontext(&ctx, &worker->ctx);  // never resumed
  }

  void exchange() override {
    state = State::Waiting;
    tsan_switch_to(worker->tsan);
    swapcontext(&ctx, &worker->ctx);
  }
};

FiberRun::FiberRun(ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                   std::shared_ptr<const Observations> observations, Options options)
    : fn_(fn), seed_(seed), end_(first + count), next_(first), observations_(std::move(observations)),
      options_(options) {
  if (!fn_) throw std::invalid_argument("guided run: no model function");
  options_.slots = std::max<uint32_t>(1, std::min<uint64_t>(options_.slots, std::max<uint64_t>(count, 1)));
  options_.threads = std::max(1, std::min<int>(options_.threads, int(options_.slots)));
  if (options_.one_execution_per_thread) options_.slots = uint32_t(options_.threads);
  for (int w = 0; w < options_.threads; ++w) workers_.push_back(std::make_unique<Worker>());
  fibers_.reserve(options_.slots);
  for (uint32_t s = 0; s < options_.slots; ++s) {
    fibers_.push_back(std::make_unique<Fiber>(this, s, options_.stack_bytes));
    Worker* w = workers_[s % workers_.size()].get();
    fibers_.back()->worker = w;
    w->fibers.push_back(fibers_.back().get());
    slots_.push_back(fibers_.back().get());
  }
  pool_ = std::make_unique<WorkerPool>(int(workers_.size()));
}

FiberRun::~FiberRun() {
  pool_.reset();
  // Executions still stopped at a site are dropped with their stacks (their C++ locals
  // are not unwound): this only happens when the server gave up mid-run.
}

void FiberRun::run_worker(Worker* w) {
  Recorder* const previous = current_recorder();
  w->tsan = tsan_current_fiber();
  for (Fiber* f : w->fibers) {
    if (f->state != Fiber::State::Ready) continue;
    current_recorder() = f->rec.get();
    tsan_switch_to(f->tsan);
    swapcontext(&w->ctx, &f->ctx);
  }
  current_recorder() = previous;
}

size_t FiberRun::advance() {
  // Fibers of worker 0 live on the calling thread; they must not move between threads
  // (a simulator may keep thread-local state across its sample calls).
  if (!owner_set_) {
    owner_ = std::this_thread::get_id();
    owner_set_ = true;
  } else if (owner_ != std::this_thread::get_id()) {
    throw std::logic_error("guided run: advance() called from another thread than before");
  }
  pool_->run_on_each([this](int w) { run_worker(workers_[size_t(w)].get()); });
  requests_.clear();
  for (auto& f : fibers_)
    if (f->state == Fiber::State::Waiting) requests_.add(f->id, f->request);
  return requests_.size();
}

void FiberRun::answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n,
                      const double* params, size_t nparams) {
  apply_answers(requests_, slots_, kinds, offsets, lens, n, params, nparams);
  for (size_t i = 0; i < n; ++i) fibers_[requests_.slot[i]]->state = Fiber::State::Ready;
  requests_.clear();
}

namespace {

// Appends trace t of `src` to `dst` (records, arenas, per-trace columns).
void append_trace(TraceBatch& dst, const TraceBatch& src, size_t t) {
  const uint64_t begin = src.trace_begin[t], end = src.trace_end[t];
  const auto trace = static_cast<uint32_t>(dst.num_traces());
  const uint64_t rec0 = dst.num_records();
  for (uint64_t r = begin; r < end; ++r) {
    dst.rec_trace.push_back(trace);
    dst.rec_address.push_back(src.rec_address[r]);
    dst.rec_instance.push_back(src.rec_instance[r]);
    dst.rec_name.push_back(src.rec_name[r]);
    dst.rec_kind.push_back(src.rec_kind[r]);
    dst.rec_flags.push_back(src.rec_flags[r]);
    dst.rec_dist.push_back(src.rec_dist[r]);
    dst.rec_value.push_back(src.rec_value[r]);
    dst.rec_log_prob.push_back(src.rec_log_prob[r]);
    const uint32_t vlen = src.rec_value_len[r];
    if (vlen > 1) {
      dst.rec_value_offset.push_back(static_cast<uint32_t>(dst.value_arena.size()));
      const double* v = src.value_arena.data() + src.rec_value_offset[r];
      dst.value_arena.insert(dst.value_arena.end(), v, v + vlen);
    } else {
      dst.rec_value_offset.push_back(0);
    }
    dst.rec_value_len.push_back(vlen);
    const uint32_t plen = src.rec_param_len[r];
    dst.rec_param_offset.push_back(static_cast<uint32_t>(dst.param_arena.size()));
    const double* p = src.param_arena.data() + src.rec_param_offset[r];
    dst.param_arena.insert(dst.param_arena.end(), p, p + plen);
    dst.rec_param_len.push_back(plen);
  }
  dst.trace_index.push_back(src.trace_index[t]);
  dst.trace_begin.push_back(rec0);
  dst.trace_end.push_back(dst.num_records());
  dst.log_prior.push_back(src.log_prior[t]);
  dst.log_likelihood.push_back(src.log_likelihood[t]);
  dst.log_weight.push_back(src.log_weight[t]);
  dst.result.push_back(src.result[t]);
  dst.trace_type.push_back(src.trace_type[t]);
  dst.status.push_back(src.status[t]);
  if (src.status[t] != uint8_t(TraceStatus::Ok)) {
    dst.message.push_back(static_cast<uint32_t>(dst.messages.size()));
    dst.messages.push_back(src.messages[src.message[t]]);
  } else {
    dst.message.push_back(0);
  }
}

}  // namespace

std::shared_ptr<TraceBatch> FiberRun::take() {
  for (auto& f : fibers_)
    if (f->state != Fiber::State::Done)
      throw std::logic_error("guided run: take() before every execution finished");
  struct Ref {
    uint64_t index;
    uint32_t part, trace;
  };
  std::vector<Ref> refs;
  size_t records = 0;
  for (uint32_t s = 0; s < fibers_.size(); ++s) {
    const TraceBatch& b = *fibers_[s]->batch;
    records += b.num_records();
    for (uint32_t t = 0; t < b.num_traces(); ++t) refs.push_back({b.trace_index[t], s, t});
  }
  std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) { return a.index < b.index; });
  auto out = BatchPool::global().acquire();
  out->reserve(refs.size(), records);
  for (const Ref& r : refs) append_trace(*out, *fibers_[r.part]->batch, r.trace);
  return out;
}

// ------------------------------------------------------------------------- threads

struct ThreadRun::Slot : ProposalSlot {
  ThreadRun* run = nullptr;
  uint32_t id = 0;

  void exchange() override {
    run->blocking_([this] {
      std::unique_lock<std::mutex> lock(run->mutex_);
      if (run->aborted_) {
        answer.kind = 0;
        return;
      }
      run->state_[id] = State::Waiting;
      ++run->waiting_;
      run->server_.notify_one();
      run->slot_cv_.wait(lock, [&] { return run->state_[id] != State::Waiting; });
    });
  }
};

ThreadRun::ThreadRun(uint32_t slots, Blocking blocking) : blocking_(std::move(blocking)) {
  if (slots == 0) throw std::invalid_argument("guided run: needs at least one slot");
  if (!blocking_) blocking_ = [](const std::function<void()>& f) { f(); };
  state_.assign(slots, State::Running);
  for (uint32_t s = 0; s < slots; ++s) {
    auto slot = std::make_shared<Slot>();
    slot->run = this;
    slot->id = s;
    raw_.push_back(slot.get());
    slots_.push_back(std::move(slot));
  }
}

std::shared_ptr<Policy> ThreadRun::policy(uint32_t slot) {
  if (slot >= slots_.size())
    throw std::out_of_range("guided run: slot " + std::to_string(slot) + " of " + std::to_string(slots_.size()));
  return slots_[slot];
}

void ThreadRun::finish(uint32_t slot) {
  if (slot >= slots_.size()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_[slot] == State::Finished) return;
  if (state_[slot] == State::Waiting) --waiting_;
  state_[slot] = State::Finished;
  ++finished_;
  server_.notify_one();
}

size_t ThreadRun::advance() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto n = static_cast<uint32_t>(slots_.size());
  server_.wait(lock, [&] { return waiting_ + finished_ == n; });
  requests_.clear();
  for (uint32_t s = 0; s < n; ++s)
    if (state_[s] == State::Waiting) requests_.add(s, slots_[s]->request);
  return requests_.size();
}

void ThreadRun::answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n,
                       const double* params, size_t nparams) {
  std::lock_guard<std::mutex> lock(mutex_);
  apply_answers(requests_, raw_, kinds, offsets, lens, n, params, nparams);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = requests_.slot[i];
    if (state_[s] == State::Waiting) {
      state_[s] = State::Running;
      --waiting_;
    }
  }
  requests_.clear();
  slot_cv_.notify_all();
}

void ThreadRun::abort() {
  std::lock_guard<std::mutex> lock(mutex_);
  aborted_ = true;
  for (uint32_t s = 0; s < state_.size(); ++s)
    if (state_[s] == State::Waiting) {
      slots_[s]->answer.kind = 0;
      state_[s] = State::Running;
      --waiting_;
    }
  requests_.clear();
  slot_cv_.notify_all();
}

// ------------------------------------------------------------------------- inflated prior

bool InflatedPrior::propose(uint32_t, uint32_t, const Dist& d, Rng& rng, double* out, double* log_q) {
  if (d.kind == DistKind::Mixture) return false;
  const uint32_t n = d.size;
  scratch_.assign(d.params, d.params + d.nparams);
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::LogNormal:
    case DistKind::TruncatedNormal:
      for (uint32_t i = 0; i < n; ++i) scratch_[n + i] *= factor_;  // the scale array
      break;
    case DistKind::Categorical:
      std::fill(scratch_.begin(), scratch_.end(), 1.0 / double(d.nparams));
      break;
    case DistKind::Bernoulli:
      std::fill(scratch_.begin(), scratch_.end(), 0.5);
      break;
    default:
      return false;
  }
  const Dist wide{d.kind, d.size, d.nparams, scratch_.data()};
  sample(wide, rng, out);
  *log_q = log_prob(wide, out);
  return true;
}

void run_inflated(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                  const Observations* observations, TraceBatch& out, double factor) {
  run_traces(pool, fn, seed, first, count, observations, out,
             [factor](int) { return std::unique_ptr<Policy>(new InflatedPrior(factor)); });
}

}  // namespace ppfast
