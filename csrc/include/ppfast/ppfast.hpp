// ppfast C++ API for simulators: include this header, link ppfast::ppfast.
//
//   double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "mu");
//   ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
//   PPFAST_MODEL(gum, [] { ...; return mu; })
//
// Outside a ppfast run every call samples from the prior, so the simulator still runs
// on its own.  No Python headers here.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "ppfast/ppfast.h"

namespace ppfast {

/// Thrown inside the simulator when the current trace has failed (invalid parameters,
/// missing observation); the host catches it and records the trace as failed.
struct TraceAborted : std::runtime_error {
  TraceAborted() : std::runtime_error("ppfast: trace aborted") {}
};

/// A distribution with inline storage for scalar parameters (no allocation per draw)
/// and heap storage for tensor-valued ones.
class Distribution {
 public:
  ppfast_dist view() const {
    return ppfast_dist{kind_, size_, static_cast<uint32_t>(count_), heap_.empty() ? inline_ : heap_.data()};
  }
  uint32_t size() const { return size_; }

 protected:
  Distribution(uint8_t kind, std::initializer_list<double> scalars) : kind_(kind) {
    for (double v : scalars) inline_[count_++] = v;
  }
  Distribution(uint8_t kind, std::initializer_list<const std::vector<double>*> arrays) : kind_(kind) {
    size_t n = 0;
    for (auto* a : arrays) n = a->size() > n ? a->size() : n;
    size_ = static_cast<uint32_t>(n);
    // Broadcast length-1 parameters against the longest one.
    for (auto* a : arrays)
      for (size_t i = 0; i < n; ++i) heap_.push_back(a->size() == 1 ? (*a)[0] : (i < a->size() ? (*a)[i] : NAN));
    count_ = heap_.size();
  }
  explicit Distribution(uint8_t kind, std::vector<double> raw, uint32_t size)
      : kind_(kind), size_(size), count_(raw.size()), heap_(std::move(raw)) {}

 private:
  uint8_t kind_;
  uint32_t size_ = 1;
  size_t count_ = 0;
  double inline_[4] = {0, 0, 0, 0};
  std::vector<double> heap_;
};

using Vec = std::vector<double>;

#define PPFAST_DIST2(Name, KIND, a, b)                                             \
  struct Name : Distribution {                                                     \
    Name(double a, double b) : Distribution(KIND, {a, b}) {}                       \
    Name(const Vec& a, const Vec& b) : Distribution(KIND, {&a, &b}) {}             \
  };
#define PPFAST_DIST1(Name, KIND, a)                                                \
  struct Name : Distribution {                                                     \
    explicit Name(double a) : Distribution(KIND, {a}) {}                           \
    explicit Name(const Vec& a) : Distribution(KIND, {&a}) {}                      \
  };

PPFAST_DIST2(Normal, PPFAST_NORMAL, mean, stddev)
PPFAST_DIST2(Uniform, PPFAST_UNIFORM, low, high)
PPFAST_DIST1(Poisson, PPFAST_POISSON, rate)
PPFAST_DIST1(Bernoulli, PPFAST_BERNOULLI, probs)
PPFAST_DIST2(Beta, PPFAST_BETA, concentration1, concentration0)
PPFAST_DIST1(Exponential, PPFAST_EXPONENTIAL, rate)
PPFAST_DIST2(Gamma, PPFAST_GAMMA, concentration, rate)
PPFAST_DIST2(LogNormal, PPFAST_LOGNORMAL, loc, scale)
PPFAST_DIST2(Binomial, PPFAST_BINOMIAL, total_count, probs)
PPFAST_DIST2(Weibull, PPFAST_WEIBULL, scale, concentration)
#undef PPFAST_DIST1
#undef PPFAST_DIST2

struct TruncatedNormal : Distribution {
  TruncatedNormal(double mean, double stddev, double low, double high)
      : Distribution(PPFAST_TRUNCATED_NORMAL, {mean, stddev, low, high}) {}
  TruncatedNormal(const Vec& mean, const Vec& stddev, const Vec& low, const Vec& high)
      : Distribution(PPFAST_TRUNCATED_NORMAL, {&mean, &stddev, &low, &high}) {}
};

/// Categorical over {0, ..., probs.size()-1}.
struct Categorical : Distribution {
  explicit Categorical(Vec probs) : Distribution(PPFAST_CATEGORICAL, std::move(probs), 1) {}
};

/// Mixture of scalar distributions with the given weights.
struct Mixture : Distribution {
  Mixture(const std::vector<Distribution>& components, const Vec& probs)
      : Distribution(PPFAST_MIXTURE, pack(components, probs), 1) {}

 private:
  static Vec pack(const std::vector<Distribution>& components, const Vec& probs) {
    Vec raw{static_cast<double>(probs.size())};
    raw.insert(raw.end(), probs.begin(), probs.end());
    for (const auto& c : components) {
      ppfast_dist v = c.view();
      raw.push_back(v.kind);
      raw.push_back(v.nparams);
      raw.insert(raw.end(), v.params, v.params + v.nparams);
    }
    return raw;
  }
};

// Debug builds (no NDEBUG) check every `const char*` address: see detail::intern_checked.
// Define PPFAST_CHECK_ADDRESSES to 0 or 1 to choose explicitly.
#ifndef PPFAST_CHECK_ADDRESSES
#ifdef NDEBUG
#define PPFAST_CHECK_ADDRESSES 0
#else
#define PPFAST_CHECK_ADDRESSES 1
#endif
#endif

namespace detail {
/// Marks the frame of the model entry on this thread: call-stack addresses stop there,
/// so they hold the simulator's frames only (the same in every mode).
const void* exchange_model_entry(const void* frame);
struct ModelEntry {
  explicit ModelEntry(const void* frame) : previous(exchange_model_entry(frame)) {}
  ~ModelEntry() { exchange_model_entry(previous); }
  const void* previous;
};
/// Interns a string through the current recorder, caching by pointer (string literals
/// keep their address), so a call site pays a hash lookup once.
uint32_t intern_cached(const char* s, const char* file, int line);

/// intern_cached, and in debug builds a check of the rule it relies on: the text behind a
/// `const char*` address never changes.  `s.c_str()` of a loop-local std::string breaks
/// it (the next iteration's string may reuse the buffer, and every iteration would get the
/// first one's address); the check re-interns by content and fails the trace, naming the
/// site, instead of silently merging the addresses.
inline uint32_t intern_checked(const char* s, const char* file, int line) {
  const uint32_t id = intern_cached(s, file, line);
#if PPFAST_CHECK_ADDRESSES
  if (ppfast_intern(s) != id) {
    std::string message = std::string("ppfast: the text behind the const char* address \"") + s + "\"";
    if (file) message += std::string(" (") + file + ":" + std::to_string(line) + ")";
    message += " changed since that pointer was first used, so two different addresses would be merged: "
               "const char* addresses must be string literals or strings that live, unchanged, as long as the "
               "process (pass a std::string built at run time: it is interned by content)";
    ppfast_fail(message.c_str());
  }
#endif
  return id;
}

inline uint32_t sample_flags(bool control, bool replace) {
  const uint32_t c = control ? static_cast<uint32_t>(PPFAST_CONTROL) : 0u;
  return c | (replace ? static_cast<uint32_t>(PPFAST_REPLACE) : 0u);
}

inline void check() {
  if (ppfast_failed()) throw TraceAborted();
}
}  // namespace detail

/// Draws a scalar value at `address` (the first element for tensor distributions).
/// `address` and `name` must be string literals or strings that live, unchanged, as long
/// as the process (their pointer keys a cache; debug builds check it); build addresses at
/// run time as std::string and use the std::string overloads below.
inline double sample(const Distribution& d, const char* address, const char* name = nullptr, bool control = true,
                     bool replace = false, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ppfast_dist v = d.view();
  double small[1];
  std::vector<double> big;
  double* out = v.size == 1 ? small : (big.resize(v.size), big.data());
  const uint32_t flags = detail::sample_flags(control, replace);
  // Address first: it records the source location when first seen.
  const uint32_t a = detail::intern_checked(address, file, line);
  const uint32_t n = name ? detail::intern_checked(name, nullptr, 0) : 0u;
  double x = ppfast_sample(&v, a, n, flags, out);
  detail::check();
  return x;
}

/// Draws a tensor value (d.size() elements) at `address`.
inline std::vector<double> sample_tensor(const Distribution& d, const char* address, const char* name = nullptr,
                                         bool control = true, bool replace = false,
                                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ppfast_dist v = d.view();
  std::vector<double> out(v.size);
  const uint32_t flags = detail::sample_flags(control, replace);
  const uint32_t a = detail::intern_checked(address, file, line);
  const uint32_t n = name ? detail::intern_checked(name, nullptr, 0) : 0u;
  ppfast_sample(&v, a, n, flags, out.data());
  detail::check();
  return out;
}

/// Addresses built at run time: interned by content on every call (slower, always safe).
inline double sample(const Distribution& d, const std::string& address, const std::string& name = std::string(),
                     bool control = true, bool replace = false) {
  ppfast_dist v = d.view();
  std::vector<double> out(v.size);
  const uint32_t flags = detail::sample_flags(control, replace);
  const uint32_t a = ppfast_intern(address.c_str());
  const uint32_t n = name.empty() ? 0u : ppfast_intern(name.c_str());
  double x = ppfast_sample(&v, a, n, flags, out.data());
  detail::check();
  return x;
}

/// Conditions on the value the run supplies under `name` (observe={name: value}).
inline void observe(const Distribution& d, const char* name, const char* file = __builtin_FILE(),
                    int line = __builtin_LINE()) {
  ppfast_dist v = d.view();
  uint32_t id = detail::intern_checked(name, file, line);
  ppfast_observe(&v, id, id, nullptr, 0);
  detail::check();
}

/// Conditions on `value` unless the run supplies one under `name`.
inline void observe(const Distribution& d, const char* name, const std::vector<double>& value,
                    const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ppfast_dist v = d.view();
  uint32_t id = detail::intern_checked(name, file, line);
  ppfast_observe(&v, id, id, value.data(), static_cast<uint32_t>(value.size()));
  detail::check();
}
inline void observe(const Distribution& d, const char* name, double value, const char* file = __builtin_FILE(),
                    int line = __builtin_LINE()) {
  ppfast_dist v = d.view();
  uint32_t id = detail::intern_checked(name, file, line);
  ppfast_observe(&v, id, id, &value, 1);
  detail::check();
}

/// Records a value for analysis only.
inline void tag(double value, const char* name) {
  uint32_t id = detail::intern_checked(name, nullptr, 0);
  ppfast_tag(id, id, &value, 1);
}
inline void tag(const std::vector<double>& value, const char* name) {
  uint32_t id = detail::intern_checked(name, nullptr, 0);
  ppfast_tag(id, id, value.data(), static_cast<uint32_t>(value.size()));
}

/// Adds an arbitrary term to the log-likelihood.
inline void factor(double log_prob) { ppfast_factor(log_prob); }

/// Capture at the generator: a controlled Uniform(0, 1) draw addressed by the call stack
/// (see ppfast_uniform).  Plug it in where existing code gets its random numbers.
inline double uniform() {
  double x = ppfast_uniform();
  if (x != x) detail::check();  // a failed trace answers NaN: only then ask why
  return x;
}

/// Stack-address settings for this binary (see ppfast_stack_options).
inline void stack_options(uint32_t depth, uint32_t skip = 0, int method = PPFAST_STACK_AUTO) {
  ppfast_stack_options(depth, skip, method);
}

/// A UniformRandomBitGenerator over uniform(): std::*_distribution code runs unchanged and
/// each call is one captured site.  The full 64-bit range makes std::generate_canonical
/// (behind every real distribution) take one call per double and return the draw exactly.
struct Generator {
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~uint64_t(0); }
  result_type operator()() {
    const double bits = uniform() * 0x1p64;  // exact: a power-of-two scaling
    return bits < 0x1p64 ? static_cast<result_type>(bits) : max();
  }
};

}  // namespace ppfast

/// Exports `fn` (a callable returning a double, or void) as this library's model for
/// embedded mode and as `ppfast_model_main` for shared-memory / standalone executables.
#define PPFAST_MODEL(model_name, fn) PPFAST_MODEL_WITH_FLAGS(model_name, fn, 0u)

/// PPFAST_MODEL with flags (PPFAST_MODEL_ONE_EXECUTION_PER_THREAD, see ppfast.h).
#define PPFAST_MODEL_WITH_FLAGS(model_name, fn, model_flags)                            \
  namespace {                                                                           \
  double ppfast_model_run_() {                                                          \
    ppfast::detail::ModelEntry entry_(__builtin_frame_address(0));                      \
    using R = decltype((fn)());                                                         \
    if constexpr (std::is_void_v<R>) {                                                  \
      (fn)();                                                                           \
      return 0.0;                                                                       \
    } else {                                                                            \
      return static_cast<double>((fn)());                                               \
    }                                                                                   \
  }                                                                                     \
  }                                                                                     \
  extern "C" __attribute__((visibility("default"))) const ppfast_model_info* ppfast_model_entry(void) { \
    static const ppfast_model_info info{PPFAST_ABI_VERSION, #model_name, &ppfast_model_run_, &ppfast_bind, (model_flags)}; \
    return &info;                                                                       \
  }
