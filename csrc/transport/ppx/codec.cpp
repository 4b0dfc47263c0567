// PPX codec: verification + zero-copy decoding, and whole-vector encoding.
#include "codec.hpp"

#include <cstdio>
#include <cstring>
#include <new>

#include "ppx_generated.h"

namespace wire = ::ppx;  // generated from ppx.fbs
namespace fb = ::flatbuffers;

namespace ppfast::ppx {
namespace {

// ---- the schema must match PPX.md; pin the layout at compile time ----------

#define PPFAST_PPX_SAME_BODY(N) \
  static_assert(static_cast<uint8_t>(Body::k##N) == static_cast<uint8_t>(wire::MessageBody_##N), #N)
PPFAST_PPX_SAME_BODY(Handshake);
PPFAST_PPX_SAME_BODY(HandshakeResult);
PPFAST_PPX_SAME_BODY(Run);
PPFAST_PPX_SAME_BODY(RunResult);
PPFAST_PPX_SAME_BODY(Sample);
PPFAST_PPX_SAME_BODY(SampleResult);
PPFAST_PPX_SAME_BODY(Observe);
PPFAST_PPX_SAME_BODY(ObserveResult);
PPFAST_PPX_SAME_BODY(Tag);
PPFAST_PPX_SAME_BODY(TagResult);
PPFAST_PPX_SAME_BODY(Reset);
#undef PPFAST_PPX_SAME_BODY
static_assert(wire::MessageBody_MAX == kMaxBody, "MessageBody union size");

#define PPFAST_PPX_SAME_DIST(N) \
  static_assert(static_cast<uint8_t>(DistKind::k##N) == static_cast<uint8_t>(wire::Distribution_##N), #N)
PPFAST_PPX_SAME_DIST(Normal);
PPFAST_PPX_SAME_DIST(Uniform);
PPFAST_PPX_SAME_DIST(Categorical);
PPFAST_PPX_SAME_DIST(Poisson);
PPFAST_PPX_SAME_DIST(Bernoulli);
PPFAST_PPX_SAME_DIST(Beta);
PPFAST_PPX_SAME_DIST(Exponential);
PPFAST_PPX_SAME_DIST(Gamma);
PPFAST_PPX_SAME_DIST(LogNormal);
PPFAST_PPX_SAME_DIST(Binomial);
PPFAST_PPX_SAME_DIST(Weibull);
#undef PPFAST_PPX_SAME_DIST
static_assert(wire::Distribution_MAX == kMaxDistKind, "Distribution union size");

// vtable offset of slot i is 4 + 2 i.
constexpr int slot(int i) { return 4 + 2 * i; }
static_assert(wire::Message::VT_BODY_TYPE == slot(0) && wire::Message::VT_BODY == slot(1), "Message");
static_assert(wire::Tensor::VT_DATA == slot(0) && wire::Tensor::VT_SHAPE == slot(1), "Tensor");
static_assert(wire::Sample::VT_ADDRESS == slot(0) && wire::Sample::VT_NAME == slot(1) &&
                  wire::Sample::VT_DISTRIBUTION_TYPE == slot(2) && wire::Sample::VT_DISTRIBUTION == slot(3) &&
                  wire::Sample::VT_CONTROL == slot(4) && wire::Sample::VT_REPLACE == slot(5),
              "Sample");
static_assert(wire::Observe::VT_ADDRESS == slot(0) && wire::Observe::VT_NAME == slot(1) &&
                  wire::Observe::VT_DISTRIBUTION_TYPE == slot(2) && wire::Observe::VT_DISTRIBUTION == slot(3) &&
                  wire::Observe::VT_VALUE == slot(4),
              "Observe");
static_assert(wire::Tag::VT_ADDRESS == slot(0) && wire::Tag::VT_NAME == slot(1) && wire::Tag::VT_VALUE == slot(2),
              "Tag");
static_assert(wire::HandshakeResult::VT_SYSTEM_NAME == slot(0) && wire::HandshakeResult::VT_MODEL_NAME == slot(1),
              "HandshakeResult");

// ---- names -----------------------------------------------------------------

constexpr const char* kBodyNames[kMaxBody + 1] = {
    "NONE", "Handshake", "HandshakeResult", "Run", "RunResult", "Sample",
    "SampleResult", "Observe", "ObserveResult", "Tag", "TagResult", "Reset"};

struct DistInfo {
  const char* name;
  size_t num_params;
  const char* params[kMaxDistParams];
};

// Parameter names in slot order, as in ppx.fbs.
constexpr DistInfo kDists[kMaxDistKind + 1] = {
    {"NONE", 0, {nullptr, nullptr}},
    {"Normal", 2, {"mean", "stddev"}},
    {"Uniform", 2, {"low", "high"}},
    {"Categorical", 1, {"probs", nullptr}},
    {"Poisson", 1, {"rate", nullptr}},
    {"Bernoulli", 1, {"probs", nullptr}},
    {"Beta", 2, {"concentration1", "concentration0"}},
    {"Exponential", 1, {"rate", nullptr}},
    {"Gamma", 2, {"concentration", "rate"}},
    {"LogNormal", 2, {"loc", "scale"}},
    {"Binomial", 2, {"total_count", "probs"}},
    {"Weibull", 2, {"scale", "concentration"}},
};

// FlatBuffers offsets are 32-bit and the only wider scalars in PPX are the
// float64 tensor data. A FlatBufferBuilder's output (and malloc'd memory) is
// aligned to its widest scalar, so requiring 4 for the buffer and 8 for each
// float64 vector accepts every buffer a builder or allocator hands out.
constexpr size_t kOffsetAlign = alignof(fb::uoffset_t);
constexpr size_t kDoubleAlign = alignof(double);
// Well-formed PPX messages nest 5 deep (Message > body > distribution > Tensor
// > vector) and hold at most 5 tables; the limits only need to be generous.
constexpr fb::uoffset_t kMaxDepth = 16;
constexpr fb::uoffset_t kMaxTables = 64;

bool is_aligned(const void* p, size_t align) { return reinterpret_cast<uintptr_t>(p) % align == 0; }

std::string_view view(const fb::String* s) {
  return s == nullptr ? std::string_view{} : std::string_view(s->c_str(), s->size());
}

// ---- error reporting ---------------------------------------------------------

// Where a field sits, to say so in error messages; formatted only on error.
struct Where {
  Body body;
  std::string_view address;  // empty when not yet known / not applicable
};

std::string describe(const Where& w) {
  std::string s = "in ";
  s += kBodyNames[static_cast<uint8_t>(w.body)];
  if (!w.address.empty()) {
    s += " at address '";
    s += w.address;
    s += '\'';
  }
  return s;
}

DecodeResult failure(ErrorCode code, std::string message) {
  DecodeResult r;
  r.code = code;
  r.error = std::move(message);
  return r;
}

DecodeResult missing(const char* field, const Where& w) {
  return failure(ErrorCode::kMissingField, std::string("missing required field '") + field + "' " + describe(w));
}

std::string shape_string(const fb::Vector<int32_t>* shape) {
  std::string s = "[";
  for (fb::uoffset_t i = 0; i < shape->size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape->Get(i));
  }
  return s + "]";
}

// Reads a tensor into `out`. `field`/`owner` name it in errors ("mean" of
// "Normal"). Returns false (and sets `err`) on a malformed tensor.
bool read_tensor(const wire::Tensor* t, TensorView& out, const char* field, const char* owner, const Where& w,
                 DecodeResult& err) {
  out = TensorView{};
  if (t == nullptr) return true;
  const auto* data = t->data();
  const auto* shape = t->shape();
  const size_t n = data == nullptr ? 0 : data->size();
  auto label = [&] {
    std::string s = std::string("tensor '") + field + "'";
    if (owner != nullptr) s += std::string(" of ") + owner;
    return s + " " + describe(w);
  };
  if (shape != nullptr) {
    // Product of extents, stopping once it exceeds n (no overflow).
    uint64_t product = 1;
    bool over = false;
    for (fb::uoffset_t i = 0; i < shape->size(); ++i) {
      const int32_t d = shape->Get(i);
      if (d < 0) {
        err = failure(ErrorCode::kBadTensor, label() + " has a negative extent in shape " + shape_string(shape));
        return false;
      }
      if (!over) {
        product *= static_cast<uint64_t>(d);
        over = product > n;
      }
    }
    // No data means "none" whatever the shape says; otherwise they must agree.
    if (n > 0 && (over || product != n)) {
      err = failure(ErrorCode::kBadTensor, label() + " has shape " + shape_string(shape) + " but " +
                                               std::to_string(n) + " data values");
      return false;
    }
  }
  if (n == 0) return true;
  if (!is_aligned(data->data(), kDoubleAlign)) {
    err = failure(ErrorCode::kMisaligned,
                  label() + ": float64 data not 8-byte aligned in memory (use ppx::Decoder for such input)");
    return false;
  }
  out.data = reinterpret_cast<const double*>(data->data());
  out.size = n;
  out.present = true;
  if (shape != nullptr) {
    out.shape = shape->data();
    out.ndim = shape->size();
  } else {
    out.flat = true;
  }
  return true;
}

// Reads the distribution union of a Sample / Observe.
bool read_dist(uint8_t type, const void* table, DistView& out, const Where& w, DecodeResult& err) {
  out = DistView{};
  if (type == 0) {
    err = missing("distribution", w);
    return false;
  }
  if (type > kMaxDistKind) {
    err = failure(ErrorCode::kUnknownDistribution,
                  "unknown distribution type " + std::to_string(type) + " " + describe(w));
    return false;
  }
  const DistInfo& info = kDists[type];
  if (table == nullptr) {
    err = failure(ErrorCode::kMissingField,
                  std::string("missing table of distribution ") + info.name + " " + describe(w));
    return false;
  }
  out.kind = static_cast<DistKind>(type);
  out.num_params = info.num_params;
  // Every distribution table holds its Tensor parameters in slots 0 and 1
  // (the static_asserts above and ppx.fbs), so read them by slot.
  const auto* t = reinterpret_cast<const fb::Table*>(table);
  for (size_t i = 0; i < info.num_params; ++i) {
    const auto* p = t->GetPointer<const wire::Tensor*>(static_cast<fb::voffset_t>(slot(static_cast<int>(i))));
    if (!read_tensor(p, out.params[i], info.params[i], info.name, w, err)) return false;
    if (!out.params[i].present) {
      err = failure(ErrorCode::kMissingField, std::string("missing required parameter '") + info.params[i] +
                                                  "' of " + info.name + " " + describe(w));
      return false;
    }
  }
  return true;
}

static_assert(wire::Normal::VT_MEAN == slot(0) && wire::Normal::VT_STDDEV == slot(1), "Normal");
static_assert(wire::Uniform::VT_LOW == slot(0) && wire::Uniform::VT_HIGH == slot(1), "Uniform");
static_assert(wire::Categorical::VT_PROBS == slot(0), "Categorical");
static_assert(wire::Poisson::VT_RATE == slot(0), "Poisson");
static_assert(wire::Bernoulli::VT_PROBS == slot(0), "Bernoulli");
static_assert(wire::Beta::VT_CONCENTRATION1 == slot(0) && wire::Beta::VT_CONCENTRATION0 == slot(1), "Beta");
static_assert(wire::Exponential::VT_RATE == slot(0), "Exponential");
static_assert(wire::Gamma::VT_CONCENTRATION == slot(0) && wire::Gamma::VT_RATE == slot(1), "Gamma");
static_assert(wire::LogNormal::VT_LOC == slot(0) && wire::LogNormal::VT_SCALE == slot(1), "LogNormal");
static_assert(wire::Binomial::VT_TOTAL_COUNT == slot(0) && wire::Binomial::VT_PROBS == slot(1), "Binomial");
static_assert(wire::Weibull::VT_SCALE == slot(0) && wire::Weibull::VT_CONCENTRATION == slot(1), "Weibull");

// Decodes a verified, aligned buffer.
DecodeResult decode_verified(const uint8_t* buf) {
  DecodeResult r;
  const auto* msg = fb::GetRoot<wire::Message>(buf);
  const auto type = static_cast<uint8_t>(msg->body_type());
  if (type == 0) return failure(ErrorCode::kNoBody, "message has no body (union type NONE)");
  if (type > kMaxBody) return failure(ErrorCode::kUnknownBody, "unknown message body type " + std::to_string(type));
  const Body body = static_cast<Body>(type);
  if (msg->body() == nullptr) {
    return failure(ErrorCode::kNoBody, std::string("message of type ") + kBodyNames[type] + " has no body table");
  }
  MessageView& m = r.message;
  m.type = body;
  Where w{body, {}};
  switch (body) {
    case Body::kHandshake: {
      m.system_name = view(msg->body_as_Handshake()->system_name());
      break;
    }
    case Body::kHandshakeResult: {
      const auto* b = msg->body_as_HandshakeResult();
      m.system_name = view(b->system_name());
      m.model_name = view(b->model_name());
      break;
    }
    case Body::kRunResult: {
      if (!read_tensor(msg->body_as_RunResult()->result(), m.value, "result", nullptr, w, r)) return r;
      break;
    }
    case Body::kSample: {
      const auto* b = msg->body_as_Sample();
      if (b->address() == nullptr) return missing("address", w);
      m.address = w.address = view(b->address());
      m.name = view(b->name());
      if (!read_dist(static_cast<uint8_t>(b->distribution_type()), b->distribution(), m.dist, w, r)) return r;
      m.control = b->control();
      m.replace = b->replace();
      break;
    }
    case Body::kSampleResult: {
      if (!read_tensor(msg->body_as_SampleResult()->result(), m.value, "result", nullptr, w, r)) return r;
      if (!m.value.present) return missing("result", w);
      break;
    }
    case Body::kObserve: {
      const auto* b = msg->body_as_Observe();
      if (b->address() == nullptr) return missing("address", w);
      m.address = w.address = view(b->address());
      m.name = view(b->name());
      if (!read_dist(static_cast<uint8_t>(b->distribution_type()), b->distribution(), m.dist, w, r)) return r;
      if (!read_tensor(b->value(), m.value, "value", nullptr, w, r)) return r;
      break;
    }
    case Body::kTag: {
      const auto* b = msg->body_as_Tag();
      if (b->address() == nullptr) return missing("address", w);
      m.address = w.address = view(b->address());
      m.name = view(b->name());
      if (!read_tensor(b->value(), m.value, "value", nullptr, w, r)) return r;
      break;
    }
    case Body::kRun:
    case Body::kObserveResult:
    case Body::kTagResult:
    case Body::kReset:
    case Body::kNone:
      break;
  }
  return r;
}

// ---- encoding ------------------------------------------------------------------

fb::Offset<wire::Tensor> put_tensor(fb::FlatBufferBuilder& fbb, const TensorView& t) {
  if (!t.present || t.size == 0) return 0;
  const auto data = fbb.CreateVector(t.data, t.size);
  fb::Offset<fb::Vector<int32_t>> shape;
  if (t.flat) {
    const auto n = static_cast<int32_t>(t.size);
    shape = fbb.CreateVector(&n, 1);
  } else {
    shape = fbb.CreateVector(t.shape, t.ndim);
  }
  return wire::CreateTensor(fbb, data, shape);
}

// Writes the distribution table; returns its offset (0 for kNone / unknown).
fb::Offset<void> put_dist(fb::FlatBufferBuilder& fbb, const DistView& d) {
  const auto type = static_cast<uint8_t>(d.kind);
  if (type == 0 || type > kMaxDistKind) return 0;
  // Tensors first: FlatBuffers tables cannot be built while another is open.
  const auto p0 = put_tensor(fbb, d.params[0]);
  const auto p1 = kDists[type].num_params > 1 ? put_tensor(fbb, d.params[1]) : fb::Offset<wire::Tensor>(0);
  switch (d.kind) {
    case DistKind::kNormal: return wire::CreateNormal(fbb, p0, p1).Union();
    case DistKind::kUniform: return wire::CreateUniform(fbb, p0, p1).Union();
    case DistKind::kCategorical: return wire::CreateCategorical(fbb, p0).Union();
    case DistKind::kPoisson: return wire::CreatePoisson(fbb, p0).Union();
    case DistKind::kBernoulli: return wire::CreateBernoulli(fbb, p0).Union();
    case DistKind::kBeta: return wire::CreateBeta(fbb, p0, p1).Union();
    case DistKind::kExponential: return wire::CreateExponential(fbb, p0).Union();
    case DistKind::kGamma: return wire::CreateGamma(fbb, p0, p1).Union();
    case DistKind::kLogNormal: return wire::CreateLogNormal(fbb, p0, p1).Union();
    case DistKind::kBinomial: return wire::CreateBinomial(fbb, p0, p1).Union();
    case DistKind::kWeibull: return wire::CreateWeibull(fbb, p0, p1).Union();
    case DistKind::kNone: break;
  }
  return 0;
}

wire::Distribution dist_type(const DistView& d) {
  const auto type = static_cast<uint8_t>(d.kind);
  return type > kMaxDistKind ? wire::Distribution_NONE : static_cast<wire::Distribution>(type);
}

fb::Offset<fb::String> put_string(fb::FlatBufferBuilder& fbb, std::string_view s) {
  return fbb.CreateString(s.data(), s.size());
}

template <typename T>
Bytes finish(fb::FlatBufferBuilder& fbb, wire::MessageBody type, fb::Offset<T> body) {
  // No file identifier: neither PyProb nor pyprob_cpp writes one.
  fbb.Finish(wire::CreateMessage(fbb, type, body.Union()));
  return Bytes{fbb.GetBufferPointer(), fbb.GetSize()};
}

}  // namespace

// ---- public API ------------------------------------------------------------------

const char* body_name(Body body) noexcept {
  const auto i = static_cast<uint8_t>(body);
  return i <= kMaxBody ? kBodyNames[i] : "unknown";
}

const char* dist_name(DistKind kind) noexcept {
  const auto i = static_cast<uint8_t>(kind);
  return i <= kMaxDistKind ? kDists[i].name : "unknown";
}

size_t dist_param_count(DistKind kind) noexcept {
  const auto i = static_cast<uint8_t>(kind);
  return i <= kMaxDistKind ? kDists[i].num_params : 0;
}

const char* dist_param_name(DistKind kind, size_t i) noexcept {
  return i < dist_param_count(kind) ? kDists[static_cast<uint8_t>(kind)].params[i] : nullptr;
}

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kVerificationFailed: return "verification_failed";
    case ErrorCode::kMisaligned: return "misaligned";
    case ErrorCode::kNoBody: return "no_body";
    case ErrorCode::kUnknownBody: return "unknown_body";
    case ErrorCode::kUnknownDistribution: return "unknown_distribution";
    case ErrorCode::kMissingField: return "missing_field";
    case ErrorCode::kBadTensor: return "bad_tensor";
  }
  return "unknown";
}

DecodeResult decode(const uint8_t* buf, size_t len) noexcept {
  if (buf == nullptr || len == 0) return failure(ErrorCode::kVerificationFailed, "empty buffer (0 bytes)");
  if (len >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return failure(ErrorCode::kVerificationFailed,
                   "buffer of " + std::to_string(len) + " bytes exceeds the FlatBuffers 2 GiB limit");
  }
  if (!is_aligned(buf, kOffsetAlign)) {
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", static_cast<const void*>(buf));
    return failure(ErrorCode::kMisaligned,
                   std::string("buffer at ") + addr + " is not 4-byte aligned (use ppx::Decoder for such input)");
  }
  fb::Verifier::Options opts;
  opts.max_depth = kMaxDepth;
  opts.max_tables = kMaxTables;
  fb::Verifier verifier(buf, len, opts);
  if (!verifier.VerifyBuffer<wire::Message>(nullptr)) {
    return failure(ErrorCode::kVerificationFailed,
                   "buffer failed FlatBuffers verification (" + std::to_string(len) + " bytes)");
  }
  return decode_verified(buf);
}

DecodeResult Decoder::decode(const uint8_t* buf, size_t len) noexcept {
  if (buf == nullptr || len == 0 || is_aligned(buf, kDoubleAlign) || len >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return ::ppfast::ppx::decode(buf, len);
  }
  const size_t words = (len + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  if (scratch_.size() < words) {
    try {
      scratch_.resize(words);
    } catch (const std::bad_alloc&) {
      return failure(ErrorCode::kVerificationFailed,
                     "out of memory copying a misaligned buffer of " + std::to_string(len) + " bytes");
    }
  }
  std::memcpy(scratch_.data(), buf, len);
  return ::ppfast::ppx::decode(reinterpret_cast<const uint8_t*>(scratch_.data()), len);
}

namespace {
Tensor own(const TensorView& t) {
  Tensor o;
  if (!t.present) return o;
  o.present = true;
  o.data.assign(t.data, t.data + t.size);
  if (t.flat) {
    o.shape.assign(1, static_cast<int32_t>(t.size));
  } else {
    o.shape.assign(t.shape, t.shape + t.ndim);
  }
  return o;
}

TensorView borrow(const Tensor& t) noexcept {
  TensorView v = TensorView::of(t.data.data(), t.data.size(), t.shape.data(), t.shape.size());
  v.present = t.present && !t.data.empty();
  return v;
}
}  // namespace

Message to_owned(const MessageView& v) {
  Message m;
  m.type = v.type;
  m.system_name = std::string(v.system_name);
  m.model_name = std::string(v.model_name);
  m.address = std::string(v.address);
  m.name = std::string(v.name);
  m.dist.kind = v.dist.kind;
  for (size_t i = 0; i < v.dist.num_params && i < kMaxDistParams; ++i) m.dist.params.push_back(own(v.dist.params[i]));
  m.control = v.control;
  m.replace = v.replace;
  m.value = own(v.value);
  return m;
}

MessageView view_of(const Message& m) noexcept {
  MessageView v;
  v.type = m.type;
  v.system_name = m.system_name;
  v.model_name = m.model_name;
  v.address = m.address;
  v.name = m.name;
  v.dist.kind = m.dist.kind;
  v.dist.num_params = m.dist.params.size() < kMaxDistParams ? m.dist.params.size() : kMaxDistParams;
  for (size_t i = 0; i < v.dist.num_params; ++i) v.dist.params[i] = borrow(m.dist.params[i]);
  v.control = m.control;
  v.replace = m.replace;
  v.value = borrow(m.value);
  return v;
}

namespace {
bool same_tensor(const TensorView& a, const TensorView& b) noexcept {
  if (a.present != b.present) return false;
  if (!a.present) return true;
  if (a.size != b.size || a.rank() != b.rank()) return false;
  for (size_t i = 0; i < a.rank(); ++i) {
    if (a.dim(i) != b.dim(i)) return false;
  }
  // Bitwise, so that NaN payloads and -0.0 survive a round trip too.
  return std::memcmp(a.data, b.data, a.size * sizeof(double)) == 0;
}

bool same_dist(const DistView& a, const DistView& b) noexcept {
  if (a.kind != b.kind || a.num_params != b.num_params) return false;
  for (size_t i = 0; i < a.num_params && i < kMaxDistParams; ++i) {
    if (!same_tensor(a.params[i], b.params[i])) return false;
  }
  return true;
}
}  // namespace

bool equivalent(const MessageView& a, const MessageView& b) noexcept {
  if (a.type != b.type) return false;
  switch (a.type) {
    case Body::kHandshake: return a.system_name == b.system_name;
    case Body::kHandshakeResult: return a.system_name == b.system_name && a.model_name == b.model_name;
    case Body::kRunResult:
    case Body::kSampleResult: return same_tensor(a.value, b.value);
    case Body::kSample:
      return a.address == b.address && a.name == b.name && same_dist(a.dist, b.dist) && a.control == b.control &&
             a.replace == b.replace;
    case Body::kObserve:
      return a.address == b.address && a.name == b.name && same_dist(a.dist, b.dist) &&
             same_tensor(a.value, b.value);
    case Body::kTag: return a.address == b.address && a.name == b.name && same_tensor(a.value, b.value);
    case Body::kRun:
    case Body::kObserveResult:
    case Body::kTagResult:
    case Body::kReset:
    case Body::kNone: return true;
  }
  return false;
}

Bytes encode_handshake(fb::FlatBufferBuilder& fbb, std::string_view system_name) {
  fbb.Clear();
  const auto s = put_string(fbb, system_name);
  return finish(fbb, wire::MessageBody_Handshake, wire::CreateHandshake(fbb, s));
}

Bytes encode_handshake_result(fb::FlatBufferBuilder& fbb, std::string_view system_name, std::string_view model_name) {
  fbb.Clear();
  const auto s = put_string(fbb, system_name);
  const auto m = put_string(fbb, model_name);
  return finish(fbb, wire::MessageBody_HandshakeResult, wire::CreateHandshakeResult(fbb, s, m));
}

Bytes encode_run(fb::FlatBufferBuilder& fbb) {
  fbb.Clear();
  return finish(fbb, wire::MessageBody_Run, wire::CreateRun(fbb));
}

Bytes encode_run_result(fb::FlatBufferBuilder& fbb, const TensorView& result) {
  fbb.Clear();
  const auto t = put_tensor(fbb, result);
  return finish(fbb, wire::MessageBody_RunResult, wire::CreateRunResult(fbb, t));
}

Bytes encode_sample(fb::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                    const DistView& dist, bool control, bool replace) {
  fbb.Clear();
  const auto a = put_string(fbb, address);
  const auto n = put_string(fbb, name);
  const auto d = put_dist(fbb, dist);
  const auto type = d.IsNull() ? wire::Distribution_NONE : dist_type(dist);
  return finish(fbb, wire::MessageBody_Sample, wire::CreateSample(fbb, a, n, type, d, control, replace));
}

Bytes encode_sample_result(fb::FlatBufferBuilder& fbb, const TensorView& result) {
  fbb.Clear();
  const auto t = put_tensor(fbb, result);
  return finish(fbb, wire::MessageBody_SampleResult, wire::CreateSampleResult(fbb, t));
}

Bytes encode_observe(fb::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                     const DistView& dist, const TensorView& value) {
  fbb.Clear();
  const auto a = put_string(fbb, address);
  const auto n = put_string(fbb, name);
  const auto d = put_dist(fbb, dist);
  const auto type = d.IsNull() ? wire::Distribution_NONE : dist_type(dist);
  const auto v = put_tensor(fbb, value);
  return finish(fbb, wire::MessageBody_Observe, wire::CreateObserve(fbb, a, n, type, d, v));
}

Bytes encode_observe_result(fb::FlatBufferBuilder& fbb) {
  fbb.Clear();
  return finish(fbb, wire::MessageBody_ObserveResult, wire::CreateObserveResult(fbb));
}

Bytes encode_tag(fb::FlatBufferBuilder& fbb, std::string_view address, std::string_view name,
                 const TensorView& value) {
  fbb.Clear();
  const auto a = put_string(fbb, address);
  const auto n = put_string(fbb, name);
  const auto v = put_tensor(fbb, value);
  return finish(fbb, wire::MessageBody_Tag, wire::CreateTag(fbb, a, n, v));
}

Bytes encode_tag_result(fb::FlatBufferBuilder& fbb) {
  fbb.Clear();
  return finish(fbb, wire::MessageBody_TagResult, wire::CreateTagResult(fbb));
}

Bytes encode_reset(fb::FlatBufferBuilder& fbb) {
  fbb.Clear();
  return finish(fbb, wire::MessageBody_Reset, wire::CreateReset(fbb));
}

Bytes encode(fb::FlatBufferBuilder& fbb, const MessageView& m) {
  switch (m.type) {
    case Body::kHandshake: return encode_handshake(fbb, m.system_name);
    case Body::kHandshakeResult: return encode_handshake_result(fbb, m.system_name, m.model_name);
    case Body::kRun: return encode_run(fbb);
    case Body::kRunResult: return encode_run_result(fbb, m.value);
    case Body::kSample: return encode_sample(fbb, m.address, m.name, m.dist, m.control, m.replace);
    case Body::kSampleResult: return encode_sample_result(fbb, m.value);
    case Body::kObserve: return encode_observe(fbb, m.address, m.name, m.dist, m.value);
    case Body::kObserveResult: return encode_observe_result(fbb);
    case Body::kTag: return encode_tag(fbb, m.address, m.name, m.value);
    case Body::kTagResult: return encode_tag_result(fbb);
    case Body::kReset: return encode_reset(fbb);
    case Body::kNone: break;
  }
  fbb.Clear();
  return Bytes{};
}

}  // namespace ppfast::ppx
