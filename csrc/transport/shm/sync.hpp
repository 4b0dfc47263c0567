// Wake-ups across processes: futexes on shared memory, after a short bounded spin.
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>

#include "transport/shm/protocol.hpp"

namespace ppfast::shm {

/// Sleeps while `*word == expected`, at most `timeout_ns` (shared, not private: the word
/// lives in memory mapped by several processes).
inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1000000000), static_cast<long>(timeout_ns % 1000000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

inline void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

/// Rings `bell` after publishing a message: a system call only if the other side sleeps.
inline void ring(Bell& bell) {
  bell.word.fetch_add(1, std::memory_order_seq_cst);
  if (bell.sleeping.load(std::memory_order_seq_cst)) futex_wake(&bell.word);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Waits until `ready()` holds: spins for `spin_ns` (the answer often comes within
/// microseconds, and a futex wake-up costs tens of them), then sleeps on `bell` for at
/// most `sleep_ns`.  Returns whether ready() held; false means the caller should do its
/// periodic checks and call again.  Never spins longer than spin_ns.
template <class Ready>
bool wait_on(Bell& bell, Ready&& ready, int64_t spin_ns, int64_t sleep_ns) {
  if (ready()) return true;
  const int64_t spin_until = now_ns() + spin_ns;
  do {
    for (int i = 0; i < 64; ++i) cpu_relax();
    if (ready()) return true;
    sched_yield();  // two cores, three busy parties: let the one we wait for run
  } while (now_ns() < spin_until);
  const uint32_t seen = bell.word.load(std::memory_order_seq_cst);
  bell.sleeping.store(1, std::memory_order_seq_cst);
  bool ok = ready();
  if (!ok) {
    futex_wait(&bell.word, seen, sleep_ns);
    ok = ready();
  }
  bell.sleeping.store(0, std::memory_order_relaxed);
  return ok;
}

}  // namespace ppfast::shm
