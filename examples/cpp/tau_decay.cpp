// A small tau-decay-like particle simulator: the realistic workload of the examples.
//
// A decay channel is drawn from a Categorical; each channel has its own visible
// particles, whose energy fractions and angles are drawn at channel-specific addresses
// (so trace types differ by channel).  The tau energy comes from a rejection loop
// (replace = true).  Every particle showers in a calorimeter of 20 x 35 x 35 voxels
// (depth x height x width): a Gaussian transverse profile around its impact point and a
// longitudinal profile that peaks early for electromagnetic and late for hadronic
// particles.  The voxel grid plus noise is observed as one tensor named "calorimeter".
#include <cmath>
#include <string>
#include <vector>

#include <ppfast/ppfast.hpp>

#include "calorimeter.hpp"

namespace {

using calorimeter::kNoise;
using calorimeter::kVoxels;
using calorimeter::shower;
constexpr double kPi = 3.14159265358979323846;

struct Channel {
  const char* name;
  int particles;
  bool electromagnetic[3];
};

// pi nu, rho nu (pi pi0), a1 nu (3 pi), e nu nu, mu nu nu, K nu
const Channel kChannels[] = {
    {"pi", 1, {false}},  {"rho", 2, {false, true}}, {"a1", 3, {false, false, false}},
    {"e", 1, {true}},    {"mu", 1, {false}},        {"K", 1, {false}},
};
const std::vector<double> kChannelProbs = {0.25, 0.25, 0.2, 0.12, 0.12, 0.06};

// Addresses per channel and particle, built once: string literals' addresses key the
// recorder's address cache, so they must be stable.
struct Addresses {
  std::string fraction[6][3], theta[6][3], phi[6][3];
  Addresses() {
    for (int c = 0; c < 6; ++c)
      for (int p = 0; p < 3; ++p) {
        std::string base = std::string("decay/") + kChannels[c].name + "/particle" + std::to_string(p);
        fraction[c][p] = base + "/fraction";
        theta[c][p] = base + "/theta";
        phi[c][p] = base + "/phi";
      }
  }
};
const Addresses& addresses() {
  static const Addresses a;
  return a;
}

double tau_decay() {
  const auto& addr = addresses();
  // Tau energy in GeV: a rejection loop keeps the first draw inside the acceptance.
  double energy;
  do {
    energy = ppfast::sample(ppfast::Normal(40.0, 15.0), "tau/energy", "energy", true, true);
  } while (energy < 20.0 || energy > 80.0);

  const int channel = static_cast<int>(ppfast::sample(ppfast::Categorical(kChannelProbs), "decay/channel", "channel"));
  const Channel& ch = kChannels[channel];

  std::vector<double> grid(kVoxels, 0.0);
  double remaining = 0.9;  // the neutrinos take the rest
  for (int p = 0; p < ch.particles; ++p) {
    double fraction = remaining;
    if (p + 1 < ch.particles)
      fraction = remaining * ppfast::sample(ppfast::Beta(2.0, 2.0), addr.fraction[channel][p].c_str());
    remaining -= fraction;
    const double theta = ppfast::sample(ppfast::Normal(0.0, 0.25), addr.theta[channel][p].c_str());
    const double phi = ppfast::sample(ppfast::Uniform(-kPi, kPi), addr.phi[channel][p].c_str());
    // Muons are minimum-ionizing: a small deposit.
    const double deposit = ch.name[0] == 'm' ? 2.0 : energy * fraction;
    shower(grid, deposit, theta, phi, ch.electromagnetic[p]);
  }
  ppfast::observe(ppfast::Normal(grid, std::vector<double>{kNoise}), "calorimeter");
  return channel;
}

}  // namespace

PPFAST_MODEL(tau_decay, tau_decay)
