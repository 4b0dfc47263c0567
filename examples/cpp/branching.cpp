// A model whose number of latents varies: r ~ Poisson(4); if r > 4 then l = 6, else
// l = 1 + fib(3r) + a second Poisson(4) draw; observe Poisson(l) = 6 (name "obs").
#include <ppfast/ppfast.hpp>

static int fib(int n) {
  int a = 0, b = 1;
  for (int i = 0; i < n; ++i) {
    int t = a + b;
    a = b;
    b = t;
  }
  return a;
}

static double branching() {
  const int r = static_cast<int>(ppfast::sample(ppfast::Poisson(4.0), "r", "r"));
  double l;
  if (r > 4) {
    l = 6;
  } else {
    l = 1 + fib(3 * r) + ppfast::sample(ppfast::Poisson(4.0), "branch", "branch");
  }
  ppfast::observe(ppfast::Poisson(l), "obs");
  return r;
}

PPFAST_MODEL(branching, branching)
