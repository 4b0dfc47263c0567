// 100 Normal(0, 1) latents drawn in a loop (one address, 100 instances) and one
// observation Normal(sum, 1) (name "obs").
#include <ppfast/ppfast.hpp>

static double hundred() {
  double sum = 0;
  for (int i = 0; i < 100; ++i) sum += ppfast::sample(ppfast::Normal(0.0, 1.0), "x", "x");
  ppfast::observe(ppfast::Normal(sum, 1.0), "obs");
  return sum;
}

PPFAST_MODEL(hundred, hundred)
