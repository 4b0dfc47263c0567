// Addresses from the call stack, for draws captured at the random-number generator.
//
// A draw's address is the chain of its calling functions, innermost last, written as
// demangled names with offsets ("Pythia8::StringZ::zFrag(...)+0x4c;...").  Positions are
// module-relative, so the strings are the same in every process whatever the load
// addresses.  Per draw the cost is a frame-pointer walk and a hash lookup: the tuple of
// raw return addresses maps to an address id in a per-thread cache, and only a tuple
// not seen before is symbolized (from the module's own ELF symbol tables, so no
// -rdynamic is needed) and checked against the general unwinder.
//
// The walk stops at the model's entry frame (PPFAST_MODEL's wrapper registers it), so
// addresses never contain the host's frames and are the same embedded, in
// shared-memory processes and behind a PPX server.
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ppfast/ppfast.h"
#include "ppfast/ppfast.hpp"

namespace ppfast {
namespace detail {
extern std::atomic<const ppfast_api*> g_api;  // api.cpp: read here without a call per draw
extern std::atomic<uint64_t> g_generation;
}  // namespace detail

namespace {

constexpr uint32_t kMaxDepth = 64;

// ppfast_stack_options' depth | method << 8 | skip << 32, in one word: a draw loads them
// together, and never a mix of two settings.
constexpr uint64_t stack_options_word(uint32_t depth, uint32_t skip, int method) {
  return depth | uint64_t(method) << 8 | uint64_t(skip) << 32;
}
std::atomic<uint64_t> g_options{stack_options_word(8, 0, PPFAST_STACK_AUTO)};

// ------------------------------------------------------------------ symbolization

struct Symbol {
  uintptr_t start, size;
  std::string name;  // demangled
};

struct Module {
  uintptr_t base = 0;  // load bias: symbol values + base = run-time addresses
  std::string path, label;
  std::vector<Symbol> symbols;  // sorted by start
  std::vector<std::pair<uintptr_t, uintptr_t>> text;  // executable ranges (run-time)
};

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = (status == 0 && d) ? d : name;
  std::free(d);
  return out;
}

// Function symbols of an ELF file (.symtab when present, else .dynsym), sorted.
std::vector<Symbol> read_symbols(const std::string& path) {
  std::vector<Symbol> out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(ElfW(Ehdr)))) {
    ::close(fd);
    return out;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return out;
  const char* data = static_cast<const char*>(map);
  const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(data);
  const bool valid = std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_shoff != 0 &&
                     eh->e_shentsize == sizeof(ElfW(Shdr)) && eh->e_shoff + eh->e_shnum * sizeof(ElfW(Shdr)) <= size;
  if (valid) {
    const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(data + eh->e_shoff);
    for (uint32_t want : {uint32_t(SHT_SYMTAB), uint32_t(SHT_DYNSYM)}) {
      for (uint32_t i = 0; i < eh->e_shnum && out.empty(); ++i) {
        if (sh[i].sh_type != want || sh[i].sh_link >= eh->e_shnum) continue;
        const ElfW(Shdr)& strs = sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > size || strs.sh_offset + strs.sh_size > size) continue;
        const auto* syms = reinterpret_cast<const ElfW(Sym)*>(data + sh[i].sh_offset);
        const size_t n = sh[i].sh_size / sizeof(ElfW(Sym));
        for (size_t s = 0; s < n; ++s) {
          const int type = ELF64_ST_TYPE(syms[s].st_info);
          if ((type != STT_FUNC && type != STT_GNU_IFUNC) || syms[s].st_value == 0 ||
              syms[s].st_name >= strs.sh_size)
            continue;
          out.push_back({syms[s].st_value, syms[s].st_size, demangle(data + strs.sh_offset + syms[s].st_name)});
        }
      }
      if (!out.empty()) break;
    }
  }
  munmap(map, size);
  std::sort(out.begin(), out.end(), [](const Symbol& a, const Symbol& b) { return a.start < b.start; });
  return out;
}

class Symbolizer {
 public:
  static Symbolizer& instance() {
    static Symbolizer* s = new Symbolizer;  // never destroyed: used from any thread at exit
    return *s;
  }

  /// "function+0xoffset" (or "module+0xoffset" without symbols) for a return address,
  /// and the module's file name in `module`.
  std::string describe(uintptr_t pc, std::string* module) {
    std::lock_guard<std::mutex> lock(mu_);
    const Module* m = find(pc);
    if (!m) {
      if (module) *module = "?";
      return "?";
    }
    if (module) *module = m->label;
    const uintptr_t rel = pc - m->base;
    // pc is a return address: the call is just before it (a call may end a function).
    auto it = std::upper_bound(m->symbols.begin(), m->symbols.end(), rel - 1,
                               [](uintptr_t v, const Symbol& s) { return v < s.start; });
    char buf[32];
    if (it != m->symbols.begin()) {
      --it;
      if (it->size == 0 || rel - 1 < it->start + it->size) {
        std::snprintf(buf, sizeof buf, "+0x%zx", static_cast<size_t>(rel - it->start));
        return it->name + buf;
      }
    }
    std::snprintf(buf, sizeof buf, "+0x%zx", static_cast<size_t>(rel));
    return m->label + buf;
  }

  /// True if pc lies in the executable code of a loaded module.
  bool is_code(uintptr_t pc) {
    std::lock_guard<std::mutex> lock(mu_);
    return find(pc) != nullptr;
  }

 private:
  const Module* find(uintptr_t pc) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (const auto& m : modules_)
        for (auto& r : m->text)
          if (pc >= r.first && pc < r.second) return m.get();
      if (attempt == 0) reload();  // a library loaded since the last look
    }
    return nullptr;
  }

  void reload() {
    std::vector<std::unique_ptr<Module>> found;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* arg) {
          auto m = std::make_unique<Module>();
          m->base = info->dlpi_addr;
          m->path = (info->dlpi_name && info->dlpi_name[0]) ? info->dlpi_name : "/proc/self/exe";
          for (int i = 0; i < info->dlpi_phnum; ++i) {
            const auto& ph = info->dlpi_phdr[i];
            if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
              m->text.emplace_back(info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
          }
          static_cast<std::vector<std::unique_ptr<Module>>*>(arg)->push_back(std::move(m));
          return 0;
        },
        &found);
    for (auto& m : found) {
      bool known = false;
      for (auto& k : modules_) known |= (k->base == m->base && k->path == m->path);
      if (known) continue;
      if (m->path == "/proc/self/exe") {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        m->label = n > 0 ? std::string(exe, size_t(n)) : "exe";
      } else {
        m->label = m->path;
      }
      m->label = m->label.substr(m->label.find_last_of('/') + 1);
      if (m->path.rfind("linux-vdso", 0) != 0) m->symbols = read_symbols(m->path);
      modules_.push_back(std::move(m));
    }
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<Module>> modules_;
};

// ------------------------------------------------------------------ stack walks

struct Walk {
  uintptr_t pcs[kMaxDepth];
  uint32_t n = 0;
};

// Return addresses above the frame `fp` by following saved frame pointers.  Stops at the
// model entry's frame, at depth, or when the chain leaves the stack (not increasing, or
// past the entry frame / the thread's stack top), so it never reads outside the stack.
// visit(frame) sees each frame whose words the walk reads.
template <class Visit>
inline void walk_frame_pointers(const void* fp, uint32_t skip, uint32_t depth, const void* top, Walk& w,
                                Visit&& visit) {
  auto frame = static_cast<const uintptr_t*>(fp);
  for (uint32_t k = 0; w.n < depth; ++k) {
    visit(frame);
    const uintptr_t ret = frame[1];
    if (ret == 0) break;
    if (k >= skip) w.pcs[w.n++] = ret;
    auto next = reinterpret_cast<const uintptr_t*>(frame[0]);
    if (next <= frame || (reinterpret_cast<uintptr_t>(next) & 7) || static_cast<const void*>(next) >= top) break;
    frame = next;
  }
}

struct UnwindState {
  Walk* w;
  uint32_t skip, depth;
  uintptr_t entry, start_ip;  // the chain starts at the frame returning to start_ip
  uint32_t seen = 0;
  bool started = false;
};

_Unwind_Reason_Code unwind_frame(_Unwind_Context* ctx, void* arg) {
  auto& s = *static_cast<UnwindState*>(arg);
  const uintptr_t ip = _Unwind_GetIP(ctx);
  if (!s.started && !(s.started = ip == s.start_ip)) return _URC_NO_REASON;  // ppfast's own frames
  // The CFA seen with a frame is its stack pointer at the call, i.e. its callee's CFA:
  // above the entry frame, the callee was the model entry and this frame is the host's.
  if (s.entry && _Unwind_GetCFA(ctx) > s.entry) return _URC_END_OF_STACK;
  if (s.seen++ >= s.skip) s.w->pcs[s.w->n++] = ip;
  return s.w->n < s.depth ? _URC_NO_REASON : _URC_END_OF_STACK;
}

// The same chain as walk_frame_pointers, by the general unwinder (.eh_frame): correct for
// code built without frame pointers, and about ten times slower.
__attribute__((noinline)) void walk_unwinder(uintptr_t first_ret, uint32_t skip, uint32_t depth, const void* entry,
                                             Walk& w) {
  UnwindState s{&w, skip, depth, reinterpret_cast<uintptr_t>(entry), first_ret};
  _Unwind_Backtrace(unwind_frame, &s);
}

const void* thread_stack_top() {
  static thread_local const void* top = [] {
    pthread_attr_t attr;
    void* lo = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      pthread_attr_getstack(&attr, &lo, &size);
      pthread_attr_destroy(&attr);
    }
    return static_cast<const void*>(static_cast<const char*>(lo) + size);
  }();
  return top;
}

// ------------------------------------------------------------------ the cache

// Return-address tuple -> address id: open addressing over a power-of-two table, the
// tuples stored contiguously, so a hit is a hash, a probe or two and a short compare.
struct Cache {
  struct Slot {
    uint64_t hash = 0;
    uint32_t id = 0, begin = 0;  // the tuple is pcs[begin, begin + n)
    uint8_t n = 0, used = 0, unwind = 0;  // unwind: this frame-pointer tuple is unreliable
  };
  std::vector<Slot> slots = std::vector<Slot>(256);
  std::vector<uintptr_t> pcs;
  size_t used = 0;
  size_t mask = 255;  // slots.size() - 1

  /// The slot holding `w`, or the free slot where it belongs.
  Slot& find(const uintptr_t* tuple, uint32_t n, uint64_t hash) {
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      Slot& s = slots[i];
      if (!s.used) return s;
      if (s.hash == hash && s.n == n) {
        uint32_t k = 0;
        while (k < n && pcs[s.begin + k] == tuple[k]) ++k;
        if (k == n) return s;
      }
    }
  }
  Slot& find(const Walk& w, uint64_t hash) { return find(w.pcs, w.n, hash); }

  void insert(const Walk& w, uint64_t hash, uint32_t id, bool unwind) {
    if (2 * (used + 1) > slots.size()) {  // keep the load under one half
      std::vector<Slot> old(2 * slots.size());
      old.swap(slots);
      mask = slots.size() - 1;
      for (const Slot& s : old)
        if (s.used) find(&pcs[s.begin], s.n, s.hash) = s;
    }
    Slot& s = find(w, hash);
    s = Slot{hash, id, static_cast<uint32_t>(pcs.size()), static_cast<uint8_t>(w.n), 1, uint8_t(unwind)};
    pcs.insert(pcs.end(), w.pcs, w.pcs + w.n);
    ++used;
  }

  void clear() {
    slots.assign(256, Slot{});
    mask = 255;
    pcs.clear();
    used = 0;
  }
};

// The frames a walk read, to be checked word by word: at a later draw from the same
// frames with the same words, the serial walk would read and decide exactly the same, so
// the stored address id stands.  The stored frame addresses are known in advance, so the
// check loads them all at once instead of one dependent load after another.
struct alignas(64) Chain {
  static constexpr uint32_t kFrames = 10;  // the default depth 8 and a generator wrapper's 2 frames
  const void* top = nullptr;  // the bound of the walk (the model entry frame); nullptr: unused
  uint32_t options = 0, id = 0;  // depth | skip << 8 of the walk, and its address id
  const uintptr_t* at[kFrames];  // frame k's address; unused slots point at kPadding
  uintptr_t word0[kFrames], word1[kFrames];  // its saved frame pointer and return address
};
// Unused slots load from here and compare equal: the check has no branch per frame.
const uintptr_t kPadding[2] = {0, 0};

// Two ways per set: a caller reached by two call chains in turn keeps both.  On Pythia's
// Z events 98% of the draws find their chain.
struct ChainTable {
  static constexpr size_t kSets = 128;
  struct Set {
    Chain way[2];
    uint32_t recent = 0;  // the way found last: the other one is replaced
  };
  Set sets[kSets];
  // Keyed by the caller's frame and return address: the first two words of the walk.
  static size_t index(uintptr_t frame, uintptr_t ret) {
    return ((frame ^ (ret * 0x9E3779B97F4A7C15ull)) * 0xff51afd7ed558ccdull) >> 57;
  }
  void clear() {
    for (Set& s : sets) s.way[0].top = s.way[1].top = nullptr;
  }
};

struct Caches {
  uint64_t generation = 0;
  Cache by_fp, by_unwind;
  ChainTable chains;
};

// A thread's state, in one plain thread-local so a draw pays one TLS lookup (a call in
// a dlopen'ed simulator): the frame of the model entry running on this thread (or fiber:
// ppfast_sample restores it after every call that may switch executions), where
// call-stack addresses stop; and the address caches.
struct ThreadStacks {
  const void* entry;
  Caches* caches;
};
thread_local ThreadStacks t_stacks{nullptr, nullptr};

__attribute__((noinline)) Caches* new_caches() {
  static thread_local std::unique_ptr<Caches> owner;  // frees it at thread exit
  owner = std::make_unique<Caches>();
  return owner.get();
}

Caches& caches(ThreadStacks& t) {
  if (!t.caches) t.caches = new_caches();
  const uint64_t gen = detail::g_generation.load(std::memory_order_relaxed);
  if (t.caches->generation != gen) {  // ids belong to the recorder bound before
    t.caches->by_fp.clear();
    t.caches->by_unwind.clear();
    t.caches->chains.clear();
    t.caches->generation = gen;
  }
  return *t.caches;
}

// A sum of independent products (they overlap, unlike a chained mix) and a final mix;
// the position enters each term so that reordered tuples differ.
uint64_t hash_pcs(const Walk& w) {
  uint64_t h = w.n;
  for (uint32_t i = 0; i < w.n; ++i) h += (w.pcs[i] ^ (i * 0x9E3779B97F4A7C15ull)) * 0xff51afd7ed558ccdull;
  h ^= h >> 29;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 32);
}

uint32_t intern_walk(const Walk& w) {
  std::string address, module;
  auto& sym = Symbolizer::instance();
  for (uint32_t i = w.n; i-- > 0;) {  // outermost first: the address reads as a call chain
    address += sym.describe(w.pcs[i], i == 0 ? &module : nullptr);
    if (i) address += ';';
  }
  if (address.empty()) address = "?";
  const uint32_t id = ppfast_intern(address.c_str());
  ppfast_locate(id, module.c_str());
  return id;
}

uint32_t lookup_unwind(Cache& c, const Walk& w) {
  const uint64_t h = hash_pcs(w);
  if (const Cache::Slot& s = c.find(w, h); s.used) return s.id;
  const uint32_t id = intern_walk(w);
  c.insert(w, h, id, true);
  return id;
}

// The unwinder's address id for the chain starting at the frame returning to `first_ret`.
__attribute__((noinline)) uint32_t unwind_address_id(Caches& c, uintptr_t first_ret, uint32_t skip, uint32_t depth,
                                                     const void* entry) {
  Walk w;
  walk_unwinder(first_ret, skip, depth, entry, w);
  return lookup_unwind(c.by_unwind, w);
}

// A frame-pointer tuple `w` not in the cache, or not trusted: the unwinder decides.
__attribute__((noinline)) uint32_t stack_address_miss(Caches& c, const Walk& w, uint64_t h, bool known,
                                                      uintptr_t first_ret, uint32_t skip, uint32_t depth,
                                                      const void* entry) {
  Walk u;
  walk_unwinder(first_ret, skip, depth, entry, u);
  const uint32_t id = lookup_unwind(c.by_unwind, u);
  if (!known) {
    // A new tuple: trust the frame pointers only if the unwinder sees the same chain.
    const bool agree = u.n == w.n && std::equal(u.pcs, u.pcs + u.n, w.pcs);
    c.by_fp.insert(w, h, id, !agree);
  }
  return id;
}

// The address id of the stack above `fp` by the serial walk and the tuple cache; the
// walk's frames are kept in `chain` when it has room for them and the id is trusted.
__attribute__((noinline)) uint32_t walk_address_id(Caches& c, const void* fp, uint32_t skip, uint32_t depth,
                                                   const void* entry, Chain* chain) {
  const uintptr_t first_ret = static_cast<const uintptr_t*>(fp)[1];
  Walk w;
  uint32_t frames = 0;
  const uintptr_t* at[Chain::kFrames];
  walk_frame_pointers(fp, skip, depth, entry ? entry : thread_stack_top(), w, [&](const uintptr_t* frame) {
    if (frames < Chain::kFrames) at[frames] = frame;
    ++frames;
  });
  const uint64_t h = hash_pcs(w);
  const Cache::Slot& s = c.by_fp.find(w, h);
  if (s.used && !s.unwind) {
    if (chain && frames <= Chain::kFrames) {
      for (uint32_t k = 0; k < Chain::kFrames; ++k) {
        chain->at[k] = k < frames ? at[k] : kPadding;
        chain->word0[k] = chain->at[k][0];
        chain->word1[k] = chain->at[k][1];
      }
      chain->top = entry;
      chain->options = depth | skip << 8;
      chain->id = s.id;
    }
    return s.id;
  }
  return stack_address_miss(c, w, h, s.used, first_ret, skip, depth, entry);
}

// Does the stack still hold the words `chain` read?  Called once the chain is known to
// start at the current frame and end at the current model entry frame: every frame it
// loads lies between the two, in the live stack, and the loads do not wait on one another.
// (Not instrumented: a frame of the stored walk may now be inside some function's locals.)
__attribute__((no_sanitize("address"))) inline bool chain_holds(const Chain& chain) {
  // (Word by word: a 16-byte load of words just pushed one by one would stall.)
  uintptr_t diff = 0;
  for (uint32_t k = 0; k < Chain::kFrames; ++k) diff |= (chain.at[k][0] ^ chain.word0[k]) | (chain.at[k][1] ^ chain.word1[k]);
  return diff == 0;
}

// The address id of the stack above `fp` (the frame of ppfast's entry point) up to the
// model entry frame `entry`.  Inlined into ppfast_uniform: one TLS lookup per draw.
__attribute__((always_inline)) inline uint32_t stack_address_id(const void* fp, const void* entry, ThreadStacks& t) {
  const uint64_t options = g_options.load(std::memory_order_relaxed);
  const uint32_t depth = options & 0xff, skip = options >> 32;
  const int method = (options >> 8) & 0xff;
  Caches& c = caches(t);
  if (method == PPFAST_STACK_UNWIND) {
    return unwind_address_id(c, static_cast<const uintptr_t*>(fp)[1], skip, depth, entry);
  }
  // Chains are kept under a model entry frame only: the bound of every walk on this stack.
  const auto* frame = static_cast<const uintptr_t*>(fp);
  const auto* caller = reinterpret_cast<const uintptr_t*>(frame[0]);
  // The caller's frame as the walk checks it, before reading its return address.
  // (A skip of 2^24 frames or more has no chains: it does not fit their options.)
  if (!entry || caller <= frame || (reinterpret_cast<uintptr_t>(caller) & 7) ||
      static_cast<const void*>(caller) >= entry || (skip >> 24))
    return walk_address_id(c, fp, skip, depth, entry, nullptr);
  ChainTable::Set& set = c.chains.sets[ChainTable::index(reinterpret_cast<uintptr_t>(caller), caller[1])];
  const uint32_t chain_options = depth | skip << 8;
  for (uint32_t w = 0; w < 2; ++w) {
    const Chain& chain = set.way[w];
    if (chain.at[0] == frame && chain.top == entry && chain.options == chain_options && chain_holds(chain)) {
      set.recent = w;
      return chain.id;
    }
  }
  set.recent ^= 1;
  return walk_address_id(c, fp, skip, depth, entry, &set.way[set.recent]);
}

}  // namespace

namespace detail {
const void* exchange_model_entry(const void* frame) {
  const void* previous = t_stacks.entry;
  t_stacks.entry = frame;
  return previous;
}
const void* model_entry() { return t_stacks.entry; }
void restore_model_entry(const void* frame) { t_stacks.entry = frame; }
}  // namespace detail
}  // namespace ppfast

extern "C" {

void ppfast_stack_options(uint32_t depth, uint32_t skip, int method) {
  ppfast::g_options.store(ppfast::stack_options_word(depth < 1 ? 1 : depth > ppfast::kMaxDepth ? ppfast::kMaxDepth : depth,
                                                     skip,
                                                     method == PPFAST_STACK_UNWIND ? PPFAST_STACK_UNWIND : PPFAST_STACK_AUTO));
}

__attribute__((noinline)) double ppfast_uniform(void) {
  static const double kParams[2] = {0.0, 1.0};
  // Static: built on the stack at each call, the host's first read of it stalled on
  // store forwarding.
  static const ppfast_dist kUnit{PPFAST_UNIFORM, 1, 2, kParams};
  ppfast::ThreadStacks* tp = &ppfast::t_stacks;
  asm("" : "+r"(tp));  // keep the address: GCC would otherwise redo the TLS lookup after each call
  ppfast::ThreadStacks& t = *tp;
  const void* entry = t.entry;
  const uint32_t address = ppfast::stack_address_id(__builtin_frame_address(0), entry, t);
  double out;
  const double x = ppfast::detail::g_api.load(std::memory_order_relaxed)->sample(&kUnit, address, 0, PPFAST_CONTROL, &out);
  t.entry = entry;  // as ppfast_sample: a guided run may switch executions inside the call
  return x;
}
}
