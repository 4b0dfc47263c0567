// PPX 1.0.0 message codec (wire spec: PPX.md; schema: ppx.fbs).
//
// Self-contained: depends on the FlatBuffers headers only, never on the rest of
// ppfast or on Python, so that simulators and tools can link it alone.
//
// Decoding is zero-copy: `decode` verifies the buffer and returns a
// `MessageView` whose strings and tensors point into the caller's buffer (no
// heap allocation on success). `to_owned` turns a view into a self-contained
// `Message` where one is needed. Encoders write into a caller-owned, reusable
// `flatbuffers::FlatBufferBuilder` so that steady-state encoding does not
// allocate either.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/flatbuffers.h>

namespace ppfast::ppx {

/// Message body kinds; values are the PPX `MessageBody` union type bytes.
enum class Body : uint8_t {
  kNone = 0,
  kHandshake = 1,
  kHandshakeResult = 2,
  kRun = 3,
  kRunResult = 4,
  kSample = 5,
  kSampleResult = 6,
  kObserve = 7,
  kObserveResult = 8,
  kTag = 9,
  kTagResult = 10,
  kReset = 11,
};

/// Distribution kinds; values are the PPX `Distribution` union type bytes.
enum class DistKind : uint8_t {
  kNone = 0,
  kNormal = 1,
  kUniform = 2,
  kCategorical = 3,
  kPoisson = 4,
  kBernoulli = 5,
  kBeta = 6,
  kExponential = 7,
  kGamma = 8,
  kLogNormal = 9,
  kBinomial = 10,
  kWeibull = 11,
};

inline constexpr uint8_t kMaxBody = 11;
inline constexpr uint8_t kMaxDistKind = 11;
/// No PPX distribution has more than two parameters.
inline constexpr size_t kMaxDistParams = 2;

/// "Sample", "Observe", ...; "NONE" for kNone, "unknown" outside 0..11.
const char* body_name(Body body) noexcept;
/// "Normal", "Uniform", ...; "NONE" for kNone, "unknown" outside 0..11.
const char* dist_name(DistKind kind) noexcept;
/// Number of parameters of a distribution (0 for kNone / unknown kinds).
size_t dist_param_count(DistKind kind) noexcept;
/// Schema field name of parameter `i` (slot order), e.g. ("Normal", 1) -> "stddev";
/// nullptr when out of range.
const char* dist_param_name(DistKind kind, size_t i) noexcept;

/// Non-owning view of a PPX tensor (float64 row-major data + int32 shape).
///
/// `present` is false for an absent tensor and for one with no data ("none",
/// e.g. an Observe without value). A scalar has rank 0 (shape `[]`), which the
/// real peers use for most distribution parameters, while sampled values usually
/// arrive with shape `[1]`: keep both, they are different tensors to PyTorch.
/// `flat` marks a tensor whose sender omitted `shape`: it is read as 1-D
/// `[size]`.
struct TensorView {
  const double* data = nullptr;
  size_t size = 0;
  const int32_t* shape = nullptr;
  size_t ndim = 0;
  bool present = false;
  bool flat = false;

  /// Rank, counting a `flat` tensor as rank 1.
  size_t rank() const noexcept { return flat ? 1 : ndim; }
  /// Extent of dimension `i` (`i < rank()`).
  int64_t dim(size_t i) const noexcept { return flat ? static_cast<int64_t>(size) : shape[i]; }

  /// Tensor over caller memory. `shape == nullptr, ndim == 0` is a scalar.
  static TensorView of(const double* data, size_t size, const int32_t* shape, size_t ndim) noexcept {
    TensorView t;
    t.data = data;
    t.size = size;
    t.shape = shape;
    t.ndim = ndim;
    t.present = size > 0;
    return t;
  }
  /// Rank-0 tensor holding `*value` (shape `[]`).
  static TensorView scalar(const double* value) noexcept { return of(value, 1, nullptr, 0); }
  /// 1-D tensor over `size` values; `shape_storage` must outlive the view and
  /// receives the extent.
  static TensorView vector(const double* data, size_t size, int32_t* shape_storage) noexcept {
    *shape_storage = static_cast<int32_t>(size);
    return of(data, size, shape_storage, 1);
  }
};

/// Non-owning view of a distribution: kind and parameters in slot order.
struct DistView {
  DistKind kind = DistKind::kNone;
  size_t num_params = 0;
  std::array<TensorView, kMaxDistParams> params{};
};

/// Non-owning view of one decoded message. Which members are meaningful
/// depends on `type`:
///   Handshake        system_name
///   HandshakeResult  system_name, model_name
///   Sample           address, name, dist, control, replace
///   Observe          address, name, dist, value (observed value; may be absent)
///   Tag              address, name, value
///   SampleResult     value (the `result` field; always present)
///   RunResult        value (the `result` field; may be absent)
/// Views point into the decoded buffer and are valid while it is.
struct MessageView {
  Body type = Body::kNone;
  std::string_view system_name;
  std::string_view model_name;
  std::string_view address;
  std::string_view name;
  DistView dist;
  bool control = true;
  bool replace = false;
  TensorView value;
};

/// Owning tensor (see TensorView for the meaning of the fields).
struct Tensor {
  std::vector<double> data;
  std::vector<int32_t> shape;
  bool present = false;
};

/// Owning distribution: PPX kind and parameters in slot order.
struct DistMsg {
  DistKind kind = DistKind::kNone;
  std::vector<Tensor> params;
};

/// Owning message; members as in MessageView.
struct Message {
  Body type = Body::kNone;
  std::string system_name;
  std::string model_name;
  std::string address;
  std::string name;
  DistMsg dist;
  bool control = true;
  bool replace = false;
  Tensor value;
};

/// Why a buffer could not be decoded.
enum class ErrorCode : uint8_t {
  kOk = 0,
  /// Not a well-formed PPX FlatBuffer (truncated, garbage, empty, too large).
  kVerificationFailed,
  /// `decode` needs a 4-byte aligned buffer whose float64 vectors are 8-byte
  /// aligned in memory (true of FlatBufferBuilder output and of malloc'd or
  /// std::vector memory holding a well-formed message); use Decoder otherwise.
  kMisaligned,
  /// The union type byte is NONE (or the body offset is missing).
  kNoBody,
  /// Body type byte outside 1..11.
  kUnknownBody,
  /// Distribution type byte outside 1..11.
  kUnknownDistribution,
  /// A field the message cannot do without is absent (address, distribution,
  /// a distribution parameter, SampleResult.result).
  kMissingField,
  /// Tensor whose shape does not match its data (or has negative extents).
  kBadTensor,
};

/// "ok", "verification_failed", ... (stable identifiers for logs and bindings).
const char* error_code_name(ErrorCode code) noexcept;

/// Result of `decode`: on success `message` is set and `error` is empty; on
/// failure `code` says what kind of problem and `error` says what exactly,
/// e.g. "unknown distribution type 19 in Sample at address 'mu'".
struct DecodeResult {
  ErrorCode code = ErrorCode::kOk;
  std::string error;
  MessageView message;

  bool ok() const noexcept { return code == ErrorCode::kOk; }
  explicit operator bool() const noexcept { return ok(); }
};

/// Verifies `buf[0, len)` with the FlatBuffers verifier and decodes it into a
/// view. Never throws on bad input, never aborts; errors are returned.
/// `buf` must be aligned as a FlatBufferBuilder or malloc would align it
/// (see ErrorCode::kMisaligned); otherwise the result is kMisaligned and
/// Decoder is the function to use.
/// The file identifier is neither required nor checked (real peers omit it).
DecodeResult decode(const uint8_t* buf, size_t len) noexcept;

/// Decoder that accepts buffers at any address: a misaligned input (e.g. a
/// ZeroMQ message received zero-copy into the middle of a socket batch) is
/// first copied into an aligned scratch buffer that is reused between calls.
/// Views returned by `decode` are then valid until the next call or until
/// `buf` is released, whichever comes first.
class Decoder {
 public:
  DecodeResult decode(const uint8_t* buf, size_t len) noexcept;

 private:
  std::vector<uint64_t> scratch_;
};

/// Deep copy of a view (the only allocating step of decoding).
Message to_owned(const MessageView& view);
/// View of an owned message (e.g. to pass it to `encode`); valid while `msg`
/// is alive and unmodified.
MessageView view_of(const Message& msg) noexcept;

/// True when two messages carry the same content for their type: fields that
/// the type does not use are ignored; tensors compare bit-exactly by data and
/// by shape (a `flat` tensor equals one of shape `[size]`); an absent tensor
/// equals one without data.
bool equivalent(const MessageView& a, const MessageView& b) noexcept;

/// Encoded bytes; they live in the builder until its next use.
struct Bytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// Encoders. Each clears `fbb`, writes one PPX message (no file identifier,
// tensors as whole vectors), finishes it and returns the bytes. Strings are
// always written (possibly empty); a tensor that is not `present` is omitted.
// The shape vector of a present tensor is always written, also when empty
// (scalar), because PyProb reshapes with it.

Bytes encode_handshake(flatbuffers::FlatBufferBuilder& fbb, std::string_view system_name);
Bytes encode_handshake_result(flatbuffers::FlatBufferBuilder& fbb, std::string_view system_name,
                              std::string_view model_name);
Bytes encode_run(flatbuffers::FlatBufferBuilder& fbb);
Bytes encode_run_result(flatbuffers::FlatBufferBuilder& fbb, const TensorView& result);
/// `replace` is a PPX 0.1.x field; it is written only when true.
Bytes encode_sample(flatbuffers::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                    const DistView& dist, bool control = true, bool replace = false);
Bytes encode_sample_result(flatbuffers::FlatBufferBuilder& fbb, const TensorView& result);
Bytes encode_observe(flatbuffers::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                     const DistView& dist, const TensorView& value);
Bytes encode_observe_result(flatbuffers::FlatBufferBuilder& fbb);
Bytes encode_tag(flatbuffers::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                 const TensorView& value);
Bytes encode_tag_result(flatbuffers::FlatBufferBuilder& fbb);
Bytes encode_reset(flatbuffers::FlatBufferBuilder& fbb);

/// Encodes any message by its `type` (dispatches to the functions above).
/// A kNone type (or one outside 1..11) writes nothing and returns empty Bytes.
Bytes encode(flatbuffers::FlatBufferBuilder& fbb, const MessageView& msg);

/// Convenience: a distribution view with the given parameters (slot order).
inline DistView make_dist(DistKind kind, const TensorView& p0, const TensorView& p1 = TensorView{}) noexcept {
  DistView d;
  d.kind = kind;
  d.num_params = dist_param_count(kind);
  d.params[0] = p0;
  d.params[1] = p1;
  return d;
}

}  // namespace ppfast::ppx
