// Serving a ppfast simulator over PPX, so that PPX engines (PyProb 1.5.0's RemoteModel,
// ppfast.RemoteModel) drive it.  Installed with the package as <ppfast/ppx_server.hpp>;
// link ppfast::ppx_server.
//
//   #include <ppfast/ppfast.hpp>
//   #include <ppfast/ppx_server.hpp>
//   static double gum() { ... }
//   PPFAST_MODEL(gum, gum)
//   int main() { return ppfast::serve_ppx("tcp://*:5555"); }
//
// The server binds a ZeroMQ REP socket and, for each Run, executes the model with the
// C ABI bound to the connection: every sample / observe / tag of the simulator becomes a
// Sample / Observe / Tag reply, and the engine's answer (SampleResult, ...) is the value
// the simulator gets.  Bad requests are answered with Reset and logged to stderr; the
// process never exits because of what a peer sent.
//
// No ZeroMQ or FlatBuffers types here: a simulator includes this header alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ppfast/ppfast.h"

namespace ppfast {

struct PpxServeOptions {
  /// HandshakeResult.model_name; empty: the model's own name.
  std::string model_name;
  /// Return after this long without any request, in ms (-1: never).
  int idle_timeout_ms = -1;
  /// Mid-trace, give up on the trace after this long without the engine's answer, in ms
  /// (-1: never; a new Handshake or Run from an engine always ends a trace left open).
  int answer_timeout_ms = -1;
  /// Return after this many finished traces (0: never).
  uint64_t max_traces = 0;
  /// Called once the socket is bound, with the endpoint (tcp://*:0 resolved to its port).
  std::function<void(const std::string& endpoint)> on_ready;
  /// Log rejected requests and aborted traces to stderr.
  bool log = true;
  /// Poll for the engine's next message this long before sleeping, in µs: a blocking
  /// wake-up costs most of a round trip on an idle core (0: never poll).
  int spin_us = 0;
  /// Largest request accepted, in bytes (ZMQ_MAXMSGSIZE): ZeroMQ drops a connection that
  /// sends more, before allocating it.
  int64_t max_message_bytes = int64_t{256} << 20;
  /// Most Sample / Observe / Tag messages in one trace: a simulator looping past it has
  /// its trace abandoned with Reset (0: no limit).
  uint64_t max_trace_records = 10'000'000;
};

/// Serves `model` over PPX at `address` (e.g. "tcp://*:5555", "ipc://@name") until
/// stop_ppx(), an idle or trace limit, or forever.  Returns 0, or 2 when the address
/// cannot be bound (with a message on stderr).  One serve_ppx per thread at a time.
int serve_ppx(const std::string& address, const ppfast_model_info* model, const PpxServeOptions& options = {});

/// The same for a bare model function.
int serve_ppx(const std::string& address, ppfast_model_fn run, const std::string& model_name,
              const PpxServeOptions& options = {});

/// Asks every serve_ppx of this process to return soon (async-signal-safe: call it from
/// a SIGINT / SIGTERM handler).  A trace in progress is abandoned.
void stop_ppx() noexcept;

/// A bare ZeroMQ REP echo server (no PPX): the floor PPX round trips are compared with.
int serve_echo(const std::string& address, const PpxServeOptions& options = {});

/// main() of a simulator executable that serves PPX:
///   <exe> [--ppx] ADDRESS [--model-name NAME] [--max-traces N] [--idle-timeout S]
///         [--answer-timeout S] [--quiet] [--echo]
/// Prints "ready <endpoint>" on stdout once bound; SIGINT / SIGTERM stop it cleanly.
int ppx_server_main(int argc, char** argv, const ppfast_model_info* model);

}  // namespace ppfast

extern "C" const ppfast_model_info* ppfast_model_entry(void);

namespace ppfast {
/// Serves the model this binary defines with PPFAST_MODEL(name, fn).
inline int serve_ppx(const std::string& address, const PpxServeOptions& options = {}) {
  return serve_ppx(address, ppfast_model_entry(), options);
}
}  // namespace ppfast
