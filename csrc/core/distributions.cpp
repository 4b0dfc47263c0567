// ppfast distributions: validation, sampling, log densities, moments and supports.
#include "distributions.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace ppfast {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kLogSqrt2Pi = 0.918938533204672741780329736406;  // log(sqrt(2 pi))
constexpr double kSqrt2Pi = 2.50662827463100050241576528481;
constexpr double kSqrt1_2 = 0.707106781186547524400844362105;
constexpr double kMaxExactInt = 9007199254740992.0;  // 2^53: larger doubles are all integers
constexpr double kOneMinusHalfEps = 1.0 - 0x1.0p-53;  // largest double below 1

// ---------------------------------------------------------------------------------------
// Special functions

inline bool is_nonneg_int(double x) {
  return x >= 0.0 && x <= kMaxExactInt && x == std::floor(x);
}

// x * log(y) with 0 * log(0) = 0 (torch's xlogy convention).
inline double xlogy(double x, double y) { return x == 0.0 ? 0.0 : x * std::log(y); }

inline bool uniform_width_finite(double lo, double hi) { return std::isfinite(hi - lo); }

// log(high - low), also where high - low overflows.
inline double log_uniform_width(double lo, double hi) {
  return uniform_width_finite(lo, hi) ? std::log(hi - lo) : std::log(0.5 * hi - 0.5 * lo) + 0.6931471805599453;
}

// log Gamma(x) for x > 0. Written here rather than calling std::lgamma because lgamma
// may write the global `signgam`, a data race when many recorder threads evaluate
// log-probabilities at once. Stirling's series from x >= 10 (truncation error < 1e-16),
// with the recurrence Gamma(x+1) = x Gamma(x) below that.
double log_gamma(double x) {
  if (!(x > 0.0)) return x == 0.0 ? kInf : kNaN;
  if (x == kInf) return kInf;
  double shift = 0.0;
  if (x < 10.0) {
    double prod = 1.0;
    while (x < 10.0) {
      prod *= x;
      x += 1.0;
    }
    shift = -std::log(prod);
  }
  const double r = 1.0 / x;
  const double r2 = r * r;
  // Bernoulli-number terms B_2k / (2k (2k - 1) x^(2k - 1)), k = 1..7.
  const double series =
      r * (1.0 / 12.0 +
           r2 * (-1.0 / 360.0 +
                 r2 * (1.0 / 1260.0 +
                       r2 * (-1.0 / 1680.0 +
                             r2 * (1.0 / 1188.0 +
                                   r2 * (-691.0 / 360360.0 + r2 * (1.0 / 156.0)))))));
  return (x - 0.5) * std::log(x) - x + kLogSqrt2Pi + series + shift;
}

// log Gamma(x + 1) - [(x + 1/2) log x - x + log sqrt(2 pi)], Stirling's correction, for
// x >= 10 (the same series as log_gamma; omitted terms below 1e-16).
inline double stirling_error(double x) {
  const double r = 1.0 / x;
  const double r2 = r * r;
  return r * (1.0 / 12.0 +
              r2 * (-1.0 / 360.0 +
                    r2 * (1.0 / 1260.0 +
                          r2 * (-1.0 / 1680.0 + r2 * (1.0 / 1188.0 + r2 * (-691.0 / 360360.0 + r2 / 156.0))))));
}

// x log(x / m) + m - x (>= 0), without the cancellation of its terms near x = m
// (Loader's bd0): the error is about eps * |x - m|, not eps * x log x.
inline double bd0(double x, double m) {
  if (x == 0.0) return m;
  const double d = x - m;
  return x * std::log1p(d / m) - d;
}

// log P(X = x), X ~ Poisson(rate), for integers x >= 10 (and rate > 0): the saddle-point
// form. x log(rate) - rate - log Gamma(x + 1) loses ~eps * x log x to cancellation, several
// nats at counts near 1e15.
inline double poisson_lp_large(double x, double rate) {
  return -bd0(x, rate) - 0.5 * std::log(2.0 * 3.14159265358979323846 * x) - stirling_error(x);
}

// log C(n, x) p^x (1 - p)^(n - x) for x, n - x >= 10, 0 < p < 1: saddle-point form (Loader
// 2000), accurate where the log-Gamma differences would cancel (n up to 2^53).
inline double binomial_lp_large(double x, double n, double p) {
  const double rest = n - x;
  return stirling_error(n) - stirling_error(x) - stirling_error(rest) - bd0(x, n * p) - bd0(rest, n * (1.0 - p)) -
         0.5 * std::log(2.0 * 3.14159265358979323846 * x * (rest / n));
}

// log I_nu(k) for nu in {0, 1}, k > 0: the power series up to k = 30, the asymptotic
// series of e^k / sqrt(2 pi k) above (its eighth term is below 1e-12 there).
double log_bessel_i(int nu, double k) {
  if (k <= 30.0) {
    const double q = 0.25 * k * k;
    double term = nu == 0 ? 1.0 : 0.5 * k;  // m = 0
    double sum = term;
    for (int m = 1; m < 500; ++m) {
      term *= q / (static_cast<double>(m) * static_cast<double>(m + nu));
      sum += term;
      if (term < 1e-17 * sum) break;
    }
    return std::log(sum);
  }
  const double mu = 4.0 * nu * nu;
  double term = 1.0, sum = 1.0;
  for (int j = 1; j <= 8; ++j) {
    const double odd = 2.0 * j - 1.0;
    term *= -(mu - odd * odd) / (j * 8.0 * k);
    sum += term;
  }
  return k - 0.5 * std::log(2.0 * M_PI * k) + std::log(sum);
}

// log(1 - exp(d)) for d <= 0, accurate for d near 0 and for d very negative.
inline double log1m_exp(double d) {
  return d > -0.6931471805599453 ? std::log(-std::expm1(d)) : std::log1p(-std::exp(d));
}

// Sum of the asymptotic series s(x) with Q(x) = phi(x) / x * s(x), Q the upper normal
// tail; used for x >= 25, where the omitted terms are below 1e-17.
inline double normal_tail_series(double x) {
  const double t = 1.0 / (x * x);
  return 1.0 +
         t * (-1.0 +
              t * (3.0 +
                   t * (-15.0 +
                        t * (105.0 +
                             t * (-945.0 + t * (10395.0 + t * (-135135.0 + t * 2027025.0)))))));
}

// log Q(x) = log P(N(0,1) > x), finite for every finite x (erfc underflows near x = 38).
double log_normal_upper_tail(double x) {
  if (x < 25.0) return std::log(0.5 * std::erfc(x * kSqrt1_2));
  return -0.5 * x * x - std::log(x) - kLogSqrt2Pi + std::log(normal_tail_series(x));
}

// Quantile of N(0,1) for p in (0, 0.5]: Acklam's rational approximation (relative error
// about 1e-9) polished by one Halley step against the erfc-based CDF, giving close to
// full double precision. Keeping p <= 0.5 avoids computing 1 - tiny for the upper tail.
double normal_quantile_lower(double p) {
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q -
           2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00) /
        ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q +
          3.754408661907416e+00) * q + 1.0);
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r +
           1.383577518672690e+02) * r - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q /
        (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r +
           6.680131188771972e+01) * r - 1.328068155288572e+01) * r + 1.0);
  }
  // exp(x^2 / 2) overflows below x = -37.6; p there is below 1e-300 and Acklam's value
  // is already accurate to ~1e-9 relative.
  if (x > -37.0) {
    const double e = 0.5 * std::erfc(-x * kSqrt1_2) - p;
    const double u = e * kSqrt2Pi * std::exp(0.5 * x * x);
    x = x - u / (1.0 + 0.5 * x * u);
  }
  return x;
}

// log of the N(0,1) mass of [a, b], a < b.
double normal_log_mass(double a, double b) {
  if (b <= 0.0) {  // mirror so that b > 0
    const double na = -b;
    b = -a;
    a = na;
  }
  const double h = 0.5 * (b - a);
  const double m = 0.5 * (a + b);
  if (std::isfinite(h) && h * std::max(1.0, std::fabs(m)) < 1e-2) {
    // Narrow interval: integrate the Taylor expansion of phi around the midpoint
    // (Hermite polynomials He2, He4, He6; the next term is below 1e-20 relative), where
    // differences of tail masses would cancel.
    const double m2 = m * m;
    const double h2 = h * h;
    const double he2 = m2 - 1.0;
    const double he4 = (m2 - 6.0) * m2 + 3.0;
    const double he6 = ((m2 - 15.0) * m2 + 45.0) * m2 - 15.0;
    return std::log(2.0 * h) - 0.5 * m2 - kLogSqrt2Pi +
           std::log1p(h2 * (he2 / 6.0 + h2 * (he4 / 120.0 + h2 * he6 / 5040.0)));
  }
  if (a >= 25.0) {
    // Far tail: log Q(b) - log Q(a) from the asymptotic form, without cancellation.
    const double d = std::isinf(b) ? -kInf
                                   : -0.5 * (b - a) * (b + a) - std::log1p((b - a) / a) +
                                         std::log(normal_tail_series(b) / normal_tail_series(a));
    return log_normal_upper_tail(a) + log1m_exp(d);
  }
  if (a >= 0.0) {
    const double la = log_normal_upper_tail(a);
    const double lb = log_normal_upper_tail(b);
    return la + log1m_exp(lb - la);
  }
  // a < 0 < b: the two erf terms have opposite signs, so nothing cancels.
  return std::log(0.5 * (std::erf(b * kSqrt1_2) - std::erf(a * kSqrt1_2)));
}

// ---------------------------------------------------------------------------------------
// Samplers (all exact up to floating point)

// N(0,1) restricted to [a, b], a < b (either may be infinite).
double std_truncnorm_draw(double a, double b, Rng& rng) {
  bool flip = false;
  if (b <= 0.0) {
    const double na = -b;
    b = -a;
    a = na;
    flip = true;
  }
  // Now b > 0.
  double x;
  const double w = b - a;
  if (std::isfinite(w) && w * std::max(1.0, std::max(std::fabs(a), std::fabs(b))) <= 1.0) {
    // Narrow interval: uniform proposal accepted with phi(x) / phi(x0), x0 the mode on
    // [a, b]; the acceptance rate is at least exp(-1).
    const double x0 = a > 0.0 ? a : 0.0;
    for (;;) {
      x = std::min(a + w * rng.uniform(), b);
      if (rng.uniform() <= std::exp(-0.5 * (x - x0) * (x + x0))) break;
    }
  } else if (a >= 30.0) {
    // Far tail, where tail probabilities underflow: Robert (1995) translated
    // exponential proposal with the optimal rate; acceptance tends to 1 as a grows.
    // a * (1 + sqrt(1 + 4 / a^2)) / 2 rather than (a + sqrt(a^2 + 4)) / 2: a^2 overflows
    // for a > 1e154, which made lambda infinite and the loop reject every proposal.
    const double lambda = 0.5 * a * (1.0 + std::sqrt(1.0 + 4.0 / a / a));
    for (;;) {
      x = a - std::log(rng.uniform()) / lambda;
      if (x > b) continue;
      const double t = x - lambda;
      if (rng.uniform() <= std::exp(-0.5 * t * t)) break;
    }
  } else if (a >= 0.0) {
    // Inverse CDF on the upper tail: Q(x) uniform between Q(b) and Q(a).
    const double qa = 0.5 * std::erfc(a * kSqrt1_2);
    const double qb = 0.5 * std::erfc(b * kSqrt1_2);
    x = -normal_quantile_lower(qb + rng.uniform() * (qa - qb));
  } else {
    // a < 0 < b: inverse CDF, inverting through the smaller of Phi(x) and Q(x).
    const double erf_a = std::erf(a * kSqrt1_2);
    const double erf_b = std::erf(b * kSqrt1_2);
    const double mass = 0.5 * (erf_b - erf_a);
    const double mass_below_0 = -0.5 * erf_a;
    const double t = rng.uniform() * mass;
    if (t < mass_below_0) {
      x = normal_quantile_lower(0.5 * std::erfc(-a * kSqrt1_2) + t);
    } else {
      x = -normal_quantile_lower(0.5 * std::erfc(b * kSqrt1_2) + (mass - t));
    }
  }
  x = std::min(std::max(x, a), b);
  return flip ? -x : x;
}

// Gamma(shape, 1) for shape >= 1: Marsaglia & Tsang (2000).
double gamma_mt_draw(double shape, Rng& rng) {
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = rng.normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
  }
}

// log of a Gamma(shape, 1) draw; for shape < 1 uses Gamma(shape) = Gamma(shape + 1) *
// U^(1/shape) in log space, so tiny shapes do not underflow to log(0).
double log_gamma_draw(double shape, Rng& rng) {
  if (shape >= 1.0) return std::log(gamma_mt_draw(shape, rng));
  return std::log(gamma_mt_draw(shape + 1.0, rng)) + std::log(rng.uniform()) / shape;
}

// Gamma(shape, 1); values below the smallest normal double are clamped to it (as torch
// does), keeping draws inside the open support.
double gamma_draw(double shape, Rng& rng) {
  if (shape >= 1.0) return gamma_mt_draw(shape, rng);
  return std::max(std::exp(log_gamma_draw(shape, rng)), DBL_MIN);
}

double beta_draw(double a, double b, Rng& rng) {
  double x;
  if (a >= 1.0 && b >= 1.0) {
    const double ga = gamma_mt_draw(a, rng);
    const double gb = gamma_mt_draw(b, rng);
    x = ga / (ga + gb);
  } else {
    // Ratio in log space: small concentrations give Gamma draws that underflow.
    const double la = log_gamma_draw(a, rng);
    const double lb = log_gamma_draw(b, rng);
    x = 1.0 / (1.0 + std::exp(lb - la));
  }
  return std::min(std::max(x, DBL_MIN), kOneMinusHalfEps);
}

double poisson_draw(double rate, Rng& rng) {
  if (rate <= 0.0) return 0.0;
  if (rate < 10.0) {
    // Multiplication method: count uniforms until their product drops below exp(-rate).
    const double limit = std::exp(-rate);
    double k = 0.0;
    double prod = rng.uniform();
    while (prod > limit) {
      k += 1.0;
      prod *= rng.uniform();
    }
    return k;
  }
  // PTRS: Hormann (1993), transformed rejection with squeeze; valid for rate >= 10.
  const double log_rate = std::log(rate);
  const double b = 0.931 + 2.53 * std::sqrt(rate);
  const double a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
  const double v_r = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    const double u = rng.uniform() - 0.5;
    const double v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2.0 * a / us + b) * u + rate + 0.43);
    if (k < 0.0) continue;
    if (us >= 0.07 && v <= v_r) return k;
    if (us < 0.013 && v > us) continue;
    if (std::log(v * inv_alpha / (a / (us * us) + b)) <= -rate + k * log_rate - log_gamma(k + 1.0))
      return k;
  }
}

// Binomial by sequential inversion of the CDF (BINV); for n p < 10 and p <= 0.5.
double binomial_inversion_draw(double n, double p, Rng& rng) {
  const double s = p / (1.0 - p);
  const double a = (n + 1.0) * s;
  const double r0 = std::exp(n * std::log1p(-p));  // P(X = 0)
  for (;;) {
    double u = rng.uniform();
    double r = r0;
    double x = 0.0;
    for (;;) {
      if (u <= r) return x;
      u -= r;
      x += 1.0;
      // Only rounding can exhaust the pmf; start over (probability ~1e-16).
      if (x > n || r <= 0.0) break;
      r *= a / x - s;
    }
  }
}

// Binomial by transformed rejection (BTRS, Hormann 1993); for n p >= 10 and p <= 0.5.
double binomial_btrs_draw(double n, double p, Rng& rng) {
  const double q = 1.0 - p;
  const double spq = std::sqrt(n * p * q);
  const double b = 1.15 + 2.53 * spq;
  const double a = -0.0873 + 0.0248 * b + 0.01 * p;
  const double c = n * p + 0.5;
  const double v_r = 0.92 - 4.2 / b;
  const double alpha = (2.83 + 5.1 / b) * spq;
  const double log_odds = std::log(p / q);
  const double m = std::floor((n + 1.0) * p);
  const double h = log_gamma(m + 1.0) + log_gamma(n - m + 1.0);
  for (;;) {
    const double u = rng.uniform() - 0.5;
    const double v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2.0 * a / us + b) * u + c);
    if (k < 0.0 || k > n) continue;
    if (us >= 0.07 && v <= v_r) return k;
    const double lv = std::log(v * alpha / (a / (us * us) + b));
    if (lv <= h - log_gamma(k + 1.0) - log_gamma(n - k + 1.0) + (k - m) * log_odds) return k;
  }
}

double binomial_draw(double n, double p, Rng& rng) {
  if (n == 0.0 || p == 0.0) return 0.0;
  if (p == 1.0) return n;
  const bool flip = p > 0.5;
  const double pp = flip ? 1.0 - p : p;
  const double k =
      n * pp < 10.0 ? binomial_inversion_draw(n, pp, rng) : binomial_btrs_draw(n, pp, rng);
  return flip ? n - k : k;
}

// von Mises(loc, k) on [-pi, pi): Best & Fisher's (1979) wrapped-Cauchy rejection.
double von_mises_draw(double loc, double k, Rng& rng) {
  double theta;
  if (k < 1e-8) {  // numerically uniform on the circle
    theta = M_PI * (2.0 * rng.uniform() - 1.0);
  } else {
    const double tau = 1.0 + std::sqrt(1.0 + 4.0 * k * k);
    const double rho = (tau - std::sqrt(2.0 * tau)) / (2.0 * k);
    const double r = (1.0 + rho * rho) / (2.0 * rho);
    double f;
    for (;;) {
      const double z = std::cos(M_PI * rng.uniform());
      f = (1.0 + r * z) / (r + z);
      const double c = k * (r - f);
      const double u2 = rng.uniform();
      if (c * (2.0 - c) - u2 > 0.0 || std::log(c / u2) + 1.0 - c >= 0.0) break;
    }
    theta = (rng.uniform() < 0.5 ? -1.0 : 1.0) * std::acos(std::clamp(f, -1.0, 1.0));
  }
  double x = std::fmod(theta + loc + M_PI, 2.0 * M_PI);
  if (x < 0.0) x += 2.0 * M_PI;
  x -= M_PI;
  return x < M_PI ? x : -M_PI;
}

// Cholesky factor L (row-major, lower) of the d x d matrix `a`; false unless positive
// definite.  The scratch is per thread: the recorder calls this at every MVN draw.
bool cholesky(const double* a, uint32_t d, std::vector<double>& l) {
  l.assign(size_t{d} * d, 0.0);
  for (uint32_t i = 0; i < d; ++i) {
    for (uint32_t j = 0; j <= i; ++j) {
      double s = a[size_t{i} * d + j];
      for (uint32_t k = 0; k < j; ++k) s -= l[size_t{i} * d + k] * l[size_t{j} * d + k];
      if (i == j) {
        if (!(s > 0.0) || !std::isfinite(s)) return false;
        l[size_t{i} * d + i] = std::sqrt(s);
      } else {
        l[size_t{i} * d + j] = s / l[size_t{j} * d + j];
      }
    }
  }
  return true;
}

std::vector<double>& mvn_scratch() {
  static thread_local std::vector<double> l;
  return l;
}

// Index drawn with probability w[i] / sum(w), by a linear scan of the cumulative sum.
// Zero-weight entries are never returned.
double categorical_draw(const double* w, uint32_t k, Rng& rng) {
  double total = 0.0;
  for (uint32_t i = 0; i < k; ++i) total += w[i];
  const double t = rng.uniform() * total;
  double cum = 0.0;
  uint32_t last_positive = 0;
  for (uint32_t i = 0; i < k; ++i) {
    if (w[i] > 0.0) last_positive = i;
    cum += w[i];
    if (t < cum) return static_cast<double>(i);
  }
  return static_cast<double>(last_positive);  // t rounded up to the total
}

// ---------------------------------------------------------------------------------------
// Truncated normal moments

void truncnorm_moments(double mu, double sd, double lo, double hi, double* mean_out,
                       double* sd_out) {
  double a = (lo - mu) / sd;
  double b = (hi - mu) / sd;
  if (!(a < b)) {  // standardised bounds overflowed: all mass at the near bound
    *mean_out = std::min(std::max(mu, lo), hi);
    *sd_out = 0.0;
    return;
  }
  bool flip = false;
  if (b <= 0.0) {
    const double na = -b;
    b = -a;
    a = na;
    flip = true;
  }
  double zm, zv;
  const double h = 0.5 * (b - a);
  const double m = 0.5 * (a + b);
  if (std::isfinite(h) && h * std::max(1.0, std::fabs(m)) < 1e-3) {
    // Narrow: nearly uniform; expansion of the tilt of phi around the midpoint, with
    // omitted terms of relative order (h m)^4.
    const double h2 = h * h;
    const double m2 = m * m;
    zm = m - m * h2 / 3.0 + m * (m2 + 2.0) * h2 * h2 / 45.0;
    zv = h2 / 3.0 - (3.0 * m2 + 2.0) * h2 * h2 / 45.0;
  } else if (a >= 25.0) {
    // Far tail: the exact moment formulas cancel catastrophically. Use the asymptotic
    // one-sided moments from the Mills-ratio series (for a >= 25 the omitted terms are
    // below 1e-11 relative), scaled by the effect of the upper bound on an exponential
    // with the same mean offset. With a finite upper bound this is an approximation
    // (stddev within ~0.2% at a = 25, better further out), enough for standardising
    // proposals.
    const double y = 1.0 / (a * a);
    const double off1 =
        (1.0 / a) *
        (1.0 + y * (-2.0 + y * (10.0 + y * (-74.0 + y * (706.0 + y * (-8162.0 + y * 110410.0))))));
    const double var1 =
        y * (1.0 +
             y * (-6.0 +
                  y * (50.0 + y * (-518.0 + y * (6354.0 + y * (-89782.0 + y * 1435330.0))))));
    double off = off1;
    double var = var1;
    const double w = b - a;
    // (The upper bound's effect is below rounding once lam * w passes 700, where
    // lam * w * e would be inf * 0.)
    if (std::isfinite(w) && w < 700.0 * off1) {
      const double lam = 1.0 / off1;
      const double e = std::exp(-lam * w);
      const double om = -std::expm1(-lam * w);  // 1 - e
      off = off1 * (1.0 - lam * w * e / om);
      var = var1 * (1.0 - lam * lam * w * w * e / (om * om));
    }
    zm = a + off;
    zv = var;
  } else {
    const double lz = normal_log_mass(a, b);
    const double ra = std::isinf(a) ? 0.0 : std::exp(-0.5 * a * a - kLogSqrt2Pi - lz);
    const double rb = std::isinf(b) ? 0.0 : std::exp(-0.5 * b * b - kLogSqrt2Pi - lz);
    zm = ra - rb;
    zv = 1.0 + (std::isinf(a) ? 0.0 : a * ra) - (std::isinf(b) ? 0.0 : b * rb) - zm * zm;
  }
  if (!(zv > 0.0)) zv = 0.0;
  *mean_out = mu + sd * (flip ? -zm : zm);
  *sd_out = sd * std::sqrt(zv);
}

// ---------------------------------------------------------------------------------------
// Scalar log densities (x assumed not NaN where the caller checks)

inline double lp_normal(double x, double mu, double sd) {
  const double z = (x - mu) / sd;
  return -0.5 * z * z - std::log(sd) - kLogSqrt2Pi;
}

// log of the N(0,1) density at z truncated to [a, b], for a >= 25: phi(z) and the mass
// both underflow (to -inf in log space for a > 1e154), so take their ratio analytically
// from log Q(a) = -a^2/2 - log a - log sqrt(2 pi) + log series(a).
double std_truncnorm_far_lp(double z, double a, double b) {
  const double d = std::isinf(b) ? -kInf
                                 : -0.5 * (b - a) * (b + a) - std::log1p((b - a) / a) +
                                       std::log(normal_tail_series(b) / normal_tail_series(a));
  return -0.5 * (z - a) * (z + a) + std::log(a) - std::log(normal_tail_series(a)) - log1m_exp(d);
}

inline double lp_truncnorm(double x, double mu, double sd, double lo, double hi) {
  if (!(x >= lo && x <= hi)) return -kInf;
  const double a = (lo - mu) / sd;
  const double b = (hi - mu) / sd;
  // An interval too far out or too narrow for the standardised bounds to differ: the
  // sampler returns a point at the near bound; count it as a point mass (log-probability 0).
  if (!(a < b)) return 0.0;
  const double z = (x - mu) / sd;
  if (a >= 25.0) return std_truncnorm_far_lp(z, a, b) - std::log(sd);
  if (b <= -25.0) return std_truncnorm_far_lp(-z, -b, -a) - std::log(sd);
  return lp_normal(x, mu, sd) - normal_log_mass(a, b);
}

double lp_categorical(double x, const double* w, uint32_t k) {
  if (!(x >= 0.0 && x < static_cast<double>(k) && x == std::floor(x))) return -kInf;
  double total = 0.0;
  for (uint32_t i = 0; i < k; ++i) total += w[i];
  return std::log(w[static_cast<uint32_t>(x)]) - std::log(total);
}

// ---------------------------------------------------------------------------------------
// Mixture layout helpers (assume a validated layout)

struct MixtureView {
  uint32_t k;
  const double* weights;
  const double* components;  // first component header
};

inline MixtureView mixture_view(const Dist& d) {
  const uint32_t k = static_cast<uint32_t>(d.params[0]);
  return {k, d.params + 1, d.params + 1 + k};
}

// Reads the component at *cursor and advances *cursor past it.
inline Dist next_component(const double** cursor) {
  const double* p = *cursor;
  Dist c{static_cast<DistKind>(static_cast<int>(p[0])), 1u, static_cast<uint32_t>(p[1]), p + 2};
  *cursor = p + 2 + c.nparams;
  return c;
}

inline double weight_total(const MixtureView& mv) {
  double total = 0.0;
  for (uint32_t i = 0; i < mv.k; ++i) total += mv.weights[i];
  return total;
}

// ---------------------------------------------------------------------------------------
// Validation
//
// The recorder validates every draw, so the checks build no strings unless they fail.

std::string fmt_num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  // Shortest %g form that reads back as the same double.
  for (int prec = 6; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// Where a message comes from: "Normal: ", or "Mixture: component 1: Normal: " for a
// component (parent = the mixture, component = its index).
struct Where {
  const Where* parent;
  DistKind kind;
  uint32_t component;
  std::string str() const {
    std::string s;
    if (parent) s = parent->str() + "component " + std::to_string(component) + ": ";
    return s + dist_name(kind) + ": ";
  }
};

enum class Req { Finite, Positive, NonNegative, Prob, NonNegInt, NotNaN, CountRate };

// Poisson rates above 2^52 have draws beyond 2^53, where doubles no longer hold every
// integer (so the draws would be outside the support as log_prob checks it).
constexpr double kMaxPoissonRate = 4503599627370496.0;  // 2^52

inline bool meets(Req r, double v) {
  switch (r) {
    case Req::Finite: return std::isfinite(v);
    case Req::Positive: return v > 0.0 && std::isfinite(v);
    case Req::NonNegative: return v >= 0.0 && std::isfinite(v);
    case Req::Prob: return v >= 0.0 && v <= 1.0;
    case Req::NonNegInt: return is_nonneg_int(v);
    case Req::NotNaN: return !std::isnan(v);
    case Req::CountRate: return v >= 0.0 && v <= kMaxPoissonRate;
  }
  return false;
}

const char* req_text(Req r) {
  switch (r) {
    case Req::Finite: return "finite";
    case Req::Positive: return "> 0 and finite";
    case Req::NonNegative: return ">= 0 and finite";
    case Req::Prob: return "in [0, 1]";
    case Req::NonNegInt: return "a non-negative integer (at most 2^53)";
    case Req::NotNaN: return "a number (not NaN)";
    case Req::CountRate: return ">= 0 and at most 2^52 (larger rates give counts beyond the integers a double holds)";
  }
  return "";
}

std::string check_array(const Where& w, const char* pname, const double* p, uint32_t n, Req r) {
  for (uint32_t i = 0; i < n; ++i) {
    if (!meets(r, p[i])) {
      return w.str() + pname + " must be " + req_text(r) + ", got " + fmt_num(p[i]) +
             " (element " + std::to_string(i) + ")";
    }
  }
  return {};
}

std::string check_less(const Where& w, const double* lo, const double* hi, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    if (!(lo[i] < hi[i])) {
      return w.str() + "low must be < high, got low " + fmt_num(lo[i]) + ", high " +
             fmt_num(hi[i]) + " (element " + std::to_string(i) + ")";
    }
  }
  return {};
}

// Weights / probs: each >= 0 and finite, summing to 1 within 1e-6 * k.
std::string check_simplex(const Where& w, const char* pname, const double* p, uint32_t k) {
  std::string err = check_array(w, pname, p, k, Req::NonNegative);
  if (!err.empty()) return err;
  double total = 0.0;
  for (uint32_t i = 0; i < k; ++i) total += p[i];
  const double tol = 1e-6 * static_cast<double>(k);
  if (!(std::fabs(total - 1.0) <= tol)) {
    return w.str() + pname + " must sum to 1 (within " + fmt_num(tol) + "), got sum " +
           fmt_num(total);
  }
  return {};
}

struct ParamNames {
  const char* n[4];
};

ParamNames param_names(DistKind k) {
  switch (k) {
    case DistKind::Normal: return {{"mean", "stddev", nullptr, nullptr}};
    case DistKind::Uniform: return {{"low", "high", nullptr, nullptr}};
    case DistKind::Categorical: return {{"probs", nullptr, nullptr, nullptr}};
    case DistKind::Poisson: return {{"rate", nullptr, nullptr, nullptr}};
    case DistKind::Bernoulli: return {{"probs", nullptr, nullptr, nullptr}};
    case DistKind::Beta: return {{"concentration1", "concentration0", nullptr, nullptr}};
    case DistKind::Exponential: return {{"rate", nullptr, nullptr, nullptr}};
    case DistKind::Gamma: return {{"concentration", "rate", nullptr, nullptr}};
    case DistKind::LogNormal: return {{"loc", "scale", nullptr, nullptr}};
    case DistKind::Binomial: return {{"total_count", "probs", nullptr, nullptr}};
    case DistKind::Weibull: return {{"scale", "concentration", nullptr, nullptr}};
    case DistKind::TruncatedNormal: return {{"mean", "stddev", "low", "high"}};
    case DistKind::VonMises: return {{"loc", "concentration", nullptr, nullptr}};
    default: return {{nullptr, nullptr, nullptr, nullptr}};
  }
}

bool kind_in_range(DistKind k) {
  const int code = static_cast<int>(k);
  return code >= 1 && code <= kMaxDistKind;
}

std::string validate_impl(const Dist& d, const Where* parent, uint32_t component);

std::string validate_mixture(const Dist& d, const Where& w) {
  if (d.size != 1) {
    return w.str() + "size must be 1 (a mixture of scalar components), got " +
           std::to_string(d.size);
  }
  if (d.nparams < 1) {
    return w.str() + "params must start with the number of components k, got no params";
  }
  const double kd = d.params[0];
  if (!(kd >= 1.0 && kd == std::floor(kd) && kd <= static_cast<double>(d.nparams) - 1.0)) {
    return w.str() + "k (params[0]) must be an integer >= 1 with k weights following it, got " +
           fmt_num(kd) + " with " + std::to_string(d.nparams) + " params";
  }
  const uint32_t k = static_cast<uint32_t>(kd);
  std::string err = check_simplex(w, "weights", d.params + 1, k);
  if (!err.empty()) return err;
  uint32_t off = 1 + k;
  uint32_t n_discrete = 0;
  for (uint32_t c = 0; c < k; ++c) {
    if (d.nparams - off < 2) {
      return w.str() + "component " + std::to_string(c) +
             ": expected a (kind_code, nparams) header at offset " + std::to_string(off) +
             ", got only " + std::to_string(d.nparams - off) + " params left";
    }
    const double code = d.params[off];
    const double nc = d.params[off + 1];
    if (!(code >= 1.0 && code <= static_cast<double>(kMaxDistKind) && code == std::floor(code) &&
          code != static_cast<double>(DistKind::Mixture) &&
          code != static_cast<double>(DistKind::MultivariateNormal))) {
      return w.str() + "component " + std::to_string(c) + ": kind_code must be an integer in 1.." +
             std::to_string(kMaxDistKind) + " naming a scalar kind (not Mixture or MultivariateNormal), got " +
             fmt_num(code);
    }
    const uint32_t left = d.nparams - off - 2;
    if (!(nc >= 0.0 && nc == std::floor(nc) && nc <= static_cast<double>(left))) {
      return w.str() + "component " + std::to_string(c) + ": nparams must be an integer in 0.." +
             std::to_string(left) + " (the params left), got " + fmt_num(nc);
    }
    const Dist comp{static_cast<DistKind>(static_cast<int>(code)), 1u, static_cast<uint32_t>(nc),
                    d.params + off + 2};
    err = validate_impl(comp, &w, c);
    if (!err.empty()) return err;
    if (dist_is_discrete(comp.kind)) ++n_discrete;
    off += 2 + comp.nparams;
  }
  if (off != d.nparams) {
    return w.str() + "the " + std::to_string(k) + " components use " + std::to_string(off) +
           " params, got nparams " + std::to_string(d.nparams);
  }
  if (n_discrete != 0 && n_discrete != k) {
    return w.str() + "components must be all discrete or all continuous, got " +
           std::to_string(n_discrete) + " discrete of " + std::to_string(k);
  }
  return {};
}

std::string validate_impl(const Dist& d, const Where* parent, uint32_t component) {
  if (!kind_in_range(d.kind)) {
    std::string s;
    if (parent) s = parent->str() + "component " + std::to_string(component) + ": ";
    return s + "unknown distribution kind code " + std::to_string(static_cast<int>(d.kind)) +
           " (expected 1.." + std::to_string(kMaxDistKind) + ")";
  }
  const Where w{parent, d.kind, component};
  if (d.nparams > 0 && d.params == nullptr) {
    return w.str() + "params is null but nparams is " + std::to_string(d.nparams);
  }
  if (d.kind == DistKind::Mixture) return validate_mixture(d, w);
  if (d.kind == DistKind::MultivariateNormal) {
    const uint64_t n = d.size;
    if (n < 1) return w.str() + "size (the dimension) must be >= 1, got 0";
    if (d.nparams != n + n * n) {
      return w.str() + "nparams must be d + d * d = " + std::to_string(n + n * n) + " (mean, covariance), got " +
             std::to_string(d.nparams);
    }
    std::string err = check_array(w, "mean", d.params, d.size, Req::Finite);
    if (!err.empty()) return err;
    const double* c = d.params + n;
    if (!(err = check_array(w, "covariance_matrix", c, d.nparams - d.size, Req::Finite)).empty()) return err;
    for (uint64_t i = 0; i < n; ++i)
      for (uint64_t j = 0; j < i; ++j) {
        const double a = c[i * n + j], b = c[j * n + i];
        if (std::fabs(a - b) > 1e-9 * (std::fabs(a) + std::fabs(b)) + 1e-300) {
          return w.str() + "covariance_matrix must be symmetric, got " + fmt_num(a) + " at (" + std::to_string(i) +
                 ", " + std::to_string(j) + ") and " + fmt_num(b) + " at (" + std::to_string(j) + ", " +
                 std::to_string(i) + ")";
        }
      }
    if (!cholesky(c, d.size, mvn_scratch())) return w.str() + "covariance_matrix must be positive definite";
    return {};
  }
  if (d.kind == DistKind::Categorical) {
    if (d.size != 1) {
      return w.str() + "size must be 1 (the value is one index), got " + std::to_string(d.size);
    }
    if (d.nparams < 1) return w.str() + "probs must have at least 1 entry, got 0";
    return check_simplex(w, "probs", d.params, d.nparams);
  }
  if (d.size < 1) return w.str() + "size must be >= 1, got 0";
  const int arrays = dist_num_param_arrays(d.kind);
  const uint64_t expected = static_cast<uint64_t>(arrays) * d.size;
  if (d.nparams != expected) {
    return w.str() + "nparams must be " + std::to_string(arrays) + " * size = " +
           std::to_string(expected) + ", got " + std::to_string(d.nparams);
  }
  const uint32_t n = d.size;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  const ParamNames pn = param_names(d.kind);
  std::string err;
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::LogNormal:
    case DistKind::VonMises:
      if (!(err = check_array(w, pn.n[0], p0, n, Req::Finite)).empty()) return err;
      return check_array(w, pn.n[1], p1, n, Req::Positive);
    case DistKind::Uniform:
      if (!(err = check_array(w, pn.n[0], p0, n, Req::Finite)).empty()) return err;
      if (!(err = check_array(w, pn.n[1], p1, n, Req::Finite)).empty()) return err;
      return check_less(w, p0, p1, n);
    case DistKind::Poisson:
      return check_array(w, pn.n[0], p0, n, Req::CountRate);
    case DistKind::Bernoulli:
      return check_array(w, pn.n[0], p0, n, Req::Prob);
    case DistKind::Exponential:
      return check_array(w, pn.n[0], p0, n, Req::Positive);
    case DistKind::Beta:
    case DistKind::Gamma:
    case DistKind::Weibull:
      if (!(err = check_array(w, pn.n[0], p0, n, Req::Positive)).empty()) return err;
      return check_array(w, pn.n[1], p1, n, Req::Positive);
    case DistKind::Binomial:
      if (!(err = check_array(w, pn.n[0], p0, n, Req::NonNegInt)).empty()) return err;
      return check_array(w, pn.n[1], p1, n, Req::Prob);
    case DistKind::TruncatedNormal: {
      const double* p2 = d.params + 2 * static_cast<size_t>(n);
      const double* p3 = d.params + 3 * static_cast<size_t>(n);
      if (!(err = check_array(w, pn.n[0], p0, n, Req::Finite)).empty()) return err;
      if (!(err = check_array(w, pn.n[1], p1, n, Req::Positive)).empty()) return err;
      if (!(err = check_array(w, pn.n[2], p2, n, Req::NotNaN)).empty()) return err;
      if (!(err = check_array(w, pn.n[3], p3, n, Req::NotNaN)).empty()) return err;
      return check_less(w, p2, p3, n);
    }
    default:
      return w.str() + "unsupported kind";
  }
}

inline bool all_meet(Req r, const double* p, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i)
    if (!meets(r, p[i])) return false;
  return true;
}

inline bool all_less(const double* lo, const double* hi, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i)
    if (!(lo[i] < hi[i])) return false;
  return true;
}

// The rules of validate_impl as a plain predicate, so valid input (the common case, checked
// at every draw) costs a few comparisons. false means "ask validate_impl", which also
// handles Mixture and writes the message.
bool quick_valid(const Dist& d) {
  if (d.params == nullptr && d.nparams > 0) return false;
  if (d.kind == DistKind::Categorical) {
    if (d.size != 1 || d.nparams < 1 || !all_meet(Req::NonNegative, d.params, d.nparams)) {
      return false;
    }
    double total = 0.0;
    for (uint32_t i = 0; i < d.nparams; ++i) total += d.params[i];
    return std::fabs(total - 1.0) <= 1e-6 * static_cast<double>(d.nparams);
  }
  if (!kind_in_range(d.kind) || d.kind == DistKind::Mixture || d.kind == DistKind::MultivariateNormal ||
      d.size < 1)
    return false;
  const uint32_t n = d.size;
  if (d.nparams != static_cast<uint64_t>(dist_num_param_arrays(d.kind)) * n) return false;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::LogNormal:
    case DistKind::VonMises:
      return all_meet(Req::Finite, p0, n) && all_meet(Req::Positive, p1, n);
    case DistKind::Uniform:
      return all_meet(Req::Finite, p0, n) && all_meet(Req::Finite, p1, n) && all_less(p0, p1, n);
    case DistKind::Poisson: return all_meet(Req::CountRate, p0, n);
    case DistKind::Bernoulli: return all_meet(Req::Prob, p0, n);
    case DistKind::Exponential: return all_meet(Req::Positive, p0, n);
    case DistKind::Beta:
    case DistKind::Gamma:
    case DistKind::Weibull:
      return all_meet(Req::Positive, p0, n) && all_meet(Req::Positive, p1, n);
    case DistKind::Binomial:
      return all_meet(Req::NonNegInt, p0, n) && all_meet(Req::Prob, p1, n);
    case DistKind::TruncatedNormal: {
      const double* p2 = d.params + 2 * size_t{n};
      const double* p3 = d.params + 3 * size_t{n};
      return all_meet(Req::Finite, p0, n) && all_meet(Req::Positive, p1, n) &&
             all_meet(Req::NotNaN, p2, n) && all_meet(Req::NotNaN, p3, n) && all_less(p2, p3, n);
    }
    default:
      return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Kind metadata

const char* dist_name(DistKind k) {
  switch (k) {
    case DistKind::None: return "None";
    case DistKind::Normal: return "Normal";
    case DistKind::Uniform: return "Uniform";
    case DistKind::Categorical: return "Categorical";
    case DistKind::Poisson: return "Poisson";
    case DistKind::Bernoulli: return "Bernoulli";
    case DistKind::Beta: return "Beta";
    case DistKind::Exponential: return "Exponential";
    case DistKind::Gamma: return "Gamma";
    case DistKind::LogNormal: return "LogNormal";
    case DistKind::Binomial: return "Binomial";
    case DistKind::Weibull: return "Weibull";
    case DistKind::TruncatedNormal: return "TruncatedNormal";
    case DistKind::Mixture: return "Mixture";
    case DistKind::VonMises: return "VonMises";
    case DistKind::MultivariateNormal: return "MultivariateNormal";
  }
  return "Unknown";
}

int dist_num_param_arrays(DistKind k) {
  switch (k) {
    case DistKind::Normal: return 2;
    case DistKind::Uniform: return 2;
    case DistKind::Categorical: return 1;
    case DistKind::Poisson: return 1;
    case DistKind::Bernoulli: return 1;
    case DistKind::Beta: return 2;
    case DistKind::Exponential: return 1;
    case DistKind::Gamma: return 2;
    case DistKind::LogNormal: return 2;
    case DistKind::Binomial: return 2;
    case DistKind::Weibull: return 2;
    case DistKind::TruncatedNormal: return 4;
    case DistKind::Mixture: return -1;
    case DistKind::VonMises: return 2;
    case DistKind::MultivariateNormal: return -1;
    case DistKind::None: return 0;
  }
  return 0;
}

bool dist_is_discrete(DistKind k) {
  return k == DistKind::Categorical || k == DistKind::Poisson || k == DistKind::Bernoulli ||
         k == DistKind::Binomial;
}

bool dist_is_discrete(const Dist& d) {
  if (d.kind != DistKind::Mixture) return dist_is_discrete(d.kind);
  const MixtureView mv = mixture_view(d);
  const double* cursor = mv.components;
  for (uint32_t i = 0; i < mv.k; ++i) {
    if (!dist_is_discrete(next_component(&cursor).kind)) return false;
  }
  return true;
}

std::string validate(const Dist& d) {
  if (quick_valid(d)) return {};
  return validate_impl(d, nullptr, 0);
}

bool is_valid(const Dist& d) { return quick_valid(d) || validate_impl(d, nullptr, 0).empty(); }

// ---------------------------------------------------------------------------------------
// Sampling

void sample(const Dist& d, Rng& rng, double* out) {
  const uint32_t n = d.size;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  switch (d.kind) {
    case DistKind::Normal:
      for (uint32_t i = 0; i < n; ++i) out[i] = p0[i] + p1[i] * rng.normal();
      return;
    case DistKind::Uniform:
      for (uint32_t i = 0; i < n; ++i) {
        const double u = rng.uniform();
        // high - low overflows for bounds beyond +-9e307: interpolate between halves.
        const double x = uniform_width_finite(p0[i], p1[i]) ? p0[i] + (p1[i] - p0[i]) * u
                                                            : 2.0 * (0.5 * p0[i] + (0.5 * p1[i] - 0.5 * p0[i]) * u);
        // u < 1, but the result can round up to high, outside [low, high).
        out[i] = x < p1[i] ? std::max(x, p0[i]) : std::nextafter(p1[i], p0[i]);
      }
      return;
    case DistKind::Categorical:
      out[0] = categorical_draw(p0, d.nparams, rng);
      return;
    case DistKind::VonMises:
      for (uint32_t i = 0; i < n; ++i) out[i] = von_mises_draw(p0[i], p1[i], rng);
      return;
    case DistKind::MultivariateNormal: {
      std::vector<double>& l = mvn_scratch();
      if (!cholesky(p0 + n, n, l)) break;  // validated callers never get here
      for (uint32_t i = 0; i < n; ++i) out[i] = rng.normal();
      for (uint32_t i = n; i-- > 0;) {  // out = mean + L z, bottom row first so z stays readable
        double s = p0[i];
        for (uint32_t j = 0; j <= i; ++j) s += l[size_t{i} * n + j] * out[j];
        out[i] = s;
      }
      return;
    }
    case DistKind::Poisson:
      for (uint32_t i = 0; i < n; ++i) out[i] = poisson_draw(p0[i], rng);
      return;
    case DistKind::Bernoulli:
      for (uint32_t i = 0; i < n; ++i) out[i] = rng.uniform() < p0[i] ? 1.0 : 0.0;
      return;
    case DistKind::Beta:
      for (uint32_t i = 0; i < n; ++i) out[i] = beta_draw(p0[i], p1[i], rng);
      return;
    case DistKind::Exponential:
      for (uint32_t i = 0; i < n; ++i) out[i] = -std::log(rng.uniform()) / p0[i];
      return;
    case DistKind::Gamma:
      // A huge rate can underflow the quotient to 0, where the density of a shape < 1 is
      // infinite: clamp to the smallest normal double, as gamma_draw does.
      for (uint32_t i = 0; i < n; ++i) out[i] = std::max(gamma_draw(p0[i], rng) / p1[i], DBL_MIN);
      return;
    case DistKind::LogNormal:
      for (uint32_t i = 0; i < n; ++i) out[i] = std::exp(p0[i] + p1[i] * rng.normal());
      return;
    case DistKind::Binomial:
      for (uint32_t i = 0; i < n; ++i) out[i] = binomial_draw(p0[i], p1[i], rng);
      return;
    case DistKind::Weibull:
      // Inversion: F(x) = 1 - exp(-(x/scale)^c).
      for (uint32_t i = 0; i < n; ++i) {
        out[i] = std::max(p0[i] * std::pow(-std::log(rng.uniform()), 1.0 / p1[i]), DBL_MIN);
      }
      return;
    case DistKind::TruncatedNormal: {
      const double* lo = d.params + 2 * static_cast<size_t>(n);
      const double* hi = d.params + 3 * static_cast<size_t>(n);
      for (uint32_t i = 0; i < n; ++i) {
        const double a = (lo[i] - p0[i]) / p1[i];
        const double b = (hi[i] - p0[i]) / p1[i];
        const double x = a < b ? p0[i] + p1[i] * std_truncnorm_draw(a, b, rng) : p0[i];
        out[i] = std::min(std::max(x, lo[i]), hi[i]);
      }
      return;
    }
    case DistKind::Mixture: {
      const MixtureView mv = mixture_view(d);
      const uint32_t j = static_cast<uint32_t>(categorical_draw(mv.weights, mv.k, rng));
      const double* cursor = mv.components;
      Dist comp = next_component(&cursor);
      for (uint32_t i = 0; i < j; ++i) comp = next_component(&cursor);
      sample(comp, rng, out);
      return;
    }
    case DistKind::None:
      break;
  }
  for (uint32_t i = 0; i < n; ++i) out[i] = kNaN;
}

// ---------------------------------------------------------------------------------------
// Log densities

double log_prob(const Dist& d, const double* value) {
  const uint32_t n = d.size;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  double total = 0.0;
  switch (d.kind) {
    case DistKind::Normal:
      for (uint32_t i = 0; i < n; ++i) total += lp_normal(value[i], p0[i], p1[i]);
      break;
    case DistKind::Uniform:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        // Half-open [low, high), as in torch and PyProb: log_prob(high) is -inf.
        total += (x >= p0[i] && x < p1[i]) ? -log_uniform_width(p0[i], p1[i]) : -kInf;
      }
      break;
    case DistKind::Categorical:
      total = lp_categorical(value[0], p0, d.nparams);
      break;
    case DistKind::VonMises:
      // torch's density: on the whole real line, periodic in value.
      for (uint32_t i = 0; i < n; ++i)
        total += p1[i] * std::cos(value[i] - p0[i]) - std::log(2.0 * M_PI) - log_bessel_i(0, p1[i]);
      break;
    case DistKind::MultivariateNormal: {
      std::vector<double>& l = mvn_scratch();
      if (!cholesky(p0 + n, n, l)) return kNaN;
      // Solve L y = x - mean; log p = -|y|^2 / 2 - sum log L_ii - d log sqrt(2 pi).
      thread_local std::vector<double> y;
      y.resize(n);
      double quad = 0.0, logdet = 0.0;
      for (uint32_t i = 0; i < n; ++i) {
        double s = value[i] - p0[i];
        for (uint32_t j = 0; j < i; ++j) s -= l[size_t{i} * n + j] * y[j];
        y[i] = s / l[size_t{i} * n + i];
        quad += y[i] * y[i];
        logdet += std::log(l[size_t{i} * n + i]);
      }
      total = -0.5 * quad - logdet - n * kLogSqrt2Pi;
      break;
    }
    case DistKind::Poisson:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        if (!is_nonneg_int(x)) total += -kInf;
        else if (x >= 10.0 && p0[i] > 0.0) total += poisson_lp_large(x, p0[i]);
        else total += xlogy(x, p0[i]) - p0[i] - log_gamma(x + 1.0);
      }
      break;
    case DistKind::Bernoulli:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        total += x == 1.0 ? std::log(p0[i]) : (x == 0.0 ? std::log1p(-p0[i]) : -kInf);
      }
      break;
    case DistKind::Beta:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        const double a = p0[i];
        const double b = p1[i];
        if (!(x >= 0.0 && x <= 1.0)) {
          total += -kInf;
          continue;
        }
        const double lb = (b == 1.0) ? 0.0 : (b - 1.0) * std::log1p(-x);
        total += xlogy(a - 1.0, x) + lb - (log_gamma(a) + log_gamma(b) - log_gamma(a + b));
      }
      break;
    case DistKind::Exponential:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        total += x >= 0.0 ? std::log(p0[i]) - p0[i] * x : -kInf;
      }
      break;
    case DistKind::Gamma:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        const double a = p0[i];
        const double r = p1[i];
        total += x >= 0.0 ? a * std::log(r) + xlogy(a - 1.0, x) - r * x - log_gamma(a) : -kInf;
      }
      break;
    case DistKind::LogNormal:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        if (!(x > 0.0)) {
          total += -kInf;
          continue;
        }
        const double lx = std::log(x);
        total += lp_normal(lx, p0[i], p1[i]) - lx;
      }
      break;
    case DistKind::Binomial:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        const double cnt = p0[i];
        const double p = p1[i];
        if (!(is_nonneg_int(x) && x <= cnt)) {
          total += -kInf;
          continue;
        }
        const double rest = cnt - x;
        if (x >= 10.0 && rest >= 10.0 && p > 0.0 && p < 1.0) {
          total += binomial_lp_large(x, cnt, p);
          continue;
        }
        total += log_gamma(cnt + 1.0) - log_gamma(x + 1.0) - log_gamma(rest + 1.0) + xlogy(x, p) +
                 (rest == 0.0 ? 0.0 : rest * std::log1p(-p));
      }
      break;
    case DistKind::Weibull:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        const double s = p0[i];
        const double c = p1[i];
        if (!(x >= 0.0)) {
          total += -kInf;
          continue;
        }
        const double z = x / s;
        total += std::log(c / s) + xlogy(c - 1.0, z) - std::pow(z, c);
      }
      break;
    case DistKind::TruncatedNormal: {
      const double* lo = d.params + 2 * static_cast<size_t>(n);
      const double* hi = d.params + 3 * static_cast<size_t>(n);
      for (uint32_t i = 0; i < n; ++i) total += lp_truncnorm(value[i], p0[i], p1[i], lo[i], hi[i]);
      break;
    }
    case DistKind::Mixture: {
      // log sum_j w_j p_j(x) / sum w, accumulated as a running log-sum-exp.
      const MixtureView mv = mixture_view(d);
      const double* cursor = mv.components;
      double m = -kInf;
      double s = 0.0;
      for (uint32_t j = 0; j < mv.k; ++j) {
        const Dist comp = next_component(&cursor);
        if (!(mv.weights[j] > 0.0)) continue;
        const double t = std::log(mv.weights[j]) + log_prob(comp, value);
        if (!(t > -kInf)) continue;
        if (t > m) {
          s = s * std::exp(m - t) + 1.0;
          m = t;
        } else {
          s += std::exp(t - m);
        }
      }
      total = (s > 0.0 ? m + std::log(s) : -kInf) - std::log(weight_total(mv));
      break;
    }
    case DistKind::None:
    default:  // unknown codes: not a distribution
      return kNaN;
  }
  // NaN only arises from a NaN value (or +inf + -inf across elements): outside support.
  return std::isnan(total) ? -kInf : total;
}

// ---------------------------------------------------------------------------------------
// Supports and moments

void support(const Dist& d, double* lo, double* hi) {
  const uint32_t n = d.size;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::VonMises:
    case DistKind::MultivariateNormal:
      for (uint32_t i = 0; i < n; ++i) lo[i] = -kInf, hi[i] = kInf;
      return;
    case DistKind::Uniform:
      for (uint32_t i = 0; i < n; ++i) lo[i] = p0[i], hi[i] = p1[i];
      return;
    case DistKind::Categorical:
      lo[0] = 0.0;
      hi[0] = static_cast<double>(d.nparams) - 1.0;
      return;
    case DistKind::Poisson:
    case DistKind::Exponential:
    case DistKind::Gamma:
    case DistKind::LogNormal:
    case DistKind::Weibull:
      for (uint32_t i = 0; i < n; ++i) lo[i] = 0.0, hi[i] = kInf;
      return;
    case DistKind::Bernoulli:
    case DistKind::Beta:
      for (uint32_t i = 0; i < n; ++i) lo[i] = 0.0, hi[i] = 1.0;
      return;
    case DistKind::Binomial:
      for (uint32_t i = 0; i < n; ++i) lo[i] = 0.0, hi[i] = p0[i];
      return;
    case DistKind::TruncatedNormal:
      for (uint32_t i = 0; i < n; ++i) {
        lo[i] = d.params[2 * size_t{n} + i];
        hi[i] = d.params[3 * size_t{n} + i];
      }
      return;
    case DistKind::Mixture: {
      const MixtureView mv = mixture_view(d);
      const double* cursor = mv.components;
      double l = kInf;
      double h = -kInf;
      for (uint32_t j = 0; j < mv.k; ++j) {
        const Dist comp = next_component(&cursor);
        if (!(mv.weights[j] > 0.0)) continue;
        double cl, ch;
        support(comp, &cl, &ch);
        l = std::min(l, cl);
        h = std::max(h, ch);
      }
      lo[0] = l;
      hi[0] = h;
      return;
    }
    case DistKind::None:
      break;
  }
  for (uint32_t i = 0; i < n; ++i) lo[i] = kNaN, hi[i] = kNaN;
}

bool in_support(const Dist& d, const double* value) {
  const uint32_t n = d.size;
  const double* p0 = d.params;
  const double* p1 = d.params + n;
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::VonMises:
    case DistKind::MultivariateNormal:
      for (uint32_t i = 0; i < n; ++i)
        if (!std::isfinite(value[i])) return false;
      return true;
    case DistKind::Uniform:
      for (uint32_t i = 0; i < n; ++i)
        if (!(value[i] >= p0[i] && value[i] < p1[i])) return false;
      return true;
    case DistKind::Categorical: {
      const double x = value[0];
      return x >= 0.0 && x < static_cast<double>(d.nparams) && x == std::floor(x);
    }
    case DistKind::Poisson:
      for (uint32_t i = 0; i < n; ++i)
        if (!is_nonneg_int(value[i])) return false;
      return true;
    case DistKind::Bernoulli:
      for (uint32_t i = 0; i < n; ++i)
        if (!(value[i] == 0.0 || value[i] == 1.0)) return false;
      return true;
    case DistKind::Beta:
      for (uint32_t i = 0; i < n; ++i)
        if (!(value[i] >= 0.0 && value[i] <= 1.0)) return false;
      return true;
    case DistKind::Exponential:
    case DistKind::Gamma:
    case DistKind::Weibull:
      for (uint32_t i = 0; i < n; ++i)
        if (!(value[i] >= 0.0 && value[i] < kInf)) return false;
      return true;
    case DistKind::LogNormal:
      for (uint32_t i = 0; i < n; ++i)
        if (!(value[i] > 0.0 && value[i] < kInf)) return false;
      return true;
    case DistKind::Binomial:
      for (uint32_t i = 0; i < n; ++i)
        if (!(is_nonneg_int(value[i]) && value[i] <= p0[i])) return false;
      return true;
    case DistKind::TruncatedNormal:
      for (uint32_t i = 0; i < n; ++i) {
        const double x = value[i];
        const double lo = d.params[2 * static_cast<size_t>(n) + i];
        const double hi = d.params[3 * static_cast<size_t>(n) + i];
        if (!(x >= lo && x <= hi && std::isfinite(x))) return false;
      }
      return true;
    case DistKind::Mixture: {
      const MixtureView mv = mixture_view(d);
      const double* cursor = mv.components;
      for (uint32_t j = 0; j < mv.k; ++j) {
        const Dist comp = next_component(&cursor);
        if (mv.weights[j] > 0.0 && in_support(comp, value)) return true;
      }
      return false;
    }
    case DistKind::None:
      break;
  }
  return false;
}

bool in_kind_support(const Dist& d, const double* value) {
  const uint32_t n = d.size;
  auto all = [&](auto ok) {
    for (uint32_t i = 0; i < n; ++i)
      if (!ok(value[i])) return false;
    return true;
  };
  switch (d.kind) {
    case DistKind::Normal:
    case DistKind::Uniform:
    case DistKind::TruncatedNormal:
    case DistKind::VonMises:
    case DistKind::MultivariateNormal:
      return all([](double x) { return std::isfinite(x); });
    case DistKind::Categorical:  // the number of categories is the model's, not a parameter value
      return in_support(d, value);
    case DistKind::Poisson:
    case DistKind::Binomial:
      return all([](double x) { return is_nonneg_int(x); });
    case DistKind::Bernoulli:
      return all([](double x) { return x == 0.0 || x == 1.0; });
    case DistKind::Beta:
      return all([](double x) { return x >= 0.0 && x <= 1.0; });
    case DistKind::Exponential:
    case DistKind::Gamma:
    case DistKind::Weibull:
      return all([](double x) { return x >= 0.0 && x < kInf; });
    case DistKind::LogNormal:
      return all([](double x) { return x > 0.0 && x < kInf; });
    case DistKind::Mixture: {
      const MixtureView mv = mixture_view(d);
      const double* cursor = mv.components;
      for (uint32_t j = 0; j < mv.k; ++j)
        if (in_kind_support(next_component(&cursor), value)) return true;
      return false;
    }
    case DistKind::None:
      break;
  }
  return false;
}

namespace {

// Mean and standard deviation of element i (i = 0 for Categorical and Mixture).
void moments_at(const Dist& d, uint32_t i, double* m_out, double* s_out) {
  const uint32_t n = d.size;
  const double a = d.params[i];
  // Second parameter array, for the kinds that have one.
  const double b = dist_num_param_arrays(d.kind) >= 2 ? d.params[n + i] : 0.0;
  double m = kNaN;
  double v = kNaN;
  switch (d.kind) {
    case DistKind::Normal: m = a, v = b * b; break;
    // torch's circular variance 1 - I1(k) / I0(k).
    case DistKind::VonMises: m = a, v = -std::expm1(log_bessel_i(1, b) - log_bessel_i(0, b)); break;
    case DistKind::MultivariateNormal: m = a, v = d.params[n + size_t{i} * n + i]; break;
    case DistKind::Uniform:
      // From the half-width, which cannot overflow (the variance itself may).
      *m_out = 0.5 * a + 0.5 * b;
      *s_out = (0.5 * b - 0.5 * a) / std::sqrt(3.0);
      return;
    case DistKind::Categorical: {
      double total = 0.0, s1 = 0.0, s2 = 0.0;
      for (uint32_t j = 0; j < d.nparams; ++j) {
        const double w = d.params[j];
        total += w;
        s1 += w * j;
        s2 += w * static_cast<double>(j) * j;
      }
      m = s1 / total;
      v = s2 / total - m * m;
      break;
    }
    case DistKind::Poisson: m = a, v = a; break;
    case DistKind::Bernoulli: m = a, v = a * (1.0 - a); break;
    case DistKind::Beta: {
      const double t = a + b;
      m = a / t;
      v = (a / t) * (b / t) / (t + 1.0);  // a * b / t^2 underflows for tiny concentrations
      break;
    }
    case DistKind::Exponential: m = 1.0 / a, v = m * m; break;
    case DistKind::Gamma: m = a / b, v = a / (b * b); break;
    case DistKind::LogNormal: {
      const double s2 = b * b;
      m = std::exp(a + 0.5 * s2);
      v = std::expm1(s2) * m * m;
      break;
    }
    case DistKind::Binomial: m = a * b, v = a * b * (1.0 - b); break;
    case DistKind::Weibull: {
      // Var / scale^2 = G(1+2/c) - G(1+1/c)^2 = G(1+1/c)^2 expm1(lg(1+2/c) - 2 lg(1+1/c)),
      // which stays accurate for large c where the plain difference cancels.
      const double lg1 = log_gamma(1.0 + 1.0 / b);
      const double lg2 = log_gamma(1.0 + 2.0 / b);
      m = a * std::exp(lg1);
      v = m * m * std::expm1(lg2 - 2.0 * lg1);
      break;
    }
    case DistKind::TruncatedNormal: {
      double sd;
      truncnorm_moments(a, b, d.params[2 * size_t{n} + i], d.params[3 * size_t{n} + i], &m,
                        &sd);
      v = sd * sd;
      break;
    }
    case DistKind::Mixture: {
      const MixtureView mv = mixture_view(d);
      const double* cursor = mv.components;
      double total = 0.0, s1 = 0.0, s2 = 0.0;
      for (uint32_t j = 0; j < mv.k; ++j) {
        const Dist comp = next_component(&cursor);
        const double w = mv.weights[j];
        if (!(w > 0.0)) continue;
        double cm, cs;
        moments_at(comp, 0, &cm, &cs);
        total += w;
        s1 += w * cm;
        s2 += w * (cs * cs + cm * cm);
      }
      m = s1 / total;
      v = s2 / total - m * m;
      break;
    }
    case DistKind::None: break;
  }
  *m_out = m;
  *s_out = v > 0.0 ? std::sqrt(v) : (v <= 0.0 ? 0.0 : kNaN);  // rounding can make v slightly < 0
}

inline uint32_t moment_count(const Dist& d) {
  return d.kind == DistKind::Categorical || d.kind == DistKind::Mixture ? 1u : d.size;
}

}  // namespace

void mean(const Dist& d, double* out) {
  const uint32_t n = moment_count(d);
  for (uint32_t i = 0; i < n; ++i) {
    double s;
    moments_at(d, i, &out[i], &s);
  }
}

void stddev(const Dist& d, double* out) {
  const uint32_t n = moment_count(d);
  for (uint32_t i = 0; i < n; ++i) {
    double m;
    moments_at(d, i, &m, &out[i]);
  }
}

}  // namespace ppfast
