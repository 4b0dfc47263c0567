#include "core/runner.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>

namespace ppfast {

WorkerPool::WorkerPool(int threads) {
  threads_.reserve(size_t(std::max(threads, 1)));
  try {
    for (int i = 1; i < std::max(threads, 1); ++i) threads_.emplace_back([this, i] { loop(i); });
  } catch (const std::system_error& e) {
    const size_t started = threads_.size() + 1;
    stop();  // the threads already started would otherwise wait forever
    throw std::system_error(e.code(), "cannot start worker thread " + std::to_string(started + 1) + " of " +
                                          std::to_string(threads));
  }
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
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
    bool pinned;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || epoch_ != seen; });
      if (stop_) return;
      seen = epoch_;
      pinned = pinned_;
    }
    if (!pinned) {
      work(worker);
      continue;
    }
    (*fn_)(static_cast<size_t>(worker), worker);
    std::lock_guard<std::mutex> lock(mutex_);
    if (++finished_ == ntasks_) done_.notify_all();
  }
}

void WorkerPool::run_on_each(const std::function<void(int)>& fn) {
  std::lock_guard<std::mutex> turn(turn_);
  const std::function<void(size_t, int)> task = [&fn](size_t, int worker) { fn(worker); };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &task;
    ntasks_ = threads_.size() + 1;
    next_ = ntasks_;  // nothing for work() to take: each thread runs its own call
    finished_ = 0;
    pinned_ = true;
    ++epoch_;
  }
  wake_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mutex_);
  if (++finished_ < ntasks_) done_.wait(lock, [&] { return finished_ == ntasks_; });
  pinned_ = false;
  fn_ = nullptr;
}

void WorkerPool::start(size_t ntasks, const std::function<void(size_t, int)>& fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    ntasks_ = ntasks;
    next_ = finished_ = 0;
    ++epoch_;
  }
  wake_.notify_all();
}

void WorkerPool::run(size_t ntasks, const std::function<void(size_t, int)>& fn) {
  if (ntasks == 0) return;
  std::lock_guard<std::mutex> turn(turn_);
  start(ntasks, fn);
  work(0);  // the calling thread works too
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return finished_ == ntasks_; });
  fn_ = nullptr;
}

void WorkerPool::run_supervised(size_t ntasks, const std::function<void(size_t, int)>& fn,
                                const std::function<void()>& supervise) {
  if (ntasks == 0) return;
  if (threads_.empty()) throw std::logic_error("WorkerPool::run_supervised needs at least one pool thread");
  std::lock_guard<std::mutex> turn(turn_);
  start(ntasks, fn);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!done_.wait_for(lock, std::chrono::milliseconds(5), [&] { return finished_ == ntasks_; })) {
    lock.unlock();
    supervise();
    lock.lock();
  }
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

void check_unrecorded_draws(uint64_t before) {
  const uint64_t n = unrecorded_draws() - before;
  if (n)
    throw std::runtime_error(std::to_string(n) + " draw(s) came from threads the simulator started itself during "
                             "the run: ppfast records draws on the thread that runs the trace only, so these "
                             "were not recorded; draw on that thread (or run one trace per thread)");
}

namespace {
/// Sizes `batch` (between traces) for `factor` times what it holds.  A batch that holds
/// that and is not many times larger stays; else the traces so far move to a spare of the
/// pool that fits (or a new batch): a range handed a spare of another model's size at first
/// neither grows it into fresh memory nor writes a huge one while one that fits waits.
void resize_for(const std::shared_ptr<TraceBatch>& batch, double factor) {
  if (batch->holds_scaled(*batch, factor) &&
      batch->capacity_bytes() <= BatchPool::kMaxOversize * batch->scaled_bytes(factor))
    return;
  auto fitted = BatchPool::global().refit(*batch, factor);
  std::swap(*batch, *fitted);  // the recorder writes to *batch: now the fitted columns
}
}  // namespace

std::vector<std::shared_ptr<TraceBatch>> run_trace_parts(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed,
                                                         uint64_t first, uint64_t count,
                                                         const Observations* observations,
                                                         const PolicyFactory& policies, RunControl* control) {
  ActiveRun active;
  const uint64_t unrecorded = unrecorded_draws();
  // Supervised, the caller does not simulate: one worker fewer.
  const size_t workers = static_cast<size_t>(std::max(1, pool.size() - (control ? 1 : 0)));
  const size_t slots = static_cast<size_t>(pool.size());
  // One contiguous range per worker, recorded into a batch of its own that is handed back
  // as it is: no merge copies the run.
  const uint64_t chunk = std::max<uint64_t>(1024, (count + workers - 1) / workers);
  const size_t nchunks = static_cast<size_t>((count + chunk - 1) / chunk);
  std::vector<std::shared_ptr<TraceBatch>> parts(nchunks);
  std::vector<std::unique_ptr<Policy>> worker_policies(slots);
  if (policies)
    for (size_t w = 0; w < slots; ++w) worker_policies[w] = policies(static_cast<int>(w));
  const std::atomic<bool>* stop = control ? &control->stop : nullptr;
  auto run_chunk = [&](size_t c, int worker) {
    const uint64_t begin = first + c * chunk, end = std::min(first + count, begin + chunk);
    parts[c] = BatchPool::global().acquire(static_cast<size_t>(end - begin));
    TraceBatch& target = *parts[c];
    Recorder r(target, observations, seed, worker_policies[worker].get());
    r.set_stop(stop);
    RecorderScope scope(&r);
    // After a few traces, size every column for the whole range from what they used so
    // far: one early reallocation instead of doubling (each doubling copies the batch and
    // touches fresh pages).
    const uint64_t probe = begin + kSizingTraces;
    for (uint64_t i = begin; i < end; ++i) {
      if (stop && stop->load(std::memory_order_relaxed)) return;
      if (i == probe) resize_for(parts[c], double(end - begin) / double(kSizingTraces));
      r.begin_trace(i);
      double result = execute(fn, r);
      if (r.stopped()) {
        r.discard_trace();  // stopped part-way: not a finished trace
        return;
      }
      r.end_trace(result);
    }
  };
  if (control) {
    pool.run_supervised(nchunks, run_chunk, control->supervise);
  } else if (nchunks <= 1 || workers == 1) {
    for (size_t c = 0; c < nchunks; ++c) run_chunk(c, 0);
  } else {
    pool.run(nchunks, run_chunk);
  }
  check_unrecorded_draws(unrecorded);
  // A range a stopped run never started has no batch.
  parts.erase(std::remove(parts.begin(), parts.end(), nullptr), parts.end());
  return parts;
}

void run_traces(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                const Observations* observations, TraceBatch& out, const PolicyFactory& policies,
                RunControl* control) {
  auto parts = run_trace_parts(pool, fn, seed, first, count, observations, policies, control);
  if (parts.size() == 1 && out.num_traces() == 0 && out.num_records() == 0) {
    std::swap(out, *parts[0]);  // the common single-range run: no copy
    return;
  }
  std::vector<const TraceBatch*> natives;
  for (const auto& p : parts) natives.push_back(p.get());
  out.append_all(natives);
}

}  // namespace ppfast
