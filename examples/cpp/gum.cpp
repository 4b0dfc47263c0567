// Gaussian with unknown mean: mu ~ Normal(1, sqrt 5); obs0, obs1 ~ Normal(mu, sqrt 2).
// Posterior given obs0 = 8, obs1 = 9: Normal(7.25, sqrt(1/1.2)).
#include <cmath>

#include <ppfast/ppfast.hpp>

static double gum() {
  const double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "mu", "mu");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs1");
  return mu;
}

PPFAST_MODEL(gum, gum)
