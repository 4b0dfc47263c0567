// Guided execution in batches (DESIGN.md §2): K executions run at once; each stops at
// its controlled sample sites with a pending proposal request, and a proposal server
// (the inference network, in Python) answers every pending request with one network
// step.  The answer is a proposal distribution in the core's own layout (a Mixture of
// Normals, a Categorical, ...); the execution samples from it here, in C++, and the
// recorder weighs the value with log p - log q.
//
// Two drivers share the per-execution logic (ProposalSlot):
//   FiberRun  - embedded C++ simulators: K executions as fibers (ucontext) pinned to a
//               few worker threads, so a stop costs a context switch, not a thread wake-up;
//   ThreadRun - Python models: one host thread per execution; a stop blocks that thread
//               (the binding releases the GIL while it waits).
#pragma once

#include <ucontext.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/recorder.hpp"
#include "core/runner.hpp"
#include "ppfast/ppfast.h"

namespace ppfast {

class WorkerPool;

/// What an execution sends when it stops at a controlled sample site.  `prev_*`
/// describe the previous controlled site of the same trace (none when `first`).
struct SiteRequest {
  uint32_t address = 0, instance = 0, prev_address = 0, prev_instance = 0;
  uint8_t dist = 0, prev_dist = 0, first = 1;
  double prev_value = 0;
  std::vector<double> params, prev_params;  // prior parameters (Dist layout)
};

/// Answer kind: draw from the prior here and, without asking again, at every later site
/// of the same address in this slot (the network proposes nothing for the address).
constexpr uint8_t kPriorAtAddress = 255;
/// Whether an answer of this kind carries proposal parameters.
inline bool has_params(uint8_t kind) { return kind != 0 && kind != kPriorAtAddress; }

/// The server's reply: kind 0 = draw from the prior; kPriorAtAddress = the prior at this
/// address from now on; else a scalar proposal Dist.
struct SiteAnswer {
  uint8_t kind = 0;
  std::vector<double> params;
};

/// The pending requests of one round as flat arrays (index = request number).
struct RequestBatch {
  std::vector<uint32_t> slot, address, instance, prev_address, prev_instance;
  std::vector<uint8_t> dist, prev_dist, first;
  std::vector<double> prev_value;
  std::vector<uint32_t> param_offset, param_len, prev_param_offset, prev_param_len;
  std::vector<double> params;  // arena for both parameter sets

  size_t size() const { return slot.size(); }
  void clear();
  void add(uint32_t slot_id, const SiteRequest& r);
};

/// The per-execution policy: turns controlled sample sites into requests, and answers
/// into values drawn from the proposal.  Sites that are not network steps (tensor-valued
/// draws, Mixture priors) go to the prior without a request, as in training.  A
/// rejection-loop retry (same address and instance again) reuses the previous answer:
/// the network was trained on the accepted draw only, so its state does not advance.
class ProposalSlot : public Policy {
 public:
  void begin_trace(uint64_t trace) override;
  bool propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out, double* log_q) override;

  SiteRequest request;
  SiteAnswer answer;

 protected:
  /// Hands `request` to the server and returns once `answer` holds the reply.
  virtual void exchange() = 0;

 private:
  bool draw(const Dist& prior, uint32_t address, Rng& rng, double* out, double* log_q);

  static constexpr uint64_t kNone = ~uint64_t(0);
  uint64_t prev_record_ = kNone;  // record index of the previous network step
  bool have_site_ = false;
  uint32_t site_address_ = 0, site_instance_ = 0;
  std::vector<uint8_t> prior_only_;  // by address id: answered kPriorAtAddress
};

/// Checks a round of answers against `pending` requests: their count, kinds and parameter
/// ranges.  Throws std::invalid_argument on inconsistent input.
void check_answers(size_t pending, const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n,
                   size_t nparams);

/// Sets the shape of replies: checks sizes and bounds, then copies answer i to the slot
/// that sent request i.  Throws std::invalid_argument on inconsistent input.
void apply_answers(const RequestBatch& requests, const std::vector<ProposalSlot*>& slots, const uint8_t* kinds,
                   const uint32_t* offsets, const uint32_t* lens, size_t n, const double* params, size_t nparams);

/// Embedded simulators: K executions as fibers on `threads` pinned worker threads.
/// Call advance() / answer() from one thread until advance() returns 0, then take().
class FiberRun {
 public:
  struct Options {
    uint32_t slots = 256;
    int threads = 1;
    size_t stack_bytes = size_t(1) << 20;  // reserved per execution, committed on use
    /// The model must not interleave executions on a thread (PPFAST_MODEL_ONE_EXECUTION_
    /// PER_THREAD): at most one slot per worker thread.
    bool one_execution_per_thread = false;
  };

  FiberRun(ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
           std::shared_ptr<const Observations> observations, Options options);
  ~FiberRun();
  FiberRun(const FiberRun&) = delete;
  FiberRun& operator=(const FiberRun&) = delete;

  /// Runs every execution that can run until each stops at a site or all traces are
  /// done; returns the number of pending requests (0: finished).  Blocks.
  size_t advance();
  const RequestBatch& requests() const { return requests_; }
  /// Replies to the requests of the last advance(), in their order.
  void answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n, const double* params,
              size_t nparams);
  /// All traces, ordered by trace index (call once advance() returned 0).
  std::shared_ptr<TraceBatch> take();

 private:
  struct Fiber;
  struct Worker;
  void run_worker(Worker* w);

  ppfast_model_fn fn_;
  uint64_t seed_, end_;
  std::atomic<uint64_t> next_;
  std::shared_ptr<const Observations> observations_;
  Options options_;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::vector<ProposalSlot*> slots_;
  std::vector<std::unique_ptr<Worker>> workers_;
  RequestBatch requests_;
  std::thread::id owner_;
  bool owner_set_ = false;

  std::unique_ptr<WorkerPool> pool_;  // fibers stay on the thread of their worker
};

/// Python models: one host thread per execution (slot); `blocking` runs a wait with the
/// host's interpreter lock released.  Slot threads call finish() when they are done.
class ThreadRun {
 public:
  using Blocking = std::function<void(const std::function<void()>&)>;

  ThreadRun(uint32_t slots, Blocking blocking);
  std::shared_ptr<Policy> policy(uint32_t slot);
  void finish(uint32_t slot);
  /// Waits until every unfinished slot stops at a site; returns the number of pending
  /// requests (0: all finished).  Call without holding the interpreter lock.
  size_t advance();
  const RequestBatch& requests() const { return requests_; }
  void answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n, const double* params,
              size_t nparams);
  /// Pending and later requests are answered "prior" at once (used when a slot failed).
  void abort();

 private:
  struct Slot;
  enum class State : uint8_t { Running, Waiting, Finished };

  Blocking blocking_;
  std::vector<std::shared_ptr<Slot>> slots_;
  std::vector<ProposalSlot*> raw_;
  std::vector<State> state_;
  RequestBatch requests_;
  std::mutex mutex_;
  std::condition_variable server_, slot_cv_;
  uint32_t waiting_ = 0, finished_ = 0;
  bool aborted_ = false;
};

/// Draws controlled sites from a wider version of the prior (training-data coverage
/// for inference compilation): Normal / LogNormal / TruncatedNormal scales times
/// `factor`, Categorical and Bernoulli uniform.  Other kinds keep the prior.
class InflatedPrior : public Policy {
 public:
  explicit InflatedPrior(double factor) : factor_(factor) {}
  bool propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out, double* log_q) override;

 private:
  double factor_;
  std::vector<double> scratch_;
};

/// Runs traces [first, first + count) of `fn` on `pool`, every controlled site drawn by
/// an InflatedPrior.
void run_inflated(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                  const Observations* observations, TraceBatch& out, double factor);

}  // namespace ppfast
