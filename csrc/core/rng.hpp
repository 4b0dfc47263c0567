// ppfast random number generation: xoshiro256++ with one stream per (seed, stream).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace ppfast {

namespace detail {

/// One step of splitmix64: advances `state` and returns a well-mixed 64-bit value.
inline uint64_t splitmix64_next(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace detail

/// xoshiro256++ generator.
///
/// Each (seed, stream) pair names an independent sequence, so a trace's draws depend
/// only on the seed and the trace index, never on which thread ran it or how many
/// threads there were. The struct is plain data (trivially copyable) so it can live
/// inside per-trace state and be copied into shared memory.
struct Rng {
  uint64_t s[4];
  /// Second value of the last polar-method pair, returned by the next normal().
  double spare_normal;
  /// 1 when spare_normal holds an unused value (uint64_t keeps the layout padding-free).
  uint64_t has_spare;

  /// Sets the state from (seed, stream); resets the cached normal.
  ///
  /// The seed is mixed first and the stream is added to the mixed value before mixing
  /// again, so for one seed distinct streams give distinct, unrelated splitmix states
  /// (adjacent stream numbers do not give overlapping or shifted sequences).
  void seed(uint64_t seed_value, uint64_t stream) {
    uint64_t a = seed_value;
    uint64_t mixed_seed = detail::splitmix64_next(a);
    uint64_t b = mixed_seed + stream;
    uint64_t sm = detail::splitmix64_next(b);
    for (int i = 0; i < 4; ++i) s[i] = detail::splitmix64_next(sm);
    // xoshiro must not start from the all-zero state (astronomically unlikely here).
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 0x9e3779b97f4a7c15ULL;
    spare_normal = 0.0;
    has_spare = 0;
  }

  /// Next 64 random bits.
  inline uint64_t next() {
    const uint64_t result = detail::rotl64(s[0] + s[3], 23) + s[0];
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = detail::rotl64(s[3], 45);
    return result;
  }

  /// Uniform double in the open interval (0, 1) with 53 random bits:
  /// (k + 0.5) / 2^53 for k uniform in [0, 2^53), so log(uniform()) is always finite.
  inline double uniform() {
    return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53;
  }

  /// Standard normal draw (Marsaglia polar method; every second call is served from the
  /// cached spare value of the previous pair).
  inline double normal() {
    if (has_spare) {
      has_spare = 0;
      return spare_normal;
    }
    double u, v, r;
    do {
      // Uniform on [-1, 1); -1 only matters through r >= 1, which is rejected.
      u = static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0;
      v = static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0;
      r = u * u + v * v;
    } while (r >= 1.0 || r == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r) / r);
    spare_normal = v * f;
    has_spare = 1;
    return u * f;
  }

  // UniformRandomBitGenerator interface, so <random> facilities can use an Rng.
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  inline result_type operator()() { return next(); }
};

static_assert(std::is_trivially_copyable<Rng>::value, "Rng must stay plain data");
static_assert(std::is_standard_layout<Rng>::value, "Rng must stay plain data");

}  // namespace ppfast
