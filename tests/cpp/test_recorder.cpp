// Recorder, trace batches, batch pool and worker threads, built with sanitizers by
// tests/test_sanitizers.py.  Exits non-zero on a failed check.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/recorder.hpp"
#include "core/runner.hpp"
#include "ppfast/ppfast.hpp"

#include "check.hpp"

namespace {

double rejection() {
  double u;
  do u = ppfast::sample(ppfast::Uniform(0.0, 1.0), "u", nullptr, true, true);
  while (u > 0.3);
  std::vector<double> v = ppfast::sample_tensor(ppfast::Normal(ppfast::Vec{0, 1, 2}, ppfast::Vec{1}), "v");
  ppfast::tag(v, "v_tag");
  return u;
}

// One ulp wide: low + 2u rounds up to high, outside [low, high), for half the draws.
double one_ulp_uniform() { return ppfast::sample(ppfast::Uniform(1e16, 1e16 + 2.0), "w"); }

// Draws captured at the generator, from two callers alike in frame size, under a model
// entry frame (what PPFAST_MODEL registers): the frames of each walk are remembered and
// checked at later draws, and the records are buffered across blocks of 256.
__attribute__((noinline)) double leaf() { return ppfast::uniform(); }
__attribute__((noinline)) double middle() { return leaf() * 1.0; }
__attribute__((noinline, noclone)) double outer_a() { return middle() + 1; }
__attribute__((noinline, noclone)) double outer_b() { return middle() + 2; }
constexpr int kCapturedDraws = 300;
double captured() {
  ppfast::detail::ModelEntry entry(__builtin_frame_address(0));
  double s = 0;
  for (int i = 0; i < kCapturedDraws; ++i) s += i % 3 == 1 ? outer_b() : outer_a();
  return s;
}

double invalid() {
  ppfast::sample(ppfast::Normal(0.0, -1.0), "bad");
  return 1.0;  // not reached: the C++ API throws TraceAborted
}

}  // namespace

int main() {
  using namespace ppfast;
  WorkerPool pool(2);
  Observations obs;
  obs.required = true;
  obs.set(ppfast_intern("obs0"), {8.0});
  obs.set(ppfast_intern("obs1"), {9.0});

  // Importance sampling on two threads: weighted mean near 7.25.
  TraceBatch out;
  run_traces(pool, gum, 42, 0, 200000, &obs, out);
  check(out.num_traces() == 200000, "trace count");
  check(out.num_records() == 600000, "record count");
  double m = *std::max_element(out.log_weight.begin(), out.log_weight.end()), sw = 0, swx = 0;
  for (size_t i = 0; i < out.num_traces(); ++i) {
    double w = std::exp(out.log_weight[i] - m);
    sw += w;
    swx += w * out.result[i];
  }
  check(std::fabs(swx / sw - 7.25) < 0.1, "GUM posterior mean");

  // Pool: a batch handed out, released, and reused must keep data of live holders.
  std::shared_ptr<TraceBatch> held = BatchPool::global().acquire();
  run_traces(pool, rejection, 1, 0, 5000, nullptr, *held);
  std::vector<double> copy = held->rec_value;
  for (int i = 0; i < 10; ++i) {
    auto other = BatchPool::global().acquire();
    run_traces(pool, rejection, 7 + i, 0, 5000, nullptr, *other);
  }
  check(copy == held->rec_value, "held batch unchanged while the pool recycles others");
  size_t kept = 0;
  for (size_t r = 0; r < held->num_records(); ++r)
    if (held->rec_kind[r] == uint8_t(RecordKind::Sample) && held->rec_address[r] == ppfast_intern("u") &&
        !(held->rec_flags[r] & kDiscarded))
      ++kept;
  check(kept == 5000, "one kept draw per rejection loop");

  // Generator capture on two threads: one address per caller, in every trace.
  TraceBatch cap;
  run_traces(pool, captured, 9, 0, 200, nullptr, cap);
  check(cap.num_traces() == 200 && cap.num_records() == 200 * kCapturedDraws, "captured record count");
  bool callers = cap.rec_address[0] != cap.rec_address[1];
  for (size_t r = 0; r < cap.num_records(); ++r)
    callers = callers && cap.rec_address[r] == cap.rec_address[(r - cap.trace_begin[cap.rec_trace[r]]) % 3 == 1 ? 1 : 0];
  check(callers, "captured draws addressed by their caller");

  // Invalid parameters: the trace fails with a message, the run goes on.
  TraceBatch bad;
  run_traces(pool, invalid, 3, 0, 100, nullptr, bad);
  check(bad.num_traces() == 100, "failed traces still recorded");
  check(bad.status[0] == uint8_t(TraceStatus::Error), "status error");
  check(bad.messages.size() == 100 && bad.messages[0].find("stddev") != std::string::npos, "error message");

  // The recorder's fused Uniform keeps draws inside [low, high).
  TraceBatch narrow;
  run_traces(pool, one_ulp_uniform, 5, 0, 1000, nullptr, narrow);
  bool inside = narrow.num_traces() == 1000;
  for (size_t r = 0; r < narrow.num_records(); ++r)
    inside = inside && narrow.rec_value[r] < 1e16 + 2.0 && std::isfinite(narrow.rec_log_prob[r]);
  check(inside, "Uniform(1e16, 1e16 + 2) draws below high");

  // Outside a run: standalone prior draws.
  double x = ppfast::sample(ppfast::Uniform(2.0, 3.0), "standalone");
  check(x >= 2.0 && x <= 3.0, "standalone draw");

  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
