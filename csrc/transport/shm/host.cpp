#include "transport/shm/host.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <new>

#include "core/address_table.hpp"
#include "core/distributions.hpp"
#include "core/trace_batch.hpp"
#include "transport/shm/payload.hpp"
#include "transport/shm/sync.hpp"

namespace ppfast::shm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMinTracesPerProcess = 256;  // below this, a split costs more than it gains
constexpr uint64_t kPiecesPerSlice = 16;          // a crash re-runs at most this share of a slice
constexpr int64_t kMinPieceNs = 5'000'000;        // pieces shorter than this cost more than they keep
constexpr int64_t kSpinNs = 20'000;
constexpr int64_t kTickNs = 10'000'000;           // health checks and Ctrl-C polls
constexpr uint64_t kKeepBytes = uint64_t(64) << 20;  // free memory always kept for the next runs

std::atomic<uint64_t> g_segments{0};

[[noreturn]] void fail(const std::string& message) { throw HostError(HostError::Simulator, message); }

/// Appends the `count` messages a simulator wrote at [s, end) of the arena (each a 4-byte
/// length, then its bytes padded to 4), checking every length against the end.
void read_messages(const uint8_t* base, uint64_t s, uint64_t end, uint64_t count, std::vector<std::string>& out) {
  for (uint64_t j = 0; j < count; ++j) {
    uint32_t len = 0;
    if (s + 4 > end) fail("malformed messages from a simulator");
    std::memcpy(&len, base + s, 4);
    if (len > end - s - 4) fail("malformed messages from a simulator");
    out.emplace_back(reinterpret_cast<const char*>(base + s + 4), len);
    s += 4 + align_up(len, 4);
  }
}

/// Creates a shared-memory file and removes its name at once: the descriptor (inherited
/// by the simulator processes) is all anyone needs, so nothing is left in /dev/shm
/// whatever happens to either side later.
int create_segment(const char* what) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string name = "/ppfast-" + std::to_string(getpid()) + "-" + std::to_string(g_segments++);
    const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      shm_unlink(name.c_str());
      return fd;
    }
    if (errno != EEXIST)
      throw HostError(HostError::Memory, std::string("cannot create the shared-memory ") + what + ": " +
                                             strerror(errno));
  }
  throw HostError(HostError::Memory, std::string("cannot create the shared-memory ") + what + ": names taken");
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    return "died with signal " + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "stopped";
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

std::string bounded(const char* s, size_t n) { return std::string(s, strnlen(s, n)); }

/// Counts come from memory the simulator writes: a slice must report exactly its traces,
/// and no count may be large enough for the sums over processes to wrap around.
void check_counts(pid_t pid, const Message& m, uint64_t traces) {
  constexpr uint64_t kMaxCount = uint64_t(1) << 40;
  bool ok = m.a[kCountTraces] == traces && m.a[kCountMessages] <= traces;
  for (int k : {kCountRecords, kCountValues, kCountParams, kCountMessageBytes}) ok = ok && m.a[k] < kMaxCount;
  if (!ok)
    throw HostError(HostError::Simulator, "simulator process " + std::to_string(pid) +
                                              " reported impossible counts for its slice of " +
                                              std::to_string(traces) + " traces");
}

/// The observations part of every run payload.
void write_observations(PayloadWriter& w, const std::vector<Observation>& observations) {
  w.u64(observations.size());
  for (const auto& o : observations) {
    w.str(o.name);
    w.f64s(o.value.data(), o.value.size());
  }
}

}  // namespace

// --- arena ---------------------------------------------------------------------------

Block::Block(std::shared_ptr<Arena> arena, uint64_t offset, uint64_t size)
    : arena_(std::move(arena)), offset_(offset), size_(size) {}
Block::~Block() { arena_->release(offset_, size_); }
uint8_t* Block::data() const { return arena_->base() + offset_; }

Arena::Arena() {
  fd_ = create_segment("data arena");
  // Reserve address space once: the file grows below it, so no side ever remaps.
  for (uint64_t size : {uint64_t(64) << 30, uint64_t(16) << 30, uint64_t(4) << 30, uint64_t(1) << 30}) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd_, 0);
    if (p != MAP_FAILED) {
      base_ = static_cast<uint8_t*>(p);
      mapped_ = size;
      break;
    }
  }
  if (!base_) {
    const int e = errno;
    ::close(fd_);
    throw HostError(HostError::Memory, std::string("cannot map the data arena: ") + strerror(e));
  }
  if (fallocate(fd_, 0, 0, kArenaHeaderBytes) != 0) {
    const int e = errno;
    munmap(base_, mapped_);
    ::close(fd_);
    throw HostError(HostError::Memory, std::string("cannot size the data arena: ") + strerror(e));
  }
  end_ = kArenaHeaderBytes;
  auto* h = new (base_) ArenaHeader();
  h->magic = kArenaMagic;
  h->version = kProtocolVersion;
  h->host_pid = uint32_t(getpid());
  h->mapped = mapped_;
}

Arena::~Arena() {
  munmap(base_, mapped_);
  ::close(fd_);
}

uint64_t Arena::file_size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return end_;
}

std::shared_ptr<Block> Arena::allocate(uint64_t bytes) {
  const uint64_t n = align_up(std::max<uint64_t>(bytes, 1), kPage);
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {  // first fit: reuse before growing
    if (it->second < n) continue;
    const uint64_t off = it->first, size = it->second;
    free_.erase(it);
    if (size > n) free_.emplace(off + n, size - n);
    recent_ends_[next_recent_++ % std::size(recent_ends_)] = off + n;
    return std::make_shared<Block>(shared_from_this(), off, n);
  }
  // Grow the file, starting inside a free tail if there is one.
  uint64_t off = end_;
  if (!free_.empty()) {
    auto last = std::prev(free_.end());
    if (last->first + last->second == end_) off = last->first;
  }
  if (off + n > mapped_)
    throw HostError(HostError::Memory, "a block of " + std::to_string(n >> 20) + " MiB does not fit the " +
                                           std::to_string(mapped_ >> 30) + " GiB shared-memory arena");
  // fallocate reserves the pages now, so a full /dev/shm is an error here rather than
  // a SIGBUS in whichever process touches the page first.
  if (off + n > end_ && fallocate(fd_, 0, off_t(end_), off_t(off + n - end_)) != 0)
    throw HostError(HostError::Memory, "no room in /dev/shm for " + std::to_string((off + n - end_) >> 20) +
                                           " more MiB of trace batches: " + strerror(errno));
  if (off != end_) free_.erase(off);
  end_ = off + n;
  recent_ends_[next_recent_++ % std::size(recent_ends_)] = end_;
  return std::make_shared<Block>(shared_from_this(), off, n);
}

void Arena::release(uint64_t offset, uint64_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_.emplace(offset, size).first;
  auto next = std::next(it);
  if (next != free_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_.erase(it);
      it = prev;
    }
  }
  trim();
}

void Arena::trim() {
  // The file keeps what the recent allocations reached (and kKeepBytes of free tail), so
  // runs of a steady size reuse their pages; memory beyond that goes back to the system.
  if (free_.empty()) return;
  auto tail = std::prev(free_.end());
  if (tail->first + tail->second != end_) return;
  uint64_t new_end = tail->first + kKeepBytes;
  for (uint64_t e : recent_ends_) new_end = std::max(new_end, e);
  if (new_end >= end_) return;
  if (ftruncate(fd_, off_t(new_end)) != 0) return;
  end_ = new_end;
  tail->second = new_end - tail->first;
}

// --- processes ---------------------------------------------------------------------

struct Host::Part {
  // A process's share of a run.  Simulation runs (run()) split each process's slice into
  // pieces, each simulated and then placed into a block of its own, so that a crash or
  // hang later in the slice loses only the piece in flight; chains and guided runs lay
  // out one block for all parts (place_parts()).
  enum Stage { Running, Counted, Placing, Placed };
  uint64_t first = 0, count = 0;
  Worker* worker = nullptr;
  std::vector<std::pair<uint64_t, std::string>> lost;  // ascending trace index
  Stage stage = Running;
  uint64_t tag = 0;
  uint64_t counts[8] = {};
  std::shared_ptr<Block> payload;
  uint64_t record0 = 0, trace0 = 0, value0 = 0, param0 = 0, message0 = 0, strings = 0;  // place_parts()
  int64_t started = 0;           // run(): when the piece was dispatched (ns), to size the next one
  std::shared_ptr<Block> block;  // run(): the piece's columns (at `offsets`), then its messages
  Totals totals;
  uint64_t offsets[kNumColumns] = {};
  uint64_t columns = 0;  // bytes of the columns: the messages start there
};

Host::Host(HostOptions options, const std::function<bool()>& interrupted)
    : options_(std::move(options)), owner_(getpid()) {
  if (options_.argv.empty() || options_.argv[0].empty()) fail("empty simulator command");
  if (options_.workers < 1) fail("workers must be >= 1");
  arena_ = std::make_shared<Arena>();
  workers_ = std::vector<Worker>(size_t(options_.workers));
  try {
    std::vector<Worker*> all;
    for (auto& w : workers_) {
      spawn(w);
      all.push_back(&w);
    }
    await_ready(all, interrupted);
  } catch (...) {
    close();
    throw;
  }
  model_name_ = bounded(workers_[0].ctrl->model_name, sizeof(workers_[0].ctrl->model_name));
}

Host::~Host() { close(); }

void Host::spawn(Worker& w) {
  w.reset();
  const int fd = create_segment("control segment");
  void* p = MAP_FAILED;
  if (ftruncate(fd, off_t(ControlLayout::size())) == 0)
    p = mmap(nullptr, ControlLayout::size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    ::close(fd);
    throw HostError(HostError::Memory, std::string("cannot map a control segment: ") + strerror(e));
  }
  auto* c = new (p) Control();
  c->magic = kControlMagic;
  c->version = kProtocolVersion;
  c->host_pid = uint32_t(getpid());
  c->size = ControlLayout::size();
  c->names_offset = ControlLayout::names_offset();
  c->names_capacity = kNamesCapacity;
  c->map_offset = ControlLayout::map_offset();
  c->map_capacity = kMapCapacity;
  w.control_fd = fd;
  w.ctrl = c;

  // The child gets the segments as fds 3 and 4 (dup2 clears close-on-exec there); the
  // copies above 10 keep dup2 from clobbering one source with the other.
  const int tc = fcntl(fd, F_DUPFD_CLOEXEC, 10), ta = fcntl(arena_->fd(), F_DUPFD_CLOEXEC, 10);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, tc, kControlFd);
  posix_spawn_file_actions_adddup2(&actions, ta, kArenaFd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGXFSZ, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Its own process group: Ctrl-C reaches the host only (which then stops the
  // processes), and a hung simulator is killed with whatever it started.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = options_.argv;
  args.push_back("--ppfast-shm");
  args.push_back("fd:" + std::to_string(kControlFd) + "," + std::to_string(kArenaFd));
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : options_.env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(tc);
  ::close(ta);
  if (rc != 0) {
    release(w);
    fail("cannot start simulator '" + options_.argv[0] + "': " + strerror(rc));
  }
  w.pid = pid;
  w.beat_time = now_ns();
}

void Host::await_ready(const std::vector<Worker*>& ws, const std::function<bool()>& interrupted) {
  const int64_t deadline = now_ns() + int64_t(options_.startup_timeout * 1e9);
  auto stop_waiting = [&] {
    for (Worker* w : ws)
      if (!w->ready) kill_worker(*w);
  };
  for (;;) {
    bool all = true;
    for (Worker* w : ws) {
      Message m;
      for (uint32_t k = 0; k < Ring::kSlots && !w->ready && w->ctrl->up.pop(m); ++k)
        if (m.op == Op::Ready) w->ready = true;
      if (w->ready) continue;
      all = false;
      const std::string status = exit_status(*w);
      if (!status.empty()) {
        const std::string why = bounded(w->ctrl->error, sizeof(w->ctrl->error));
        stop_waiting();
        fail("simulator '" + options_.argv[0] + "' " + status + " before it was ready" +
             (why.empty() ? " (see its standard error)" : ": " + why));
      }
    }
    if (all) return;
    if (now_ns() > deadline) {
      stop_waiting();
      fail("simulator '" + options_.argv[0] + "' did not report ready within " +
           seconds(options_.startup_timeout));
    }
    if (interrupted && interrupted()) {
      stop_waiting();
      throw Interrupted();
    }
    if (closing_) {
      stop_waiting();
      check_closing();
    }
    wait_on(
        arena_->header().doorbell,
        [&] {
          for (Worker* w : ws)
            if (!w->ready && !w->ctrl->up.empty()) return true;
          return false;
        },
        0, kTickNs);
  }
}

std::string Host::exit_status(Worker& w) {
  if (w.pid <= 0) return "is gone";
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  // Peek without reaping: the process group stays reserved while we kill what the
  // process may have left in it.
  if (waitid(P_PID, id_t(w.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0) return "";
  killpg(w.pid, SIGKILL);
  int status = 0;
  std::string what;
  if (waitpid(w.pid, &status, 0) == w.pid)
    what = describe(status);
  else
    what = "vanished (" + std::string(strerror(errno)) + ")";  // reaped by someone else
  w.pid = -1;
  return what;
}

std::string Host::failure(Worker& w, bool busy) {
  std::string what = exit_status(w);
  if (!what.empty() || options_.timeout <= 0) return what;
  const uint64_t beat = w.ctrl->beat.load(std::memory_order_acquire);
  if (beat != w.last_beat || !busy) {
    w.last_beat = beat;
    w.beat_time = now_ns();
  } else if (now_ns() - w.beat_time > int64_t(options_.timeout * 1e9)) {
    kill_worker(w);
    what = "hung (no progress for " + seconds(options_.timeout) + ")";
  }
  return what;
}

void Host::kill_worker(Worker& w) {
  if (w.pid <= 0) return;
  killpg(w.pid, SIGKILL);
  kill(w.pid, SIGKILL);
  int status;
  waitpid(w.pid, &status, 0);
  w.pid = -1;
}

void Host::release(Worker& w) {
  kill_worker(w);
  if (w.ctrl) munmap(w.ctrl, ControlLayout::size());
  if (w.control_fd >= 0) ::close(w.control_fd);
  w.reset();
}

void Host::send(Worker& w, const Message& m) {
  if (w.ctrl->down.full()) fail("simulator process " + std::to_string(w.pid) + " stopped reading requests");
  w.ctrl->down.push(m);
  ring(w.ctrl->down_bell);
}

void Host::dispatch(Part& p, uint64_t seed, bool required, const std::vector<uint8_t>& observations) {
  PayloadWriter lost;
  lost.u64(p.lost.size());
  for (const auto& [trace, message] : p.lost) {
    lost.u64(trace);
    lost.str(message);
  }
  const uint64_t bytes = observations.size() + lost.bytes().size();
  p.payload = arena_->allocate(bytes);
  std::memcpy(p.payload->data(), observations.data(), observations.size());
  std::memcpy(p.payload->data() + observations.size(), lost.bytes().data(), lost.bytes().size());
  Worker& w = *p.worker;
  w.ctrl->completed.store(0, std::memory_order_relaxed);  // so a crash before the first trace blames the right one
  w.last_beat = w.ctrl->beat.load(std::memory_order_relaxed);
  w.beat_time = now_ns();
  p.tag = ++tag_;
  p.stage = Part::Running;
  send(w, Message{Op::Run, 0, p.tag, {seed, p.first, p.count, p.payload->offset(), bytes, required ? 1u : 0u}});
}

void Host::map_names(Worker& w, const Message& counts) {
  const uint64_t from = counts.a[kCountNamesFrom], n = counts.a[kCountNames];
  // The layout is the host's own (ControlLayout), never the header's fields: the
  // simulator can write those.
  if (from != w.mapped_ids || n > kMapCapacity - from)
    fail("simulator process " + std::to_string(w.pid) + " reported address ids from " +
         std::to_string(from) + ", expected " + std::to_string(w.mapped_ids));
  const auto* names = reinterpret_cast<const uint8_t*>(w.ctrl) + ControlLayout::names_offset();
  const uint64_t capacity = kNamesCapacity;
  auto* map = reinterpret_cast<uint32_t*>(reinterpret_cast<uint8_t*>(w.ctrl) + ControlLayout::map_offset());
  auto& table = AddressTable::global();
  uint64_t at = 0;
  for (uint64_t j = 0; j < n; ++j) {
    NameEntry e{0, 0};
    if (at + sizeof(e) > capacity) fail("malformed address names from a simulator");
    std::memcpy(&e, names + at, sizeof(e));
    const uint64_t len = uint64_t(e.name_len) + e.location_len;
    if (len > capacity - at - sizeof(e)) fail("malformed address names from a simulator");
    const char* s = reinterpret_cast<const char*>(names + at + sizeof(e));
    const uint32_t id = table.intern(std::string_view(s, e.name_len));
    if (e.location_len) table.set_location(id, std::string_view(s + e.name_len, e.location_len));
    map[from + j] = id;
    w.host_ids.push_back(id);
    at += sizeof(e) + align_up(len, 4);
  }
  w.mapped_ids = from + n;
}

void Host::place(Part& p) {
  // This piece's traces alone, in a block of its own: the run hands the pieces back as they lie.
  p.totals = Totals();
  p.totals.n[0] = p.counts[kCountRecords];
  p.totals.n[1] = p.counts[kCountTraces];
  p.totals.n[2] = p.counts[kCountValues];
  p.totals.n[3] = p.counts[kCountParams];
  p.columns = column_layout(p.totals, p.offsets);
  p.block = arena_->allocate(p.columns + p.counts[kCountMessageBytes]);
  Worker& w = *p.worker;
  p.tag = ++tag_;
  p.stage = Part::Placing;
  w.last_beat = w.ctrl->beat.load(std::memory_order_relaxed);
  w.beat_time = now_ns();
  send(w, Message{Op::Place, 0, p.tag,
                  {p.block->offset(), p.totals.n[0], p.totals.n[1], p.totals.n[2], p.totals.n[3], 0, 0, 0, 0, 0,
                   p.block->offset() + p.columns}});
}

Batch Host::piece(const Part& p) const {
  Batch out;
  out.block = p.block;
  out.totals = p.totals;
  std::memcpy(out.offsets, p.offsets, sizeof(out.offsets));
  // The messages follow the piece's columns; their lengths come from the simulator.
  read_messages(arena_->base(), p.block->offset() + p.columns, p.block->offset() + p.block->size(),
                p.counts[kCountMessages], out.messages);
  for (const auto& lost : p.lost) out.lost.push_back(lost.first - p.first);
  return out;
}

std::vector<Batch> Host::run(uint64_t seed, uint64_t first, uint64_t count, const std::vector<Observation>& observations,
                bool required, const std::function<bool()>& interrupted) {
  auto lock = begin_run(interrupted);
  PayloadWriter obs;
  write_observations(obs, observations);
  // Each process works through its slice one piece at a time.  A piece is about 1/16 of
  // the slice (what a crash can cost), and at least kMinPieceNs of work once the
  // process's speed is known (so the hand-offs cost nothing).
  struct Slice {
    Worker* worker;
    uint64_t next, end, piece;
    Part* current = nullptr;
  };
  std::deque<Part> parts;  // stable addresses
  std::vector<Slice> slices;
  if (count) {
    const uint64_t k = std::min<uint64_t>(workers_.size(), std::max<uint64_t>(1, count / kMinTracesPerProcess));
    for (uint64_t i = 0; i < k; ++i) {
      const uint64_t a = first + count * i / k, b = first + count * (i + 1) / k;
      slices.push_back({&workers_[i], a, b, std::max<uint64_t>(1, (b - a + kPiecesPerSlice - 1) / kPiecesPerSlice)});
    }
  }
  std::vector<const Part*> placed;
  auto pieces = [&](std::vector<const Part*> ps) {
    std::sort(ps.begin(), ps.end(), [](const Part* a, const Part* b) { return a->first < b->first; });
    std::vector<Batch> out;
    for (const Part* p : ps) out.push_back(piece(*p));
    return out;
  };
  auto start_next = [&](Slice& s) {
    s.current = nullptr;
    if (s.next == s.end) return;
    Part& p = parts.emplace_back();
    p.first = s.next;
    p.count = std::min(s.piece, s.end - s.next);
    p.worker = s.worker;
    s.next += p.count;
    s.current = &p;
    dispatch(p, seed, required, obs.bytes());
    p.started = now_ns();
  };

  try {
    for (auto& s : slices) start_next(s);
    int restarts = 0;
    int64_t next_check = now_ns() + kTickNs;
    for (;;) {
      bool moved = false;
      for (auto& s : slices) {
        Message m;
        for (uint32_t k = 0; k < Ring::kSlots && s.current && s.worker->ctrl->up.pop(m); ++k) {
          Part& p = *s.current;
          if (m.tag != p.tag) continue;  // an answer to an abandoned request
          moved = true;
          if (m.op == Op::Counts && p.stage == Part::Running) {
            check_counts(p.worker->pid, m, p.count);
            map_names(*p.worker, m);
            std::memcpy(p.counts, m.a, sizeof(p.counts));
            const double ns_per_trace = double(std::max<int64_t>(now_ns() - p.started, 1)) / double(p.count);
            s.piece = std::max(s.piece, uint64_t(double(kMinPieceNs) / ns_per_trace));
            place(p);
          } else if (m.op == Op::Placed && p.stage == Part::Placing) {
            p.stage = Part::Placed;
            placed.push_back(&p);
            start_next(s);
          } else if (m.op == Op::Error) {
            fail("simulator process " + std::to_string(p.worker->pid) + ": " +
                 bounded(p.worker->ctrl->error, sizeof(p.worker->ctrl->error)));
          }
        }
      }
      if (std::all_of(slices.begin(), slices.end(), [](const Slice& s) { return !s.current; })) break;

      if (now_ns() >= next_check) {
        next_check = now_ns() + kTickNs;
        for (auto& s : slices) {
          if (!s.current) continue;
          // Crashes and hangs: the trace in flight is lost, the process restarted, and
          // the piece it was on run again (its other traces come out the same: trace i
          // always uses RNG stream i); the pieces it placed before are kept.
          Part& p = *s.current;
          Worker& w = *p.worker;
          const pid_t pid = w.pid;
          std::string what = failure(w, true);
          if (what.empty()) continue;
          std::string reason = "simulator process " + std::to_string(pid) + " " + what;
          const uint64_t done = w.ctrl->completed.load(std::memory_order_acquire);
          if (p.stage == Part::Running && done < p.count) {
            const uint64_t trace = p.first + done;
            reason += " during trace " + std::to_string(trace);
            auto at = std::upper_bound(p.lost.begin(), p.lost.end(), trace,
                                       [](uint64_t t, const auto& e) { return t < e.first; });
            p.lost.insert(at, {trace, reason});
          }
          check_closing();  // close() from another thread: no restart
          if (++restarts > options_.max_restarts)
            fail("simulator processes failed more than " +
                 std::to_string(options_.max_restarts) +
                 " times in one run (max_restarts); the last: " + reason);
          ++restarts_;
          release(w);
          spawn(w);
          await_ready({&w}, interrupted);
          p.block.reset();  // a placement cut short
          dispatch(p, seed, required, obs.bytes());
          p.started = now_ns();
          moved = true;
        }
        if (interrupted && interrupted()) throw Interrupted();
        check_closing();
      }
      if (!moved) {
        wait_on(
            arena_->header().doorbell,
            [&] {
              for (const auto& s : slices)
                if (s.current && !s.worker->ctrl->up.empty()) return true;
              return false;
            },
            kSpinNs, std::max<int64_t>(next_check - now_ns(), 0));
        check_closing();
      }
    }
  } catch (...) {
    // Whatever was busy is stopped; the next run starts fresh processes.  The pieces
    // placed so far go with the error.
    for (auto& s : slices)
      if (s.current) kill_worker(*s.worker);
    auto keep = [&](auto& e) {
      try {
        e.partial = pieces(placed);
      } catch (const std::exception&) {
        // Malformed messages in a piece: the error itself matters more.
      }
    };
    try {
      throw;
    } catch (HostError& e) {
      keep(e);
      throw;
    } catch (Interrupted& e) {
      keep(e);
      throw;
    }
  }

  if (placed.empty()) {  // an empty run: one batch of empty columns
    std::vector<Batch> out(1);
    out[0].block = arena_->allocate(0);
    return out;
  }
  return pieces(placed);
}

void Host::check_closing() const {
  if (closing_.load()) throw HostError(HostError::Closed, "this ShmModel was closed during the run");
}

void Host::close() {
  if (getpid() != owner_) return;  // a forked child: the processes are its parent's
  // A run on another thread sees the flag within one tick (the bell wakes it), stops its
  // processes and returns; then the lock is ours.
  closing_ = true;
  if (arena_) ring(arena_->header().doorbell);
  // Polled try_lock rather than a timed lock: ThreadSanitizer cannot follow the latter.
  std::unique_lock<std::mutex> lock(run_mutex_, std::defer_lock);
  for (int64_t give_up = now_ns() + 2'000'000'000; !lock.try_lock() && now_ns() < give_up;) usleep(1000);
  if (!lock.owns_lock()) {
    // A run still going on another thread at interpreter exit: stop the processes only.
    for (auto& w : workers_)
      if (w.pid > 0) killpg(w.pid, SIGKILL);
    return;
  }
  if (closed_) return;
  closed_ = true;
  for (auto& w : workers_)
    if (w.pid > 0 && w.ctrl && !w.ctrl->down.full()) send(w, Message{Op::Shutdown, 0, 0, {}});
  const int64_t deadline = now_ns() + 1'000'000'000;
  for (auto& w : workers_) {
    while (w.pid > 0 && exit_status(w).empty() && now_ns() < deadline) usleep(1000);
    release(w);
  }
}

std::vector<int> Host::pids() const {
  std::vector<int> out;
  for (const auto& w : workers_) out.push_back(int(w.pid));
  return out;
}

// --- Metropolis-Hastings and guided runs -------------------------------------------

namespace {

constexpr uint64_t kExchangeBytes = uint64_t(8) << 20;  // one round's requests or answers, per process

std::string chain_range(uint64_t first, uint64_t count) {
  return count == 1 ? "chain " + std::to_string(first)
                    : "chains " + std::to_string(first) + "-" + std::to_string(first + count - 1);
}

/// One trace's records with address names (the simulator's ids differ from ours).
void write_start(PayloadWriter& w, const TraceBatch* b, uint32_t t) {
  if (!b) return w.u64(0);
  const auto& table = AddressTable::global();
  w.u64(b->trace_end[t] - b->trace_begin[t]);
  for (uint64_t r = b->trace_begin[t]; r < b->trace_end[t]; ++r) {
    w.u64(uint64_t(b->rec_kind[r]) | uint64_t(b->rec_flags[r]) << 8 | uint64_t(b->rec_dist[r]) << 16);
    w.str(table.name(b->rec_address[r]));
    w.u64(b->rec_instance[r]);
    const uint32_t n = b->rec_value_len[r];
    w.f64s(n > 1 ? b->value_arena.data() + b->rec_value_offset[r] : &b->rec_value[r], n);
    w.f64(b->rec_log_prob[r]);
    w.f64s(b->param_arena.data() + b->rec_param_offset[r], b->rec_param_len[r]);
  }
}

}  // namespace

std::unique_lock<std::mutex> Host::begin_run(const std::function<bool()>& interrupted) {
  std::unique_lock<std::mutex> lock(run_mutex_);
  if (closed_) throw HostError(HostError::Closed, "this ShmModel is closed");
  if (getpid() != owner_)
    throw HostError(HostError::Closed, "this ShmModel belongs to process " + std::to_string(owner_) +
                                           ": create one in the forked process");
  // Processes lost since the last run (killed while idle, or stopped by Ctrl-C) come back now.
  std::vector<Worker*> fresh;
  for (auto& w : workers_) {
    if (w.pid > 0 && exit_status(w).empty()) continue;
    release(w);
    spawn(w);
    fresh.push_back(&w);
  }
  if (!fresh.empty()) await_ready(fresh, interrupted);
  return lock;
}

void Host::send_part(Part& p, Message m) {
  Worker& w = *p.worker;
  p.tag = m.tag = ++tag_;
  w.last_beat = w.ctrl->beat.load(std::memory_order_relaxed);
  w.beat_time = now_ns();
  send(w, m);
}

void Host::pump(std::vector<Part>& parts, const std::function<void(Part&, const Message&)>& on_message,
                const std::function<bool()>& done, const std::function<bool(const Part&)>& busy,
                const std::function<std::string(const Part&)>& doing, const std::function<bool()>& interrupted) {
  int64_t next_check = now_ns() + kTickNs;
  for (;;) {
    bool moved = false;
    for (auto& p : parts) {
      Message m;
      for (uint32_t k = 0; k < Ring::kSlots && p.worker->ctrl->up.pop(m); ++k) {
        if (m.tag != p.tag) continue;
        moved = true;
        if (m.op == Op::Error)
          fail("simulator process " + std::to_string(p.worker->pid) + ": " +
               bounded(p.worker->ctrl->error, sizeof(p.worker->ctrl->error)));
        on_message(p, m);
      }
    }
    if (done()) return;
    if (now_ns() >= next_check) {
      next_check = now_ns() + kTickNs;
      for (auto& p : parts) {
        Worker& w = *p.worker;
        const pid_t pid = w.pid;
        std::string what = failure(w, busy(p));
        if (what.empty()) continue;
        check_closing();
        fail("simulator process " + std::to_string(pid) + " " + what + " during " + doing(p));
      }
      if (interrupted && interrupted()) throw Interrupted();
      check_closing();
    }
    if (!moved) {
      wait_on(
          arena_->header().doorbell,
          [&] {
            for (const auto& p : parts)
              if (!p.worker->ctrl->up.empty()) return true;
            return false;
          },
          kSpinNs, std::max<int64_t>(next_check - now_ns(), 0));
      check_closing();
    }
  }
}

Batch Host::place_parts(std::vector<Part>& parts, const std::function<std::string(const Part&)>& doing,
                        const std::function<bool()>& interrupted) {
  Batch out;
  uint64_t messages = 0, message_bytes = 0;
  for (auto& p : parts) {
    p.record0 = out.totals.n[0];
    p.trace0 = out.totals.n[1];
    p.value0 = out.totals.n[2];
    p.param0 = out.totals.n[3];
    p.message0 = messages;
    out.totals.n[0] += p.counts[kCountRecords];
    out.totals.n[1] += p.counts[kCountTraces];
    out.totals.n[2] += p.counts[kCountValues];
    out.totals.n[3] += p.counts[kCountParams];
    messages += p.counts[kCountMessages];
    message_bytes += p.counts[kCountMessageBytes];
  }
  const uint64_t columns = column_layout(out.totals, out.offsets);
  out.block = arena_->allocate(columns + message_bytes);
  uint64_t strings = out.block->offset() + columns;
  for (auto& p : parts) {
    p.strings = strings;
    strings += p.counts[kCountMessageBytes];
    p.stage = Part::Placing;
    send_part(p, Message{Op::Place, 0, 0,
                         {out.block->offset(), out.totals.n[0], out.totals.n[1], out.totals.n[2], out.totals.n[3],
                          p.record0, p.trace0, p.value0, p.param0, p.message0, p.strings}});
  }
  pump(
      parts,
      [](Part& p, const Message& m) {
        if (m.op == Op::Placed && p.stage == Part::Placing) p.stage = Part::Placed;
      },
      [&] { return std::all_of(parts.begin(), parts.end(), [](const Part& p) { return p.stage == Part::Placed; }); },
      [](const Part& p) { return p.stage == Part::Placing; }, doing, interrupted);
  const uint64_t end = out.block->offset() + out.block->size();
  for (const auto& p : parts) read_messages(arena_->base(), p.strings, end, p.counts[kCountMessages], out.messages);
  return out;
}

void Host::stop_unfinished(std::vector<Part>& parts) {
  for (auto& p : parts)
    if (p.stage != Part::Placed && p.stage != Part::Counted) kill_worker(*p.worker);
}

ChainRun Host::run_chains(uint64_t seed, const ChainOptions& options, const std::vector<Observation>& observations,
                          const std::function<bool()>& interrupted, const std::function<void(uint64_t)>& progress) {
  const uint64_t nchains = options.target_steps.size();
  if (options.start && options.start_trace >= options.start->num_traces())
    throw std::invalid_argument("start trace outside its batch");
  auto lock = begin_run(interrupted);
  std::vector<Part> parts(std::min<uint64_t>(workers_.size(), nchains));
  const uint64_t k = parts.size();
  for (uint64_t i = 0; i < k; ++i) {  // first / count: chains
    parts[i].first = nchains * i / k;
    parts[i].count = nchains * (i + 1) / k - parts[i].first;
    parts[i].worker = &workers_[i];
  }
  auto doing = [](const Part& p) {
    return "Metropolis-Hastings " + chain_range(p.first, p.count) +
           " (their states are lost; run again, or use embedded mode to debug the simulator)";
  };
  ChainRun out;
  std::vector<uint64_t> stats_at;  // arena offset of each part's stats area
  try {
    for (auto& p : parts) {
      PayloadWriter w;
      write_observations(w, observations);
      w.u64(uint64_t(options.kernel));
      w.f64(options.scale);
      w.f64(options.prior_mix);
      w.u64(options.burn_in);
      w.u64(options.thinning);
      w.u64(options.max_attempts);
      w.u64(options.stop_on_error);
      w.u64(p.count);
      for (uint64_t c = p.first; c < p.first + p.count; ++c) w.u64(options.target_steps[c]);
      write_start(w, options.start, options.start_trace);
      const uint64_t bytes = w.bytes().size(), stats = align_up(bytes, 64);
      p.payload = arena_->allocate(stats + p.count * kChainStatsBytes);
      stats_at.push_back(p.payload->offset() + stats);
      std::memcpy(p.payload->data(), w.bytes().data(), bytes);
      p.worker->ctrl->completed.store(0, std::memory_order_relaxed);
      p.stage = Part::Running;
      send_part(p, Message{Op::RunChains, 0, 0,
                           {seed, p.first, p.count, p.payload->offset(), bytes, p.payload->offset() + stats,
                            p.count * kChainStatsBytes}});
    }
    pump(
        parts,
        [&](Part& p, const Message& m) {
          if (m.op != Op::Counts || p.stage != Part::Running) return;
          // At most the states the chains were to keep (a chain stopped by an error keeps fewer).
          uint64_t most = 0;
          for (uint64_t c = p.first; c < p.first + p.count; ++c)
            most += options.target_steps[c] > options.burn_in
                        ? (options.target_steps[c] - options.burn_in) / std::max<uint64_t>(options.thinning, 1)
                        : 0;
          if (m.a[kCountTraces] > most)
            fail("simulator process " + std::to_string(p.worker->pid) + " reported " +
                 std::to_string(m.a[kCountTraces]) + " kept states for " + chain_range(p.first, p.count) +
                 ", at most " + std::to_string(most) + " were due");
          check_counts(p.worker->pid, m, m.a[kCountTraces]);
          map_names(*p.worker, m);
          std::memcpy(p.counts, m.a, sizeof(p.counts));
          p.stage = Part::Counted;
        },
        [&] { return std::all_of(parts.begin(), parts.end(), [](const Part& p) { return p.stage == Part::Counted; }); },
        [](const Part& p) { return p.stage == Part::Running; }, doing,
        [&] {
          if (progress) {  // every tick, before the Ctrl-C check (it may see one)
            uint64_t done = 0;
            for (const auto& p : parts) done += p.worker->ctrl->completed.load(std::memory_order_relaxed);
            progress(done);
          }
          return interrupted && interrupted();
        });
    out.batch = place_parts(parts, doing, interrupted);
  } catch (...) {
    stop_unfinished(parts);
    throw;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    // The stats are the simulator's writing: copied out, checked against the counts.
    const Part& p = parts[i];
    uint64_t kept = 0;
    bool ok = true;
    for (uint64_t c = 0; c < p.count; ++c) {
      ChainStats st;
      std::memcpy(&st, arena_->base() + stats_at[i] + c * kChainStatsBytes, sizeof(st));
      st.last_error[sizeof(st.last_error) - 1] = 0;
      kept += st.kept;
      ok = ok && st.steps <= options.target_steps[p.first + c] && st.accepted <= st.steps && st.kept <= st.steps;
      out.stats.push_back(st);
    }
    if (!ok || kept != p.counts[kCountTraces])
      fail("simulator process " + std::to_string(p.worker->pid) + " reported impossible stats for " +
           chain_range(p.first, p.count));
  }
  return out;
}

// --- guided runs -----------------------------------------------------------------------

struct GuidedRun::State {
  std::unique_lock<std::mutex> lock_;
  std::vector<Host::Part> parts_;
  std::vector<uint32_t> slot0_, slots_;  // per part: its first global slot and its slot count
  std::vector<std::shared_ptr<Block>> exchange_;
  std::vector<uint8_t> waiting_;  // per part: posted requests, awaits answers
  std::vector<std::vector<std::pair<uint32_t, SiteRequest>>> pending_;  // per part, in its order
  RequestBatch requests_;
  bool finished_ = false;
};

GuidedRun::GuidedRun(Host& host) : host_(host), s_(std::make_unique<State>()) {}

std::unique_ptr<GuidedRun> Host::guided(uint64_t seed, uint64_t first, uint64_t count,
                                        const std::vector<Observation>& observations, bool required, uint32_t slots,
                                        uint64_t stack_bytes, const std::function<bool()>& interrupted) {
  if (slots < 1) throw std::invalid_argument("guided run: needs at least one slot");
  std::unique_ptr<GuidedRun> run(new GuidedRun(*this));
  run->s_->lock_ = begin_run(interrupted);
  const uint64_t k = std::min<uint64_t>({workers_.size(), slots, count});
  auto& parts = run->s_->parts_;
  parts.resize(k);
  run->s_->waiting_.assign(k, 0);
  run->s_->pending_.resize(k);
  PayloadWriter w;
  write_observations(w, observations);
  try {
    for (uint64_t i = 0; i < k; ++i) {
      Part& p = parts[i];
      p.first = first + count * i / k;
      p.count = first + count * (i + 1) / k - p.first;
      p.worker = &workers_[i];
      run->s_->slot0_.push_back(uint32_t(slots * i / k));
      run->s_->slots_.push_back(uint32_t(slots * (i + 1) / k) - run->s_->slot0_.back());
      p.payload = arena_->allocate(w.bytes().size());
      std::memcpy(p.payload->data(), w.bytes().data(), w.bytes().size());
      run->s_->exchange_.push_back(arena_->allocate(kExchangeBytes));
      p.worker->ctrl->completed.store(0, std::memory_order_relaxed);
      p.stage = Part::Running;
      send_part(p, Message{Op::RunGuided, 0, 0,
                           {seed, p.first, p.count, p.payload->offset(), w.bytes().size(), required ? 1u : 0u,
                            run->s_->slots_.back(), stack_bytes, run->s_->exchange_.back()->offset(), kExchangeBytes}});
    }
  } catch (...) {
    stop_unfinished(parts);
    run->s_->finished_ = true;
    throw;
  }
  return run;
}

const RequestBatch& GuidedRun::requests() const { return s_->requests_; }

GuidedRun::~GuidedRun() { abort(); }

void GuidedRun::abort() {
  if (s_->finished_) return;
  host_.stop_unfinished(s_->parts_);
  s_->finished_ = true;
  s_->lock_.unlock();
}

std::string GuidedRun::doing(const Host::Part& p) const {
  return "guided importance sampling of traces [" + std::to_string(p.first) + ", " +
         std::to_string(p.first + p.count) + ")";
}

void GuidedRun::read_requests(Host::Part& p, size_t part, const Message& m) {
  Host::Worker& w = *p.worker;
  host_.map_names(w, m);
  const uint64_t n = m.a[0], bytes = m.a[1];
  if (bytes > s_->exchange_[part]->size() || n > s_->slots_[part])
    fail("simulator process " + std::to_string(w.pid) + " posted " + std::to_string(n) +
         " proposal requests (" + std::to_string(bytes) + " bytes) for " + std::to_string(s_->slots_[part]) +
         " executions in flight");
  // A copy: the simulator could write the shared area while we read it.
  std::vector<uint8_t> copy(s_->exchange_[part]->data(), s_->exchange_[part]->data() + bytes);
  PayloadReader in(copy.data(), copy.size());
  auto malformed = [&] {
    fail("simulator process " + std::to_string(w.pid) + " posted malformed proposal requests");
  };
  if (in.u64() != n) malformed();
  std::vector<uint8_t> seen(s_->slots_[part], 0);
  auto& out = s_->pending_[part];
  out.clear();
  const auto& ids = w.host_ids;
  for (uint64_t j = 0; j < n; ++j) {
    const uint64_t slot = in.u64(), address = in.u64(), instance = in.u64(), prev_address = in.u64(),
                   prev_instance = in.u64(), dist = in.u64(), prev_dist = in.u64(), first = in.u64();
    SiteRequest r;
    r.prev_value = in.f64();
    r.params = in.f64s();
    r.prev_params = in.f64s();
    if (!in.ok() || slot >= seen.size() || seen[slot] || address == 0 || address >= ids.size() ||
        prev_address >= ids.size() || instance > UINT32_MAX || prev_instance > UINT32_MAX || dist > kMaxDistKind ||
        prev_dist > kMaxDistKind || first > 1)
      malformed();
    seen[slot] = 1;
    r.address = ids[address];
    r.instance = uint32_t(instance);
    r.prev_address = ids[prev_address];
    r.prev_instance = uint32_t(prev_instance);
    r.dist = uint8_t(dist);
    r.prev_dist = uint8_t(prev_dist);
    r.first = uint8_t(first);
    out.emplace_back(uint32_t(slot), std::move(r));
  }
  if (!in.done()) malformed();
}

size_t GuidedRun::advance(const std::function<bool()>& interrupted) {
  if (s_->finished_) throw std::logic_error("guided run: advance() after the run ended");
  try {
    auto index = [&](const Host::Part& p) { return size_t(&p - s_->parts_.data()); };
    host_.pump(
        s_->parts_,
        [&](Host::Part& p, const Message& m) {
          const size_t i = index(p);
          if (p.stage != Host::Part::Running || s_->waiting_[i]) return;
          if (m.op == Op::ProposalRequest) {
            read_requests(p, i, m);
            s_->waiting_[i] = 1;
          } else if (m.op == Op::Counts) {
            check_counts(p.worker->pid, m, p.count);
            host_.map_names(*p.worker, m);
            std::memcpy(p.counts, m.a, sizeof(p.counts));
            p.stage = Host::Part::Counted;
          }
        },
        [&] {
          for (size_t i = 0; i < s_->parts_.size(); ++i)
            if (s_->parts_[i].stage == Host::Part::Running && !s_->waiting_[i]) return false;
          return true;
        },
        [&](const Host::Part& p) { return p.stage == Host::Part::Running && !s_->waiting_[index(p)]; },
        [this](const Host::Part& p) { return doing(p); }, interrupted);
  } catch (...) {
    host_.stop_unfinished(s_->parts_);
    s_->finished_ = true;
    s_->lock_.unlock();
    throw;
  }
  s_->requests_.clear();
  for (size_t i = 0; i < s_->parts_.size(); ++i)
    if (s_->waiting_[i])
      for (const auto& [slot, r] : s_->pending_[i]) s_->requests_.add(s_->slot0_[i] + slot, r);
  return s_->requests_.size();
}

void GuidedRun::answer(const uint8_t* kinds, const uint32_t* offsets, const uint32_t* lens, size_t n,
                       const double* params, size_t nparams) {
  if (s_->finished_) throw std::logic_error("guided run: answer() after the run ended");
  check_answers(s_->requests_.size(), kinds, offsets, lens, n, nparams);
  try {
    size_t at = 0;
    for (size_t i = 0; i < s_->parts_.size(); ++i) {
      if (!s_->waiting_[i]) continue;
      const size_t m = s_->pending_[i].size();
      PayloadWriter w;
      w.u64(m);
      for (size_t j = at; j < at + m; ++j) {
        w.u64(kinds[j]);
        w.f64s(has_params(kinds[j]) ? params + offsets[j] : nullptr, has_params(kinds[j]) ? lens[j] : 0);
      }
      at += m;
      if (w.bytes().size() > s_->exchange_[i]->size())
        throw HostError(HostError::Memory, "the proposals of one round for one simulator process exceed " +
                                               std::to_string(kExchangeBytes >> 20) + " MiB: use fewer slots");
      std::memcpy(s_->exchange_[i]->data(), w.bytes().data(), w.bytes().size());
      s_->waiting_[i] = 0;
      s_->pending_[i].clear();
      host_.send_part(s_->parts_[i], Message{Op::ProposalAnswer, 0, 0, {m, w.bytes().size()}});
    }
  } catch (...) {
    host_.stop_unfinished(s_->parts_);
    s_->finished_ = true;
    s_->lock_.unlock();
    throw;
  }
  s_->requests_.clear();
}

Batch GuidedRun::take(const std::function<bool()>& interrupted) {
  if (s_->finished_) throw std::logic_error("guided run: take() after the run ended");
  for (size_t i = 0; i < s_->parts_.size(); ++i)
    if (s_->parts_[i].stage != Host::Part::Counted)
      throw std::logic_error("guided run: take() before every execution finished");
  try {
    Batch out = host_.place_parts(s_->parts_, [this](const Host::Part& p) { return doing(p); }, interrupted);
    s_->finished_ = true;
    s_->lock_.unlock();
    return out;
  } catch (...) {
    host_.stop_unfinished(s_->parts_);
    s_->finished_ = true;
    s_->lock_.unlock();
    throw;
  }
}

}  // namespace ppfast::shm
