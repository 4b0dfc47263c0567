// The GUM simulator as a user writes it out of tree (tests/conftest.py, scripts/clean_machine_check.py).
#include <cmath>
#include <ppfast/ppfast.hpp>
static double sim() {
  double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "external/mu", "mu");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs1");
  return mu;
}
PPFAST_MODEL(external_gum, sim)
