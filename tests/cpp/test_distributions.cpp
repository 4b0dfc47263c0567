// Standalone checks of ppfast's RNG and distributions: sample moments against closed
// forms, log_prob against reference values (torch.distributions / scipy), normalisation,
// validation messages and determinism. Exits nonzero on any failure.
//
//   g++ -O2 -std=c++17 -Icsrc csrc/core/distributions.cpp
//       tests/cpp/test_distributions.cpp -o /tmp/test_dist && /tmp/test_dist
#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/distributions.hpp"
#include "core/rng.hpp"

using ppfast::Dist;
using ppfast::DistKind;
using ppfast::Rng;

namespace {

int g_checks = 0;
int g_failures = 0;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    ++g_checks;                                           \
    if (!(cond)) {                                        \
      ++g_failures;                                       \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
      std::printf(__VA_ARGS__);                           \
      std::printf("\n");                                  \
    }                                                     \
  } while (0)

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kSamples = 200000;
constexpr double kSigmas = 5.0;

// A distribution together with the storage its view points into.
struct Owned {
  DistKind kind;
  uint32_t size;
  std::vector<double> p;
  Dist view() const { return Dist{kind, size, static_cast<uint32_t>(p.size()), p.data()}; }
};

Owned mk(DistKind k, std::vector<double> p, uint32_t size = 1) { return Owned{k, size, std::move(p)}; }

double code(DistKind k) { return static_cast<double>(static_cast<int>(k)); }

bool close(double a, double b, double rel, double abs_tol = 0.0) {
  if (a == b) return true;  // also equal infinities
  return std::fabs(a - b) <= abs_tol + rel * std::max(std::fabs(a), std::fabs(b));
}

double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// ---------------------------------------------------------------------------------------
// Sample moments

// Draws kSamples values (per element) and compares the sample mean and variance with
// the closed forms, within kSigmas standard errors. The standard error of the variance
// uses the sample fourth central moment. Also checks the library's mean()/stddev()
// against the same closed forms and that every draw lies in the support.
void check_moments(const char* label, const Owned& o, const std::vector<double>& mean_true,
                   const std::vector<double>& var_true, uint64_t stream,
                   double moment_rel_tol = 1e-9) {
  const Dist d = o.view();
  const std::string err = ppfast::validate(d);
  CHECK(err.empty(), "%s: validate failed: %s", label, err.c_str());
  if (!err.empty()) return;
  const uint32_t n = d.size;
  Rng rng;
  rng.seed(20240601, stream);
  std::vector<double> xs(static_cast<size_t>(kSamples) * n);
  bool all_in_support = true;
  bool all_finite_lp = true;
  for (int s = 0; s < kSamples; ++s) {
    double* x = &xs[static_cast<size_t>(s) * n];
    ppfast::sample(d, rng, x);
    if (!ppfast::in_support(d, x)) all_in_support = false;
    const double lp = ppfast::log_prob(d, x);
    if (!(lp > -kInf) || std::isnan(lp)) all_finite_lp = false;
  }
  CHECK(all_in_support, "%s: a draw fell outside the support", label);
  CHECK(all_finite_lp, "%s: a draw has log_prob -inf or NaN", label);

  std::vector<double> lib_mean(n), lib_sd(n);
  ppfast::mean(d, lib_mean.data());
  ppfast::stddev(d, lib_sd.data());
  for (uint32_t i = 0; i < n; ++i) {
    double m = 0.0;
    for (int s = 0; s < kSamples; ++s) m += xs[static_cast<size_t>(s) * n + i];
    m /= kSamples;
    double m2 = 0.0, m4 = 0.0;
    for (int s = 0; s < kSamples; ++s) {
      const double c = xs[static_cast<size_t>(s) * n + i] - m;
      m2 += c * c;
      m4 += c * c * c * c;
    }
    m2 /= kSamples;
    m4 /= kSamples;
    const double se_mean = std::sqrt(var_true[i] / kSamples);
    const double se_var = std::sqrt(std::max(m4 - m2 * m2, 0.0) / kSamples);
    const double tiny = 1e-12 * (1.0 + std::fabs(mean_true[i]));
    CHECK(std::fabs(m - mean_true[i]) <= kSigmas * se_mean + tiny,
          "%s[%u]: sample mean %.10g vs %.10g (%.2f standard errors)", label, i, m, mean_true[i],
          (m - mean_true[i]) / se_mean);
    CHECK(std::fabs(m2 - var_true[i]) <= kSigmas * se_var + tiny * tiny + 1e-14 * var_true[i],
          "%s[%u]: sample variance %.10g vs %.10g (%.2f standard errors)", label, i, m2, var_true[i],
          (m2 - var_true[i]) / se_var);
    CHECK(close(lib_mean[i], mean_true[i], moment_rel_tol, 1e-13),
          "%s[%u]: mean() %.15g vs closed form %.15g", label, i, lib_mean[i], mean_true[i]);
    CHECK(close(lib_sd[i], std::sqrt(var_true[i]), moment_rel_tol, 1e-13),
          "%s[%u]: stddev() %.15g vs closed form %.15g", label, i, lib_sd[i], std::sqrt(var_true[i]));
  }
}

void check_scalar_moments(const char* label, const Owned& o, double m, double v, uint64_t stream,
                          double moment_rel_tol = 1e-9) {
  check_moments(label, o, {m}, {v}, stream, moment_rel_tol);
}

// For a discrete scalar distribution: observed frequency of each value k in [0, kmax]
// against n * exp(log_prob(k)), within kSigmas binomial standard errors.
void check_frequencies(const char* label, const Owned& o, int kmax, uint64_t stream) {
  const Dist d = o.view();
  Rng rng;
  rng.seed(77, stream);
  std::vector<double> counts(static_cast<size_t>(kmax) + 1, 0.0);
  double outside = 0.0;
  for (int s = 0; s < kSamples; ++s) {
    double x;
    ppfast::sample(d, rng, &x);
    if (x >= 0 && x <= kmax) counts[static_cast<size_t>(x)] += 1.0;
    else outside += 1.0;
  }
  double p_inside = 0.0;
  for (int k = 0; k <= kmax; ++k) {
    const double x = k;
    const double p = std::exp(ppfast::log_prob(d, &x));
    p_inside += p;
    const double expect = kSamples * p;
    const double se = std::sqrt(kSamples * p * (1.0 - p));
    CHECK(std::fabs(counts[static_cast<size_t>(k)] - expect) <= kSigmas * se + 1.0,
          "%s: count of %d is %.0f, expected %.1f (%.2f standard errors)", label, k,
          counts[static_cast<size_t>(k)], expect, (counts[static_cast<size_t>(k)] - expect) / se);
  }
  const double p_out = std::max(1.0 - p_inside, 0.0);
  CHECK(std::fabs(outside - kSamples * p_out) <= kSigmas * std::sqrt(kSamples * p_out) + 1.0,
        "%s: %.0f draws above %d, expected %.1f", label, outside, kmax, kSamples * p_out);
}

// ---------------------------------------------------------------------------------------
// Truncated normal reference moments by numerical integration (independent of the
// library's closed forms): Simpson's rule on the unnormalised density around its mode.

void truncnorm_reference(double mu, double sd, double lo, double hi, double* m_out, double* v_out) {
  const double a = (lo - mu) / sd;
  const double b = (hi - mu) / sd;
  const double c = std::min(std::max(0.0, a), b);  // mode
  const double A = std::max(a, c - 40.0);
  const double B = std::min(b, c + 40.0);
  const int n = 400000;
  const double h = (B - A) / n;
  double z0 = 0.0, z1 = 0.0, z2 = 0.0;
  for (int i = 0; i <= n; ++i) {
    const double z = A + h * i;
    const double wgt = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
    const double f = std::exp(-0.5 * (z - c) * (z + c)) * wgt;
    z0 += f;
    z1 += f * (z - c);
    z2 += f * (z - c) * (z - c);
  }
  const double e1 = z1 / z0;
  const double e2 = z2 / z0;
  *m_out = mu + sd * (c + e1);
  *v_out = sd * sd * (e2 - e1 * e1);
}

void check_truncnorm(const char* label, double mu, double sd, double lo, double hi, uint64_t stream,
                     double moment_rel_tol = 1e-7) {
  double m, v;
  truncnorm_reference(mu, sd, lo, hi, &m, &v);
  check_scalar_moments(label, mk(DistKind::TruncatedNormal, {mu, sd, lo, hi}), m, v, stream,
                       moment_rel_tol);
}

// Kolmogorov-Smirnov distance between truncated-normal draws and the exact CDF; the
// 0.1% critical value is 1.95 / sqrt(n).
void check_truncnorm_ks(const char* label, double mu, double sd, double lo, double hi,
                        uint64_t stream) {
  const Owned o = mk(DistKind::TruncatedNormal, {mu, sd, lo, hi});
  const Dist d = o.view();
  Rng rng;
  rng.seed(99, stream);
  std::vector<double> xs(kSamples);
  for (double& x : xs) ppfast::sample(d, rng, &x);
  std::sort(xs.begin(), xs.end());
  const double pa = Phi((lo - mu) / sd);
  const double pb = Phi((hi - mu) / sd);
  double dmax = 0.0;
  for (int i = 0; i < kSamples; ++i) {
    const double f = (Phi((xs[i] - mu) / sd) - pa) / (pb - pa);
    dmax = std::max(dmax, std::max(f - static_cast<double>(i) / kSamples,
                                   static_cast<double>(i + 1) / kSamples - f));
  }
  CHECK(dmax < 1.95 / std::sqrt(static_cast<double>(kSamples)), "%s: KS distance %.5f too large",
        label, dmax);
}

void test_moments() {
  uint64_t stream = 0;
  check_scalar_moments("Normal(1.5, 2)", mk(DistKind::Normal, {1.5, 2.0}), 1.5, 4.0, ++stream);
  check_moments("Normal size 3", mk(DistKind::Normal, {0.0, -3.0, 10.0, 1.0, 0.5, 3.0}, 3),
                {0.0, -3.0, 10.0}, {1.0, 0.25, 9.0}, ++stream);
  check_scalar_moments("Uniform(-2, 3)", mk(DistKind::Uniform, {-2.0, 3.0}), 0.5, 25.0 / 12.0, ++stream);
  check_scalar_moments("Categorical", mk(DistKind::Categorical, {0.1, 0.2, 0.3, 0.4}), 2.0, 1.0, ++stream);
  check_scalar_moments("Categorical with zeros", mk(DistKind::Categorical, {0.0, 0.5, 0.0, 0.5}), 2.0,
                       1.0, ++stream);
  for (double rate : {0.0, 0.5, 3.0, 9.99, 10.0, 25.0, 1000.0, 1e6}) {
    char label[64];
    std::snprintf(label, sizeof label, "Poisson(%g)", rate);
    check_scalar_moments(label, mk(DistKind::Poisson, {rate}), rate, rate, ++stream);
  }
  for (double p : {0.0, 0.3, 1.0}) {
    char label[64];
    std::snprintf(label, sizeof label, "Bernoulli(%g)", p);
    check_scalar_moments(label, mk(DistKind::Bernoulli, {p}), p, p * (1 - p), ++stream);
  }
  const double beta_params[][2] = {{2, 3}, {0.5, 0.5}, {0.1, 0.2}, {50, 20}, {1, 1}, {0.7, 4}};
  for (const auto& bp : beta_params) {
    const double a = bp[0], b = bp[1], t = a + b;
    char label[64];
    std::snprintf(label, sizeof label, "Beta(%g, %g)", a, b);
    check_scalar_moments(label, mk(DistKind::Beta, {a, b}), a / t, a * b / (t * t * (t + 1)), ++stream);
  }
  check_scalar_moments("Exponential(2.5)", mk(DistKind::Exponential, {2.5}), 0.4, 0.16, ++stream);
  const double gamma_params[][2] = {{0.3, 2}, {1, 1}, {4.5, 0.5}, {100, 3}, {0.05, 1}};
  for (const auto& gp : gamma_params) {
    const double a = gp[0], r = gp[1];
    char label[64];
    std::snprintf(label, sizeof label, "Gamma(%g, %g)", a, r);
    check_scalar_moments(label, mk(DistKind::Gamma, {a, r}), a / r, a / (r * r), ++stream);
  }
  {
    const double mu = 0.2, s = 0.5;
    check_scalar_moments("LogNormal(0.2, 0.5)", mk(DistKind::LogNormal, {mu, s}),
                         std::exp(mu + s * s / 2), (std::exp(s * s) - 1) * std::exp(2 * mu + s * s),
                         ++stream);
  }
  const double binom_params[][2] = {{10, 0.3},  {100, 0.05}, {1000, 0.3}, {1000, 0.9}, {50, 0.5},
                                    {0, 0.4},   {7, 1.0},    {7, 0.0},    {20, 0.499}, {1e7, 0.2},
                                    {25, 0.6}};
  for (const auto& bp : binom_params) {
    const double n = bp[0], p = bp[1];
    char label[64];
    std::snprintf(label, sizeof label, "Binomial(%g, %g)", n, p);
    check_scalar_moments(label, mk(DistKind::Binomial, {n, p}), n * p, n * p * (1 - p), ++stream);
  }
  const double weibull_params[][2] = {{2, 1.5}, {1, 0.8}, {3, 5}};
  for (const auto& wp : weibull_params) {
    const double s = wp[0], c = wp[1];
    const double g1 = std::tgamma(1 + 1 / c), g2 = std::tgamma(1 + 2 / c);
    char label[64];
    std::snprintf(label, sizeof label, "Weibull(%g, %g)", s, c);
    check_scalar_moments(label, mk(DistKind::Weibull, {s, c}), s * g1, s * s * (g2 - g1 * g1), ++stream,
                         1e-8);
  }

  // Truncated normal in every regime of the sampler.
  check_truncnorm("TN straddling [-1, 2]", 0, 1, -1, 2, ++stream);
  check_truncnorm("TN upper half [1, inf)", 0, 1, 1, kInf, ++stream);
  check_truncnorm("TN lower tail (-inf, 0], mu 1 sd 2", 1, 2, -kInf, 0, ++stream);
  check_truncnorm("TN [-1, 1] with mu 3 sd 0.5", 3, 0.5, -1, 1, ++stream);
  check_truncnorm("TN untruncated", 1, 2, -kInf, kInf, ++stream);
  check_truncnorm("TN [5, 7]", 0, 1, 5, 7, ++stream);
  check_truncnorm("TN far tail [40, inf)", 0, 1, 40, kInf, ++stream, 1e-7);
  check_truncnorm("TN far tail [35, 36]", 0, 1, 35, 36, ++stream, 1e-7);
  check_truncnorm("TN far tail [30, 30.2]", 0, 1, 30, 30.2, ++stream, 5e-2);
  check_truncnorm("TN mirrored far tail [-45, -40]", 0, 1, -45, -40, ++stream, 1e-7);
  check_truncnorm("TN narrow [0.5, 0.5001]", 0, 1, 0.5, 0.5001, ++stream, 1e-7);
  check_truncnorm("TN narrow straddling [-0.3, 0.4]", 0, 1, -0.3, 0.4, ++stream);
  check_truncnorm("TN narrow in tail [8, 8.1]", 0, 1, 8, 8.1, ++stream);
  check_truncnorm_ks("TN KS [-1, 2]", 0, 1, -1, 2, ++stream);
  check_truncnorm_ks("TN KS (-inf, 0] mu 1 sd 2", 1, 2, -kInf, 0, ++stream);
  check_truncnorm_ks("TN KS [1, inf)", 0, 1, 1, kInf, ++stream);
  check_truncnorm_ks("TN KS [-1, 1] mu 3 sd 0.5", 3, 0.5, -1, 1, ++stream);

  // Mixtures: 0.3 N(-2, 1) + 0.7 Gamma(2, 1); 0.25 Poisson(2) + 0.75 Binomial(10, 0.5).
  check_scalar_moments(
      "Mixture continuous",
      mk(DistKind::Mixture, {2, 0.3, 0.7, code(DistKind::Normal), 2, -2, 1, code(DistKind::Gamma), 2, 2, 1}),
      0.8, 5.06, ++stream);
  check_scalar_moments("Mixture discrete",
                       mk(DistKind::Mixture, {2, 0.25, 0.75, code(DistKind::Poisson), 1, 2,
                                              code(DistKind::Binomial), 2, 10, 0.5}),
                       4.25, 4.0625, ++stream);

  // Frequencies of discrete values against exp(log_prob).
  check_frequencies("Categorical freq", mk(DistKind::Categorical, {0.1, 0.2, 0.3, 0.4}), 3, ++stream);
  check_frequencies("Categorical zeros freq", mk(DistKind::Categorical, {0.0, 0.5, 0.0, 0.5}), 3, ++stream);
  check_frequencies("Poisson(3.5) freq", mk(DistKind::Poisson, {3.5}), 20, ++stream);
  check_frequencies("Poisson(25) freq (PTRS)", mk(DistKind::Poisson, {25}), 60, ++stream);
  check_frequencies("Binomial(20, 0.3) freq (inversion)", mk(DistKind::Binomial, {20, 0.3}), 20, ++stream);
  check_frequencies("Binomial(200, 0.3) freq (BTRS)", mk(DistKind::Binomial, {200, 0.3}), 100, ++stream);
  check_frequencies("Binomial(60, 0.8) freq (BTRS, flipped)", mk(DistKind::Binomial, {60, 0.8}), 60, ++stream);
}

// ---------------------------------------------------------------------------------------
// log_prob against torch.distributions / scipy values

void check_lp(const char* label, const Owned& o, double x, double expected, double rel = 1e-12) {
  const double got = ppfast::log_prob(o.view(), &x);
  CHECK(close(got, expected, rel, 1e-13), "%s: log_prob %.17g, expected %.17g", label, got, expected);
}

void test_log_prob_values() {
  check_lp("Normal(1.5,2)@0.3", mk(DistKind::Normal, {1.5, 2}), 0.3, -1.792085713764618);
  check_lp("Normal(0,1)@0", mk(DistKind::Normal, {0, 1}), 0.0, -0.9189385332046727);
  check_lp("Uniform(-2,3)@1", mk(DistKind::Uniform, {-2, 3}), 1.0, -1.6094379124341003);
  check_lp("Uniform(-2,3)@3", mk(DistKind::Uniform, {-2, 3}), 3.0, -kInf);  // [low, high): high is outside
  check_lp("Uniform(-2,3)@3.5", mk(DistKind::Uniform, {-2, 3}), 3.5, -kInf);
  const Owned cat = mk(DistKind::Categorical, {0.1, 0.2, 0.3, 0.4});
  check_lp("Categorical@2", cat, 2.0, -1.2039728043259361);
  check_lp("Categorical@4", cat, 4.0, -kInf);
  check_lp("Categorical@1.5", cat, 1.5, -kInf);
  check_lp("Categorical@-1", cat, -1.0, -kInf);
  check_lp("Poisson(3.5)@2", mk(DistKind::Poisson, {3.5}), 2.0, -1.6876212435692093);
  check_lp("Poisson(3.5)@0", mk(DistKind::Poisson, {3.5}), 0.0, -3.5);
  check_lp("Poisson(1000)@990", mk(DistKind::Poisson, {1000}), 990.0, -4.418042684884313, 1e-11);
  check_lp("Poisson(0)@0", mk(DistKind::Poisson, {0}), 0.0, 0.0);
  check_lp("Poisson(0)@1", mk(DistKind::Poisson, {0}), 1.0, -kInf);
  check_lp("Poisson(3.5)@-1", mk(DistKind::Poisson, {3.5}), -1.0, -kInf);
  check_lp("Poisson(3.5)@2.5", mk(DistKind::Poisson, {3.5}), 2.5, -kInf);
  check_lp("Bernoulli(0.3)@1", mk(DistKind::Bernoulli, {0.3}), 1.0, -1.2039728043259361);
  check_lp("Bernoulli(0.3)@0", mk(DistKind::Bernoulli, {0.3}), 0.0, -0.35667494393873234);
  check_lp("Bernoulli(0.3)@0.5", mk(DistKind::Bernoulli, {0.3}), 0.5, -kInf);
  check_lp("Beta(2,3)@0.4", mk(DistKind::Beta, {2, 3}), 0.4, 0.5469646703818639);
  check_lp("Beta(0.5,0.5)@0.1", mk(DistKind::Beta, {0.5, 0.5}), 0.1, 0.05924291847653573, 1e-11);
  check_lp("Beta(2,3)@1.1", mk(DistKind::Beta, {2, 3}), 1.1, -kInf);
  check_lp("Exponential(2.5)@0.7", mk(DistKind::Exponential, {2.5}), 0.7, -0.8337092681258449);
  check_lp("Exponential(2.5)@-0.1", mk(DistKind::Exponential, {2.5}), -0.1, -kInf);
  check_lp("Gamma(2.5,1.5)@0.8", mk(DistKind::Gamma, {2.5, 1.5}), 0.8, -0.8057354271738228);
  check_lp("Gamma(1,2)@0", mk(DistKind::Gamma, {1, 2}), 0.0, 0.6931471805599453);
  check_lp("LogNormal(0.2,0.5)@1.3", mk(DistKind::LogNormal, {0.2, 0.5}), 1.3, -0.49593422007736077);
  check_lp("LogNormal(0.2,0.5)@0", mk(DistKind::LogNormal, {0.2, 0.5}), 0.0, -kInf);
  check_lp("Binomial(10,0.3)@4", mk(DistKind::Binomial, {10, 0.3}), 4.0, -1.6088333502186707);
  check_lp("Binomial(1000,0.9)@905", mk(DistKind::Binomial, {1000, 0.9}), 905.0, -3.2878530219190907,
           1e-11);
  check_lp("Binomial(10,0)@0", mk(DistKind::Binomial, {10, 0}), 0.0, 0.0);
  check_lp("Binomial(10,0.3)@11", mk(DistKind::Binomial, {10, 0.3}), 11.0, -kInf);
  check_lp("Weibull(2,1.5)@1.2", mk(DistKind::Weibull, {2, 1.5}), 1.2, -1.0078528858796663);
  check_lp("TN(0,1,-1,2)@0.5", mk(DistKind::TruncatedNormal, {0, 1, -1, 2}), 0.5, -0.84377223888021);
  check_lp("TN(1,2,-inf,0)@-1", mk(DistKind::TruncatedNormal, {1, 2, -kInf, 0}), -1.0, -0.9361739521709992);
  check_lp("TN(0,1,40,inf)@40.01", mk(DistKind::TruncatedNormal, {0, 1, 40, kInf}), 40.01,
           3.2894534805492412, 1e-10);
  check_lp("TN(0,1,35,36)@35.5", mk(DistKind::TruncatedNormal, {0, 1, 35, 36}), 35.5, -14.068837271282177,
           1e-10);
  check_lp("TN(0,1,0.5,0.5001)@0.50005", mk(DistKind::TruncatedNormal, {0, 1, 0.5, 0.5001}), 0.50005,
           9.210340372290888, 1e-10);
  check_lp("TN(0,1,-45,-40)@-40.2", mk(DistKind::TruncatedNormal, {0, 1, -45, -40}), -40.2,
           -4.3304965194508895, 1e-10);
  check_lp("TN(3,0.5,-1,1)@0.9", mk(DistKind::TruncatedNormal, {3, 0.5, -1, 1}), 0.9, 1.3143101339022074,
           1e-10);
  check_lp("TN(0,1,-1,2)@2.5", mk(DistKind::TruncatedNormal, {0, 1, -1, 2}), 2.5, -kInf);
  check_lp("Mixture@1",
           mk(DistKind::Mixture, {2, 0.3, 0.7, code(DistKind::Normal), 2, -2, 1, code(DistKind::Gamma), 2, 2, 1}),
           1.0, -1.3515252209793935);
  check_lp("Normal@NaN", mk(DistKind::Normal, {0, 1}), kNaN, -kInf);
  {
    const double x = 0.0;
    CHECK(std::isnan(ppfast::log_prob(mk(static_cast<DistKind>(99), {0, 1}).view(), &x)),
          "log_prob of an unknown kind must be NaN");
  }

  // Element-wise: log_prob is the sum over elements.
  {
    const Owned v = mk(DistKind::Normal, {1.5, 0.0, 2.0, 1.0}, 2);
    const double x[2] = {0.3, 0.0};
    CHECK(close(ppfast::log_prob(v.view(), x), -1.792085713764618 - 0.9189385332046727, 1e-13),
          "Normal size 2: log_prob is not the sum of element log-probs");
    const double y[2] = {0.3, kNaN};
    CHECK(ppfast::log_prob(v.view(), y) == -kInf, "Normal size 2 with a NaN element must give -inf");
  }
  // Poisson and Binomial log-factorials against std::lgamma over a wide range.
  {
    double worst = 0.0;
    for (double k : {0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 9.0, 10.0, 11.0, 17.0, 50.0, 123.0, 1e4, 1e7}) {
      const double rate = 7.25;
      const double expected = k * std::log(rate) - rate - std::lgamma(k + 1.0);
      const double got = ppfast::log_prob(mk(DistKind::Poisson, {rate}).view(), &k);
      worst = std::max(worst, std::fabs(got - expected) / std::max(1.0, std::fabs(expected)));
    }
    CHECK(worst < 1e-13, "Poisson log_prob vs lgamma formula: worst relative error %.3g", worst);
    worst = 0.0;
    for (double a : {0.01, 0.3, 0.5, 1.0, 1.5, 2.0, 3.7, 9.99, 10.0, 42.0, 1e5}) {
      const double x = 0.6;
      const double b = 1.3;
      const double expected =
          (a - 1) * std::log(x) + (b - 1) * std::log1p(-x) - (std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b));
      const double got = ppfast::log_prob(mk(DistKind::Beta, {a, b}).view(), &x);
      worst = std::max(worst, std::fabs(got - expected) / std::max(1.0, std::fabs(expected)));
    }
    CHECK(worst < 1e-12, "Beta log_prob vs lgamma formula: worst relative error %.3g", worst);
  }
}

// ---------------------------------------------------------------------------------------
// Normalisation: sum of exp(log_prob) over the support (discrete), or integral (continuous)

void check_sum_to_one(const char* label, const Owned& o, int kmax) {
  double total = 0.0;
  for (int k = 0; k <= kmax; ++k) {
    const double x = k;
    total += std::exp(ppfast::log_prob(o.view(), &x));
  }
  CHECK(close(total, 1.0, 1e-10), "%s: pmf sums to %.15g", label, total);
}

void check_integrates_to_one(const char* label, const Owned& o, double lo, double hi, double tol = 1e-8) {
  const int n = 200000;
  const double h = (hi - lo) / n;
  double total = 0.0;
  for (int i = 0; i <= n; ++i) {
    const double x = lo + h * i;
    const double wgt = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
    total += wgt * std::exp(ppfast::log_prob(o.view(), &x));
  }
  total *= h / 3.0;
  CHECK(close(total, 1.0, tol), "%s: density integrates to %.15g", label, total);
}

void test_normalisation() {
  check_sum_to_one("Poisson(3.5)", mk(DistKind::Poisson, {3.5}), 200);
  check_sum_to_one("Poisson(1000)", mk(DistKind::Poisson, {1000}), 3000);
  check_sum_to_one("Binomial(10, 0.3)", mk(DistKind::Binomial, {10, 0.3}), 10);
  check_sum_to_one("Binomial(1000, 0.9)", mk(DistKind::Binomial, {1000, 0.9}), 1000);
  check_sum_to_one("Binomial(0, 0.4)", mk(DistKind::Binomial, {0, 0.4}), 5);
  check_sum_to_one("Binomial(12, 1)", mk(DistKind::Binomial, {12, 1}), 12);
  check_sum_to_one("Bernoulli(0.3)", mk(DistKind::Bernoulli, {0.3}), 1);
  check_sum_to_one("Categorical", mk(DistKind::Categorical, {0.1, 0.2, 0.3, 0.4}), 3);
  check_sum_to_one("Categorical unnormalised within tolerance",
                   mk(DistKind::Categorical, {0.1, 0.2, 0.3, 0.4000004}), 3);
  check_sum_to_one("Mixture discrete",
                   mk(DistKind::Mixture, {2, 0.25, 0.75, code(DistKind::Poisson), 1, 2,
                                          code(DistKind::Binomial), 2, 10, 0.5}),
                   100);

  check_integrates_to_one("Normal(1.5, 2)", mk(DistKind::Normal, {1.5, 2}), -30, 30);
  check_integrates_to_one("Beta(2, 3)", mk(DistKind::Beta, {2, 3}), 0, 1);
  check_integrates_to_one("Gamma(2.5, 1.5)", mk(DistKind::Gamma, {2.5, 1.5}), 0, 60);
  check_integrates_to_one("Exponential(2.5)", mk(DistKind::Exponential, {2.5}), 0, 40);
  check_integrates_to_one("LogNormal(0.2, 0.5)", mk(DistKind::LogNormal, {0.2, 0.5}), 1e-12, 60);
  check_integrates_to_one("Weibull(2, 1.5)", mk(DistKind::Weibull, {2, 1.5}), 0, 60, 1e-6);
  check_integrates_to_one("TN [-1, 2]", mk(DistKind::TruncatedNormal, {0, 1, -1, 2}), -1, 2);
  check_integrates_to_one("TN [40, inf)", mk(DistKind::TruncatedNormal, {0, 1, 40, kInf}), 40, 41.5);
  check_integrates_to_one("TN [35, 36]", mk(DistKind::TruncatedNormal, {0, 1, 35, 36}), 35, 36);
  check_integrates_to_one("TN [-45, -40]", mk(DistKind::TruncatedNormal, {0, 1, -45, -40}), -45, -40);
  check_integrates_to_one("TN [0.5, 0.5001]", mk(DistKind::TruncatedNormal, {0, 1, 0.5, 0.5001}), 0.5,
                          0.5001);
  check_integrates_to_one("TN [8, 8.1]", mk(DistKind::TruncatedNormal, {0, 1, 8, 8.1}), 8, 8.1);
  check_integrates_to_one("TN [5, 1e6] mu 0 sd 1", mk(DistKind::TruncatedNormal, {0, 1, 5, 1e6}), 5, 20);
  check_integrates_to_one("TN [-1, 1] mu 3 sd 0.5", mk(DistKind::TruncatedNormal, {3, 0.5, -1, 1}), -1, 1);
  check_integrates_to_one(
      "Mixture continuous",
      mk(DistKind::Mixture, {2, 0.3, 0.7, code(DistKind::Normal), 2, -2, 1, code(DistKind::Gamma), 2, 2, 1}),
      -30, 60);
}

// ---------------------------------------------------------------------------------------
// Validation

void expect_valid(const char* label, const Owned& o) {
  const std::string err = ppfast::validate(o.view());
  CHECK(err.empty(), "%s: expected valid, got \"%s\"", label, err.c_str());
}

// Expects an error message containing every one of `parts`.
void expect_invalid(const char* label, const Owned& o, std::initializer_list<const char*> parts) {
  const std::string err = ppfast::validate(o.view());
  bool ok = !err.empty();
  for (const char* part : parts) ok = ok && err.find(part) != std::string::npos;
  CHECK(ok, "%s: unexpected validation message \"%s\"", label, err.c_str());
}

void test_validation() {
  {
    const std::string err = ppfast::validate(mk(DistKind::Normal, {0, -1}).view());
    CHECK(err == "Normal: stddev must be > 0 and finite, got -1 (element 0)", "message was \"%s\"",
          err.c_str());
  }
  expect_valid("Normal", mk(DistKind::Normal, {0, 1}));
  expect_invalid("Normal NaN mean", mk(DistKind::Normal, {kNaN, 1}), {"Normal", "mean", "nan"});
  expect_invalid("Normal inf stddev", mk(DistKind::Normal, {0, kInf}), {"stddev", "inf"});
  expect_invalid("Normal vector stddev 0", mk(DistKind::Normal, {0, 0, 1, 0}, 2),
                 {"stddev", "got 0", "element 1"});
  expect_invalid("Normal nparams", mk(DistKind::Normal, {0, 1, 2}, 2), {"nparams", "4", "got 3"});
  expect_invalid("Normal size 0", mk(DistKind::Normal, {}, 0), {"size", ">= 1"});
  expect_invalid("Uniform low >= high", mk(DistKind::Uniform, {2, 1}), {"Uniform", "low", "high", "got low 2"});
  expect_invalid("Uniform inf", mk(DistKind::Uniform, {0, kInf}), {"high", "finite"});
  expect_valid("Categorical", mk(DistKind::Categorical, {0.25, 0.75}));
  expect_invalid("Categorical sum", mk(DistKind::Categorical, {0.5, 0.6}), {"Categorical", "probs", "sum", "1.1"});
  expect_invalid("Categorical negative", mk(DistKind::Categorical, {1.5, -0.5}), {"probs", ">= 0", "-0.5"});
  expect_invalid("Categorical NaN", mk(DistKind::Categorical, {kNaN, 1.0}), {"probs", "nan"});
  expect_invalid("Categorical size 2", mk(DistKind::Categorical, {0.5, 0.5}, 2), {"size must be 1"});
  expect_invalid("Categorical empty", mk(DistKind::Categorical, {}), {"Categorical", "at least 1"});
  expect_valid("Poisson rate 0 (as torch)", mk(DistKind::Poisson, {0}));
  expect_invalid("Poisson negative", mk(DistKind::Poisson, {-1}), {"Poisson", "rate", "-1"});
  expect_invalid("Bernoulli 1.5", mk(DistKind::Bernoulli, {1.5}), {"Bernoulli", "probs", "[0, 1]", "1.5"});
  expect_invalid("Beta 0", mk(DistKind::Beta, {0, 1}), {"Beta", "concentration1"});
  expect_invalid("Exponential 0", mk(DistKind::Exponential, {0}), {"Exponential", "rate"});
  expect_invalid("Gamma rate", mk(DistKind::Gamma, {1, -2}), {"Gamma", "rate", "-2"});
  expect_invalid("LogNormal scale", mk(DistKind::LogNormal, {0, 0}), {"LogNormal", "scale"});
  expect_invalid("Binomial non-integer", mk(DistKind::Binomial, {2.5, 0.5}), {"Binomial", "total_count", "2.5"});
  expect_invalid("Binomial negative", mk(DistKind::Binomial, {-1, 0.5}), {"total_count", "non-negative integer"});
  expect_invalid("Binomial probs", mk(DistKind::Binomial, {3, -0.1}), {"probs", "-0.1"});
  expect_invalid("Weibull inf scale", mk(DistKind::Weibull, {kInf, 1}), {"Weibull", "scale"});
  expect_valid("TN one-sided", mk(DistKind::TruncatedNormal, {0, 1, -kInf, 2}));
  expect_invalid("TN NaN low", mk(DistKind::TruncatedNormal, {0, 1, kNaN, 2}), {"TruncatedNormal", "low", "NaN"});
  expect_invalid("TN low >= high", mk(DistKind::TruncatedNormal, {0, 1, 2, 2}), {"low must be < high"});
  expect_invalid("None", mk(DistKind::None, {}), {"unknown distribution kind", "0"});
  expect_invalid("kind 99", mk(static_cast<DistKind>(99), {1}), {"unknown distribution kind", "99"});
  {
    const Dist nullp{DistKind::Normal, 1, 2, nullptr};
    CHECK(ppfast::validate(nullp).find("null") != std::string::npos, "null params must be rejected");
  }

  const double N = code(DistKind::Normal), G = code(DistKind::Gamma), P = code(DistKind::Poisson);
  expect_valid("Mixture", mk(DistKind::Mixture, {2, 0.3, 0.7, N, 2, -2, 1, G, 2, 2, 1}));
  expect_invalid("Mixture weights", mk(DistKind::Mixture, {2, 0.3, 0.6, N, 2, -2, 1, G, 2, 2, 1}),
                 {"Mixture", "weights", "sum"});
  expect_invalid("Mixture missing component", mk(DistKind::Mixture, {2, 0.3, 0.7, N, 2, -2, 1}),
                 {"Mixture", "component 1"});
  expect_invalid("Mixture nested", mk(DistKind::Mixture, {1, 1.0, code(DistKind::Mixture), 0}),
                 {"kind_code", "13"});
  expect_invalid("Mixture bad component param", mk(DistKind::Mixture, {2, 0.3, 0.7, N, 2, -2, -1, G, 2, 2, 1}),
                 {"Mixture: component 0: Normal: stddev", "-1"});
  expect_invalid("Mixture component nparams", mk(DistKind::Mixture, {1, 1.0, N, 3, 0, 1, 2}),
                 {"component 0", "Normal", "nparams"});
  expect_invalid("Mixture nparams too large", mk(DistKind::Mixture, {1, 1.0, N, 5, 0, 1}),
                 {"component 0", "nparams"});
  expect_invalid("Mixture trailing params", mk(DistKind::Mixture, {1, 1.0, N, 2, 0, 1, 7}),
                 {"Mixture", "use 6 params", "got nparams 7"});
  expect_invalid("Mixture mixed discrete", mk(DistKind::Mixture, {2, 0.5, 0.5, N, 2, 0, 1, P, 1, 2}),
                 {"all discrete or all continuous"});
  expect_invalid("Mixture k", mk(DistKind::Mixture, {0.5, 1.0}), {"Mixture", "k"});
  expect_invalid("Mixture size", mk(DistKind::Mixture, {1, 1.0, N, 2, 0, 1}, 2), {"size must be 1"});

  CHECK(std::strcmp(ppfast::dist_name(DistKind::TruncatedNormal), "TruncatedNormal") == 0, "dist_name");
  CHECK(ppfast::dist_num_param_arrays(DistKind::TruncatedNormal) == 4, "TN arrays");
  CHECK(ppfast::dist_num_param_arrays(DistKind::Mixture) == -1, "Mixture arrays");
  CHECK(ppfast::dist_is_discrete(DistKind::Binomial) && !ppfast::dist_is_discrete(DistKind::Beta),
        "dist_is_discrete(kind)");
  CHECK(ppfast::dist_is_discrete(mk(DistKind::Mixture, {1, 1.0, P, 1, 2}).view()) &&
            !ppfast::dist_is_discrete(mk(DistKind::Mixture, {1, 1.0, N, 2, 0, 1}).view()),
        "dist_is_discrete(mixture)");
}

// ---------------------------------------------------------------------------------------
// Supports

void test_support() {
  double lo[2], hi[2];
  ppfast::support(mk(DistKind::TruncatedNormal, {0, 1, -kInf, 2}).view(), lo, hi);
  CHECK(lo[0] == -kInf && hi[0] == 2, "TN support");
  ppfast::support(mk(DistKind::Binomial, {7, 9, 0.5, 0.1}, 2).view(), lo, hi);
  CHECK(lo[0] == 0 && hi[0] == 7 && lo[1] == 0 && hi[1] == 9, "Binomial support");
  ppfast::support(mk(DistKind::Categorical, {0.2, 0.3, 0.5}).view(), lo, hi);
  CHECK(lo[0] == 0 && hi[0] == 2, "Categorical support");
  const double N = code(DistKind::Normal), U = code(DistKind::Uniform);
  ppfast::support(mk(DistKind::Mixture, {2, 0.5, 0.5, U, 2, 0, 1, U, 2, 3, 5}).view(), lo, hi);
  CHECK(lo[0] == 0 && hi[0] == 5, "Mixture support");
  const Owned mix = mk(DistKind::Mixture, {2, 0.5, 0.5, U, 2, 0, 1, U, 2, 3, 5});
  double x = 2.0;
  CHECK(!ppfast::in_support(mix.view(), &x) && ppfast::log_prob(mix.view(), &x) == -kInf,
        "Mixture gap is outside the support");
  x = 4.0;
  CHECK(ppfast::in_support(mix.view(), &x) && close(ppfast::log_prob(mix.view(), &x), std::log(0.25), 1e-14),
        "Mixture value in second component");
  ppfast::support(mk(DistKind::Mixture, {2, 1.0, 0.0, N, 2, 0, 1, U, 2, 3, 5}).view(), lo, hi);
  CHECK(lo[0] == -kInf && hi[0] == kInf, "Mixture support, zero-weight component ignored");
}

// ---------------------------------------------------------------------------------------
// RNG properties and determinism

void test_rng() {
  Rng a, b;
  a.seed(42, 7);
  b.seed(42, 7);
  bool same = true;
  for (int i = 0; i < 1000; ++i) same = same && a.next() == b.next();
  CHECK(same, "same (seed, stream) must give the same sequence");

  // Different streams (and seeds) differ from the first output on.
  std::vector<uint64_t> firsts;
  for (uint64_t s = 0; s < 1000; ++s) {
    Rng r;
    r.seed(42, s);
    firsts.push_back(r.next());
  }
  for (uint64_t sd = 1000; sd < 1100; ++sd) {
    Rng r;
    r.seed(sd, 0);
    firsts.push_back(r.next());
  }
  std::sort(firsts.begin(), firsts.end());
  CHECK(std::adjacent_find(firsts.begin(), firsts.end()) == firsts.end(),
        "distinct streams / seeds produced an identical first output");
  {
    Rng x, y;
    x.seed(1, 0);
    y.seed(0, 1);
    CHECK(x.next() != y.next(), "(1, 0) and (0, 1) must differ");
  }

  // Adjacent streams are uncorrelated.
  {
    Rng r0, r1;
    r0.seed(5, 100);
    r1.seed(5, 101);
    const int n = 1000000;
    double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; ++i) {
      const double u = r0.uniform(), v = r1.uniform();
      sx += u, sy += v, sxy += u * v, sxx += u * u, syy += v * v;
    }
    const double cov = sxy / n - (sx / n) * (sy / n);
    const double corr = cov / std::sqrt((sxx / n - sx * sx / n / n) * (syy / n - sy * sy / n / n));
    CHECK(std::fabs(corr) < kSigmas / std::sqrt(static_cast<double>(n)),
          "adjacent streams correlated: r = %.5f", corr);
  }

  // uniform() stays in the open interval with the right moments; normal() moments.
  {
    Rng r;
    r.seed(3, 3);
    const int n = 2000000;
    double lo = 1, hi = 0, s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double u = r.uniform();
      lo = std::min(lo, u), hi = std::max(hi, u), s += u, s2 += u * u;
    }
    CHECK(lo > 0 && hi < 1, "uniform() left (0, 1): min %.3g max %.17g", lo, hi);
    const double m = s / n, v = s2 / n - m * m;
    CHECK(std::fabs(m - 0.5) < kSigmas * std::sqrt(1.0 / 12 / n), "uniform mean %.6f", m);
    CHECK(std::fabs(v - 1.0 / 12) < kSigmas * std::sqrt((1.0 / 80 - 1.0 / 144) / n), "uniform var %.6f", v);
    double z1 = 0, z2 = 0, z4 = 0;
    for (int i = 0; i < n; ++i) {
      const double z = r.normal();
      z1 += z, z2 += z * z, z4 += z * z * z * z;
    }
    CHECK(std::fabs(z1 / n) < kSigmas / std::sqrt(static_cast<double>(n)), "normal mean %.6f", z1 / n);
    CHECK(std::fabs(z2 / n - 1) < kSigmas * std::sqrt(2.0 / n), "normal var %.6f", z2 / n);
    CHECK(std::fabs(z4 / n - 3) < kSigmas * std::sqrt(96.0 / n), "normal 4th moment %.6f", z4 / n);
  }

  // Reseeding restarts the sequence; a copy continues identically.
  {
    Rng r;
    r.seed(11, 2);
    const double first = r.normal();
    r.seed(11, 2);
    const double again = r.normal();
    CHECK(first == again, "seed() must restart the sequence");
    Rng c = r;
    bool same_copy = true;
    for (int i = 0; i < 100; ++i) same_copy = same_copy && c.normal() == r.normal();
    CHECK(same_copy, "copied Rng must continue identically");
  }

  // sample() is deterministic for every kind, and streams differ.
  const double N = code(DistKind::Normal), G = code(DistKind::Gamma);
  const std::vector<Owned> all = {
      mk(DistKind::Normal, {0, 1}),       mk(DistKind::Uniform, {0, 1}),
      mk(DistKind::Categorical, {0.5, 0.5}), mk(DistKind::Poisson, {30}),
      mk(DistKind::Bernoulli, {0.5}),     mk(DistKind::Beta, {0.5, 2}),
      mk(DistKind::Exponential, {1}),     mk(DistKind::Gamma, {0.5, 1}),
      mk(DistKind::LogNormal, {0, 1}),    mk(DistKind::Binomial, {100, 0.4}),
      mk(DistKind::Weibull, {1, 2}),      mk(DistKind::TruncatedNormal, {0, 1, -1, 3}),
      mk(DistKind::Mixture, {2, 0.3, 0.7, N, 2, -2, 1, G, 2, 2, 1})};
  for (const Owned& o : all) {
    Rng r1, r2, r3;
    r1.seed(8, 1);
    r2.seed(8, 1);
    r3.seed(8, 2);
    std::vector<double> x1(64), x2(64), x3(64);
    for (int i = 0; i < 64; ++i) {
      ppfast::sample(o.view(), r1, &x1[i]);
      ppfast::sample(o.view(), r2, &x2[i]);
      ppfast::sample(o.view(), r3, &x3[i]);
    }
    CHECK(x1 == x2, "%s: same stream gave different draws", ppfast::dist_name(o.kind));
    CHECK(x1 != x3, "%s: different streams gave identical draws", ppfast::dist_name(o.kind));
  }
}

// ---------------------------------------------------------------------------------------
// Extreme but valid parameters: every draw inside the support with a finite log-density,
// or the parameters rejected by validation. (Parameters whose draws overflow doubles, e.g.
// Normal(0, 1e308), are caught per draw by the recorder; see tests/test_hardening.py.)

void test_extreme_parameters() {
  // Poisson rates beyond 2^52 give counts that doubles cannot hold exactly: rejected.
  CHECK(!ppfast::validate(mk(DistKind::Poisson, {0x1.0p60}).view()).empty(), "Poisson(2^60) accepted");
  CHECK(!ppfast::validate(mk(DistKind::Poisson, {kInf}).view()).empty(), "Poisson(inf) accepted");
  CHECK(ppfast::validate(mk(DistKind::Poisson, {0x1.0p52}).view()).empty(), "Poisson(2^52) rejected");
  const std::vector<Owned> cases = {
      mk(DistKind::Poisson, {0x1.0p52}),
      mk(DistKind::Uniform, {-1e308, 1e308}),
      mk(DistKind::Uniform, {-DBL_MAX, DBL_MAX}),
      mk(DistKind::Gamma, {1e-3, 1e300}),
      mk(DistKind::Gamma, {1e300, 1.0}),
      mk(DistKind::Beta, {1e-300, 1e-300}),
      mk(DistKind::Beta, {1e300, 1e300}),
      mk(DistKind::Binomial, {9007199254740992.0, 0.5}),
      mk(DistKind::Binomial, {9007199254740992.0, 1e-300}),
      mk(DistKind::Exponential, {1e308}),
      mk(DistKind::TruncatedNormal, {0.0, 1.0, 1e10, kInf}),
      mk(DistKind::TruncatedNormal, {0.0, 1.0, 1e300, 1e308}),  // used to loop forever
      mk(DistKind::TruncatedNormal, {0.0, 1.0, -1e308, -1e300}),
      mk(DistKind::TruncatedNormal, {0.0, 1.0, 40.0, 40.5}),
      mk(DistKind::TruncatedNormal, {0.0, 1e-300, -1.0, 1.0}),
      mk(DistKind::TruncatedNormal, {0.0, 1e-10, 1e308, kInf}),
  };
  Rng rng;
  rng.seed(7, 0);
  for (const Owned& o : cases) {
    const Dist d = o.view();
    CHECK(ppfast::validate(d).empty(), "%s: valid parameters rejected: %s", ppfast::dist_name(o.kind),
          ppfast::validate(d).c_str());
    double lo, hi;
    ppfast::support(d, &lo, &hi);
    int bad = 0;
    double first_bad = 0.0;
    for (int i = 0; i < 2000; ++i) {
      double x;
      ppfast::sample(d, rng, &x);
      const double lp = ppfast::log_prob(d, &x);
      if (!(ppfast::in_support(d, &x) && std::isfinite(lp) && x >= lo && x <= hi)) {
        if (!bad++) first_bad = x;
      }
    }
    CHECK(bad == 0, "%s(%g, %g...): %d of 2000 draws outside the support or with a non-finite log-density "
          "(first %g)", ppfast::dist_name(o.kind), o.p[0], o.p.size() > 1 ? o.p[1] : 0.0, bad, first_bad);
    double m, sd;
    ppfast::mean(d, &m);
    ppfast::stddev(d, &sd);
    CHECK(std::isfinite(m) && std::isfinite(sd), "%s: mean %g / stddev %g not finite", ppfast::dist_name(o.kind),
          m, sd);
  }
  // Uniform over (almost) the whole double range: density 1 / (high - low) although
  // high - low overflows, and the closed-form moments.
  const Owned wide = mk(DistKind::Uniform, {-1e308, 1e308});
  const double zero = 0.0;
  CHECK(close(ppfast::log_prob(wide.view(), &zero), -std::log(2.0) - std::log(1e308), 1e-15),
        "Uniform(-1e308, 1e308) log density %g", ppfast::log_prob(wide.view(), &zero));
  double sd;
  ppfast::stddev(wide.view(), &sd);
  CHECK(close(sd, 1e308 / std::sqrt(3.0), 1e-15),
        "Uniform(-1e308, 1e308) stddev %g", sd);
  // Huge counts: the log-pmf at the mode from its closed form, where the log-Gamma
  // differences would cancel (several nats off at 1e15 before).
  const double big = 1e15;
  const Owned pois = mk(DistKind::Poisson, {big});
  const double pois_mode = -0.5 * std::log(2.0 * M_PI * big) - 1.0 / (12.0 * big);
  CHECK(close(ppfast::log_prob(pois.view(), &big), pois_mode, 1e-12), "Poisson(1e15) log pmf at 1e15: %.17g, "
        "expected %.17g", ppfast::log_prob(pois.view(), &big), pois_mode);
  const double n = 0x1.0p52, half = 0x1.0p51;
  const Owned binom = mk(DistKind::Binomial, {n, 0.5});
  // log C(2m, m) 2^-2m = -log(pi m) / 2 - 1 / (8 m) + O(m^-3).
  const double binom_mode = -0.5 * std::log(M_PI * half) - 1.0 / (8.0 * half);
  CHECK(close(ppfast::log_prob(binom.view(), &half), binom_mode, 1e-12), "Binomial(2^52, 0.5) log pmf at 2^51: "
        "%.17g, expected %.17g", ppfast::log_prob(binom.view(), &half), binom_mode);
  // Moderate counts agree with the plain formula.
  const Owned pois20 = mk(DistKind::Poisson, {20.0});
  const double k = 23.0;
  CHECK(close(ppfast::log_prob(pois20.view(), &k), 23.0 * std::log(20.0) - 20.0 - std::lgamma(24.0), 1e-13),
        "Poisson(20) log pmf at 23: %.17g", ppfast::log_prob(pois20.view(), &k));
  const Owned bin40 = mk(DistKind::Binomial, {40.0, 0.3});
  const double j = 15.0;
  const double bin_ref = std::lgamma(41.0) - std::lgamma(16.0) - std::lgamma(26.0) + 15.0 * std::log(0.3) +
                         25.0 * std::log(0.7);
  CHECK(close(ppfast::log_prob(bin40.view(), &j), bin_ref, 1e-13), "Binomial(40, 0.3) log pmf at 15: %.17g vs %.17g",
        ppfast::log_prob(bin40.view(), &j), bin_ref);
  // Far truncated-normal tail: the log-density normalises (mass of [a, a + 1] under the
  // exponential-like tail, a = 1e300: density ~ a exp(-a (x - a)), i.e. log density log(a) at x = a).
  const Owned far = mk(DistKind::TruncatedNormal, {0.0, 1.0, 1e300, kInf});
  const double at = 1e300;
  CHECK(close(ppfast::log_prob(far.view(), &at), std::log(1e300), 1e-12), "far-tail TruncatedNormal log density %g",
        ppfast::log_prob(far.view(), &at));
}

// ---------------------------------------------------------------------------------------
// Timing (informational only; never asserted)

void report_timing() {
  const double params[2] = {0.3, 1.7};
  const Dist d{DistKind::Normal, 1, 2, params};
  Rng rng;
  rng.seed(1, 0);
  const int n = 20000000;
  double acc = 0.0;
  double x;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    ppfast::sample(d, rng, &x);
    acc += ppfast::log_prob(d, &x);
  }
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    ppfast::sample(d, rng, &x);
    acc += x;
  }
  auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) acc += rng.normal();
  auto t3 = std::chrono::steady_clock::now();
  const double u_params[2] = {-1.0, 2.0};
  const Dist du{DistKind::Uniform, 1, 2, u_params};
  for (int i = 0; i < n; ++i) {
    ppfast::sample(du, rng, &x);
    acc += ppfast::log_prob(du, &x);
  }
  auto t4 = std::chrono::steady_clock::now();
  // What the recorder does per draw: validate, sample, log_prob.
  for (int i = 0; i < n; ++i) {
    if (!ppfast::validate(d).empty()) acc += 1.0;
    ppfast::sample(d, rng, &x);
    acc += ppfast::log_prob(d, &x);
  }
  auto t5 = std::chrono::steady_clock::now();
  auto ns = [n](std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::nano>(b - a).count() / n;
  };
  std::printf("timing per draw: Normal sample+log_prob %.1f ns, Normal sample %.1f ns, "
              "Rng::normal %.1f ns, Uniform sample+log_prob %.1f ns, "
              "Normal validate+sample+log_prob %.1f ns (checksum %.3g)\n",
              ns(t0, t1), ns(t1, t2), ns(t2, t3), ns(t3, t4), ns(t4, t5), acc);
}

// The edges of Uniform's half-open support [low, high): the top 53-bit draw maps below 1,
// and a draw that rounds up to high is kept below it.
void test_uniform_edges() {
  const uint64_t top = ~uint64_t(0);
  CHECK(Rng::to_unit(top) == std::nextafter(1.0, 0.0), "to_unit(top) = %.17g, not the largest double below 1",
        Rng::to_unit(top));
  CHECK(Rng::to_unit(0) == 0x1.0p-54, "to_unit(0) = %.17g", Rng::to_unit(0));
  CHECK(Rng::to_unit(top - (uint64_t(1) << 11)) == 1.0 - 0x1.0p-52, "to_unit(top - 1 step) = %.17g",
        Rng::to_unit(top - (uint64_t(1) << 11)));
  // A state whose next output is all ones: xoshiro256++ returns rotl(s0 + s3, 23) + s0.
  Rng edge;
  edge.s[0] = 0, edge.s[1] = 1, edge.s[2] = 2, edge.s[3] = top;
  Rng r = edge;
  CHECK(r.next() == top, "constructed state does not give the top output");
  r = edge;
  const double u = r.uniform();
  CHECK(u < 1.0 && std::isfinite(std::log1p(-u)), "uniform() at the top output = %.17g", u);
  // Uniform(1, 2) there: 1 + (1 - 2^-53) rounds to 2, which is high.
  const Owned one_two = mk(DistKind::Uniform, {1.0, 2.0});
  r = edge;
  double x;
  ppfast::sample(one_two.view(), r, &x);
  CHECK(x < 2.0 && std::isfinite(ppfast::log_prob(one_two.view(), &x)), "Uniform(1, 2) at the top draw gave %.17g",
        x);
  // Uniform(1e16, 1e16 + 2): one ulp wide, so low + 2u rounds up to high for u > 1/2.
  const Owned ulp = mk(DistKind::Uniform, {1e16, 1e16 + 2.0});
  Rng g;
  g.seed(11, 0);
  int at_high = 0;
  for (int i = 0; i < 1000; ++i) {
    ppfast::sample(ulp.view(), g, &x);
    if (!(x < 1e16 + 2.0 && std::isfinite(ppfast::log_prob(ulp.view(), &x)))) ++at_high;
  }
  CHECK(at_high == 0, "Uniform(1e16, 1e16 + 2): %d of 1000 draws at high", at_high);
}

}  // namespace

int main() {
  test_rng();
  test_validation();
  test_support();
  test_log_prob_values();
  test_normalisation();
  test_moments();
  test_extreme_parameters();
  test_uniform_edges();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  report_timing();
  return g_failures == 0 ? 0 : 1;
}
