// Forwarding definitions of the ZeroMQ functions the PPX client uses (see zmq_table.hpp).
// Hidden, so they serve this binary only and never interpose on a real libzmq.
#include "zmq_table.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ppfast::ppx {
namespace {
std::atomic<const ZmqTable*> g_table{nullptr};
const ZmqTable& table() { return *g_table.load(std::memory_order_acquire); }
}  // namespace

void bind_zmq(const ZmqTable* t) {
  if (!t || t->version != kZmqTableVersion)
    throw std::invalid_argument("ZeroMQ table of version " + std::to_string(t ? t->version : 0) + ", expected " +
                                std::to_string(kZmqTableVersion) + " (ppfast._zmq and ppfast._core come from "
                                "different builds: reinstall ppfast)");
  g_table.store(t, std::memory_order_release);
}

bool zmq_bound() noexcept { return g_table.load(std::memory_order_acquire) != nullptr; }

}  // namespace ppfast::ppx

using ppfast::ppx::table;

#define PPFAST_ZMQ_FORWARD extern "C" __attribute__((visibility("hidden")))

// Every other call needs a context first, so this is the one place an unbound table shows.
PPFAST_ZMQ_FORWARD void* zmq_ctx_new() {
  if (!ppfast::ppx::zmq_bound()) {
    errno = ENOTSUP;
    return nullptr;
  }
  return table().ctx_new();
}
PPFAST_ZMQ_FORWARD int zmq_ctx_set(void* c, int option, int value) { return table().ctx_set(c, option, value); }
PPFAST_ZMQ_FORWARD int zmq_ctx_term(void* c) { return table().ctx_term(c); }
PPFAST_ZMQ_FORWARD void* zmq_socket(void* c, int type) { return table().socket(c, type); }
PPFAST_ZMQ_FORWARD int zmq_close(void* s) { return table().close(s); }
PPFAST_ZMQ_FORWARD int zmq_connect(void* s, const char* address) { return table().connect(s, address); }
PPFAST_ZMQ_FORWARD int zmq_setsockopt(void* s, int option, const void* value, size_t size) {
  return table().setsockopt(s, option, value, size);
}
PPFAST_ZMQ_FORWARD int zmq_send(void* s, const void* data, size_t size, int flags) {
  return table().send(s, data, size, flags);
}
PPFAST_ZMQ_FORWARD int zmq_socket_monitor(void* s, const char* address, int events) {
  return table().socket_monitor(s, address, events);
}
PPFAST_ZMQ_FORWARD int zmq_msg_init(zmq_msg_t* m) { return table().msg_init(m); }
PPFAST_ZMQ_FORWARD int zmq_msg_close(zmq_msg_t* m) { return table().msg_close(m); }
PPFAST_ZMQ_FORWARD void* zmq_msg_data(zmq_msg_t* m) { return table().msg_data(m); }
PPFAST_ZMQ_FORWARD size_t zmq_msg_size(const zmq_msg_t* m) { return table().msg_size(m); }
PPFAST_ZMQ_FORWARD int zmq_msg_more(const zmq_msg_t* m) { return table().msg_more(m); }
PPFAST_ZMQ_FORWARD int zmq_msg_recv(zmq_msg_t* m, void* s, int flags) { return table().msg_recv(m, s, flags); }
PPFAST_ZMQ_FORWARD int zmq_errno() { return ppfast::ppx::zmq_bound() ? table().errno_() : errno; }
PPFAST_ZMQ_FORWARD const char* zmq_strerror(int e) {
  return ppfast::ppx::zmq_bound() ? table().strerror(e) : std::strerror(e);
}
