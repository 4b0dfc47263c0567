// Runs many executions of a native model on worker threads.  Trace i always uses RNG
// stream i, so a seed gives the same traces whatever the thread count.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/recorder.hpp"
#include "ppfast/ppfast.h"

namespace ppfast {

/// A fixed set of threads that run indexed tasks; run() blocks until all are done.
/// Callers on several threads take turns (one run at a time per pool).
class WorkerPool {
 public:
  /// Throws std::system_error, with no thread left behind, when a thread cannot start.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Calls fn(task, worker) for every task in [0, ntasks).
  void run(size_t ntasks, const std::function<void(size_t, int)>& fn);
  /// As run(), but the tasks run on the pool's threads only (workers 1..size()-1) while
  /// the caller calls `supervise` every few milliseconds until they are done: it stays
  /// free to notice Ctrl-C whatever the simulator does.
  void run_supervised(size_t ntasks, const std::function<void(size_t, int)>& fn,
                      const std::function<void()>& supervise);
  /// Calls fn(worker) once on every thread, worker 0 being the caller: for work pinned
  /// to a thread (fibers, thread-local simulator state).
  void run_on_each(const std::function<void(int)>& fn);
  int size() const { return static_cast<int>(threads_.size()) + 1; }

 private:
  void loop(int worker);
  void work(int worker);
  void start(size_t ntasks, const std::function<void(size_t, int)>& fn);

  void stop();

  std::vector<std::thread> threads_;
  std::mutex turn_;  // held for a whole run: the fields below describe one run at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t, int)>* fn_ = nullptr;
  size_t ntasks_ = 0, next_ = 0, finished_ = 0;
  uint64_t epoch_ = 0;
  bool pinned_ = false;
  bool stop_ = false;
};

/// Runs one execution of `fn` under `r`, turning exceptions into a failed trace.
double execute(ppfast_model_fn fn, Recorder& r);

/// Builds a policy per worker (nullptr = prior).
using PolicyFactory = std::function<std::unique_ptr<Policy>(int worker)>;

/// A run that can be stopped part-way (Ctrl-C): `supervise` is called on the calling
/// thread every few milliseconds and may set `stop`; then every worker drops the trace
/// it is in (at its next draw) and the run returns the traces finished so far.
struct RunControl {
  std::function<void()> supervise;
  std::atomic<bool> stop{false};
};

/// Traces [first, first + count) of `fn` as one batch per worker's range, in trace order
/// (their concatenation is the run).  With `control`, the traces run on the pool's threads
/// (the caller supervises) and each batch may end with a prefix of its range when
/// control->stop was set.
std::vector<std::shared_ptr<TraceBatch>> run_trace_parts(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed,
                                                         uint64_t first, uint64_t count,
                                                         const Observations* observations,
                                                         const PolicyFactory& policies = nullptr,
                                                         RunControl* control = nullptr);

/// Traces after which a range's batch is sized for the whole range (run_trace_parts).
constexpr uint64_t kSizingTraces = 256;

/// Appends traces [first, first + count) of `fn` to `out` (run_trace_parts, merged).  With `control`, the traces
/// run on the pool's threads (the caller supervises) and `out` may end with a prefix of
/// each worker's range when control->stop was set.
void run_traces(WorkerPool& pool, ppfast_model_fn fn, uint64_t seed, uint64_t first, uint64_t count,
                const Observations* observations, TraceBatch& out, const PolicyFactory& policies = nullptr,
                RunControl* control = nullptr);

}  // namespace ppfast
