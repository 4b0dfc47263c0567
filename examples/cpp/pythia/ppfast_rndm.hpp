// The only glue between Pythia 8 and ppfast: Pythia's own random-number hook.
//
//   ppfast_pythia::Engine engine;
//   pythia.setRndmEnginePtr(&engine);
//
// Every flat() Pythia asks for becomes a controlled Uniform(0, 1) draw captured at the
// generator, addressed by Pythia's call stack; Pythia's sources are not touched.
#pragma once

#include <Pythia8/Basics.h>
#include <ppfast/ppfast.hpp>

namespace ppfast_pythia {

class Engine : public Pythia8::RndmEngine {
 public:
  /// Addresses: `depth` Pythia functions above Pythia8::Rndm::flat() (skipping this
  /// engine's flat() and Rndm::flat() themselves).
  explicit Engine(uint32_t depth = 8) { ppfast::stack_options(depth, 2); }
  double flat() override { return ppfast::uniform(); }
};

}  // namespace ppfast_pythia
