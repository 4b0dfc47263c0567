// PPX client: ppfast drives PPX simulators (pyprob_cpp-based codes, tests/ppx_sim_peer.py,
// ppfast's own PPX servers) over ZeroMQ REQ sockets.
//
// The simulator answers each request with its next random call (Sample / Observe / Tag)
// and the client handles it with a ppfast Recorder: the value of a Sample comes from the
// prior or the run's Policy (replay for MH, proposals for IC), an Observe is conditioned on
// the run's observations by name.  Everything on the way — decoding, interning, drawing,
// encoding, appending to the TraceBatch — is C++; no Python, no GIL.
//
// Failures of the conversation (malformed buffer, unknown type, out-of-order message,
// version mismatch, no reply in time, peer gone) throw ClientError; the connection's
// socket is then closed with linger 0, and the next use re-creates it and handshakes
// again, so a later run starts clean.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "codec.hpp"
#include "core/recorder.hpp"
#include "core/runner.hpp"

namespace ppfast::ppx {

/// The protocol version ppfast speaks (PyProb 1.5.0's).
inline constexpr const char* kProtocolVersion = "1.0.0";

/// What went wrong with a peer; each maps to one ppfast.errors class.
enum class ClientErrorKind : uint8_t {
  kProtocol,  ///< malformed, unknown or out-of-order message, Reset   -> ProtocolError
  kVersion,   ///< the peer announces another PPX version                -> ProtocolVersionError
  kTimeout,   ///< no reply within the timeout                          -> PeerTimeoutError
  kPeerGone,  ///< the peer disconnected while a reply was due           -> PeerGoneError
};

/// A failed conversation. The message names the peer, what was expected and what came.
struct ClientError : std::runtime_error {
  ClientError(ClientErrorKind k, const std::string& message) : std::runtime_error(message), kind(k) {}
  ClientErrorKind kind;
};

struct ClientOptions {
  /// Longest wait for any reply (ZMQ_RCVTIMEO), in milliseconds; also bounds sends.
  int timeout_ms = 30000;
  /// Poll for a reply this long (microseconds) before blocking; 0 blocks at once.
  int spin_us = 0;
  /// Sent in the Handshake; PyProb sends "pyprob 1.5.0".
  std::string system_name = "ppfast (PPX 1.0.0)";
  /// Largest reply accepted, in bytes (ZMQ_MAXMSGSIZE): ZeroMQ drops a peer that sends
  /// more before allocating it, which ends the trace with PeerGoneError.
  int64_t max_message_bytes = int64_t{256} << 20;
  /// Most Sample / Observe / Tag messages in one trace (0: no limit); past it the trace
  /// fails with a ProtocolError (a simulator in a runaway loop would exhaust memory).
  uint64_t max_trace_records = 10'000'000;
  /// When it becomes true, a wait for a reply ends within one slice with Stopped (set by
  /// the Client that owns the connection: Client::stop()).
  const std::atomic<bool>* stop = nullptr;
};

/// Thrown out of Client::run when Client::stop() was called (Ctrl-C).
struct Stopped : std::runtime_error {
  Stopped() : std::runtime_error("PPX run stopped") {}
};

/// Address (and name) of the Tag record that holds a tensor-valued run result: its value
/// is [rank, dim_0, ..., dim_{rank-1}, elements...] and the trace's result column is NaN.
inline constexpr const char* kResultAddress = "__result__";

/// Counters of one connection (for benchmarks and diagnostics).
struct ConnectionStats {
  uint64_t round_trips = 0;
  uint64_t traces = 0;
  uint64_t reconnects = 0;
};

/// True when `s` is well-formed UTF-8 (PPX strings must be; FlatBuffers does not check).
bool valid_utf8(std::string_view s) noexcept;

/// Parses "PPX <major>.<minor>.<patch>" out of a HandshakeResult's system_name.
/// Returns false when the name announces no version (pyprob_cpp does not).
bool parse_protocol_version(std::string_view system_name, int* major, int* minor, int* patch);

/// One REQ connection to a PPX simulator. Not thread-safe: one thread at a time.
class Connection {
 public:
  Connection(zmq::context_t& context, std::string address, const ClientOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Opens the socket and handshakes unless already done; throws ClientError.  Unless
  /// `patient`, gives up early ("no simulator at ADDRESS") when nothing accepts the
  /// connection; patient waits the whole timeout (for a simulator being restarted).
  void connect(bool patient = false);
  /// Runs trace `index` under `r` (begin_trace .. end_trace); throws ClientError, after
  /// recording the trace as failed and closing the socket.
  void run_trace(Recorder& r, uint64_t index);
  /// Closes the socket (linger 0); the next connect() starts over.
  void close() noexcept;

  bool connected() const { return handshaken_; }
  const std::string& address() const { return address_; }
  const std::string& system_name() const { return peer_system_; }
  const std::string& model_name() const { return peer_model_; }
  const ConnectionStats& stats() const { return stats_; }

 private:
  void open();
  /// Sends `request` (a message of type `sent`) and returns the decoded reply, which stays
  /// valid until the next exchange. Throws on timeout, disconnect, malformed bytes, Reset.
  const MessageView& exchange(Bytes request, Body sent, const char* expected);
  /// Reads the socket monitor's events; true if the peer disconnected since the last call.
  bool peer_disconnected() noexcept;
  uint32_t intern(std::string_view s);
  Bytes answer_sample(Recorder& r, const MessageView& m);
  Bytes answer_observe(Recorder& r, const MessageView& m);
  Bytes answer_tag(Recorder& r, const MessageView& m);
  /// Ends the trace with a RunResult value: a scalar in the result column, a tensor as a
  /// kResultAddress Tag record.
  void end_with_result(Recorder& r, const TensorView& v);
  [[noreturn]] void fail(ClientErrorKind kind, const std::string& what);
  std::string context(Body sent) const;

  zmq::context_t& context_;
  std::string address_;
  ClientOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<zmq::socket_t> monitor_;
  std::string monitor_endpoint_;
  bool handshaken_ = false;
  bool patient_ = false;        // connect(patient): wait the whole timeout for a peer
  bool ever_connected_ = false;  // a connection was made since open()
  bool refused_ = false;         // a connection attempt failed since open()
  std::string peer_system_, peer_model_;
  ConnectionStats stats_;

  flatbuffers::FlatBufferBuilder fbb_{1024};
  zmq::message_t reply_;
  Decoder decoder_;
  DecodeResult decoded_;
  uint32_t site_ = 0;  // address id of the last Sample / Observe / Tag, for error messages
  uint64_t trace_ = 0;

  // Reused scratch: no allocation per message in steady state.
  std::unordered_map<std::string, uint32_t> ids_;
  std::string key_;
  std::vector<double> params_, value_, packed_result_;
  std::vector<int32_t> shape_;
};

/// Several PPX connections driven in parallel, one thread each; traces are split in
/// chunks taken in turn, and trace i always uses RNG stream i of the seed, so results do
/// not depend on the number of connections (given deterministic simulators).
class Client {
 public:
  Client(std::vector<std::string> addresses, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Handshakes with every peer not yet connected; throws the first ClientError.
  void connect();
  /// Appends traces [first, first + count) to `out`, in trace order; `policies` (may be
  /// empty) builds one policy per connection.  A trace cut short by a peer's error is
  /// recorded as failed.  Without `skip_errors` the first ClientError stops the run:
  /// other connections stop at their next trace boundary, every trace finished so far
  /// is still appended to `out`, and the error is returned.  With `skip_errors` the run
  /// goes on: the failing connection reconnects (waiting up to the timeout for its peer)
  /// and, if its peer does not come back, its remaining traces move to the live
  /// connections; an error is returned only when no connection is left (the traces not
  /// run are then missing from `out`).
  std::optional<ClientError> run(uint64_t seed, uint64_t first, uint64_t count, const Observations* observations,
                                 TraceBatch& out, const PolicyFactory& policies = nullptr, bool skip_errors = false);
  void close() noexcept;
  /// Makes a run in progress on another thread end soon (Stopped thrown from run, the
  /// finished traces in `out`); the flag clears when the next run starts.
  void stop() { stop_ = true; }

  size_t size() const { return connections_.size(); }
  const Connection& connection(size_t i) const { return *connections_[i]; }

 private:
  std::atomic<bool> stop_{false};
  zmq::context_t context_;
  std::vector<std::unique_ptr<Connection>> connections_;
  WorkerPool pool_;
};

/// Bare ZeroMQ REQ/REP round trips (`payload` bytes each way, no PPX) against an echo
/// server at `address`: the floor a PPX round trip is compared with. Returns seconds.
double ping(const std::string& address, uint64_t count, size_t payload, int timeout_ms);

}  // namespace ppfast::ppx
