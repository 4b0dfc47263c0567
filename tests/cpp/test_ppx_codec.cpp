// Conformance test of the C++ PPX codec against messages captured from real
// peers (PyProb 1.5.0 <-> pyprob_cpp), plus malformed-input checks.
//
//   test_ppx_codec <ppx-vectors dir>
//
// For every message listed in <dir>/index.json: the decoder must read the
// .bin to exactly the recorded fields; encoding those fields (and re-encoding
// the decoded view) must decode back to the same fields; truncated and
// corrupted copies must give errors (or, for truncations that only cut
// padding, the same content) and never crash. Build it with
// -fsanitize=address,undefined as well. Exit status 0 when all checks pass.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec.hpp"
#include "ppx_generated.h"

namespace px = ppfast::ppx;
namespace fs = std::filesystem;

namespace {

int g_checks = 0;
int g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

// ---- a minimal JSON reader (index.json only needs objects, arrays, strings,
// numbers, booleans and null) -------------------------------------------------

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;  // keeps file order

  const Json* get(const std::string& key) const {
    for (const auto& kv : obj) {
      if (kv.first == key) return &kv.second;
    }
    return nullptr;
  }
  const Json& at(const std::string& key) const {
    const Json* j = get(key);
    if (j == nullptr) throw std::runtime_error("index.json: missing key '" + key + "'");
    return *j;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json j = value();
    ws();
    if (i_ != s_.size()) error("trailing characters");
    return j;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    throw std::runtime_error("index.json: " + what + " at offset " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(std::string("expected '") + c + "'");
  }
  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) error("short \\u escape");
    const uint32_t v = static_cast<uint32_t>(std::stoul(s_.substr(i_, 4), nullptr, 16));
    i_ += 4;
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) error("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
  }
  Json value() {
    ws();
    if (i_ >= s_.size()) error("unexpected end");
    Json j;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      j.kind = Json::kObject;
      if (eat('}')) return j;
      do {
        ws();
        std::string key = string();
        expect(':');
        j.obj.emplace_back(std::move(key), value());
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      j.kind = Json::kArray;
      if (eat(']')) return j;
      do {
        j.arr.push_back(value());
      } while (eat(','));
      expect(']');
    } else if (c == '"') {
      j.kind = Json::kString;
      j.str = string();
    } else if (s_.compare(i_, 4, "true") == 0) {
      i_ += 4;
      j.kind = Json::kBool;
      j.b = true;
    } else if (s_.compare(i_, 5, "false") == 0) {
      i_ += 5;
      j.kind = Json::kBool;
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      // strtod reads Python's shortest round-trip repr back to the same double.
      char* end = nullptr;
      j.num = std::strtod(s_.c_str() + i_, &end);
      if (end == s_.c_str() + i_) error("bad value");
      i_ = static_cast<size_t>(end - s_.c_str());
      j.kind = Json::kNumber;
    }
    return j;
  }

  const std::string& s_;
  size_t i_ = 0;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Aligned copy of a byte string (decode() wants 8-byte aligned input).
struct Buffer {
  std::vector<uint64_t> words;
  size_t size = 0;
  explicit Buffer(const void* p, size_t n) : words(n / 8 + 1), size(n) {
    if (n > 0) std::memcpy(words.data(), p, n);
  }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words.data()); }
};

px::Body body_from_name(const std::string& name) {
  for (uint8_t i = 1; i <= px::kMaxBody; ++i) {
    if (name == px::body_name(static_cast<px::Body>(i))) return static_cast<px::Body>(i);
  }
  throw std::runtime_error("index.json: unknown body '" + name + "'");
}

px::DistKind dist_from_name(const std::string& name) {
  for (uint8_t i = 1; i <= px::kMaxDistKind; ++i) {
    if (name == px::dist_name(static_cast<px::DistKind>(i))) return static_cast<px::DistKind>(i);
  }
  throw std::runtime_error("index.json: unknown distribution '" + name + "'");
}

px::Tensor tensor_from_json(const Json* j) {
  px::Tensor t;
  if (j == nullptr || j->kind == Json::kNull) return t;
  for (const auto& v : j->at("data").arr) t.data.push_back(v.num);
  for (const auto& v : j->at("shape").arr) t.shape.push_back(static_cast<int32_t>(v.num));
  t.present = !t.data.empty();
  return t;
}

// The message the index.json fields describe, as an owned Message.
px::Message message_from_json(const Json& entry) {
  px::Message m;
  m.type = body_from_name(entry.at("body").str);
  const Json& f = entry.at("fields");
  if (const Json* j = f.get("system_name")) m.system_name = j->str;
  if (const Json* j = f.get("model_name")) m.model_name = j->str;
  if (const Json* j = f.get("address")) m.address = j->str;
  if (const Json* j = f.get("name")) m.name = j->str;
  if (const Json* j = f.get("control")) m.control = j->b;
  if (const Json* j = f.get("replace")) m.replace = j->b;
  if (const Json* d = f.get("distribution")) {
    m.dist.kind = dist_from_name(d->at("type").str);
    for (size_t i = 0; i < px::dist_param_count(m.dist.kind); ++i) {
      m.dist.params.push_back(tensor_from_json(&d->at(px::dist_param_name(m.dist.kind, i))));
    }
  }
  if (const Json* j = f.get("value")) m.value = tensor_from_json(j);
  if (const Json* j = f.get("result")) m.value = tensor_from_json(j);
  return m;
}

std::string fmt_tensor(const px::TensorView& t) {
  if (!t.present) return "null";
  std::ostringstream o;
  o.precision(17);
  o << "{data [";
  for (size_t i = 0; i < t.size; ++i) o << (i ? ", " : "") << t.data[i];
  o << "] shape [";
  for (size_t i = 0; i < t.rank(); ++i) o << (i ? ", " : "") << t.dim(i);
  o << "]}";
  return o.str();
}

// Field-by-field comparison with a readable report (equivalent() only says
// yes or no).
void check_fields(const px::MessageView& got, const px::MessageView& want, const std::string& where) {
  check(got.type == want.type, where + ": body " + px::body_name(got.type) + ", expected " +
                                   px::body_name(want.type));
  if (got.type != want.type) return;
  auto same_str = [&](std::string_view a, std::string_view b, const char* field) {
    check(a == b, where + ": " + field + " '" + std::string(a) + "', expected '" + std::string(b) + "'");
  };
  auto same_tensor = [&](const px::TensorView& a, const px::TensorView& b, const std::string& field) {
    px::MessageView x, y;
    x.type = y.type = px::Body::kSampleResult;
    x.value = a;
    y.value = b;
    check(px::equivalent(x, y), where + ": " + field + " " + fmt_tensor(a) + ", expected " + fmt_tensor(b));
  };
  switch (want.type) {
    case px::Body::kHandshake: same_str(got.system_name, want.system_name, "system_name"); break;
    case px::Body::kHandshakeResult:
      same_str(got.system_name, want.system_name, "system_name");
      same_str(got.model_name, want.model_name, "model_name");
      break;
    case px::Body::kSample:
    case px::Body::kObserve:
      same_str(got.address, want.address, "address");
      same_str(got.name, want.name, "name");
      check(got.dist.kind == want.dist.kind, where + ": distribution " + px::dist_name(got.dist.kind) +
                                                 ", expected " + px::dist_name(want.dist.kind));
      check(got.dist.num_params == want.dist.num_params, where + ": number of distribution parameters");
      for (size_t i = 0; i < want.dist.num_params && i < got.dist.num_params; ++i) {
        same_tensor(got.dist.params[i], want.dist.params[i], px::dist_param_name(want.dist.kind, i));
      }
      if (want.type == px::Body::kSample) {
        check(got.control == want.control, where + ": control");
        check(got.replace == want.replace, where + ": replace");
      } else {
        same_tensor(got.value, want.value, "value");
      }
      break;
    case px::Body::kTag:
      same_str(got.address, want.address, "address");
      same_str(got.name, want.name, "name");
      same_tensor(got.value, want.value, "value");
      break;
    case px::Body::kRunResult:
    case px::Body::kSampleResult: same_tensor(got.value, want.value, "result"); break;
    default: break;
  }
  check(px::equivalent(got, want), where + ": equivalent()");
}

// ---- checks on the captured vectors -------------------------------------------

void check_vector(const fs::path& file, const Json& entry, const std::string& where) {
  const std::string raw = read_file(file);
  check(raw.size() == static_cast<size_t>(entry.at("bytes").num), where + ": size differs from index.json");
  const Buffer buf(raw.data(), raw.size());
  const px::Message want_owned = message_from_json(entry);
  const px::MessageView want = px::view_of(want_owned);

  const px::DecodeResult r = px::decode(buf.data(), buf.size);
  check(r.ok(), where + ": decode failed: " + r.error);
  if (!r.ok()) return;
  check_fields(r.message, want, where + " (decoded)");

  // The scalar-vs-[1] distinction must survive: PyTorch treats them differently.
  if (r.message.type == px::Body::kSample || r.message.type == px::Body::kObserve) {
    for (size_t i = 0; i < r.message.dist.num_params; ++i) {
      check(!r.message.dist.params[i].flat, where + ": real peers always send a shape vector");
    }
  }

  // Encode from the recorded fields; decode back.
  flatbuffers::FlatBufferBuilder fbb(64);
  {
    const px::Bytes enc = px::encode(fbb, want);
    const Buffer again(enc.data, enc.size);
    const px::DecodeResult back = px::decode(again.data(), again.size);
    check(back.ok(), where + ": encoded-from-fields does not decode: " + back.error);
    if (back.ok()) check_fields(back.message, want, where + " (encoded from fields)");
    // No file identifier: bytes 4..7 of a buffer written with one would read "PPXF".
    check(enc.size < 8 || std::memcmp(enc.data + 4, "PPXF", 4) != 0, where + ": file identifier written");
    // The generated reader agrees (independent of our decode()). Not
    // ::ppx::VerifyMessageBuffer: that one demands the "PPXF" identifier,
    // which no real peer writes.
    flatbuffers::Verifier v(again.data(), again.size);
    check(v.VerifyBuffer<::ppx::Message>(nullptr), where + ": generated verifier rejects our encoding");
    check(static_cast<uint8_t>(::ppx::GetMessage(again.data())->body_type()) == static_cast<uint8_t>(want.type),
          where + ": generated reader sees another body type");
  }
  // Re-encode the decoded view and an owned copy of it.
  {
    const px::Bytes enc = px::encode(fbb, r.message);
    const Buffer again(enc.data, enc.size);
    const px::DecodeResult back = px::decode(again.data(), again.size);
    check(back.ok(), where + ": re-encoded view does not decode: " + back.error);
    if (back.ok()) check_fields(back.message, want, where + " (re-encoded)");
    const px::Message owned = px::to_owned(r.message);
    const px::Bytes enc2 = px::encode(fbb, px::view_of(owned));
    const Buffer again2(enc2.data, enc2.size);
    const px::DecodeResult back2 = px::decode(again2.data(), again2.size);
    check(back2.ok() && px::equivalent(back2.message, want), where + ": owned copy round trip");
  }

  // Misaligned input: decode() refuses, Decoder copes.
  {
    std::vector<uint8_t> shifted(raw.size() + 8);
    uint8_t* odd = shifted.data() + 3;
    std::memcpy(odd, raw.data(), raw.size());
    const px::DecodeResult mis = px::decode(odd, raw.size());
    check(mis.code == px::ErrorCode::kMisaligned, where + ": misaligned buffer not reported");
    px::Decoder decoder;
    const px::DecodeResult ok = decoder.decode(odd, raw.size());
    check(ok.ok() && px::equivalent(ok.message, want), where + ": Decoder on misaligned input: " + ok.error);
  }

  // Every truncation: an error, unless only trailing padding was cut, in which
  // case the content must be unchanged.
  int truncation_errors = 0;
  for (size_t n = 0; n < raw.size(); ++n) {
    const Buffer cut(raw.data(), n);
    const px::DecodeResult t = px::decode(cut.data(), n);
    if (t.ok()) {
      check(px::equivalent(t.message, want), where + ": truncated to " + std::to_string(n) +
                                                 " bytes decodes to different content");
    } else {
      ++truncation_errors;
      check(!t.error.empty(), where + ": error without message");
    }
  }
  check(truncation_errors >= static_cast<int>(raw.size()) - 8,
        where + ": too few truncations rejected (" + std::to_string(truncation_errors) + ")");

  // Every byte corrupted (three ways): no crash, errors carry a message, and
  // whatever still decodes re-encodes to equivalent content.
  static const uint8_t kXor[] = {0x01, 0x80, 0xFF};
  for (size_t at = 0; at < raw.size(); ++at) {
    for (uint8_t x : kXor) {
      std::string bad = raw;
      bad[at] = static_cast<char>(static_cast<uint8_t>(bad[at]) ^ x);
      const Buffer b(bad.data(), bad.size());
      const px::DecodeResult c = px::decode(b.data(), b.size);
      if (!c.ok()) {
        check(!c.error.empty(), where + ": error without message");
        continue;
      }
      const px::Bytes enc = px::encode(fbb, c.message);
      const Buffer again(enc.data, enc.size);
      const px::DecodeResult back = px::decode(again.data(), again.size);
      check(back.ok() && px::equivalent(back.message, c.message),
            where + ": corrupted-but-valid message does not round-trip (byte " + std::to_string(at) + ")");
    }
  }
}

// ---- crafted malformed messages -------------------------------------------------

template <typename T>
Buffer finish(flatbuffers::FlatBufferBuilder& fbb, uint8_t type, flatbuffers::Offset<T> body) {
  fbb.Finish(::ppx::CreateMessage(fbb, static_cast<::ppx::MessageBody>(type), body.Union()));
  return Buffer(fbb.GetBufferPointer(), fbb.GetSize());
}

void expect_error(const Buffer& b, px::ErrorCode code, const std::string& needle, const std::string& what) {
  const px::DecodeResult r = px::decode(b.data(), b.size);
  check(r.code == code, what + ": code " + px::error_code_name(r.code) + ", expected " + px::error_code_name(code) +
                            " (" + r.error + ")");
  check(r.error.find(needle) != std::string::npos, what + ": message '" + r.error + "' lacks '" + needle + "'");
}

flatbuffers::Offset<::ppx::Tensor> scalar_tensor(flatbuffers::FlatBufferBuilder& fbb, double v) {
  const auto d = fbb.CreateVector(&v, 1);
  const auto s = fbb.CreateVector(static_cast<const int32_t*>(nullptr), 0);
  return ::ppx::CreateTensor(fbb, d, s);
}

void check_crafted() {
  flatbuffers::FlatBufferBuilder fbb;
  {
    fbb.Clear();
    expect_error(finish(fbb, 37, ::ppx::CreateRun(fbb)), px::ErrorCode::kUnknownBody, "unknown message body type 37",
                 "body type 37");
  }
  {
    fbb.Clear();
    expect_error(finish(fbb, 0, flatbuffers::Offset<void>(0)), px::ErrorCode::kNoBody, "no body", "NONE body");
  }
  {
    fbb.Clear();
    // Type byte Sample but no body table.
    fbb.Finish(::ppx::CreateMessage(fbb, ::ppx::MessageBody_Sample, 0));
    expect_error(Buffer(fbb.GetBufferPointer(), fbb.GetSize()), px::ErrorCode::kNoBody, "Sample",
                 "Sample type without table");
  }
  {
    fbb.Clear();
    const auto a = fbb.CreateString("mu");
    const auto mean = scalar_tensor(fbb, 0.0);
    const auto sd = scalar_tensor(fbb, 1.0);
    const auto n = ::ppx::CreateNormal(fbb, mean, sd);
    expect_error(finish(fbb, 5,
                        ::ppx::CreateSample(fbb, a, 0, static_cast<::ppx::Distribution>(19), n.Union())),
                 px::ErrorCode::kUnknownDistribution, "unknown distribution type 19 in Sample at address 'mu'",
                 "distribution type 19");
  }
  {
    fbb.Clear();
    const auto mean = scalar_tensor(fbb, 0.0);
    const auto sd = scalar_tensor(fbb, 1.0);
    const auto n = ::ppx::CreateNormal(fbb, mean, sd);
    expect_error(finish(fbb, 5, ::ppx::CreateSample(fbb, 0, 0, ::ppx::Distribution_Normal, n.Union())),
                 px::ErrorCode::kMissingField, "missing required field 'address' in Sample", "Sample without address");
  }
  {
    fbb.Clear();
    const auto a = fbb.CreateString("x");
    expect_error(finish(fbb, 7, ::ppx::CreateObserve(fbb, a, 0, ::ppx::Distribution_NONE, 0)),
                 px::ErrorCode::kMissingField, "missing required field 'distribution' in Observe",
                 "Observe without distribution");
  }
  {
    fbb.Clear();
    const auto a = fbb.CreateString("x");
    const auto mean = scalar_tensor(fbb, 0.0);
    const auto n = ::ppx::CreateNormal(fbb, mean, 0);
    expect_error(finish(fbb, 5, ::ppx::CreateSample(fbb, a, 0, ::ppx::Distribution_Normal, n.Union())),
                 px::ErrorCode::kMissingField, "missing required parameter 'stddev' of Normal in Sample",
                 "Normal without stddev");
  }
  {
    fbb.Clear();
    const double v[5] = {1, 2, 3, 4, 5};
    const int32_t s[2] = {2, 3};
    const auto d = fbb.CreateVector(v, 5);
    const auto sh = fbb.CreateVector(s, 2);
    const auto t = ::ppx::CreateTensor(fbb, d, sh);
    expect_error(finish(fbb, 6, ::ppx::CreateSampleResult(fbb, t)), px::ErrorCode::kBadTensor,
                 "shape [2, 3] but 5 data values", "shape/data mismatch");
  }
  {
    fbb.Clear();
    const double v = 1;
    const int32_t s = -1;
    const auto d = fbb.CreateVector(&v, 1);
    const auto sh = fbb.CreateVector(&s, 1);
    const auto t = ::ppx::CreateTensor(fbb, d, sh);
    expect_error(finish(fbb, 4, ::ppx::CreateRunResult(fbb, t)), px::ErrorCode::kBadTensor, "negative",
                 "negative extent");
  }
  {
    fbb.Clear();
    expect_error(finish(fbb, 6, ::ppx::CreateSampleResult(fbb, 0)), px::ErrorCode::kMissingField,
                 "missing required field 'result' in SampleResult", "SampleResult without result");
  }
  {
    const Buffer empty(nullptr, 0);
    expect_error(empty, px::ErrorCode::kVerificationFailed, "0 bytes", "empty buffer");
    const char junk[] = "this is not a flatbuffer at all, not even close";
    expect_error(Buffer(junk, sizeof junk), px::ErrorCode::kVerificationFailed,
                 "buffer failed FlatBuffers verification (" + std::to_string(sizeof junk) + " bytes)", "garbage");
  }
  // Random garbage of many sizes never crashes.
  {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20000; ++i) {
      std::vector<uint8_t> g(static_cast<size_t>(rng() % 256));
      for (auto& c : g) c = static_cast<uint8_t>(rng());
      const Buffer b(g.data(), g.size());
      const px::DecodeResult r = px::decode(b.data(), b.size);
      if (!r.ok()) check(!r.error.empty(), "garbage: error without message");
    }
  }

  // Tolerated variants: file identifier present, PPX 0.1.x `replace`, shape omitted.
  {
    fbb.Clear();
    const auto s = fbb.CreateString("old peer");
    fbb.Finish(::ppx::CreateMessage(fbb, ::ppx::MessageBody_Handshake, ::ppx::CreateHandshake(fbb, s).Union()),
               "PPXF");
    const Buffer b(fbb.GetBufferPointer(), fbb.GetSize());
    const px::DecodeResult r = px::decode(b.data(), b.size);
    check(r.ok() && r.message.system_name == "old peer", "buffer with file identifier: " + r.error);
  }
  {
    const double mean = 0.5, sd = 2;
    px::Message m;
    m.type = px::Body::kSample;
    m.address = "a";
    m.dist.kind = px::DistKind::kNormal;
    m.dist.params = {px::Tensor{{mean}, {}, true}, px::Tensor{{sd}, {1}, true}};
    m.control = false;
    m.replace = true;
    const px::Bytes enc = px::encode(fbb, px::view_of(m));
    const Buffer b(enc.data, enc.size);
    const px::DecodeResult r = px::decode(b.data(), b.size);
    check(r.ok() && r.message.replace && !r.message.control && r.message.dist.params[0].rank() == 0 &&
              r.message.dist.params[1].rank() == 1,
          "Sample with replace = true, control = false: " + r.error);
  }
  {
    fbb.Clear();
    const double v[3] = {1, 2, 3};
    const auto d = fbb.CreateVector(v, 3);
    const auto t = ::ppx::CreateTensor(fbb, d, 0);
    const Buffer b = finish(fbb, 6, ::ppx::CreateSampleResult(fbb, t));
    const px::DecodeResult r = px::decode(b.data(), b.size);
    check(r.ok() && r.message.value.flat && r.message.value.rank() == 1 && r.message.value.dim(0) == 3,
          "tensor without shape reads as 1-D: " + r.error);
    if (r.ok()) {
      const px::Message o = px::to_owned(r.message);
      check(o.value.shape == std::vector<int32_t>{3}, "owned copy of a flat tensor has shape [3]");
    }
  }

  // Every encoder produces a message of its own type.
  {
    const double x = 1.5;
    const int32_t one = 1;
    const px::TensorView sv = px::TensorView::scalar(&x);
    const px::TensorView v1 = px::TensorView::of(&x, 1, &one, 1);
    const px::DistView dist = px::make_dist(px::DistKind::kPoisson, sv);
    std::vector<std::pair<px::Body, std::vector<uint8_t>>> cases;
    auto add = [&](px::Body t, px::Bytes b) {
      // A builder's output decodes in place, whatever its (4- or 8-byte) alignment.
      const px::DecodeResult in_place = px::decode(b.data, b.size);
      check(in_place.ok(), std::string("in-place decode of ") + px::body_name(t) + ": " + in_place.error);
      cases.emplace_back(t, std::vector<uint8_t>(b.data, b.data + b.size));
    };
    add(px::Body::kHandshake, px::encode_handshake(fbb, "ppfast"));
    add(px::Body::kHandshakeResult, px::encode_handshake_result(fbb, "sim", "model"));
    add(px::Body::kRun, px::encode_run(fbb));
    add(px::Body::kRunResult, px::encode_run_result(fbb, v1));
    add(px::Body::kSample, px::encode_sample(fbb, "addr", "n", dist));
    add(px::Body::kSampleResult, px::encode_sample_result(fbb, sv));
    add(px::Body::kObserve, px::encode_observe(fbb, "addr", "obs", dist, px::TensorView{}));
    add(px::Body::kObserveResult, px::encode_observe_result(fbb));
    add(px::Body::kTag, px::encode_tag(fbb, "t", "tagname", v1));
    add(px::Body::kTagResult, px::encode_tag_result(fbb));
    add(px::Body::kReset, px::encode_reset(fbb));
    for (const auto& [type, bytes] : cases) {
      const Buffer b(bytes.data(), bytes.size());
      const px::DecodeResult r = px::decode(b.data(), b.size);
      check(r.ok() && r.message.type == type, std::string("encoder for ") + px::body_name(type) + ": " + r.error);
      if (!r.ok()) continue;
      if (type == px::Body::kTag) {
        check(r.message.name == "tagname" && r.message.value.present && r.message.value.data[0] == 1.5, "Tag fields");
      }
      if (type == px::Body::kObserve) check(!r.message.value.present, "Observe without value stays without value");
      if (type == px::Body::kSample) {
        check(r.message.dist.kind == px::DistKind::kPoisson && r.message.control && !r.message.replace,
              "Sample defaults");
      }
    }
    px::MessageView none;
    check(px::encode(fbb, none).size == 0, "encode of a NONE message writes nothing");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <ppx-vectors dir>\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  int vectors = 0;
  try {
    const std::string text = read_file(dir / "index.json");
    const Json index = JsonParser(text).parse();
    for (const auto& [model, info] : index.obj) {
      for (const Json& entry : info.at("messages").arr) {
        const std::string file = entry.at("file").str;
        check_vector(dir / model / file, entry, model + "/" + file);
        ++vectors;
      }
    }
    check_crafted();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: %s\n", e.what());
    return 1;
  }
  std::printf("test_ppx_codec: %d vectors, %d checks, %d failures\n", vectors, g_checks, g_failures);
  return g_failures == 0 && vectors > 0 ? 0 : 1;
}
