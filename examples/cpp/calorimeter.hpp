// The calorimeter of the tau-decay examples (tau_decay.cpp, pythia_tau.cpp): 20 x 35 x 35
// voxels (depth x height x width).  Every particle showers with a Gaussian transverse
// profile around its impact point and a longitudinal profile that peaks early for
// electromagnetic and late for hadronic particles; a muon leaves a track instead; the grid
// plus noise is observed.
#pragma once

#include <cmath>
#include <vector>

namespace calorimeter {

constexpr int kDepth = 20, kSize = 35, kVoxels = kDepth * kSize * kSize;
constexpr double kNoise = 0.05;

inline void shower(std::vector<double>& grid, double energy, double theta, double phi, bool em) {
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

// A minimum-ionizing particle (a muon) does not shower: it crosses every layer, leaving
// the same small deposit in each, narrowly around its impact point.
inline void track(std::vector<double>& grid, double energy, double theta, double phi) {
  const double cx = 17 + 12 * theta * std::cos(phi), cy = 17 + 12 * theta * std::sin(phi);
  constexpr double width = 0.5;
  double gx[kSize], gy[kSize];
  double sx = 0, sy = 0;
  for (int i = 0; i < kSize; ++i) {
    sx += (gx[i] = std::exp(-0.5 * std::pow((i - cx) / width, 2)));
    sy += (gy[i] = std::exp(-0.5 * std::pow((i - cy) / width, 2)));
  }
  if (sx <= 0 || sy <= 0) return;
  const double norm = energy / (kDepth * sx * sy);
  for (int z = 0; z < kDepth; ++z)
    for (int y = 0; y < kSize; ++y) {
      double* row = &grid[(z * kSize + y) * kSize];
      for (int x = 0; x < kSize; ++x) row[x] += norm * gy[y] * gx[x];
    }
}

}  // namespace calorimeter
