// The tau-decay experiment on Pythia 8.244, unchanged.  The tau's momentum is drawn by
// ppfast from its prior (an explicit address); Pythia decays the tau, every draw it makes
// captured at its random-number generator with a call-stack address; the visible decay
// products shower in the tau_decay example's calorimeter, which is observed with noise
// ("calorimeter").  Tags the decay-channel group ("channel") and returns it:
// 0 pi nu, 1 pi pi0(s) nu, 2 three prongs, 3 e, 4 mu, 5 other (kaons, ...).
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "calorimeter.hpp"
#include "pythia/session.hpp"

namespace {

const std::vector<std::string> kSettings = {"ProcessLevel:all = off", "Print:quiet = on", "Next:numberCount = 0"};
// Off: the decays alone (benchmarks compare capture against plain Pythia on them).
std::atomic<bool> g_calorimeter{true};

// Decays a tau of momentum p along the calorimeter's axis.
void decay(ppfast_pythia::Session& s, double p) {
  Pythia8::Event& ev = s.pythia.event;
  ev.reset();
  const double m = s.pythia.particleData.m0(15);
  ev.append(15, 1, 0, 0, 0.0, 0.0, p, std::sqrt(p * p + m * m), m);
  if (!s.pythia.next()) ppfast_fail("Pythia could not decay the tau");
}

int channel(const Pythia8::Event& ev) {
  int charged = 0, pi0 = 0, other = 0;
  for (int i = 0; i < ev.size(); ++i) {
    const int id = ev[i].idAbs();
    if (id == 11) return 3;
    if (id == 13) return 4;
    if (id == 111) ++pi0;
    if (id == 321 || id == 130 || id == 310 || id == 311) ++other;
    if (ev[i].isFinal() && id == 211) ++charged;
  }
  if (other) return 5;
  if (charged == 3) return 2;
  if (charged == 1) return pi0 ? 1 : 0;
  return 5;
}

std::vector<double> deposits(const Pythia8::Event& ev) {
  std::vector<double> grid(calorimeter::kVoxels, 0.0);
  for (int i = 0; i < ev.size(); ++i) {
    const int id = ev[i].idAbs();
    if (!ev[i].isFinal() || id == 12 || id == 14 || id == 16) continue;
    if (id == 13)  // minimum-ionizing: a track of 2 GeV through all layers
      calorimeter::track(grid, 2.0, ev[i].theta(), ev[i].phi());
    else
      calorimeter::shower(grid, ev[i].e(), ev[i].theta(), ev[i].phi(), id == 22 || id == 11);
  }
  return grid;
}

double pythia_tau() {
  auto& s = ppfast_pythia::session(kSettings);
  const double p = ppfast::sample(ppfast::Uniform(20.0, 80.0), "tau/momentum", "momentum");
  decay(s, p);
  const int group = channel(s.pythia.event);
  ppfast::tag(double(group), "channel");
  if (g_calorimeter.load(std::memory_order_relaxed))
    ppfast::observe(ppfast::Normal(deposits(s.pythia.event), std::vector<double>{calorimeter::kNoise}), "calorimeter");
  return group;
}

// Uninstrumented: the momentum from the trace's stream, then the same decay.
void plain(ppfast_pythia::Session& s) { decay(s, 20.0 + 60.0 * s.plain.flat()); }

}  // namespace

// One Pythia per thread (session.hpp): executions must not interleave on a thread.
PPFAST_MODEL_WITH_FLAGS(pythia_tau, pythia_tau, PPFAST_MODEL_ONE_EXECUTION_PER_THREAD)
PPFAST_PYTHIA_PLAIN_EXPORTS(kSettings, plain)
extern "C" __attribute__((visibility("default"))) void ppfast_pythia_tau_calorimeter(int on) { g_calorimeter = on; }
