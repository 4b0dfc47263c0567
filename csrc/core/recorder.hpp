// The recorder: runs the distributions at each sample / observe / tag site of one
// execution and appends the records to a TraceBatch.  The execution policy (prior,
// replay for MH, proposals for IC) is a pluggable Policy; observations come from an
// Observations map.  One recorder per thread; the C ABI reaches the thread's current one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/distributions.hpp"
#include "core/rng.hpp"
#include "core/trace_batch.hpp"

namespace ppfast {

/// Observed values by name id (the run's observe={name: value} map).
struct Observations {
  std::vector<std::vector<double>> values;  // indexed by name id
  std::vector<uint8_t> given;
  bool required = false;  // posterior runs: an observe site without a value is an error

  void set(uint32_t name, std::vector<double> v);
  const std::vector<double>* find(uint32_t name) const {
    return name < given.size() && given[name] ? &values[name] : nullptr;
  }
};

/// Decides values at controlled sample sites instead of the prior.
class Policy {
 public:
  virtual ~Policy() = default;
  /// Called when a trace starts (trace = its global index).
  virtual void begin_trace(uint64_t trace) { (void)trace; }
  /// Return true to supply the value (out[0..d.size)) with its proposal log-density
  /// `log_q`; false to draw from the prior.
  virtual bool propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out,
                       double* log_q) = 0;
};

/// Why a trace failed; mapped to typed Python errors at the binding boundary.
enum class ErrorCode : uint8_t { None = 0, InvalidDistribution, MissingObservation, OutOfSupport, Simulator, Proposal };

class Recorder {
 public:
  Recorder(TraceBatch& out, const Observations* observations, uint64_t seed, Policy* policy = nullptr);

  void begin_trace(uint64_t index);
  /// Finishes the current trace; returns false if it failed.
  bool end_trace(double result);

  double sample(const Dist& d, uint32_t address, uint32_t name, uint32_t flags, double* out);
  /// sample(Uniform(0, 1), address, no name, kControl): a draw captured at a simulator's
  /// generator (ppfast_uniform), the same record and value by a shorter path.
  double sample_unit(uint32_t address);
  double observe(const Dist& d, uint32_t address, uint32_t name, const double* value, uint32_t n);
  void tag(uint32_t address, uint32_t name, const double* value, uint32_t n);
  void factor(double log_prob);

  void fail(const std::string& message, ErrorCode code = ErrorCode::Simulator);
  bool failed() const { return failed_; }
  ErrorCode error_code() const { return code_; }
  const std::string& error() const { return error_; }
  uint64_t trace_index() const { return index_; }
  Rng& rng() { return rng_; }
  TraceBatch& batch() {
    if (nunits_) flush_units();
    return out_;
  }
  void set_policy(Policy* p) { policy_ = p; }
  /// When *stop becomes true the current trace fails at its next draw (stopped() tells).
  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; }
  bool stopped() const { return stopped_; }
  /// Between begin_trace and end_trace (or discard_trace).
  bool in_trace() const { return in_trace_; }
  /// Drops the current trace's records (a trace stopped part-way is not kept).
  void discard_trace();

 private:
  double sample_unit_general(uint32_t address);
  void flush_units();  // callers test nunits_ first: no call on draws of other kinds
  uint32_t next_instance(uint32_t address, bool replace, uint64_t record);
  void append(RecordKind kind, uint8_t flags, const Dist* d, uint32_t address, uint32_t instance, uint32_t name,
              const double* value, uint32_t n, double log_prob);
  /// Arena offset of a sample's parameters (stored, or the equal last ones reused).
  uint32_t store_params(const Dist& d);
  std::string site(uint32_t address, uint32_t name) const;
  /// log_prob(d, value) of an observe, with a fused Normal.
  double observe_log_prob(const Dist& d, const double* value);

  TraceBatch& out_;
  const Observations* observations_;
  Policy* policy_;
  uint64_t seed_;
  Rng rng_;

  uint64_t index_ = 0;
  uint64_t begin_ = 0;
  uint32_t trace_ = 0;
  uint64_t type_hash_ = 0;
  bool type_dirty_ = false;
  double log_prior_ = 0, log_likelihood_ = 0, log_correction_ = 0;
  bool failed_ = false;
  bool stopped_ = false;
  bool in_trace_ = false;
  const std::atomic<bool>* stop_ = nullptr;
  uint64_t value_begin_ = 0, param_begin_ = 0;  // arena sizes when the trace began
  ErrorCode code_ = ErrorCode::None;
  std::string error_;

  // Per-trace scratch indexed by address id, reset through `touched_` (no allocation).
  std::vector<uint32_t> instances_;
  std::vector<uint64_t> last_replace_;  // record index + 1 of the last replace draw
  std::vector<uint32_t> touched_;
  std::vector<double> scratch_;
  double cached_sd_ = 1.0, cached_log_sd_ = 0.0;  // log(stddev) of the last Normal draw
  double cached_width_ = 1.0, cached_log_width_ = 0.0;  // -log(high - low) of the last Uniform draw
  double observe_sd_ = 1.0, observe_log_sd_ = 0.0;  // log(stddev) of the last Normal observe
  uint64_t last_params_ = 0;  // arena offset and count of the parameters this trace stored last
  uint32_t last_nparams_ = UINT32_MAX;

  // Generator draws (sample_unit) wait here and enter the batch a block at a time
  // (flush_units: before any other record or read of the batch, and at the trace's end):
  // filling each column for a block costs a fraction of appending record by record.  Kept
  // column by column, so that a block enters each column as one copy.
  static constexpr uint32_t kUnitBlock = 256;
  uint32_t unit_address_[kUnitBlock], unit_instance_[kUnitBlock];
  double unit_value_[kUnitBlock];
  uint32_t nunits_ = 0;
};

/// The recorder of the calling thread (nullptr outside a run).
Recorder*& current_recorder();

/// Marks a run in progress in this process for its scope: draws made meanwhile on a
/// thread without a recorder (threads a simulator starts itself) are counted, since they
/// cannot be recorded (see unrecorded_draws).
struct ActiveRun {
  ActiveRun();
  ~ActiveRun();
  ActiveRun(const ActiveRun&) = delete;
  ActiveRun& operator=(const ActiveRun&) = delete;
  static bool any();
};
/// Draws made so far, process-wide, on threads without a recorder during a run.
uint64_t unrecorded_draws();
/// Throws std::runtime_error if draws went unrecorded since `before` = unrecorded_draws().
void check_unrecorded_draws(uint64_t before);

/// Makes `r` the thread's current recorder for the scope.
class RecorderScope {
 public:
  explicit RecorderScope(Recorder* r) : previous_(current_recorder()) { current_recorder() = r; }
  ~RecorderScope() { current_recorder() = previous_; }
  RecorderScope(const RecorderScope&) = delete;
  RecorderScope& operator=(const RecorderScope&) = delete;

 private:
  Recorder* previous_;
};

/// 64-bit FNV-1a step used for trace-type hashes.
inline uint64_t hash_step(uint64_t h, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    h ^= (v >> (8 * i)) & 0xffu;
    h *= 1099511628211ull;
  }
  return h;
}
constexpr uint64_t kHashSeed = 14695981039346656037ull;

}  // namespace ppfast
