#include "core/runner.hpp"

#include <algorithm>
#include <exception>
#include <string>

namespace ppfast {

WorkerPool::WorkerPool(int threads) {
  for (int i = 1; i < std::max(threads, 1); ++i) threads_.emplace_back([this, i] { loop(i); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::work(int worker) {
  for (;;) {
    size_t task;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_ >= ntasks_) return;
      task = next_++;
    }
    (*fn_)(task, worker);
    std::lock_guard<std::mutex> lock(mutex_);
    if (++finished_ == ntasks_) done_.notify_all();
  }
}

void WorkerPool::loop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || epoch_ != seen; });
      if (stop_) return;
      seen = epoch_;
    }
    work(worker);
  }
}

void WorkerPool::run(size_t ntasks, const std::function<void(size_t, int)>& fn) {
  if (ntasks == 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    ntasks_ = ntasks;
    next_ = finished_ = 0;
    ++epoch_;
  }
  if (ntasks > 1) wake_.notify_all();
  work(0);  // the calling thread works too
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return finished_ == ntasks_; });
  fn_ = nullptr;
}

double execute(ppfast_model_fn fn, Recorder& r) {
  try {
    return fn();
  } catch (const std::exception& e) {
    // TraceAborted after a recorded failure keeps the first cause (fail() ignores the rest).
    r.fail(std::string("simulator threw: ") + e.what());
  } catch (...) {
    r.fail("simulator threw a non-standard exception");
  }
  return 0.0;
}

void run_traces(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                const Observations* observations, TraceBatch& out, const PolicyFactory& policies) {
  const size_t workers = static_cast<size_t>(pool.size());
  // Enough chunks to balance load, few enough that merging stays cheap.
  const uint64_t chunk = std::max<uint64_t>(1024, (count + 4 * workers - 1) / (4 * workers));
  const size_t nchunks = static_cast<size_t>((count + chunk - 1) / chunk);
  if (nchunks <= 1 || workers == 1) {
    std::unique_ptr<Policy> policy = policies ? policies(0) : nullptr;
    Recorder r(out, observations, seed, policy.get());
    RecorderScope scope(&r);
    for (uint64_t i = first; i < first + count; ++i) {
      r.begin_trace(i);
      double result = execute(fn, r);
      r.end_trace(result);
    }
    return;
  }
  std::vector<std::shared_ptr<TraceBatch>> parts(nchunks);
  std::vector<std::unique_ptr<Policy>> worker_policies(workers);
  if (policies)
    for (size_t w = 0; w < workers; ++w) worker_policies[w] = policies(static_cast<int>(w));
  pool.run(nchunks, [&](size_t c, int worker) {
    parts[c] = BatchPool::global().acquire();
    Recorder r(*parts[c], observations, seed, worker_policies[worker].get());
    RecorderScope scope(&r);
    const uint64_t begin = first + c * chunk, end = std::min(first + count, begin + chunk);
    for (uint64_t i = begin; i < end; ++i) {
      r.begin_trace(i);
      double result = execute(fn, r);
      r.end_trace(result);
    }
  });
  size_t traces = 0, records = 0;
  for (auto& p : parts) traces += p->num_traces(), records += p->num_records();
  out.reserve(out.num_traces() + traces, out.num_records() + records);
  for (auto& p : parts) out.append(*p);
}

}  // namespace ppfast
