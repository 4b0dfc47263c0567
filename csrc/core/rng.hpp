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

/// Ziggurat for the standard normal (Marsaglia & Tsang 2000, 128 layers, in Doornik's
/// 2005 formulation). kZigX[i] is the right edge of layer i for f(x) = exp(-x^2 / 2):
/// kZigX[1] = R = 3.44261985589665 (start of the tail), kZigX[0] = V / f(R) (the base
/// layer with the tail folded in), kZigX[128] = 0; every layer has area V.
/// Computed with 50-digit arithmetic and rounded to double.
constexpr double kZigR = 3.4426198558966523;
inline constexpr double kZigX[129] = {
    3.7130862467403634, 3.4426198558966523, 3.2230849845786187, 3.0832288582142136,
    2.978696252645017, 2.894344007018671, 2.8231253505459666, 2.761169372384154,
    2.7061135731187225, 2.6564064112581924, 2.610972248428613, 2.569033625921639,
    2.5300096723854666, 2.493454522091951, 2.45901817740835, 2.4264206455302118,
    2.3954342780074676, 2.3658713701139877, 2.337575241335531, 2.310413683695002,
    2.2842740596736566, 2.2590595738653296, 2.234686395587057, 2.211081408874728,
    2.1881804320720204, 2.1659267937448408, 2.1442701823562613, 2.12316570866979,
    2.1025731351849988, 2.0824562379877247, 2.0627822745039635, 2.0435215366506694,
    2.024646973372934, 2.006133869958967, 1.9879595741230607, 1.9701032608497133,
    1.9525457295488888, 1.9352692282919002, 1.9182573008597321, 1.9014946531003176,
    1.8849670357028692, 1.868661140989542, 1.8525645117230871, 1.836665460253384,
    1.8209529965910052, 1.8054167642140488, 1.790046982594619, 1.7748343955807693,
    1.759770224894232, 1.7448461281083765, 1.7300541605582436, 1.7153867407081165,
    1.700836618564301, 1.6863968467734862, 1.6720607540918522, 1.6578219209482075,
    1.6436741568569826, 1.6296114794646783, 1.615628095037133, 1.601718380215277,
    1.5878768648844006, 1.5740982160167498, 1.5603772223598407, 1.5467087798535035,
    1.533087877667556, 1.5195095847593707, 1.5059690368565504, 1.4924614237746154,
    1.4789819769830979, 1.4655259573357946, 1.4520886428822164, 1.4386653166774612,
    1.4252512545068616, 1.4118417124397602, 1.3984319141236063, 1.3850170377251487,
    1.3715922024197322, 1.3581524543224228, 1.344692751745713, 1.3312079496576765,
    1.317692783201343, 1.3041418501204216, 1.290549591917873, 1.2769102735516997,
    1.2632179614460282, 1.2494664995643336, 1.235649483254481, 1.2217602305309625,
    1.2077917504067577, 1.1937367078237722, 1.1795873846544607, 1.1653356361550469,
    1.150972842138976, 1.1364898520030755, 1.121876922572254, 1.1071236475235353,
    1.0922188768965537, 1.0771506248819376, 1.0619059636836194, 1.0464709007525803,
    1.0308302360564556, 1.0149673952392995, 0.9988642334806435, 0.9825008035027604,
    0.9658550793881306, 0.9489026254979119, 0.9316161966013539, 0.9139652510088018,
    0.8959153525662386, 0.8774274290977156, 0.8584568431780508, 0.8389522142812075,
    0.8188539066833177, 0.7980920606262748, 0.7765839878761484, 0.75423066443451,
    0.7309119106218813, 0.706479611313608, 0.6807479186459042, 0.6534786387150424,
    0.6243585973090883, 0.592962942441978, 0.558692178375518, 0.5206560387251449,
    0.47743783725378786, 0.42654798630330515, 0.3628714310284183, 0.2723208647046638,
    0.0,
};

}  // namespace detail

/// xoshiro256++ generator.
///
/// Each (seed, stream) pair names an independent sequence, so a trace's draws depend
/// only on the seed and the trace index, never on which thread ran it or how many
/// threads there were. The struct is plain data (trivially copyable) so it can live
/// inside per-trace state and be copied into shared memory.
struct Rng {
  uint64_t s[4];

  /// Sets the state from (seed, stream). This is the whole state: Rng keeps no cached
  /// values, so two generators with equal s[] produce equal draws of every kind.
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
  inline double uniform() { return to_unit(next()); }

  /// The top 53 of 64 random bits as uniform() maps them.  For the top k, k + 0.5
  /// rounds to 2^53 and the result to exactly 1: that one gives the largest double
  /// below 1 instead.
  static inline double to_unit(uint64_t bits) {
    const uint64_t k = bits >> 11;
    return k != (uint64_t(1) << 53) - 1 ? (static_cast<double>(k) + 0.5) * 0x1.0p-53 : 0x1.fffffffffffffp-1;
  }

  /// Standard normal draw by the ziggurat method: one 64-bit draw and one comparison in
  /// about 99% of calls. The low 7 bits pick the layer and the top 53 bits (disjoint
  /// from them) give the signed position, so layer and position are independent.
  inline double normal() {
    for (;;) {
      const uint64_t r = next();
      const int i = static_cast<int>(r & 0x7f);
      const double u = static_cast<double>(r >> 11) * 0x1.0p-52 - 1.0;  // [-1, 1)
      const double x = u * detail::kZigX[i];
      if (std::fabs(x) < detail::kZigX[i + 1]) return x;
      if (i == 0) return normal_tail(x < 0.0);
      // Wedge between the layer's rectangle and the curve: accept with the exact density.
      const double xi = detail::kZigX[i];
      const double xi1 = detail::kZigX[i + 1];
      const double f0 = std::exp(-0.5 * (xi * xi - x * x));
      const double f1 = std::exp(-0.5 * (xi1 * xi1 - x * x));
      if (f1 + uniform() * (f0 - f1) < 1.0) return x;
    }
  }

  // UniformRandomBitGenerator interface, so <random> facilities can use an Rng.
  using result_type = uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  inline result_type operator()() { return next(); }

  /// Part of normal(): a draw from the normal tail beyond R, by Marsaglia's (1964)
  /// exponential proposal with exact acceptance.
  double normal_tail(bool negative) {
    double x, y;
    do {
      x = -std::log(uniform()) / detail::kZigR;
      y = -std::log(uniform());
    } while (y + y < x * x);
    return negative ? -(detail::kZigR + x) : detail::kZigR + x;
  }
};

static_assert(std::is_trivially_copyable<Rng>::value, "Rng must stay plain data");
static_assert(std::is_standard_layout<Rng>::value, "Rng must stay plain data");

}  // namespace ppfast
