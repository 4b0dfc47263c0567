// The shared-memory host and a simulator process, both built with sanitizers by
// tests/test_shm.py: runs, observations, a crash mid-run, a block that outlives its
// batch and its host, Metropolis-Hastings chains and a guided run.  argv[1]: the
// simulator executable (GUM).  Exits non-zero on a failed check.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
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

/// A run's pieces: the number of traces, and the piece and position of trace `i`.
uint64_t traces(const std::vector<Batch>& pieces) {
  uint64_t n = 0;
  for (const auto& b : pieces) n += b.totals.n[1];
  return n;
}

std::pair<const Batch*, uint64_t> locate(const std::vector<Batch>& pieces, uint64_t i) {
  for (const auto& b : pieces) {
    if (i < b.totals.n[1]) return {&b, i};
    i -= b.totals.n[1];
  }
  return {nullptr, 0};
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
    std::vector<Batch> b = host.run(1, 10, 1000, {}, false, nullptr);
    check(traces(b) == 1000 && b.size() > 1, "counts, in pieces");
    bool ordered = true;
    uint64_t next = 10, records = 0;
    for (const auto& piece : b) {
      // Each piece's indices are its own: its records start at 0.
      const auto* index = col<uint64_t>(piece, kTrIndex);
      const auto* begin = col<uint64_t>(piece, kTrBegin);
      for (uint64_t i = 0; i < piece.totals.n[1]; ++i) ordered = ordered && index[i] == next++ && begin[i] == 3 * i;
      ordered = ordered && piece.totals.n[0] == 3 * piece.totals.n[1];
      records += piece.totals.n[0];
    }
    check(ordered && records == 3000, "traces in index order, records contiguous");
    check(table.name(col<uint32_t>(b[0], kRecAddress)[0]) == "mu", "host address ids");
    check(table.name(col<uint32_t>(b[0], kRecAddress)[2]) == "obs1", "host address ids (observe)");

    // A block outlives its batch, later runs and the host.
    block = b[0].block;
    view = col<double>(b[0], kRecValue);
    kept.assign(view, view + b[0].totals.n[0]);
    b.clear();
    for (int i = 0; i < 3; ++i) host.run(2, 0, 1000, {}, false, nullptr);

    std::vector<Batch> p = host.run(3, 0, 600, {{"obs0", {8.0}}, {"obs1", {9.0}}}, true, nullptr);
    bool ok = traces(p) == 600;
    for (const auto& piece : p)
      for (uint64_t i = 0; i < piece.totals.n[1]; ++i) ok = ok && col<uint8_t>(piece, kTrStatus)[i] == 0;
    check(ok, "posterior run");
    std::vector<Batch> q = host.run(3, 0, 10, {{"obs0", {8.0}}}, true, nullptr);
    std::vector<std::string> messages;
    for (const auto& piece : q) {
      const auto* message = col<uint32_t>(piece, kTrMessage);
      for (uint64_t i = 0; i < piece.totals.n[1]; ++i)
        ok = ok && piece.messages.at(message[i]).find("has no value") != std::string::npos;
      messages.insert(messages.end(), piece.messages.begin(), piece.messages.end());
    }
    check(ok && messages.size() == 10, "missing observation, message ids per piece");
    host.close();
  }
  check(std::memcmp(view, kept.data(), kept.size() * sizeof(double)) == 0, "view after its batch and host");

  {
    Host host(options(argv[1], "kill@57"));
    const std::vector<int> before = host.pids();
    std::vector<Batch> c = host.run(4, 0, 1000, {}, false, nullptr);
    const auto [at, i] = locate(c, 57);
    uint64_t lost = 0, messages = 0;
    for (const auto& piece : c) lost += piece.lost.size(), messages += piece.messages.size();
    check(at && lost == 1 && at->lost.size() == 1 && at->lost[0] == i, "one lost trace");
    check(col<uint8_t>(*at, kTrStatus)[i] == 1 && col<uint64_t>(*at, kTrIndex)[i] == 57, "lost trace failed");
    check(messages == 1 && at->messages[col<uint32_t>(*at, kTrMessage)[i]] ==
                               "simulator process " + std::to_string(before[0]) +
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
