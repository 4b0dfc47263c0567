// The payload of a run request, written by the host into the data arena:
//
//   u64 number of observations, then for each: u64 name length, the name padded to 8
//       bytes, u64 element count, the float64 elements;
//   u64 number of lost traces (to be recorded as failed without running them: traces
//       whose process crashed or hung earlier in this run), then for each: u64 trace
//       index, u64 message length, the message padded to 8 bytes.
//
// A RunChains payload has the observations, then the chain options: u64 kernel, f64
// scale, f64 prior_mix, u64 burn_in, u64 thinning, u64 max_attempts, u64 stop_on_error,
// u64 chains, a u64 target step count per chain, and the start trace: u64 records (0:
// none), then for each: u64 kind | flags << 8 | dist << 16, the address name, u64
// instance, the values (u64 count, float64s), f64 log_prob, the parameters likewise.
// Names rather than ids: the simulator interns them with its own.
//
// Proposal requests (ProposalRequest, simulator -> host): u64 count, then for each: u64
// slot, address, instance, prev_address, prev_instance, dist, prev_dist, first, f64
// prev_value, the params and prev_params (u64 count, float64s).  Answers: u64 count,
// then for each: u64 kind, the params.
//
// The reader checks every length against the payload's size.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ppfast::shm {

class PayloadWriter {
 public:
  void u64(uint64_t v) { put(&v, 8); }
  void f64(double v) { put(&v, 8); }
  void str(std::string_view s) {
    u64(s.size());
    put(s.data(), s.size());
    pad();
  }
  void f64s(const double* v, size_t n) {
    u64(n);
    put(v, n * sizeof(double));
  }
  const std::vector<uint8_t>& bytes() const { return buf_; }

 private:
  void put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  void pad() { buf_.resize((buf_.size() + 7) / 8 * 8, 0); }
  std::vector<uint8_t> buf_;
};

class PayloadReader {
 public:
  PayloadReader(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  bool ok() const { return ok_; }
  uint64_t u64() {
    uint64_t v = 0;
    if (take(8)) std::memcpy(&v, p_ + at_ - 8, 8);
    return v;
  }
  double f64() {
    double v = 0;
    if (take(8)) std::memcpy(&v, p_ + at_ - 8, 8);
    return v;
  }
  bool done() const { return ok_ && at_ == n_; }
  std::string str() {
    const uint64_t len = u64();
    if (!ok_ || len > n_ - at_) return fail(), std::string();
    std::string s(reinterpret_cast<const char*>(p_ + at_), len);
    take((len + 7) / 8 * 8);
    return s;
  }
  std::vector<double> f64s() {
    const uint64_t len = u64();
    if (!ok_ || len > (n_ - at_) / sizeof(double)) return fail(), std::vector<double>();
    std::vector<double> v(len);
    if (len) std::memcpy(v.data(), p_ + at_, len * sizeof(double));
    take(len * sizeof(double));
    return v;
  }

 private:
  bool take(size_t k) {
    if (!ok_ || k > n_ - at_) return fail(), false;
    at_ += k;
    return true;
  }
  void fail() { ok_ = false; }
  const uint8_t* p_;
  size_t n_, at_ = 0;
  bool ok_ = true;
};

}  // namespace ppfast::shm
