// Shared by the Pythia examples: one initialized Pythia per thread, the captured engine
// (the glue) and an uninstrumented engine on ppfast's RNG streams for comparisons.
#pragma once

#include <Pythia8/Pythia.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "ppfast_rndm.hpp"

namespace ppfast_pythia {

/// Uninstrumented: the trace's own stream of ppfast's generator (seed, trace index), so
/// it hands out the same numbers a recorded trace draws from its prior; or, for replays,
/// given values in order.
class PlainEngine : public Pythia8::RndmEngine {
 public:
  double flat() override {
    const uint64_t i = calls++;
    if (!values) return rng.uniform();
    return i < count ? values[i] : 0.5;  // past the end: the replay has failed anyway
  }
  ppfast::Rng rng;
  const double* values = nullptr;
  uint64_t count = 0, calls = 0;
};

struct Session {
  Pythia8::Pythia pythia{PPFAST_PYTHIA_XMLDIR, false};
  Engine captured;
  PlainEngine plain;

  explicit Session(const std::vector<std::string>& settings) {
    for (const auto& s : settings) pythia.readString(s);
    // Initialization's draws are not part of any trace: a fixed stream, so every thread
    // and process starts from the same state.
    plain.rng.seed(0, 0);
    pythia.setRndmEnginePtr(&plain);
    pythia.init();
    pythia.setRndmEnginePtr(&captured);
  }

  /// The whole particle list: id, status, px, py, pz, e per entry.
  std::vector<double> particles() const {
    std::vector<double> out;
    const Pythia8::Event& ev = pythia.event;
    out.reserve(6 * size_t(ev.size()));
    for (int i = 0; i < ev.size(); ++i)
      out.insert(out.end(), {double(ev[i].id()), double(ev[i].status()), ev[i].px(), ev[i].py(), ev[i].pz(), ev[i].e()});
    return out;
  }
};

/// This thread's session (Pythia is initialized once per thread).
inline Session& session(const std::vector<std::string>& settings) {
  thread_local std::unique_ptr<Session> s;
  if (!s) s = std::make_unique<Session>(settings);
  return *s;
}

/// Runs `event` uninstrumented on the stream (seed, trace), or on `values` when given;
/// returns the flat() calls and the particle list.  Exported for tests and benchmarks.
template <class Event>
uint64_t plain_event(Session& s, uint64_t seed, uint64_t trace, Event&& event, std::vector<double>* particles,
                     const double* values = nullptr, uint64_t count = 0) {
  s.plain.rng.seed(seed, trace);
  s.plain.values = values;
  s.plain.count = count;
  s.plain.calls = 0;
  s.pythia.setRndmEnginePtr(&s.plain);
  event(s);
  s.pythia.setRndmEnginePtr(&s.captured);
  if (particles) *particles = s.particles();
  return s.plain.calls;
}

}  // namespace ppfast_pythia

// C entry points of a Pythia example for tests and benchmarks (uninstrumented runs).
#define PPFAST_PYTHIA_PLAIN_EXPORTS(settings, event)                                              \
  extern "C" __attribute__((visibility("default"))) uint64_t ppfast_pythia_plain_event(           \
      uint64_t seed, uint64_t trace, double* particles, uint64_t capacity, uint64_t* length) {     \
    std::vector<double> list;                                                                     \
    uint64_t calls = ppfast_pythia::plain_event(ppfast_pythia::session(settings), seed, trace, event, &list); \
    *length = list.size();                                                                        \
    for (uint64_t i = 0; i < list.size() && i < capacity; ++i) particles[i] = list[i];            \
    return calls;                                                                                 \
  }                                                                                               \
  extern "C" __attribute__((visibility("default"))) uint64_t ppfast_pythia_replay_event(           \
      const double* values, uint64_t count, double* particles, uint64_t capacity, uint64_t* length) { \
    std::vector<double> list;                                                                     \
    uint64_t calls = ppfast_pythia::plain_event(ppfast_pythia::session(settings), 0, 0, event, &list, values, count); \
    *length = list.size();                                                                        \
    for (uint64_t i = 0; i < list.size() && i < capacity; ++i) particles[i] = list[i];            \
    return calls;                                                                                 \
  }                                                                                               \
  extern "C" __attribute__((visibility("default"))) uint64_t ppfast_pythia_plain_events(          \
      uint64_t seed, uint64_t first, uint64_t n) {                                                \
    uint64_t calls = 0;                                                                           \
    auto& s = ppfast_pythia::session(settings);                                                   \
    for (uint64_t t = first; t < first + n; ++t) calls += ppfast_pythia::plain_event(s, seed, t, event, nullptr); \
    return calls;                                                                                 \
  }
