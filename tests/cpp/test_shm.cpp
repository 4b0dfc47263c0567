// The shared-memory host and a simulator process, both built with sanitizers by
// tests/test_shm.py: runs, observations, a crash mid-run, a block that outlives its
// batch and its host.  argv[1]: the simulator executable (GUM).  Exits non-zero on a
// failed check.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/address_table.hpp"
#include "transport/shm/host.hpp"

#include "check.hpp"

extern char** environ;

namespace {

using namespace ppfast::shm;

template <class T>
const T* col(const Batch& b, int c) {
  return reinterpret_cast<const T*>(b.column(c));
}

HostOptions options(const char* exe, const char* fault) {
  HostOptions o;
  o.argv = {exe};
  for (char** e = environ; *e; ++e) o.env.emplace_back(*e);
  if (fault) o.env.emplace_back(std::string("PPFAST_SHM_FAULT=") + fault);
  o.workers = 2;
  o.timeout = 20;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SIMULATOR\n", argv[0]);
    return 2;
  }
  auto& table = ppfast::AddressTable::global();
  table.intern("unrelated/host/address");  // host ids differ from the simulator's
  std::vector<double> kept;
  std::shared_ptr<Block> block;
  const double* view = nullptr;
  {
    Host host(options(argv[1], nullptr));
    check(host.model_name() == "gum", "model name");
    Batch b = host.run(1, 10, 1000, {}, false, nullptr);
    check(b.totals.n[1] == 1000 && b.totals.n[0] == 3000, "counts");
    const auto* index = col<uint64_t>(b, kTrIndex);
    const auto* begin = col<uint64_t>(b, kTrBegin);
    bool ordered = true;
    for (int i = 0; i < 1000; ++i) ordered = ordered && index[i] == uint64_t(10 + i) && begin[i] == uint64_t(3 * i);
    check(ordered, "traces in index order, records contiguous");
    check(table.name(col<uint32_t>(b, kRecAddress)[0]) == "mu", "host address ids");
    check(table.name(col<uint32_t>(b, kRecAddress)[2]) == "obs1", "host address ids (observe)");

    // A block outlives its batch, later runs and the host.
    block = b.block;
    view = col<double>(b, kRecValue);
    kept.assign(view, view + 3000);
    b = Batch();
    for (int i = 0; i < 3; ++i) host.run(2, 0, 1000, {}, false, nullptr);

    Batch p = host.run(3, 0, 600, {{"obs0", {8.0}}, {"obs1", {9.0}}}, true, nullptr);
    const auto* status = col<uint8_t>(p, kTrStatus);
    bool ok = true;
    for (int i = 0; i < 600; ++i) ok = ok && status[i] == 0;
    check(ok, "posterior run");
    Batch q = host.run(3, 0, 10, {{"obs0", {8.0}}}, true, nullptr);
    check(q.messages.size() == 10 && q.messages[0].find("has no value") != std::string::npos, "missing observation");
    host.close();
  }
  check(std::memcmp(view, kept.data(), kept.size() * sizeof(double)) == 0, "view after its batch and host");

  {
    Host host(options(argv[1], "kill@57"));
    const std::vector<int> before = host.pids();
    Batch c = host.run(4, 0, 1000, {}, false, nullptr);
    check(c.lost.size() == 1 && c.lost[0] == 57, "one lost trace");
    check(col<uint8_t>(c, kTrStatus)[57] == 1 && col<uint64_t>(c, kTrIndex)[57] == 57, "lost trace failed");
    check(c.messages.size() == 1 && c.messages[0] == "simulator process " + std::to_string(before[0]) +
                                                       " died with signal 9 (Killed) during trace 57",
          "crash message");
    check(host.restarts() == 1 && host.pids()[0] != before[0], "restarted");
  }
  block.reset();
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
