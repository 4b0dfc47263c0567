#include "core/trace_batch.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace ppfast {

namespace {
template <class T>
void extend(std::vector<T>& dst, const std::vector<T>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}
template <class T>
void extend_shifted(std::vector<T>& dst, const std::vector<T>& src, T shift) {
  size_t n = dst.size();
  dst.resize(n + src.size());
  for (size_t i = 0; i < src.size(); ++i) dst[n + i] = src[i] + shift;
}
// The room a column of n elements needs for `factor` times as many: 2% over, so that a
// run whose later traces draw a little more does not double a column.
size_t scaled(size_t n, double factor) { return static_cast<size_t>(double(n) * factor * 1.02) + 16; }
template <class T>
void reserve_scaled_one(std::vector<T>& v, double factor) {
  const auto n = scaled(v.size(), factor);
  if (n <= v.capacity()) return;
  // An eighth more than this run needs: a pooled batch is reused by the next run of about
  // the same size, and every run whose first traces were a little longer than its
  // predecessor's (one in two) would otherwise move the whole batch to fresh pages.
  v.reserve(n + n / 8);
}
/// Calls f(a.column, b.column) for every column of two batches (const or not).
template <class A, class B, class F>
void for_each_column_pair(A& a, B& b, F f) {
  f(a.rec_trace, b.rec_trace), f(a.rec_address, b.rec_address), f(a.rec_instance, b.rec_instance);
  f(a.rec_name, b.rec_name), f(a.rec_kind, b.rec_kind), f(a.rec_flags, b.rec_flags), f(a.rec_dist, b.rec_dist);
  f(a.rec_value, b.rec_value), f(a.rec_log_prob, b.rec_log_prob), f(a.rec_value_offset, b.rec_value_offset);
  f(a.rec_value_len, b.rec_value_len), f(a.rec_param_offset, b.rec_param_offset);
  f(a.rec_param_len, b.rec_param_len), f(a.value_arena, b.value_arena), f(a.param_arena, b.param_arena);
  f(a.trace_index, b.trace_index), f(a.trace_begin, b.trace_begin), f(a.trace_end, b.trace_end);
  f(a.log_prior, b.log_prior), f(a.log_likelihood, b.log_likelihood), f(a.log_weight, b.log_weight);
  f(a.result, b.result), f(a.trace_type, b.trace_type), f(a.status, b.status), f(a.message, b.message);
}
/// Calls f(column) for every column of a batch.
template <class A, class F>
void for_each_column(A& a, F f) {
  for_each_column_pair(a, a, [&f](auto& v, auto&) { f(v); });
}
}  // namespace

bool TraceBatch::holds_scaled(const TraceBatch& sample, double factor) const {
  bool holds = true;
  for_each_column_pair(*this, sample, [&](const auto& mine, const auto& theirs) {
    holds = holds && mine.capacity() >= scaled(theirs.size(), factor);
  });
  return holds;
}

size_t TraceBatch::scaled_bytes(double factor) const {
  size_t n = 0;
  for_each_column(*this, [&](const auto& v) { n += scaled(v.size(), factor) * sizeof(v[0]); });
  return n;
}

void TraceBatch::reserve_scaled(double factor) {
  for_each_column(*this, [factor](auto& v) { reserve_scaled_one(v, factor); });
}

void TraceBatch::clear() {
  for_each_column(*this, [](auto& v) { v.clear(); });
  messages.clear();
}

void TraceBatch::reserve(size_t traces, size_t records) {
  for (auto* v : {&rec_trace, &rec_address, &rec_instance, &rec_name, &rec_value_offset, &rec_value_len,
                  &rec_param_offset, &rec_param_len})
    v->reserve(records);
  for (auto* v : {&rec_kind, &rec_flags, &rec_dist}) v->reserve(records);
  rec_value.reserve(records);
  rec_log_prob.reserve(records);
  param_arena.reserve(2 * records);
  for (auto* v : {&log_prior, &log_likelihood, &log_weight, &result}) v->reserve(traces);
  for (auto* v : {&trace_index, &trace_begin, &trace_end, &trace_type}) v->reserve(traces);
  status.reserve(traces);
  message.reserve(traces);
}

void TraceBatch::append(const TraceBatch& o) {
  const auto trace0 = static_cast<uint32_t>(num_traces());
  const auto rec0 = static_cast<uint64_t>(num_records());
  const auto value0 = static_cast<uint32_t>(value_arena.size());
  const auto param0 = static_cast<uint32_t>(param_arena.size());
  const auto msg0 = static_cast<uint32_t>(messages.size());

  extend_shifted(rec_trace, o.rec_trace, trace0);
  extend(rec_address, o.rec_address);
  extend(rec_instance, o.rec_instance);
  extend(rec_name, o.rec_name);
  extend(rec_kind, o.rec_kind);
  extend(rec_flags, o.rec_flags);
  extend(rec_dist, o.rec_dist);
  extend(rec_value, o.rec_value);
  extend(rec_log_prob, o.rec_log_prob);
  extend_shifted(rec_value_offset, o.rec_value_offset, value0);
  extend(rec_value_len, o.rec_value_len);
  extend_shifted(rec_param_offset, o.rec_param_offset, param0);
  extend(rec_param_len, o.rec_param_len);
  extend(value_arena, o.value_arena);
  extend(param_arena, o.param_arena);

  extend(trace_index, o.trace_index);
  extend_shifted(trace_begin, o.trace_begin, rec0);
  extend_shifted(trace_end, o.trace_end, rec0);
  extend(log_prior, o.log_prior);
  extend(log_likelihood, o.log_likelihood);
  extend(log_weight, o.log_weight);
  extend(result, o.result);
  extend(trace_type, o.trace_type);
  extend(status, o.status);
  extend_shifted(message, o.message, msg0);
  extend(messages, o.messages);
}

void TraceBatch::append_all(const std::vector<const TraceBatch*>& parts) {
  size_t traces = num_traces(), records = num_records(), values = value_arena.size(), params = param_arena.size(),
         messages_n = messages.size();
  for (const auto* p : parts) {
    traces += p->num_traces();
    records += p->num_records();
    values += p->value_arena.size();
    params += p->param_arena.size();
    messages_n += p->messages.size();
  }
  value_arena.reserve(values);
  param_arena.reserve(params);
  messages.reserve(messages_n);
  reserve(traces, records);
  for (const auto* p : parts) append(*p);
}

std::shared_ptr<TraceBatch> BatchPool::acquire(size_t traces) {
  std::unique_ptr<TraceBatch> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // The spare that fits `traces` best: the smallest that holds them, else the largest
    // (a large range must not grow a small spare into fresh memory while a large one waits).
    std::vector<std::unique_ptr<TraceBatch>>* list = nullptr;
    size_t at = 0, best = 0;
    for (auto* l : {&free_, &lazy_}) {
      for (size_t i = l->size(); i-- > 0;) {
        const size_t cap = (*l)[i]->trace_index.capacity();
        const bool better = !list || (best < traces ? cap > best : cap >= traces && cap < best);
        if (better) list = l, at = i, best = cap;
        if (traces == 0) break;  // no size to fit: the most recent spare
      }
      if (list && traces == 0) break;
    }
    if (list) {
      batch = std::move((*list)[at]);
      list->erase(list->begin() + static_cast<std::ptrdiff_t>(at));
      (list == &free_ ? pooled_bytes_ : lazy_bytes_) -= batch->capacity_bytes();
    }
  }
  if (!batch) batch = std::make_unique<TraceBatch>();
  batch->clear();
  return std::shared_ptr<TraceBatch>(batch.release(), [this](TraceBatch* b) { release(b); });
}

std::shared_ptr<TraceBatch> BatchPool::refit(const TraceBatch& sample, double factor) {
  std::unique_ptr<TraceBatch> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::unique_ptr<TraceBatch>>* list = nullptr;
    size_t at = 0, best = kMaxOversize * sample.scaled_bytes(factor) + 1;
    for (auto* l : {&free_, &lazy_})
      for (size_t i = 0; i < l->size(); ++i) {
        const size_t bytes = (*l)[i]->capacity_bytes();
        if (bytes < best && (*l)[i]->holds_scaled(sample, factor)) list = l, at = i, best = bytes;
      }
    if (list) {
      batch = std::move((*list)[at]);
      list->erase(list->begin() + static_cast<std::ptrdiff_t>(at));
      (list == &free_ ? pooled_bytes_ : lazy_bytes_) -= best;
    }
  }
  if (!batch) batch = std::make_unique<TraceBatch>();
  batch->clear();
  batch->append(sample);
  batch->reserve_scaled(factor);  // (a no-op for a spare that holds it)
  return std::shared_ptr<TraceBatch>(batch.release(), [this](TraceBatch* b) { release(b); });
}

namespace {
size_t half_physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 2 : 0;
}
}  // namespace

void BatchPool::release(TraceBatch* b) {
  static const size_t lazy_limit = half_physical_memory();
  const size_t bytes = b->capacity_bytes();
  std::lock_guard<std::mutex> lock(mutex_);
  // A bounded number and total size of spares stay as they are: the chunks of one large
  // in-memory run would otherwise all stay allocated after it.
  if (free_.size() < kMaxPooled && pooled_bytes_ + bytes <= kMaxPooledBytes) {
    b->lazy_past_size = false;  // its pages stay as they are from now on
    free_.emplace_back(b);
    pooled_bytes_ += bytes;
  } else if (lazy_.size() < kMaxPooled && lazy_bytes_ + bytes <= lazy_limit && b->free_pages_lazily()) {
    lazy_.emplace_back(b);
    lazy_bytes_ += bytes;
  } else {
    delete b;
  }
}

size_t BatchPool::pooled_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return pooled_bytes_;
}

size_t BatchPool::lazily_pooled_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return lazy_bytes_;
}

bool TraceBatch::free_pages_lazily() {
#ifdef MADV_FREE
  const bool whole = !lazy_past_size;
  lazy_past_size = true;
  messages.clear();
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  bool ok = true;
  auto lazy = [&](auto& v) {
    // The whole pages inside the column's capacity (or size): the allocator's own bytes
    // around it are left alone.
    const auto begin = (reinterpret_cast<uintptr_t>(v.data()) + page - 1) & ~(page - 1);
    const auto end = (reinterpret_cast<uintptr_t>(v.data() + (whole ? v.capacity() : v.size()))) & ~(page - 1);
    v.clear();
    if (end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, MADV_FREE) != 0) ok = false;
  };
  for_each_column(*this, lazy);
  return ok;
#else
  return false;
#endif
}

size_t TraceBatch::capacity_bytes() const {
  size_t n = 0;
  auto add = [&n](const auto& v) { n += v.capacity() * sizeof(v[0]); };
  for_each_column(*this, add);
  return n;
}

BatchPool& BatchPool::global() {
  static BatchPool* pool = new BatchPool();  // never destroyed: views may outlive static teardown
  return *pool;
}

}  // namespace ppfast
