// ppfast distributions: element-wise (tensor-valued) parameters viewed as flat arrays.
#pragma once

#include <cstdint>
#include <string>

#include "rng.hpp"

namespace ppfast {

/// Distribution kinds. Codes 1..11 match the PPX protocol's Distribution union;
/// 12 and 13 are ppfast's own.
enum class DistKind : uint8_t {
  None = 0,
  Normal = 1,
  Uniform = 2,
  Categorical = 3,
  Poisson = 4,
  Bernoulli = 5,
  Beta = 6,
  Exponential = 7,
  Gamma = 8,
  LogNormal = 9,
  Binomial = 10,
  Weibull = 11,
  TruncatedNormal = 12,
  Mixture = 13,
  VonMises = 14,
  MultivariateNormal = 15,
};

/// Largest valid kind code.
constexpr int kMaxDistKind = 15;

/// Name of a kind ("Normal", ...); "None" for None and "Unknown" for codes out of range.
const char* dist_name(DistKind k);

/// Number of parameter arrays (each `size` doubles long): VonMises 2, MultivariateNormal -1
/// (its own layout, see Dist), Normal 2, Uniform 2,
/// Categorical 1 (probs, k doubles), Poisson 1, Bernoulli 1, Beta 2, Exponential 1,
/// Gamma 2, LogNormal 2, Binomial 2, Weibull 2, TruncatedNormal 4, Mixture -1 (its
/// own layout, see Dist), None and unknown codes 0.
int dist_num_param_arrays(DistKind k);

/// True for Categorical, Poisson, Bernoulli, Binomial. A Mixture's answer depends on
/// its components, so this overload returns false for it; use the Dist overload.
bool dist_is_discrete(DistKind k);

/// A non-owning view of a distribution with element-wise parameters.
///
/// Parameter layout: `arrays` arrays of `size` doubles each, concatenated in this
/// order (nparams = arrays * size):
///   Normal: mean, stddev            Uniform: low, high (support [low, high))
///   Poisson: rate                   Bernoulli: probs
///   Beta: concentration1, concentration0
///   Exponential: rate               Gamma: concentration, rate
///   LogNormal: loc, scale           Binomial: total_count, probs
///   Weibull: scale, concentration   TruncatedNormal: mean, stddev, low, high
///   Categorical (size 1): probs[k], nparams = k; the value is the index 0..k-1.
///   Mixture (size 1): [k, w_0..w_{k-1}, then per component: kind_code, nparams_c,
///     params_c...]; every component is a scalar (size 1) distribution of any kind
///     except Mixture, and the components are all discrete or all continuous.
///   VonMises: loc, concentration (element-wise, like Normal).
///   MultivariateNormal (size d, one joint value): mean[d], then the covariance matrix
///     row-major (d * d doubles, symmetric positive definite), nparams = d + d * d.
struct Dist {
  DistKind kind;
  uint32_t size;     ///< number of value elements (1 = scalar); 1 for Categorical and Mixture
  uint32_t nparams;  ///< number of doubles at `params`
  const double* params;
};

/// True when the value is integer-valued (for a Mixture: when all components are).
bool dist_is_discrete(const Dist& d);

/// Checks parameters and layout. Returns "" when valid, else a message naming the
/// distribution, the parameter, what was expected and what came, e.g.
/// "Normal: stddev must be > 0 and finite, got -1 (element 0)".
///
/// Rules: no NaN anywhere; no infinities except TruncatedNormal's low/high (one-sided
/// truncation); stddev, scale, concentration and rate > 0 (Poisson rate >= 0, as in
/// torch); low < high; probabilities in [0, 1]; Categorical probs and Mixture weights
/// >= 0 summing to 1 within 1e-6 * k; total_count a non-negative integer (<= 2^53);
/// size >= 1 and nparams consistent with kind and size; Mixture layout well-formed.
std::string validate(const Dist& d);
/// validate(d).empty() without building strings on the common path (once per draw).
bool is_valid(const Dist& d);

/// Writes d.size draws to out. Assumes validate(d) returned "".
void sample(const Dist& d, Rng& rng, double* out);

/// Sum over elements of the log density (continuous) or log mass (discrete), with the
/// same conventions as torch.distributions. -infinity for values outside the support
/// (including NaN, non-integer or out-of-range discrete values).
double log_prob(const Dist& d, const double* value);

/// True when every element of value lies in the support.
///
/// Supports: Normal R; Uniform [low, high]; Categorical {0..k-1}; Poisson N;
/// Bernoulli {0, 1}; Beta [0, 1]; Exponential, Gamma, Weibull [0, inf);
/// LogNormal (0, inf); Binomial {0..total_count}; TruncatedNormal [low, high];
/// Mixture: the union of the supports of the components with weight > 0.
bool in_support(const Dist& d, const double* value);
/// True if `value` is in the support of d's kind for SOME parameters (e.g. a non-negative
/// integer for Poisson, {0, 1} for Bernoulli, finite for Normal and Uniform): a value outside
/// it cannot be observed under any parameters, a typo-class error rather than weight zero.
bool in_kind_support(const Dist& d, const double* value);

/// Element-wise mean, written to out[size] (one value for Categorical and Mixture).
void mean(const Dist& d, double* out);

/// Element-wise standard deviation, written to out[size].
void stddev(const Dist& d, double* out);

/// Element-wise support bounds (may be +-infinity), written to lo[size] and hi[size].
/// Bounds are closed where the support includes them (see in_support).
void support(const Dist& d, double* lo, double* hi);

}  // namespace ppfast
