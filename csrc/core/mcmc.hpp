// Single-site Metropolis-Hastings in trace space (lightweight and random-walk).
//
// A chain's state is one recorded trace.  A step picks one controlled sample site of it
// uniformly, re-executes the model with a ReplayPolicy (every other existing site gets
// its recorded value back, the chosen site gets a proposal, sites the current trace does
// not have are drawn fresh from the prior) and accepts the new trace with the standard
// single-site MH ratio for programs whose structure changes:
//
//   log a = log p(x') - log p(x)                          (controlled sites + likelihood)
//         + log N - log N'                                (pick-site probabilities)
//         + log k(x_c | x'_c) - log k(x'_c | x_c)         (kernel at the chosen site)
//         + sum_{stale} log p(x_s) - sum_{fresh} log p(x'_f)
//
// where stale sites exist only in x and fresh ones only in x'.  The chain logic knows
// nothing about how the model runs: a driver executes the model once per step under
// policy() (C++ threads for embedded simulators, Python for Python models) and hands
// the recorded trace to finish().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/recorder.hpp"
#include "core/runner.hpp"
#include "core/trace_batch.hpp"

namespace ppfast {

/// The proposal at the chosen site.
enum class MHKernel : uint8_t {
  Prior = 0,       ///< lightweight MH: a fresh draw from the site's distribution
  RandomWalk = 1,  ///< local move around the current value, mixed with the prior
};

struct MHOptions {
  MHKernel kernel = MHKernel::Prior;
  /// Random-walk width in units of the site distribution's standard deviation
  /// (continuous sites), or the largest step in those units (integer sites).
  double scale = 1.0;
  /// Probability that the random-walk kernel draws from the prior instead (keeps the
  /// chain able to jump between modes); ignored by the Prior kernel.
  double prior_mix = 0.1;
  uint64_t burn_in = 0;
  uint64_t thinning = 1;
};

/// The controlled, kept (not discarded) sample records of one trace, looked up by
/// (address, instance) without hashing: address ids are small and dense.
class SiteIndex {
 public:
  void build(const TraceBatch& batch, uint32_t trace);
  /// Record index + 1 of site (address, instance), 0 when the trace has no such site.
  uint32_t find(uint32_t address, uint32_t instance) const {
    if (address >= by_address_.size()) return 0;
    const auto& v = by_address_[address];
    return instance < v.size() ? v[instance] : 0;
  }
  /// Record indices of the sites in execution order.
  const std::vector<uint32_t>& sites() const { return sites_; }
  /// Sum of the sites' log-probabilities.
  double log_prob() const { return log_prob_; }

 private:
  std::vector<std::vector<uint32_t>> by_address_;
  std::vector<uint32_t> touched_;
  std::vector<uint32_t> sites_;
  double log_prob_ = 0;
};

/// Replays a recorded trace, proposing at one chosen site.
///
/// Values come back for every (address, instance) the replayed trace has, except the
/// chosen one; sites it lacks, replayed values of another shape, and the retries of a
/// rejection loop (replace=true) whose replayed value was turned down are drawn from
/// the prior by the recorder.  A replayed or proposed value outside the support of the
/// distribution it meets marks the execution invalid (the proposal is then rejected).
class ReplayPolicy : public Policy {
 public:
  explicit ReplayPolicy(const MHOptions& options) : options_(options) {}

  /// Replays trace `trace` of `batch` (indexed by `index`); no chosen site until choose().
  void load(const TraceBatch* batch, const SiteIndex* index);
  /// Proposes at record `record` of the replayed batch; UINT32_MAX: pure replay.
  void choose(uint32_t record);

  void begin_trace(uint64_t trace) override;
  bool propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out, double* log_q) override;

  bool invalid() const { return invalid_; }
  bool chosen_hit() const { return chosen_hit_; }
  uint32_t chosen_address() const { return chosen_address_; }
  uint32_t chosen_instance() const { return chosen_instance_; }
  /// log k(x'_c | x_c) and log k(x_c | x'_c) of the last proposal at the chosen site.
  double log_forward() const { return log_forward_; }
  double log_reverse() const { return log_reverse_; }

 private:
  bool propose_chosen(const Dist& d, Rng& rng, double* out);

  MHOptions options_;
  const TraceBatch* batch_ = nullptr;
  const SiteIndex* index_ = nullptr;
  uint32_t chosen_record_ = UINT32_MAX;
  uint32_t chosen_address_ = 0, chosen_instance_ = 0;
  bool chosen_replace_ = false;
  bool invalid_ = false, chosen_hit_ = false;
  double log_forward_ = 0, log_reverse_ = 0;
  std::vector<uint8_t> consumed_;  // per record of batch_: replayed once already (rejection loops)
  std::vector<uint32_t> consumed_list_;
  std::vector<double> scratch_[3];  // the random-walk kernel's per-element bounds and spreads
};

/// What finish() and offer_initial() report, as bit flags.
enum MHStep : int {
  kMHAccepted = 1,  ///< the proposal became the state (for offer_initial: the chain started)
  kMHKept = 2,      ///< the state after this step went to the output
  kMHRejectedInvalid = 4,  ///< the proposal had zero density (value or observation outside a support)
  kMHError = 8,     ///< the execution failed for another reason (see last_error())
};

/// One Metropolis-Hastings chain: its state, its proposals, the kept states.
class MHChain {
 public:
  MHChain(const MHOptions& options, uint64_t seed, uint32_t chain_id);

  /// Starts from a replay of trace `trace` of `batch` instead of a prior draw.
  void set_start(std::shared_ptr<const TraceBatch> batch, uint32_t trace);
  /// Trace index (RNG stream) of the `attempt`-th initial execution.
  uint64_t initial_index(uint32_t attempt) const;
  /// Sets the policy up for an initial execution (call before running it).
  void prepare_initial();
  /// Offers a finished initial execution (one trace in `batch`, `code` its failure);
  /// kMHAccepted when it became the state. Zero-likelihood traces are declined.
  int offer_initial(TraceBatch& batch, ErrorCode code);

  /// Chooses the site of the next proposal; returns the trace index to execute it with.
  uint64_t prepare();
  /// Takes the proposal's recorded trace (one trace in `batch`, which may be swapped
  /// with the state); returns MHStep flags.
  int finish(TraceBatch& batch, ErrorCode code);

  Policy* policy() { return &policy_; }
  bool started() const { return started_; }
  size_t num_sites() const { return index_.sites().size(); }
  uint64_t steps() const { return steps_; }
  uint64_t accepted() const { return accepted_; }
  uint64_t rejected_invalid() const { return invalid_; }
  uint64_t errors() const { return errors_; }
  const std::string& last_error() const { return last_error_; }
  ErrorCode last_error_code() const { return last_error_code_; }
  uint32_t chain_id() const { return chain_id_; }
  /// Steps a driver should run in total (burn-in + kept * thinning); set by the host.
  uint64_t target_steps = 0;

  /// Hands the kept states over (as one batch) and starts a new output batch.
  std::shared_ptr<TraceBatch> take_output();
  const TraceBatch& state() const { return *current_; }

 private:
  void adopt(TraceBatch& batch);
  void keep_if_due(int& flags);

  MHOptions options_;
  uint64_t seed_;
  uint32_t chain_id_;
  Rng rng_;  // site choice and acceptance; proposals use the trace's own stream
  std::shared_ptr<TraceBatch> current_, output_;
  std::shared_ptr<const TraceBatch> start_;
  SiteIndex index_, start_index_;
  ReplayPolicy policy_;
  bool started_ = false;
  double current_log_joint_ = 0;  // controlled sites + likelihood
  double chosen_old_log_prob_ = 0;
  bool has_choice_ = false;
  uint64_t steps_ = 0, accepted_ = 0, invalid_ = 0, errors_ = 0;
  std::string last_error_;
  ErrorCode last_error_code_ = ErrorCode::None;
};

/// Finds `chain`'s start state with `fn` recorded by `r` into `scratch` (r's batch), at
/// most `max_attempts` executions; a failure other than a zero likelihood stops the
/// search when `stop_on_error`.  The drivers' common body (threads, simulator processes).
void mh_initialize_chain(MHChain& chain, ppfast_model_fn fn, Recorder& r, TraceBatch& scratch, uint32_t max_attempts,
                         bool stop_on_error);
/// Runs up to `steps` more steps of `chain` (never past its target_steps), calling
/// `after_step` after each; stops at the first execution error when `stop_on_error`.
void mh_run_chain(MHChain& chain, ppfast_model_fn fn, Recorder& r, TraceBatch& scratch, uint64_t steps,
                  bool stop_on_error, void (*after_step)(void*) = nullptr, void* context = nullptr);

/// Runs chains of an embedded simulator on worker threads, one chain per task.
class MHNativeRunner {
 public:
  MHNativeRunner(ppfast_model_fn fn, int threads, std::shared_ptr<Observations> observations, uint64_t seed);

  /// Finds each chain's start state, trying at most `max_attempts` executions per chain.
  /// A failure other than a zero likelihood stops that chain's search when `stop_on_error`.
  void initialize(const std::vector<MHChain*>& chains, uint32_t max_attempts, bool stop_on_error);
  /// Runs up to `steps` more steps of each chain (never past its target_steps); a chain
  /// stops at its first execution error when `stop_on_error`.
  void run(const std::vector<MHChain*>& chains, uint64_t steps, bool stop_on_error);
  int threads() const { return pool_.size(); }

 private:
  ppfast_model_fn fn_;
  WorkerPool pool_;
  std::shared_ptr<Observations> observations_;
  uint64_t seed_;
};

}  // namespace ppfast
