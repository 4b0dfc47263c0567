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

namespace {

constexpr int kDepth = 20, kSize = 35, kVoxels = kDepth * kSize * kSize;
constexpr double kNoise = 0.05;
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

void shower(std::vector<double>& grid, double energy, double theta, double phi, bool em) {
  // Impact point: 12 voxels per radian of polar angle from the centre.
  const double cx = 17 + 12 * theta * std::cos(phi), cy = 17 + 12 * theta * std::sin(phi);
  const double width = em ? 1.2 : 2.0, peak = em ? 4.0 : 9.0, spread = em ? 2.5 : 4.5;
  double gx[kSize], gy[kSize], fz[kDepth];
  double sx = 0, sy = 0, sz = 0;
  for (int i = 0; i < kSize; ++i) {
    gx[i] = std::exp(-0.5 * std::pow((i - cx) / width, 2));
    gy[i] = std::exp(-0.5 * std::pow((i - cy) / width, 2));
    sx += gx[i];
    sy += gy[i];
  }
  for (int z = 0; z < kDepth; ++z) sz += (fz[z] = std::exp(-0.5 * std::pow((z - peak) / spread, 2)));
  const double norm = (sx > 0 && sy > 0 && sz > 0) ? energy / (sx * sy * sz) : 0.0;
  for (int z = 0; z < kDepth; ++z)
    for (int y = 0; y < kSize; ++y) {
      const double a = norm * fz[z] * gy[y];
      double* row = &grid[(z * kSize + y) * kSize];
      for (int x = 0; x < kSize; ++x) row[x] += a * gx[x];
    }
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
