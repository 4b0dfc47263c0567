// What the C++ test programs share: a failed check is printed and counted (main returns
// non-zero when any failed), and the GUM model as a plain function.
#pragma once

#include <cmath>
#include <cstdio>

#include "ppfast/ppfast.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

[[maybe_unused]] double gum() {
  double mu = ppfast::sample(ppfast::Normal(1.0, std::sqrt(5.0)), "mu", "mu");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs0");
  ppfast::observe(ppfast::Normal(mu, std::sqrt(2.0)), "obs1");
  return mu;
}

}  // namespace
