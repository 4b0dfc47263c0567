// The host side of the shared-memory transport: starts simulator processes, splits runs
// among them, hands back the trace batches they place in shared memory, and survives
// processes that crash or hang.  No Python here; csrc/python/shm.cpp binds it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/guided.hpp"
#include "transport/shm/protocol.hpp"

namespace ppfast::shm {

struct HostOptions {
  std::vector<std::string> argv;  // the simulator command; --ppfast-shm fd:3,4 is appended
  std::vector<std::string> env;   // its whole environment, "NAME=value"
  int workers = 1;
  double timeout = 60;            // seconds without progress before a process counts as hung; <= 0: never
  double startup_timeout = 30;    // seconds for a process to map its segments and report ready
  int max_restarts = 100;         // process restarts allowed within one run
};

class Arena;

/// A block of the data arena; goes back to the arena's free list with its last owner.
class Block {
 public:
  Block(std::shared_ptr<Arena> arena, uint64_t offset, uint64_t size);
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  uint8_t* data() const;
  uint64_t offset() const { return offset_; }
  uint64_t size() const { return size_; }

 private:
  std::shared_ptr<Arena> arena_;
  uint64_t offset_, size_;
};

/// The data arena: one shared-memory file per host, mapped by every simulator process.
class Arena : public std::enable_shared_from_this<Arena> {
 public:
  Arena();
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::shared_ptr<Block> allocate(uint64_t bytes);
  int fd() const { return fd_; }
  uint8_t* base() const { return base_; }
  uint64_t mapped() const { return mapped_; }
  uint64_t file_size() const;
  ArenaHeader& header() const { return *reinterpret_cast<ArenaHeader*>(base_); }

 private:
  friend class Block;
  void release(uint64_t offset, uint64_t size);

  int fd_ = -1;
  uint8_t* base_ = nullptr;
  uint64_t mapped_ = 0;
  mutable std::mutex mutex_;
  uint64_t end_ = 0;                  // file size: everything below is allocated in the file
  std::map<uint64_t, uint64_t> free_;  // offset -> size, coalesced
  // Where the last allocations ended: the file keeps the highest, so runs of a steady
  // size (many pieces each) reuse pages that every process has
  // mapped already, instead of faulting in new ones after each shrink.
  uint64_t recent_ends_[64] = {};
  unsigned next_recent_ = 0;
  void trim();
};

struct Observation {
  std::string name;
  std::vector<double> value;
};

/// A finished batch in shared memory: columns at `offsets` inside `block`, their indices
/// (records' traces, traces' records, offsets into the arenas, message ids) its own.
struct Batch {
  std::shared_ptr<Block> block;
  Totals totals;
  uint64_t offsets[kNumColumns] = {};
  std::vector<std::string> messages;
  std::vector<uint64_t> lost;  // positions (in this batch) of traces lost to a crashed or hung process

  const uint8_t* column(int c) const { return block->data() + offsets[c]; }
};

/// A failure of the transport (a simulator that cannot start, keeps crashing or breaks
/// the protocol; shared memory exhausted).  Traces lost to one crash are not errors:
/// they come back as failed traces of the batch.  `partial`: the pieces of the traces a
/// failed run finished, in trace order (empty when it failed before any).
struct HostError : std::runtime_error {
  enum Kind { Simulator, Memory, Closed } kind;
  std::vector<Batch> partial;
  HostError(Kind k, const std::string& message) : std::runtime_error(message), kind(k) {}
};

/// Thrown when the interrupt callback reports a pending signal (Ctrl-C); `partial` as
/// in HostError.
struct Interrupted : std::exception {
  std::vector<Batch> partial;
  const char* what() const noexcept override { return "interrupted"; }
};

/// A Metropolis-Hastings run over shared memory (see RunChains in protocol.hpp).
struct ChainOptions {
  int kernel = 0;  // MHKernel
  double scale = 1, prior_mix = 0.1;
  uint64_t burn_in = 0, thinning = 1, max_attempts = 1000;
  bool stop_on_error = true;
  std::vector<uint64_t> target_steps;  // per chain: the number of chains
  const TraceBatch* start = nullptr;   // a trace to start every chain from (host address ids)
  uint32_t start_trace = 0;
};

/// The kept states of every chain (one batch, in chain order) and each chain's stats.
struct ChainRun {
  Batch batch;
  std::vector<ChainStats> stats;
};

class GuidedRun;

class Host {
 public:
  /// Starts the processes and waits until each reports ready.
  explicit Host(HostOptions options, const std::function<bool()>& interrupted = nullptr);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  /// Traces [first, first + count) with RNG streams of `seed`, as the pieces the
  /// processes placed, in trace order: each a batch in a block of its own, so nothing
  /// is copied to join them (one batch when the run was one piece, an empty one when
  /// count is 0).  `interrupted` is polled while waiting (Ctrl-C): when it returns true
  /// the run is abandoned and Interrupted thrown.  One run at a time; a second caller waits.
  std::vector<Batch> run(uint64_t seed, uint64_t first, uint64_t count, const std::vector<Observation>& observations,
            bool required, const std::function<bool()>& interrupted);

  /// Runs Metropolis-Hastings chains inside the simulator processes (contiguous ranges
  /// of chains per process).  A process that crashes or hangs fails the run (HostError).
  /// `progress` (optional) hears the executions done so far, every few milliseconds.
  ChainRun run_chains(uint64_t seed, const ChainOptions& options, const std::vector<Observation>& observations,
                      const std::function<bool()>& interrupted,
                      const std::function<void(uint64_t)>& progress = nullptr);

  /// Starts a guided run of traces [first, first + count), `slots` executions in flight
  /// over all processes; drive it with GuidedRun.  The run holds the host until it ends.
  std::unique_ptr<GuidedRun> guided(uint64_t seed, uint64_t first, uint64_t count,
                                    const std::vector<Observation>& observations, bool required, uint32_t slots,
                                    uint64_t stack_bytes, const std::function<bool()>& interrupted);

  /// Stops the processes (asks, then kills).  Batches already returned stay valid.  From
  /// another thread during a run, the run stops (HostError Closed) and restarts nothing.
  void close();

  std::vector<int> pids() const;
  const std::string& model_name() const { return model_name_; }
  int workers() const { return int(workers_.size()); }
  uint64_t restarts() const { return restarts_; }
  const Arena& arena() const { return *arena_; }

 private:
  struct Worker {
    // Atomic: close() on another thread reads it to kill a run it cannot wait for.
    std::atomic<pid_t> pid{-1};
    int control_fd = -1;
    Control* ctrl = nullptr;
    uint64_t mapped_ids = 1;  // simulator address ids with an entry in the map
    std::vector<uint32_t> host_ids{0};  // the host's own copy of that map
    uint64_t last_beat = 0;
    int64_t beat_time = 0;
    bool ready = false;
    void reset() {
      pid = -1;
      control_fd = -1;
      ctrl = nullptr;
      mapped_ids = 1;
      host_ids.assign(1, 0);
      last_beat = 0;
      beat_time = 0;
      ready = false;
    }
  };
  struct Part;

  void spawn(Worker& w);
  void await_ready(const std::vector<Worker*>& ws, const std::function<bool()>& interrupted);
  std::string exit_status(Worker& w);  // "" while the process runs
  /// Why `w` failed: it exited, or made no progress for `timeout` s while `busy` (then it
  /// is killed); "" while it is well.
  std::string failure(Worker& w, bool busy);
  void kill_worker(Worker& w);
  void release(Worker& w);
  void send(Worker& w, const Message& m);
  void dispatch(Part& p, uint64_t seed, bool required, const std::vector<uint8_t>& observations);
  void place(Part& p);
  Batch piece(const Part& p) const;
  void map_names(Worker& w, const Message& counts);
  void check_closing() const;

  /// Holds the host for one run (checks it is usable) and restarts the processes lost
  /// since the last run.
  std::unique_lock<std::mutex> begin_run(const std::function<bool()>& interrupted);

  // Chain and guided runs (no restarts: their state lives in the processes).
  friend class GuidedRun;
  void send_part(Part& p, Message m);
  void pump(std::vector<Part>& parts, const std::function<void(Part&, const Message&)>& on_message,
            const std::function<bool()>& done, const std::function<bool(const Part&)>& busy,
            const std::function<std::string(const Part&)>& doing, const std::function<bool()>& interrupted);
  Batch place_parts(std::vector<Part>& parts, const std::function<std::string(const Part&)>& doing,
                    const std::function<bool()>& interrupted);
  void stop_unfinished(std::vector<Part>& parts);

  HostOptions options_;
  std::shared_ptr<Arena> arena_;
  std::vector<Worker> workers_;
  std::string model_name_;
  std::mutex run_mutex_;
  uint64_t tag_ = 0;
  uint64_t restarts_ = 0;
  bool closed_ = false;
  std::atomic<bool> closing_{false};  // close() was called: a run in progress stops
  pid_t owner_;  // a forked child inherits the object, not the processes
};

/// A guided run in progress: call advance() / answer() until advance() returns 0, then
/// take().  Dropping it unfinished stops the processes that were part of it.
class GuidedRun {
 public:
  ~GuidedRun();
  GuidedRun(const GuidedRun&) = delete;
  GuidedRun& operator=(const GuidedRun&) = delete;

  /// Waits until every execution in flight stopped at a site or all of a process's
  /// traces are done; returns the number of pending requests (0: all done).  Request
  /// slots are global (process by process), address ids the host's.
  size_t advance(const std::function<bool()>& interrupted);
  const RequestBatch& requests() const;
  /// Replies to the requests of the last advance(), in their order (as FiberRun::answer).
  void answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n, const double* params,
              size_t nparams);
  /// Phase 2: the traces of every process, in trace order.
  Batch take(const std::function<bool()>& interrupted);
  /// Gives the run up now (the server failed): its processes are stopped, the host is free.
  void abort();

 private:
  friend class Host;
  explicit GuidedRun(Host& host);
  void read_requests(Host::Part& p, size_t part, const Message& m);
  std::string doing(const Host::Part& p) const;

  struct State;  // in host.cpp (it holds the host's private Parts)
  Host& host_;
  std::unique_ptr<State> s_;
};

}  // namespace ppfast::shm
