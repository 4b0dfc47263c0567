// Fuzz target for the PPX decoder.
//
// libFuzzer (Clang):
//   clang++ -std=c++17 -g -fsanitize=fuzzer,address,undefined -I<gen dir>
//       fuzz_decode.cpp codec.cpp -o ppx_fuzz && ./ppx_fuzz <corpus dir>
// Without Clang, -DPPFAST_FUZZ_STANDALONE adds a main() that replays the PPX
// test vectors and random mutations of them (build with
// -fsanitize=address,undefined to get the same checks):
//   ppx_fuzz_standalone <vectors dir> [iterations=20000] [seed=1]
//
// Invariants checked on every input: decode never crashes; whatever decodes
// re-encodes, and the re-encoded bytes decode to equivalent content, through
// both `decode` and a misaligned `Decoder` copy.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "codec.hpp"

namespace {

namespace px = ppfast::ppx;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_decode: invariant violated: %s\n", what);
  std::abort();
}

void check_one(const uint8_t* data, size_t size) {
  // libFuzzer hands out malloc'd (aligned) copies; keep our own aligned copy
  // anyway so the standalone driver can pass any pointer.
  std::vector<uint64_t> aligned((size + 7) / 8 + 1);
  if (size > 0) std::memcpy(aligned.data(), data, size);
  const auto* buf = reinterpret_cast<const uint8_t*>(aligned.data());

  const px::DecodeResult r = px::decode(buf, size);
  if (r.ok() != r.error.empty()) fail("error text must be set exactly when decoding fails");

  // The same bytes at an odd address must decode identically via Decoder.
  std::vector<uint8_t> shifted(size + 1);
  if (size > 0) std::memcpy(shifted.data() + 1, data, size);
  px::Decoder decoder;
  const px::DecodeResult r2 = decoder.decode(shifted.data() + 1, size);
  if (r.code != r2.code) fail("Decoder and decode disagree on a misaligned copy");
  if (!r.ok()) return;
  if (!px::equivalent(r.message, r2.message)) fail("Decoder content differs from decode content");

  // Round trip through the encoder, both from the view and from an owned copy.
  flatbuffers::FlatBufferBuilder fbb(256);
  const px::Bytes out = px::encode(fbb, r.message);
  if (out.size == 0) fail("a decoded message must re-encode");
  const std::vector<uint8_t> bytes(out.data, out.data + out.size);
  const px::DecodeResult back = px::decode(bytes.data(), bytes.size());
  if (!back.ok()) fail("re-encoded message does not decode");
  if (!px::equivalent(r.message, back.message)) fail("re-encoded message decodes to different content");

  const px::Message owned = px::to_owned(r.message);
  const px::Bytes out2 = px::encode(fbb, px::view_of(owned));
  const px::DecodeResult back2 = px::decode(out2.data, out2.size);
  if (!back2.ok() || !px::equivalent(r.message, back2.message)) fail("owned copy round trip differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_one(data, size);
  return 0;
}

#ifdef PPFAST_FUZZ_STANDALONE

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace {

std::vector<std::vector<uint8_t>> load_vectors(const std::filesystem::path& dir) {
  std::vector<std::vector<uint8_t>> out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".bin") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());  // deterministic runs for a given seed
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

std::vector<uint8_t> mutate(const std::vector<std::vector<uint8_t>>& corpus, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  std::vector<uint8_t> m = corpus[pick(corpus.size())];
  const int rounds = 1 + static_cast<int>(pick(4));
  for (int k = 0; k < rounds; ++k) {
    switch (pick(8)) {
      case 0:  // flip one bit
        if (!m.empty()) m[pick(m.size())] ^= static_cast<uint8_t>(1u << pick(8));
        break;
      case 1:  // random byte
        if (!m.empty()) m[pick(m.size())] = static_cast<uint8_t>(rng());
        break;
      case 2:  // truncate
        m.resize(pick(m.size() + 1));
        break;
      case 3:  // erase a range
        if (!m.empty()) {
          const size_t at = pick(m.size());
          m.erase(m.begin() + static_cast<std::ptrdiff_t>(at),
                  m.begin() + static_cast<std::ptrdiff_t>(std::min(m.size(), at + 1 + pick(8))));
        }
        break;
      case 4: {  // insert random bytes
        const size_t at = pick(m.size() + 1);
        std::vector<uint8_t> ins(1 + pick(8));
        for (auto& b : ins) b = static_cast<uint8_t>(rng());
        m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
        break;
      }
      case 5:  // union type bytes and small counts are interesting values
        if (!m.empty()) {
          static const uint8_t kInteresting[] = {0, 1, 5, 7, 11, 12, 19, 37, 0x7f, 0x80, 0xff};
          m[pick(m.size())] = kInteresting[pick(sizeof kInteresting)];
        }
        break;
      case 6:  // overwrite a 32-bit word (offsets, lengths)
        if (m.size() >= 4) {
          const size_t at = pick(m.size() / 4) * 4;
          const uint32_t v = pick(2) ? static_cast<uint32_t>(rng()) : static_cast<uint32_t>(pick(m.size() + 16));
          std::memcpy(&m[at], &v, 4);
        }
        break;
      default: {  // splice the tail of another vector
        const auto& other = corpus[pick(corpus.size())];
        const size_t cut = pick(m.size() + 1);
        const size_t from = pick(other.size() + 1);
        m.resize(cut);
        m.insert(m.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
        break;
      }
    }
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <ppx-vectors dir> [iterations=20000] [seed=1]\n", argv[0]);
    return 2;
  }
  const long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
  const unsigned long long seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
  std::vector<std::vector<uint8_t>> corpus;
  try {
    corpus = load_vectors(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot read %s: %s\n", argv[1], e.what());
    return 2;
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no .bin files under %s\n", argv[1]);
    return 2;
  }
  for (const auto& v : corpus) LLVMFuzzerTestOneInput(v.data(), v.size());
  LLVMFuzzerTestOneInput(nullptr, 0);

  std::mt19937_64 rng(seed);
  long decoded = 0;
  for (long i = 0; i < iterations; ++i) {
    const std::vector<uint8_t> m = mutate(corpus, rng);
    LLVMFuzzerTestOneInput(m.data(), m.size());
    std::vector<uint64_t> aligned((m.size() + 7) / 8 + 1);
    if (!m.empty()) std::memcpy(aligned.data(), m.data(), m.size());
    decoded += ppfast::ppx::decode(reinterpret_cast<const uint8_t*>(aligned.data()), m.size()).ok();
  }
  std::printf("fuzz_decode: %zu vectors, %ld mutations (seed %llu), %ld still decoded, no crash\n", corpus.size(),
              iterations, seed, decoded);
  return 0;
}

#endif  // PPFAST_FUZZ_STANDALONE
