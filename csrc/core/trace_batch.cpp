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
template <class T>
void reserve_scaled_one(std::vector<T>& v, double factor) {
  const auto n = static_cast<size_t>(double(v.size()) * factor) + 16;
  if (n <= v.capacity()) return;
  // An eighth more than this run needs: a pooled batch is reused by the next run of about
  // the same size, and every run whose first traces were a little longer than its
  // predecessor's (one in two) would otherwise move the whole batch to fresh pages.
  v.reserve(n + n / 8);
}
}  // namespace

void TraceBatch::reserve_scaled(double factor) {
  // 2% over: a run whose later traces draw a little more does not double a column.
  factor *= 1.02;
  for (auto* v : {&rec_trace, &rec_address, &rec_instance, &rec_name, &rec_value_offset, &rec_value_len,
                  &rec_param_offset, &rec_param_len, &message})
    reserve_scaled_one(*v, factor);
  for (auto* v : {&rec_kind, &rec_flags, &rec_dist, &status}) reserve_scaled_one(*v, factor);
  for (auto* v : {&rec_value, &rec_log_prob, &value_arena, &param_arena, &log_prior, &log_likelihood, &log_weight,
                  &result})
    reserve_scaled_one(*v, factor);
  for (auto* v : {&trace_index, &trace_begin, &trace_end, &trace_type}) reserve_scaled_one(*v, factor);
}

void TraceBatch::clear() {
  for (auto* v : {&rec_trace, &rec_address, &rec_instance, &rec_name, &rec_value_offset, &rec_value_len,
                  &rec_param_offset, &rec_param_len, &message})
    v->clear();
  for (auto* v : {&rec_kind, &rec_flags, &rec_dist, &status}) v->clear();
  for (auto* v : {&rec_value, &rec_log_prob, &value_arena, &param_arena, &log_prior, &log_likelihood, &log_weight,
                  &result})
    v->clear();
  for (auto* v : {&trace_index, &trace_begin, &trace_end, &trace_type}) v->clear();
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
  clear();
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  bool ok = true;
  auto lazy = [&](const auto& v) {
    // The whole pages inside the column's capacity (the allocator's own bytes around it
    // are left alone).
    const auto begin = (reinterpret_cast<uintptr_t>(v.data()) + page - 1) & ~(page - 1);
    const auto end = (reinterpret_cast<uintptr_t>(v.data() + v.capacity())) & ~(page - 1);
    if (end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, MADV_FREE) != 0) ok = false;
  };
  for (auto* v : {&rec_trace, &rec_address, &rec_instance, &rec_name, &rec_value_offset, &rec_value_len,
                  &rec_param_offset, &rec_param_len, &message})
    lazy(*v);
  for (auto* v : {&rec_kind, &rec_flags, &rec_dist, &status}) lazy(*v);
  for (auto* v : {&rec_value, &rec_log_prob, &value_arena, &param_arena, &log_prior, &log_likelihood, &log_weight,
                  &result})
    lazy(*v);
  for (auto* v : {&trace_index, &trace_begin, &trace_end, &trace_type}) lazy(*v);
  return ok;
#else
  return false;
#endif
}

size_t TraceBatch::capacity_bytes() const {
  size_t n = 0;
  auto add = [&n](const auto& v) { n += v.capacity() * sizeof(v[0]); };
  for (auto* v : {&rec_trace, &rec_address, &rec_instance, &rec_name, &rec_value_offset, &rec_value_len,
                  &rec_param_offset, &rec_param_len, &message})
    add(*v);
  for (auto* v : {&rec_kind, &rec_flags, &rec_dist, &status}) add(*v);
  for (auto* v : {&rec_value, &rec_log_prob, &value_arena, &param_arena, &log_prior, &log_likelihood, &log_weight,
                  &result})
    add(*v);
  for (auto* v : {&trace_index, &trace_begin, &trace_end, &trace_type}) add(*v);
  return n;
}

BatchPool& BatchPool::global() {
  static BatchPool* pool = new BatchPool();  // never destroyed: views may outlive static teardown
  return *pool;
}

}  // namespace ppfast
