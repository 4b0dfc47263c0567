// Shared-memory transport: the memory layout both sides agree on.
//
// Two kinds of segments, both POSIX shared memory (shm_open + mmap), unlinked as soon
// as the host has opened them and handed to the simulator process as inherited file
// descriptors, so no name is left in /dev/shm whatever happens to either process:
//
//   control segment (one per simulator process): a header, two single-producer rings of
//     fixed-size messages (host -> simulator: run / run chains / run guided / place /
//     proposal answers / shutdown; simulator -> host: ready / counts / placed / error /
//     proposal requests), progress counters the host watches to detect crashes and hangs, the
//     "new addresses" area (simulator -> host) and the address id map (host -> simulator).
//
//   data arena (one per ShmModel, shared by all its processes): a header with the host's
//     doorbell, then blocks the host allocates: run payloads (observations, lost traces,
//     chain options and stats, proposal exchange areas) and the trace-batch blocks the
//     simulators fill column by column.  Python's numpy
//     views point straight into these blocks; a block goes back to the host's pool when
//     its last view is gone.
//
// A run is two phases.  Phase 1: each process simulates its slice of the trace range
// with its own Recorder into a private, reused TraceBatch, publishing progress per
// trace, and reports its counts and the address strings it interned since its last
// report.  Phase 2: the host interns those strings, writes the simulator-id -> host-id
// map, allocates one block for the whole batch and tells each process where its slice
// goes; each process copies its columns there, translating address ids and offsets.
// The columns of the batch are thus contiguous across processes and numbered with the
// host's address ids, and Python reads them without a copy.  Metropolis-Hastings and
// guided runs (below) end with the same two phases.
//
// Version 2 added RunChains, RunGuided and the proposal exchange.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ppfast::shm {

constexpr uint64_t kControlMagic = 0x316c7274632d7070ull;  // "pp-ctrl1"
constexpr uint64_t kArenaMagic = 0x31616e6572612d70ull;    // "p-arena1"
constexpr uint32_t kProtocolVersion = 2;

/// File descriptors the simulator process inherits (argv: --ppfast-shm fd:3,4).
constexpr int kControlFd = 3;
constexpr int kArenaFd = 4;

/// A futex word with a "someone may be asleep on it" flag, so that the waker makes a
/// system call only when needed.
struct alignas(64) Bell {
  std::atomic<uint32_t> word{0};
  std::atomic<uint32_t> sleeping{0};
};

enum class Op : uint32_t {
  None = 0,
  // host -> simulator
  Run = 1,       // a[0] seed, a[1] first, a[2] count, a[3] payload offset, a[4] payload bytes, a[5] required
  Place = 2,     // see PlaceArgs
  Shutdown = 3,
  ProposalAnswer = 4,  // a[0] answers, a[1] bytes in the exchange area (see guided runs below)
  RunChains = 5,  // a[0] seed, a[1] first chain, a[2] chains, a[3] payload offset, a[4] payload bytes,
                  // a[5] stats offset, a[6] stats bytes (see Metropolis-Hastings below)
  RunGuided = 6,  // a[0] seed, a[1] first, a[2] count, a[3] payload offset, a[4] payload bytes,
                  // a[5] required, a[6] executions in flight, a[7] stack bytes per execution,
                  // a[8] exchange area offset, a[9] its bytes
  // simulator -> host
  Ready = 16,    // a[0] pid
  Counts = 17,   // see CountArgs
  Placed = 18,
  Error = 19,    // the text is in Control::error
  ProposalRequest = 20,  // a[0] requests, a[1] bytes in the exchange area; a[6], a[7] new names as in Counts
};
// Metropolis-Hastings (RunChains): a process runs whole chains [first chain, + chains)
// with the core's MHChain (the same code as embedded runs, so a seed gives the same
// chains in every mode), beating after every step, and answers Counts for the kept
// states of all its chains, in chain order; phase 2 places them as for Run.  The payload
// is a run payload's observations followed by the chain options (see payload.hpp); the
// stats area (host-allocated, kChainStatsBytes per chain) gets each chain's ChainStats.
//
// Guided execution (RunGuided, inference compilation): a process runs its traces under
// ProposalSlot policies (core/guided.hpp), several executions in flight as fibers.  When
// every one of them has stopped at a controlled site or finished, it writes their
// SiteRequests into the exchange area (simulator address ids; new address names
// reported as in Counts, so the host maps ids first) and posts ProposalRequest; the host
// gathers the pending requests of all processes into one network step and writes the
// answers, in request order, into the same area (ProposalAnswer).  When its traces are
// all done the process answers Counts, and phase 2 follows as for Run.  A process that
// crashes or hangs during either kind of run fails the run (no restart: a chain's state
// and an execution paused at a proposal live in that process only).

/// Per-chain results of RunChains, written by the simulator into the stats area.
struct ChainStats {
  uint64_t started, num_sites, steps, accepted, rejected_invalid, errors, error_code, kept;
  char last_error[512];
};
constexpr uint64_t kChainStatsBytes = sizeof(ChainStats);

/// One message: an operation, the tag of the request it belongs to, and its arguments.
struct Message {
  Op op;
  uint32_t flags;
  uint64_t tag;
  uint64_t a[14];
};
static_assert(sizeof(Message) == 128, "messages are two cache lines");

// Counts: what a process produced in phase 1.
enum CountArgs : int {
  kCountTraces = 0,
  kCountRecords,
  kCountValues,
  kCountParams,
  kCountMessages,       // error messages of failed traces
  kCountMessageBytes,   // their size in the strings area (u32 length + bytes each, 4-aligned)
  kCountNamesFrom,      // first simulator-side address id reported in the names area
  kCountNames,          // how many
};

// Place: where a process's slice of the batch goes.
enum PlaceArgs : int {
  kPlaceBlock = 0,      // arena offset of the batch block
  kPlaceRecords,        // batch totals (they fix the column layout)
  kPlaceTraces,
  kPlaceValues,
  kPlaceParams,
  kPlaceRecord0,        // this slice's first record, trace, value and param element
  kPlaceTrace0,
  kPlaceValue0,
  kPlaceParam0,
  kPlaceMessage0,       // first message id
  kPlaceStrings,        // arena offset of this slice's strings area
};

/// A single-producer, single-consumer ring of messages.  The producer writes a slot,
/// then publishes it by advancing `head`; the consumer reads it, then frees it by
/// advancing `tail`.
struct Ring {
  static constexpr uint32_t kSlots = 32;
  alignas(64) std::atomic<uint32_t> head{0};
  alignas(64) std::atomic<uint32_t> tail{0};
  alignas(64) Message slot[kSlots];

  bool full() const { return head.load(std::memory_order_relaxed) - tail.load(std::memory_order_acquire) >= kSlots; }
  /// Publishes `m`; the caller checked !full().  seq_cst pairs with the consumer's check
  /// before it sleeps (see Bell).
  void push(const Message& m) {
    const uint32_t h = head.load(std::memory_order_relaxed);
    slot[h % kSlots] = m;
    head.store(h + 1, std::memory_order_seq_cst);
  }
  bool empty() const { return head.load(std::memory_order_seq_cst) == tail.load(std::memory_order_relaxed); }
  bool pop(Message& m) {
    const uint32_t t = tail.load(std::memory_order_relaxed);
    if (head.load(std::memory_order_acquire) == t) return false;
    m = slot[t % kSlots];
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
};

/// Header of a control segment.  The names area and the id map follow it in the same
/// segment (sparse: only the pages touched take memory).
struct Control {
  uint64_t magic;
  uint32_t version;
  uint32_t host_pid;
  uint64_t size;            // bytes of the whole segment
  uint64_t names_offset;    // simulator -> host: new address entries (see NameEntry)
  uint64_t names_capacity;  // bytes
  uint64_t map_offset;      // host -> simulator: uint32 host id per simulator address id
  uint64_t map_capacity;    // entries
  uint32_t worker_pid;      // written by the simulator
  uint32_t abi_version;     // the simulator's ppfast ABI
  char model_name[128];     // written by the simulator before Ready
  char error[2048];         // written by the simulator before Error or a failed start

  // Progress, written by the simulator, watched by the host: `completed` traces of the
  // current run are done (the one in flight is first + completed); `beat` moves on every
  // step of work, so a process whose beat stands still for the timeout is hung.
  alignas(64) std::atomic<uint64_t> completed{0};
  alignas(64) std::atomic<uint64_t> beat{0};

  Bell down_bell;  // the simulator sleeps on it when it has nothing to do
  Ring down;       // host -> simulator
  Ring up;         // simulator -> host (rings the arena's doorbell)
};

/// One entry of the names area: u32 name length, u32 location length, the bytes of
/// both, padded to 4 bytes.  Entries are for consecutive simulator-side ids.
struct NameEntry {
  uint32_t name_len;
  uint32_t location_len;
};

constexpr uint64_t kNamesCapacity = uint64_t(16) << 20;  // bytes of new address strings per run
constexpr uint64_t kMapCapacity = uint64_t(4) << 20;     // distinct addresses per process

constexpr uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/// Layout of a control segment: header, names area, map.
struct ControlLayout {
  static constexpr uint64_t names_offset() { return align_up(sizeof(Control), 4096); }
  static constexpr uint64_t map_offset() { return names_offset() + kNamesCapacity; }
  static constexpr uint64_t size() { return map_offset() + kMapCapacity * sizeof(uint32_t); }
};

/// Header of the data arena (its first page).  `doorbell` is rung by every simulator
/// process of the model after it posts a message; the host sleeps on it.
struct ArenaHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t host_pid;
  uint64_t mapped;  // bytes each side maps (the file grows up to this)
  Bell doorbell;
};
constexpr uint64_t kArenaHeaderBytes = 4096;
static_assert(offsetof(ArenaHeader, mapped) == 16, "simulators read the mapped size before mapping");

// --- the columns of a batch block --------------------------------------------------

enum class Dim : uint8_t { Records = 0, Traces = 1, Values = 2, Params = 3 };

enum Column : int {
  kRecTrace = 0,
  kRecAddress,
  kRecInstance,
  kRecName,
  kRecKind,
  kRecFlags,
  kRecDist,
  kRecValue,
  kRecLogProb,
  kRecValueOffset,
  kRecValueLen,
  kRecParamOffset,
  kRecParamLen,
  kTrIndex,
  kTrBegin,
  kTrEnd,
  kTrLogPrior,
  kTrLogLikelihood,
  kTrLogWeight,
  kTrResult,
  kTrType,
  kTrStatus,
  kTrMessage,
  kArenaValues,
  kArenaParams,
  kNumColumns,
};

struct ColumnInfo {
  const char* group;  // "records", "traces" or "arenas" (TraceBatch.columns())
  const char* name;
  uint8_t size;       // bytes per element
  char type;          // 'u' unsigned integer, 'f' float
  Dim dim;
};

/// The same groups, names and types as the embedded TraceBatch's columns().
inline constexpr ColumnInfo kColumns[kNumColumns] = {
    {"records", "trace", 4, 'u', Dim::Records},
    {"records", "address", 4, 'u', Dim::Records},
    {"records", "instance", 4, 'u', Dim::Records},
    {"records", "name", 4, 'u', Dim::Records},
    {"records", "kind", 1, 'u', Dim::Records},
    {"records", "flags", 1, 'u', Dim::Records},
    {"records", "dist", 1, 'u', Dim::Records},
    {"records", "value", 8, 'f', Dim::Records},
    {"records", "log_prob", 8, 'f', Dim::Records},
    {"records", "value_offset", 4, 'u', Dim::Records},
    {"records", "value_len", 4, 'u', Dim::Records},
    {"records", "param_offset", 4, 'u', Dim::Records},
    {"records", "param_len", 4, 'u', Dim::Records},
    {"traces", "index", 8, 'u', Dim::Traces},
    {"traces", "begin", 8, 'u', Dim::Traces},
    {"traces", "end", 8, 'u', Dim::Traces},
    {"traces", "log_prior", 8, 'f', Dim::Traces},
    {"traces", "log_likelihood", 8, 'f', Dim::Traces},
    {"traces", "log_weight", 8, 'f', Dim::Traces},
    {"traces", "result", 8, 'f', Dim::Traces},
    {"traces", "trace_type", 8, 'u', Dim::Traces},
    {"traces", "status", 1, 'u', Dim::Traces},
    {"traces", "message", 4, 'u', Dim::Traces},
    {"arenas", "values", 8, 'f', Dim::Values},
    {"arenas", "params", 8, 'f', Dim::Params},
};

/// Element counts of a batch: records, traces, value-arena and param-arena elements.
struct Totals {
  uint64_t n[4] = {0, 0, 0, 0};
  uint64_t of(Dim d) const { return n[static_cast<int>(d)]; }
};

/// Byte offsets of each column inside a block (64-byte aligned); returns the block's
/// column bytes.  Host and simulator compute it from the same totals.
inline uint64_t column_layout(const Totals& t, uint64_t offsets[kNumColumns]) {
  uint64_t at = 0;
  for (int c = 0; c < kNumColumns; ++c) {
    offsets[c] = at;
    at = align_up(at + t.of(kColumns[c].dim) * kColumns[c].size, 64);
  }
  return at;
}

}  // namespace ppfast::shm
