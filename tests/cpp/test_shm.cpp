// The shared-memory host and a simulator process, both built with sanitizers by
// tests/test_shm.py: runs, observations, a crash mid-run, a block that outlives its
// batch and its host, Metropolis-Hastings chains and a guided run.  argv[1]: the
// simulator executable (GUM).  Exits non-zero on a failed check.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/address_table.hpp"
#include "core/distributions.hpp"
#include "core/trace_batch.hpp"
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
  {
    // Metropolis-Hastings chains (from a start trace) and a guided run.
    Host host(options(argv[1], nullptr));
    const std::vector<Observation> obs = {{"obs0", {8.0}}, {"obs1", {9.0}}};
    ppfast::TraceBatch start;  // one trace: mu = 7, with the host's address id
    start.rec_trace = {0};
    start.rec_address = {table.intern("mu")};
    start.rec_instance = {0};
    start.rec_name = {0};
    start.rec_kind = {uint8_t(ppfast::RecordKind::Sample)};
    start.rec_flags = {ppfast::kControl};
    start.rec_dist = {uint8_t(ppfast::DistKind::Normal)};
    start.rec_value = {7.0};
    start.rec_log_prob = {-2.0};
    start.rec_value_offset = {0};
    start.rec_value_len = {1};
    start.rec_param_offset = {0};
    start.rec_param_len = {2};
    start.param_arena = {1.0, std::sqrt(5.0)};
    start.trace_index = {0};
    start.trace_begin = {0};
    start.trace_end = {1};
    start.log_prior = start.log_likelihood = start.log_weight = start.result = {0.0};
    start.trace_type = {0};
    start.status = {0};
    start.message = {0};
    ChainOptions o;
    o.kernel = 1;
    o.target_steps = {200, 150, 100};
    o.start = &start;
    ChainRun r = host.run_chains(7, o, obs, nullptr);
    check(r.stats.size() == 3 && r.batch.totals.n[1] == 450 && r.stats[2].steps == 100 && r.stats[1].kept == 150 &&
              r.stats[0].accepted > 0,
          "chains");
    check(table.name(col<uint32_t>(r.batch, kRecAddress)[0]) == "mu", "chain states with host address ids");

    auto g = host.guided(8, 0, 50, obs, true, 7, 1 << 20, nullptr);
    size_t rounds = 0;
    while (const size_t n = g->advance(nullptr)) {
      ++rounds;
      check(table.name(g->requests().address[0]) == "mu" && g->requests().first[0] == 1, "proposal request");
      std::vector<uint8_t> kinds(n, uint8_t(ppfast::DistKind::Normal));
      std::vector<uint32_t> offsets(n), lens(n, 2);
      std::vector<double> params;
      for (size_t i = 0; i < n; ++i) {
        offsets[i] = uint32_t(2 * i);
        params.insert(params.end(), {7.0, 1.0});
      }
      g->answer(kinds.data(), offsets.data(), lens.data(), n, params.data(), params.size());
    }
    Batch gb = g->take(nullptr);
    const auto* flags = col<uint8_t>(gb, kRecFlags);
    check(rounds >= 7 && gb.totals.n[1] == 50 && (flags[0] & ppfast::kProposed), "guided run");
  }
  block.reset();
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
