// The ZeroMQ functions the PPX client calls, as a table of pointers.
//
// ppfast._core does not link libzmq, so that `import ppfast` and every non-PPX model work
// on a machine where libzmq is missing or broken.  Its ZeroMQ calls (cppzmq's, and the
// client's own) land on forwarding definitions in zmq_table.cpp; the small extension
// ppfast._zmq, which does link libzmq, hands over the real functions on the first PPX use
// (ppfast.models.remote.load_zmq).  Until then no ZeroMQ context can be created.
#pragma once

#include <cstddef>

struct zmq_msg_t;  // defined by <zmq.h>; only pointers here

namespace ppfast::ppx {

inline constexpr unsigned kZmqTableVersion = 1;

struct ZmqTable {
  unsigned version;  ///< kZmqTableVersion of the code that filled it
  void* (*ctx_new)();
  int (*ctx_set)(void*, int, int);
  int (*ctx_term)(void*);
  void* (*socket)(void*, int);
  int (*close)(void*);
  int (*connect)(void*, const char*);
  int (*setsockopt)(void*, int, const void*, size_t);
  int (*send)(void*, const void*, size_t, int);
  int (*socket_monitor)(void*, const char*, int);
  int (*msg_init)(zmq_msg_t*);
  int (*msg_close)(zmq_msg_t*);
  void* (*msg_data)(zmq_msg_t*);
  size_t (*msg_size)(const zmq_msg_t*);
  int (*msg_more)(const zmq_msg_t*);
  int (*msg_recv)(zmq_msg_t*, void*, int);
  int (*errno_)();
  const char* (*strerror)(int);
};

/// Routes this binary's ZeroMQ calls to `table` (from ppfast._zmq). Throws
/// std::invalid_argument when the table comes from another version of ppfast.
void bind_zmq(const ZmqTable* table);
/// True once bind_zmq has been called.
bool zmq_bound() noexcept;

}  // namespace ppfast::ppx
