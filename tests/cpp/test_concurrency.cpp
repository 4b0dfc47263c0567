// The concurrent paths under ThreadSanitizer (tests/test_sanitizers.py): one worker pool
// driven from two threads at once, guided executions on fibers over pinned worker
// threads, and a shared-memory host closed from another thread in the middle of a run.
// argv[1] (optional): a GUM simulator executable for the shared-memory part.  Exits
// non-zero on a failed check.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/guided.hpp"
#include "core/runner.hpp"
#include "ppfast/ppfast.hpp"
#include "transport/shm/host.hpp"

#include "check.hpp"

extern char** environ;

namespace {

void shared_pool() {
  ppfast::WorkerPool pool(3);
  ppfast::TraceBatch reference;
  ppfast::run_traces(pool, gum, 7, 0, 5000, nullptr, reference);
  auto caller = [&](bool* same) {
    *same = true;
    for (int k = 0; k < 20; ++k) {
      ppfast::TraceBatch out;
      ppfast::run_traces(pool, gum, 7, 0, 5000, nullptr, out);
      *same = *same && out.result == reference.result;
    }
  };
  bool a = false, b = false;
  std::thread t1(caller, &a), t2(caller, &b);
  t1.join();
  t2.join();
  check(a && b, "runs sharing one pool from two threads give the single-threaded traces");
}

void guided_fibers() {
  ppfast::FiberRun::Options o;
  o.slots = 16;
  o.threads = 3;
  ppfast::FiberRun run(gum, 3, 0, 2000, nullptr, o);
  while (size_t n = run.advance()) {
    std::vector<uint8_t> kinds(n, 0);  // 0: draw from the prior
    std::vector<uint32_t> zeros(n, 0);
    run.answer(kinds.data(), zeros.data(), zeros.data(), n, nullptr, 0);
  }
  check(run.take()->num_traces() == 2000, "guided fibers finish every trace");
}

void shm_close_during_run(const char* simulator) {
  using namespace ppfast::shm;
  HostOptions o;
  o.argv = {simulator};
  for (char** e = environ; *e; ++e) o.env.emplace_back(*e);
  o.env.emplace_back("PPFAST_SHM_FAULT=spin@600");  // the second process spins in trace 600
  o.workers = 2;
  o.timeout = 0;
  Host host(o);
  auto traces = [](const std::vector<Batch>& pieces) {
    uint64_t n = 0;
    for (const auto& b : pieces) n += b.totals.n[1];
    return n;
  };
  check(traces(host.run(1, 0, 400, {}, false, nullptr)) == 400, "a run before the close");
  // Many pieces per process (traces from 1000 on: no spin).
  check(traces(host.run(1, 1000, 40000, {}, false, nullptr)) == 40000, "a run of many pieces");
  std::string error;
  uint64_t kept = 0;
  std::thread runner([&] {
    try {
      host.run(1, 0, 1000, {}, false, nullptr);
    } catch (const HostError& e) {
      error = e.what();
      kept = traces(e.partial);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  host.close();
  runner.join();
  check(error.find("closed") != std::string::npos, "close() from another thread stops the run");
  check(kept >= 500, "the first process's slice comes back with the error");
  for (int pid : host.pids()) check(pid <= 0, "no process left after close()");
}

}  // namespace

int main(int argc, char** argv) {
  shared_pool();
  guided_fibers();
  if (argc > 1) shm_close_during_run(argv[1]);
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
