// Columnar, append-only block of traces (DESIGN.md §3).  Written by the recorder
// without allocation per draw once capacity is reached; read by Python as numpy views.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ppfast {

enum class RecordKind : uint8_t { Sample = 0, Observe = 1, Tag = 2, Factor = 3 };

enum RecordFlag : uint8_t {
  kControl = 1,    // inference may steer this draw
  kReplace = 2,    // rejection-loop draw: only the last one at (address, instance) counts
  kObserved = 4,   // observe with a value supplied by the run
  kDiscarded = 8,  // a replace draw superseded by a later one
  kProposed = 16,  // value came from a policy (replay or proposal), not the prior
};

enum class TraceStatus : uint8_t { Ok = 0, Error = 1 };

struct TraceBatch {
  // Per record.
  std::vector<uint32_t> rec_trace, rec_address, rec_instance, rec_name;
  std::vector<uint8_t> rec_kind, rec_flags, rec_dist;
  std::vector<double> rec_value, rec_log_prob;
  // Tensor values (rec_value_len > 1) live in value_arena; rec_value holds element 0.
  std::vector<uint32_t> rec_value_offset, rec_value_len;
  std::vector<uint32_t> rec_param_offset, rec_param_len;
  std::vector<double> value_arena, param_arena;

  // Per trace.
  std::vector<uint64_t> trace_index;  // global trace number = RNG stream id
  std::vector<uint64_t> trace_begin, trace_end;
  std::vector<double> log_prior, log_likelihood, log_weight, result;
  std::vector<uint64_t> trace_type;
  std::vector<uint8_t> status;
  std::vector<uint32_t> message;  // index into messages when status != Ok
  std::vector<std::string> messages;

  size_t num_records() const { return rec_trace.size(); }
  size_t num_traces() const { return trace_index.size(); }
  void clear();
  void reserve(size_t traces, size_t records);
  /// Appends all of `other` (trace numbers local to this batch are renumbered).
  void append(const TraceBatch& other);
  /// Appends all of `parts` after reserving the exact total of every column, so each
  /// byte is copied once (no growth reallocations, no pages touched twice).
  void append_all(const std::vector<const TraceBatch*>& parts);
  /// Reserves every column for `factor` times its current size (a batch that has recorded
  /// a sample of a run's traces, sized for the whole run).
  void reserve_scaled(double factor);
  /// Bytes allocated by the columns (capacity, not size).
  size_t capacity_bytes() const;
  /// Whether every column's capacity holds `factor` times the size of `sample`'s.
  bool holds_scaled(const TraceBatch& sample, double factor) const;
  /// Bytes of the columns reserve_scaled(factor) reserves.
  size_t scaled_bytes(double factor) const;
  /// Empties the batch and lets the kernel take back its columns' pages when it needs the
  /// memory (MADV_FREE); until it does, writing them again costs no page fault.  False
  /// where the kernel cannot (the pages stay as they are).
  bool free_pages_lazily();
  /// The pages past each column's size are lazily freed already (they need no second call).
  bool lazy_past_size = false;
};

/// Recycles batches so steady-state runs allocate nothing: a batch handed out as a
/// shared_ptr goes back to the pool when its last owner (e.g. a numpy view) lets go.
/// Up to kMaxPooledBytes of spares stay as they are; larger ones (the chunks of a run of
/// millions of traces) are kept with their pages lazily freed, up to half the physical
/// memory: the kernel reclaims them under memory pressure, and otherwise the next large
/// run writes them without the page faults and zeroing of fresh memory (which cost a run
/// of several GB a third of its time).
class BatchPool {
 public:
  /// An empty batch: a spare sized for `traces` traces where one is (0: any).
  std::shared_ptr<TraceBatch> acquire(size_t traces = 0);
  /// A copy of `sample` with room for `factor` times its size (TraceBatch::reserve_scaled):
  /// in the smallest spare that holds it and is at most kMaxOversize times that size, else
  /// in a new batch.
  std::shared_ptr<TraceBatch> refit(const TraceBatch& sample, double factor);
  static constexpr size_t kMaxOversize = 4;
  static BatchPool& global();
  /// Bytes held by the spare batches kept as they are.
  size_t pooled_bytes();
  /// Bytes of address space held by the spares whose pages are lazily freed.
  size_t lazily_pooled_bytes();
  static constexpr size_t kMaxPooled = 64;
  static constexpr size_t kMaxPooledBytes = size_t(512) << 20;

 private:
  void release(TraceBatch* b);
  std::mutex mutex_;
  std::vector<std::unique_ptr<TraceBatch>> free_, lazy_;
  size_t pooled_bytes_ = 0, lazy_bytes_ = 0;
};

}  // namespace ppfast
