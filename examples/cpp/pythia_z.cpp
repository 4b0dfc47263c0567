// e+e- -> Z -> hadrons at 91.2 GeV with Pythia 8.244, unchanged: every draw Pythia makes is
// captured at its random-number generator (pythia/ppfast_rndm.hpp) with a call-stack
// address.  The throughput workload of the Pythia examples.  Tags the whole particle
// list ("particles": id, status, px, py, pz, e per entry); returns the particle count.
#include <string>
#include <vector>

#include "pythia/session.hpp"

namespace {

const std::vector<std::string> kSettings = {
    "Beams:idA = 11", "Beams:idB = -11", "Beams:eCM = 91.2",
    "PDF:lepton = off",  // fixed collision energy: no beam photon radiation
    "WeakSingleBoson:ffbar2gmZ = on", "WeakZ0:gmZmode = 2", "23:onMode = off", "23:onIfAny = 1 2 3 4 5",
    "Print:quiet = on", "Next:numberCount = 0"};

void generate(ppfast_pythia::Session& s) {
  if (!s.pythia.next()) ppfast_fail("Pythia could not generate the event");
}

double pythia_z() {
  auto& s = ppfast_pythia::session(kSettings);
  generate(s);
  ppfast::tag(s.particles(), "particles");
  return s.pythia.event.size();
}

}  // namespace

// One Pythia per thread (session.hpp): executions must not interleave on a thread.
PPFAST_MODEL_WITH_FLAGS(pythia_z, pythia_z, PPFAST_MODEL_ONE_EXECUTION_PER_THREAD)
PPFAST_PYTHIA_PLAIN_EXPORTS(kSettings, generate)
