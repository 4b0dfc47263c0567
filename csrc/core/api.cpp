// The C ABI: a table of entry points routed to the calling thread's recorder, or to
// a standalone prior sampler when no run is active.
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>

#include "core/address_table.hpp"
#include "core/recorder.hpp"
#include "ppfast/ppfast.h"
#include "ppfast/ppfast.hpp"

namespace ppfast {
namespace {

// kind and size are written with one 8-byte store: the recorder tests both with one 8-byte
// load (kind == Normal && size == 1), which a byte store and a 4-byte store cannot forward
// to, a stall on every draw.
static_assert(sizeof(DistKind) == 1 && offsetof(Dist, size) == 4, "Dist layout");
Dist as_dist(const ppfast_dist* d) {
  Dist out;
  const uint64_t head = uint64_t(d->kind) | uint64_t(d->size) << 32;
  std::memcpy(static_cast<void*>(&out), &head, sizeof head);
  out.nparams = d->nparams;
  out.params = d->params;
  return out;
}

Rng& standalone_rng() {
  thread_local Rng rng = [] {
    Rng r;
    std::random_device dev;
    r.seed((uint64_t(dev()) << 32) ^ dev(), 0);
    return r;
  }();
  return rng;
}

uint32_t local_intern(const char* s) { return AddressTable::global().intern(s ? s : ""); }

std::atomic<int> g_active_runs{0};
std::atomic<uint64_t> g_unrecorded_draws{0};

double local_sample(const ppfast_dist* d, uint32_t address, uint32_t name, uint32_t flags, double* out) {
  if (Recorder* r = current_recorder()) {
    // A draw captured at the generator (ppfast_uniform): the hottest site of all.
    if (d->kind == PPFAST_UNIFORM && d->size == 1 && d->nparams == 2 && d->params[0] == 0.0 && !std::signbit(d->params[0]) &&
        d->params[1] == 1.0 && name == 0 && flags == PPFAST_CONTROL)
      return out[0] = r->sample_unit(address);
    return r->sample(as_dist(d), address, name, flags, out);
  }
  // No recorder on this thread during a run: a thread the simulator started itself.
  if (g_active_runs.load(std::memory_order_relaxed)) g_unrecorded_draws.fetch_add(1);
  Dist dist = as_dist(d);
  if (!validate(dist).empty()) return out[0] = std::nan("");
  sample(dist, standalone_rng(), out);
  return out[0];
}

double local_observe(const ppfast_dist* d, uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (Recorder* r = current_recorder()) return r->observe(as_dist(d), address, name, value, n);
  return 0.0;
}

void local_tag(uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (Recorder* r = current_recorder()) r->tag(address, name, value, n);
}

void local_factor(double log_prob) {
  if (Recorder* r = current_recorder()) r->factor(log_prob);
}

int local_failed() {
  Recorder* r = current_recorder();
  return r && r->failed();
}

void local_fail(const char* message) {
  if (Recorder* r = current_recorder()) r->fail(message ? message : "simulator error");
}

void local_locate(uint32_t address, const char* location) {
  AddressTable::global().set_location(address, location ? location : "");
}

const ppfast_api kLocalApi{PPFAST_ABI_VERSION, local_intern, local_sample, local_observe, local_tag,
                           local_factor,       local_failed, local_fail,   local_locate};

}  // namespace

namespace detail {
// (Not static: stack_address.cpp reads both at every generator draw.)
std::atomic<const ppfast_api*> g_api{&kLocalApi};
// Bumped on every bind so pointer caches of ids from the previous recorder are dropped.
std::atomic<uint64_t> g_generation{1};
}  // namespace detail
using detail::g_api;
using detail::g_generation;

const ppfast_api* local_api() { return &kLocalApi; }

ActiveRun::ActiveRun() { g_active_runs.fetch_add(1); }
ActiveRun::~ActiveRun() { g_active_runs.fetch_sub(1); }
bool ActiveRun::any() { return g_active_runs.load() > 0; }
uint64_t unrecorded_draws() { return g_unrecorded_draws.load(); }

namespace detail {
// The model entry frame of this thread (with the call-stack address state, in
// stack_address.cpp).
const void* model_entry();
void restore_model_entry(const void* frame);
}  // namespace detail

namespace detail {
namespace {
// Process-wide cache of string pointer -> id for call sites that pass string literals:
// lock-free open addressing, no thread-local storage (which costs a __tls_get_addr call
// per draw inside a dlopen'ed simulator).  An entry is valid for one bind generation.
struct CacheSlot {
  std::atomic<const char*> key{nullptr};
  std::atomic<uint64_t> value{0};  // generation << 32 | id
};
constexpr size_t kCacheSlots = 4096, kProbes = 8;
CacheSlot g_cache[kCacheSlots];
}  // namespace

uint32_t intern_cached(const char* s, const char* file, int line) {
  const uint64_t gen = g_generation.load(std::memory_order_relaxed) & 0xffffffffu;
  size_t h = (reinterpret_cast<uintptr_t>(s) >> 3) * 0x9E3779B97F4A7C15ull >> 52;  // 12 bits
  CacheSlot* free_slot = nullptr;
  for (size_t p = 0; p < kProbes; ++p) {
    CacheSlot& slot = g_cache[(h + p) & (kCacheSlots - 1)];
    const char* k = slot.key.load(std::memory_order_acquire);
    if (k == s) {
      uint64_t v = slot.value.load(std::memory_order_acquire);
      if ((v >> 32) == gen) return static_cast<uint32_t>(v);
      free_slot = &slot;  // same key, stale generation: refresh it
      break;
    }
    if (k == nullptr) {
      const char* expected = nullptr;
      if (slot.key.compare_exchange_strong(expected, s, std::memory_order_acq_rel) || expected == s) {
        free_slot = &slot;
        break;
      }
    }
  }
  uint32_t id = ppfast_intern(s);
  if (file) ppfast_locate(id, (std::string(file) + ":" + std::to_string(line)).c_str());
  // Full table around this hash: ids still come from the interning table, just slower.
  if (free_slot) free_slot->value.store(gen << 32 | id, std::memory_order_release);
  return id;
}
}  // namespace detail
}  // namespace ppfast

extern "C" {
const ppfast_api* ppfast_current_api(void) { return ppfast::g_api.load(std::memory_order_relaxed); }
void ppfast_bind(const ppfast_api* api) {
  ppfast::g_api.store(api ? api : &ppfast::kLocalApi);
  ppfast::g_generation.fetch_add(1);
}
uint32_t ppfast_intern(const char* address) { return ppfast_current_api()->intern(address); }
double ppfast_sample(const ppfast_dist* d, uint32_t address, uint32_t name, uint32_t flags, double* out) {
  // A guided run may switch to another execution on this thread inside the call: restore
  // this one's model entry frame (the bound of its call-stack addresses) afterwards.
  const void* entry = ppfast::detail::model_entry();
  double x = ppfast_current_api()->sample(d, address, name, flags, out);
  ppfast::detail::restore_model_entry(entry);
  return x;
}
double ppfast_observe(const ppfast_dist* d, uint32_t address, uint32_t name, const double* value, uint32_t n) {
  return ppfast_current_api()->observe(d, address, name, value, n);
}
void ppfast_tag(uint32_t address, uint32_t name, const double* value, uint32_t n) {
  ppfast_current_api()->tag(address, name, value, n);
}
void ppfast_factor(double log_prob) { ppfast_current_api()->factor(log_prob); }
int ppfast_failed(void) { return ppfast_current_api()->failed(); }
void ppfast_fail(const char* message) { ppfast_current_api()->fail(message); }
void ppfast_locate(uint32_t address, const char* location) { ppfast_current_api()->locate(address, location); }
}
