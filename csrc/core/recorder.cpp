#include "core/recorder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/address_table.hpp"

namespace ppfast {

void Observations::set(uint32_t name, std::vector<double> v) {
  if (name >= values.size()) {
    values.resize(name + 1);
    given.resize(name + 1, 0);
  }
  values[name] = std::move(v);
  given[name] = 1;
}

Recorder*& current_recorder() {
  // Default TLS model, not initial-exec: every simulator library links this core, and
  // initial-exec TLS in a dlopen'ed library takes glibc's small static-TLS reserve, which a
  // few loaded simulators (beside torch's own libraries) exhaust: "cannot allocate memory
  // in static TLS block".
  static thread_local Recorder* current = nullptr;
  return current;
}

Recorder::Recorder(TraceBatch& out, const Observations* observations, uint64_t seed, Policy* policy)
    : out_(out), observations_(observations), policy_(policy), seed_(seed) {}

void Recorder::begin_trace(uint64_t index) {
  nunits_ = 0;
  index_ = index;
  begin_ = out_.num_records();
  trace_ = static_cast<uint32_t>(out_.num_traces());
  log_prior_ = log_likelihood_ = log_correction_ = 0;
  type_hash_ = kHashSeed;
  type_dirty_ = false;
  failed_ = stopped_ = false;
  in_trace_ = true;
  value_begin_ = out_.value_arena.size();
  param_begin_ = out_.param_arena.size();
  last_nparams_ = UINT32_MAX;  // parameters are shared within a trace only: its layout is its own
  code_ = ErrorCode::None;
  error_.clear();
  rng_.seed(seed_, index);
  for (uint32_t a : touched_) {
    instances_[a] = 0;
    last_replace_[a] = 0;
  }
  touched_.clear();
  if (policy_) policy_->begin_trace(index);
}

bool Recorder::end_trace(double result) {
  if (nunits_) flush_units();
  in_trace_ = false;
  const uint64_t end = out_.num_records();
  uint64_t type = type_hash_;
  if (type_dirty_) {  // a rejection loop discarded draws: hash the surviving ones
    type = kHashSeed;
    for (uint64_t r = begin_; r < end; ++r)
      if (out_.rec_kind[r] == uint8_t(RecordKind::Sample) && (out_.rec_flags[r] & kControl) &&
          !(out_.rec_flags[r] & kDiscarded))
        type = hash_step(type, out_.rec_address[r]);
  }
  out_.trace_index.push_back(index_);
  out_.trace_begin.push_back(begin_);
  out_.trace_end.push_back(end);
  out_.log_prior.push_back(log_prior_);
  out_.log_likelihood.push_back(log_likelihood_);
  out_.log_weight.push_back(failed_ ? -std::numeric_limits<double>::infinity() : log_likelihood_ + log_correction_);
  out_.result.push_back(failed_ ? std::nan("") : result);
  out_.trace_type.push_back(type);
  out_.status.push_back(uint8_t(failed_ ? TraceStatus::Error : TraceStatus::Ok));
  if (failed_) {
    out_.message.push_back(static_cast<uint32_t>(out_.messages.size()));
    out_.messages.push_back(error_);
  } else {
    out_.message.push_back(0);
  }
  return !failed_;
}

void Recorder::discard_trace() {
  nunits_ = 0;
  in_trace_ = false;
  TraceBatch& b = out_;
  for (auto* v : {&b.rec_trace, &b.rec_address, &b.rec_instance, &b.rec_name, &b.rec_value_offset, &b.rec_value_len,
                  &b.rec_param_offset, &b.rec_param_len})
    v->resize(begin_);
  for (auto* v : {&b.rec_kind, &b.rec_flags, &b.rec_dist}) v->resize(begin_);
  for (auto* v : {&b.rec_value, &b.rec_log_prob}) v->resize(begin_);
  b.value_arena.resize(value_begin_);
  b.param_arena.resize(param_begin_);
}

void Recorder::fail(const std::string& message, ErrorCode code) {
  if (failed_) return;  // keep the first cause
  failed_ = true;
  code_ = code;
  error_ = message;
}

std::string Recorder::site(uint32_t address, uint32_t name) const {
  auto& table = AddressTable::global();
  std::string s = "'" + table.name(address) + "'";
  if (name && name != address) s += " (name '" + table.name(name) + "')";
  std::string where = table.location(address);
  if (!where.empty()) s += " at " + where;
  return s;
}

uint32_t Recorder::next_instance(uint32_t address, bool replace, uint64_t record) {
  if (address >= instances_.size()) {
    size_t n = std::max<size_t>(64, 2 * size_t(address) + 1);
    instances_.resize(n, 0);
    last_replace_.resize(n, 0);
  }
  if (instances_[address] == 0 && last_replace_[address] == 0) touched_.push_back(address);
  if (!replace) {
    last_replace_[address] = 0;
    return instances_[address]++;
  }
  // Rejection loop: every try shares one instance; the previous try is discarded.
  if (uint64_t prev = last_replace_[address]) {
    out_.rec_flags[prev - 1] |= kDiscarded;
    type_dirty_ = true;
    log_prior_ -= out_.rec_log_prob[prev - 1];
    last_replace_[address] = record + 1;
    return instances_[address] - 1;
  }
  last_replace_[address] = record + 1;
  return instances_[address]++;
}

// flatten: inline the thirteen column appends (GCC otherwise calls out for each).
__attribute__((flatten)) void Recorder::append(RecordKind kind, uint8_t flags, const Dist* d, uint32_t address, uint32_t instance,
                      uint32_t name, const double* value, uint32_t n, double log_prob) {
  // Grow every record column at once, so the push_backs below never reallocate.
  const size_t size = out_.rec_trace.size();
  if (size == out_.rec_trace.capacity()) out_.reserve(out_.num_traces(), std::max<size_t>(4096, 2 * size));
  out_.rec_trace.push_back(trace_);
  out_.rec_address.push_back(address);
  out_.rec_instance.push_back(instance);
  out_.rec_name.push_back(name);
  out_.rec_kind.push_back(uint8_t(kind));
  out_.rec_flags.push_back(flags);
  out_.rec_dist.push_back(d ? uint8_t(d->kind) : 0);
  out_.rec_value.push_back(n ? value[0] : std::nan(""));
  out_.rec_log_prob.push_back(log_prob);
  if (n > 1) {
    out_.rec_value_offset.push_back(static_cast<uint32_t>(out_.value_arena.size()));
    out_.value_arena.insert(out_.value_arena.end(), value, value + n);
  } else {
    out_.rec_value_offset.push_back(0);
  }
  out_.rec_value_len.push_back(n);
  // Only samples keep their parameters (inference and training read those alone): an
  // observe's would be a third of GUM's batch, and a calorimeter's mean grid would triple it.
  if (d && kind == RecordKind::Sample) {
    out_.rec_param_offset.push_back(store_params(*d));
    out_.rec_param_len.push_back(d->nparams);
  } else {
    out_.rec_param_offset.push_back(static_cast<uint32_t>(out_.param_arena.size()));
    out_.rec_param_len.push_back(0);
  }
}

uint32_t Recorder::store_params(const Dist& d) {
  // Parameters equal to the last ones stored in this trace (a loop's Normal(0, 1)) are not
  // stored again: the record points at that copy (records may share arena entries; every
  // reader goes through the offsets).  Only within a trace, so a batch's arena is the same
  // whatever the threads or chunks that recorded it.
  const size_t size = out_.param_arena.size();
  if (d.nparams == last_nparams_ && last_params_ + d.nparams <= size &&
      std::memcmp(out_.param_arena.data() + last_params_, d.params, d.nparams * sizeof(double)) == 0)
    return static_cast<uint32_t>(last_params_);
  if (d.nparams <= 4) {  // the common scalar case: no memmove call
    for (uint32_t i = 0; i < d.nparams; ++i) out_.param_arena.push_back(d.params[i]);
  } else {
    out_.param_arena.insert(out_.param_arena.end(), d.params, d.params + d.nparams);
  }
  last_params_ = size;
  last_nparams_ = d.nparams;
  return static_cast<uint32_t>(size);
}

double Recorder::sample(const Dist& d, uint32_t address, uint32_t name, uint32_t flags, double* out) {
  if (nunits_) flush_units();
  if (stop_ && stop_->load(std::memory_order_relaxed) && !failed_) {
    stopped_ = true;  // a long or endless trace gives way to Ctrl-C at its next draw
    fail("stopped (interrupted)");
  }
  if (failed_) return out[0] = std::nan("");
  // PyProb's observation style 2: a named sample whose name is in observe={...} is an
  // observation of that value, and the model goes on with it.
  if (name && observations_) {
    if (const auto* given = observations_->find(name)) {
      observe(d, address, name, given->data(), static_cast<uint32_t>(given->size()));
      for (uint32_t i = 0; i < d.size; ++i) out[i] = i < given->size() ? (*given)[i] : std::nan("");
      return out[0];
    }
  }
  if (!is_valid(d)) {
    fail("invalid distribution at sample " + site(address, name) + ": " + validate(d), ErrorCode::InvalidDistribution);
    for (uint32_t i = 0; i < d.size; ++i) out[i] = std::nan("");
    return out[0];
  }
  const bool control = flags & kControl, replace = flags & kReplace;
  const uint64_t record = out_.num_records();
  const uint32_t instance = next_instance(address, replace, record);
  uint8_t rflags = uint8_t(flags & (kControl | kReplace));
  double lp;
  double log_q;
  if (control && policy_ && policy_->propose(address, instance, d, rng_, out, &log_q)) {
    lp = log_prob(d, out);
    if (!(lp > -std::numeric_limits<double>::infinity())) {
      fail("proposal at sample " + site(address, name) + " gave a value outside the support of " +
           dist_name(d.kind), ErrorCode::Proposal);
      return out[0];
    }
    log_correction_ += lp - log_q;
    rflags |= kProposed;
  } else if (d.kind == DistKind::Normal && d.size == 1) {
    // The most common site, fused; log(stddev) is cached across draws (same arithmetic
    // as log_prob, so the result is bit-identical).
    const double mean = d.params[0], sd = d.params[1];
    out[0] = mean + sd * rng_.normal();
    if (sd != cached_sd_) {
      cached_sd_ = sd;
      cached_log_sd_ = std::log(sd);
    }
    const double z = (out[0] - mean) / sd;
    lp = -0.5 * z * z - cached_log_sd_ - 0.918938533204672741780329736406;  // log(sqrt(2 pi))
  } else if (d.kind == DistKind::Uniform && d.size == 1 && std::isfinite(d.params[1] - d.params[0])) {
    // (A width that overflows, e.g. Uniform(-1e308, 1e308), takes sample()'s general path.)
    // Draws captured at a simulator's generator: one per random number it uses, fused
    // like Normal (the same arithmetic as sample() and log_prob(), bit for bit).
    const double low = d.params[0], width = d.params[1] - d.params[0];
    out[0] = low + width * rng_.uniform();
    if (out[0] >= d.params[1]) out[0] = std::nextafter(d.params[1], low);  // rounded up to high, outside [low, high)
    if (width != cached_width_) {
      cached_width_ = width;
      cached_log_width_ = 0.0 + -std::log(width);
    }
    lp = cached_log_width_;
  } else {
    ppfast::sample(d, rng_, out);
    lp = log_prob(d, out);
  }
  if (!std::isfinite(lp)) {
    // Parameters valid but too extreme for doubles (Normal(0, 1e308), Exponential(1e-310)):
    // a draw overflowed out of the support. Never hand such a value to the model as a draw.
    fail("invalid distribution at sample " + site(address, name) + ": " + dist_name(d.kind) +
             ": a draw fell outside the support (" + std::to_string(out[0]) +
             "): the parameters are too extreme for double precision",
         ErrorCode::InvalidDistribution);
    return out[0];
  }
  log_prior_ += lp;
  if (control) type_hash_ = hash_step(type_hash_, address);
  append(RecordKind::Sample, rflags, &d, address, instance, name, out, d.size, lp);
  return out[0];
}

namespace {
const double kUnitParams[2] = {0.0, 1.0};
const Dist kUnitDist{DistKind::Uniform, 1, 2, kUnitParams};
}  // namespace

__attribute__((noinline)) double Recorder::sample_unit_general(uint32_t address) {
  double u;
  return sample(kUnitDist, address, 0, kControl, &u);
}

// flatten: next_instance, the generator and the hash inline (flush_units stays a call).
__attribute__((flatten)) double Recorder::sample_unit(uint32_t address) {
  // Stops, failures and proposals (replays, IC) take the general path.
  if (policy_ || failed_ || (stop_ && stop_->load(std::memory_order_relaxed))) return sample_unit_general(address);
  if (nunits_ == kUnitBlock) flush_units();
  const uint32_t instance = next_instance(address, false, 0);  // (the record index is for replace draws)
  const double u = rng_.uniform();  // sample()'s fused Uniform: 0 + 1 * u is u, and its log-density 0
  type_hash_ = hash_step(type_hash_, address);
  unit_address_[nunits_] = address;
  unit_instance_[nunits_] = instance;
  unit_value_[nunits_++] = u;
  return u;
}

// The records sample_unit's draws would have appended one by one (see append).  Every
// column is written once: copied from the block's columns, or filled with its constant.
__attribute__((noinline)) void Recorder::flush_units() {
  const size_t n = nunits_;
  if (n == 0) return;
  nunits_ = 0;
  TraceBatch& b = out_;
  const size_t r0 = b.num_records();
  if (r0 + n > b.rec_trace.capacity()) b.reserve(b.num_traces(), std::max<size_t>(4096, 2 * (r0 + n)));
  b.rec_trace.resize(r0 + n, trace_);
  b.rec_name.resize(r0 + n, 0);
  b.rec_kind.resize(r0 + n, uint8_t(RecordKind::Sample));
  b.rec_flags.resize(r0 + n, uint8_t(kControl));
  b.rec_dist.resize(r0 + n, uint8_t(DistKind::Uniform));
  b.rec_log_prob.resize(r0 + n, 0.0);
  b.rec_value_offset.resize(r0 + n, 0);
  b.rec_value_len.resize(r0 + n, 1);
  b.rec_param_len.resize(r0 + n, 2);
  b.rec_address.insert(b.rec_address.end(), unit_address_, unit_address_ + n);
  b.rec_instance.insert(b.rec_instance.end(), unit_instance_, unit_instance_ + n);
  b.rec_value.insert(b.rec_value.end(), unit_value_, unit_value_ + n);
  // Every draw's parameters are (0, 1): one shared copy, as store_params keeps them.
  b.rec_param_offset.resize(r0 + n, store_params(kUnitDist));
}

double Recorder::observe(const Dist& d, uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (nunits_) flush_units();
  if (failed_) return 0;
  if (!is_valid(d)) {
    fail("invalid distribution at observe " + site(address, name) + ": " + validate(d),
         ErrorCode::InvalidDistribution);
    return 0;
  }
  const uint32_t instance = next_instance(address, false, out_.num_records());
  if (const auto* given = observations_ ? observations_->find(name) : nullptr) {
    value = given->data();
    n = static_cast<uint32_t>(given->size());
  }
  if (!value) {
    if (observations_ && observations_->required) {
      std::string label = AddressTable::global().name(name ? name : address);
      fail("observe " + site(address, name) + " has no value: pass observe={'" + label + "': ...}",
           ErrorCode::MissingObservation);
      return 0;
    }
    // Prior run: the observation is simulated (training data for inference compilation).
    scratch_.resize(d.size);
    ppfast::sample(d, rng_, scratch_.data());
    append(RecordKind::Observe, 0, &d, address, instance, name, scratch_.data(), d.size,
           observe_log_prob(d, scratch_.data()));
    return 0;
  }
  if (n != d.size) {
    std::ostringstream msg;
    msg << "observe " << site(address, name) << ": value has " << n << " elements, the " << dist_name(d.kind)
        << " has " << d.size;
    fail(msg.str(), ErrorCode::OutOfSupport);
    return 0;
  }
  double lp = observe_log_prob(d, value);
  // A value impossible under this trace's parameters (Uniform(th - 0.5, th + 0.5) observed
  // far from th) gives the trace weight zero; one impossible under every parameter value
  // of the distribution (Poisson observed at -1 or 2.5, Bernoulli at 3, a NaN) is a
  // mistake in the data, reported at once.
  if (!(lp > -std::numeric_limits<double>::infinity()) && !in_kind_support(d, value)) {
    std::ostringstream msg;
    msg << "observe " << site(address, name) << ": observed value " << value[0] << (n > 1 ? ", ..." : "")
        << " is outside the support of the " << dist_name(d.kind) << " for any parameters";
    fail(msg.str(), ErrorCode::OutOfSupport);
    return 0;
  }
  log_likelihood_ += lp;
  append(RecordKind::Observe, kObserved, &d, address, instance, name, value, n, lp);
  return lp;
}

double Recorder::observe_log_prob(const Dist& d, const double* value) {
  if (d.kind != DistKind::Normal || d.size != 1) return log_prob(d, value);
  // The common observe site: log(stddev) cached across observes (apart from sample()'s
  // cache, as models often observe with one stddev and sample with another); the same
  // arithmetic as log_prob, so the result is bit-identical.
  const double mean = d.params[0], sd = d.params[1];
  if (sd != observe_sd_) {
    observe_sd_ = sd;
    observe_log_sd_ = std::log(sd);
  }
  const double z = (value[0] - mean) / sd;
  return -0.5 * z * z - observe_log_sd_ - 0.918938533204672741780329736406;  // log(sqrt(2 pi))
}

void Recorder::tag(uint32_t address, uint32_t name, const double* value, uint32_t n) {
  if (nunits_) flush_units();
  if (failed_) return;
  const uint32_t instance = next_instance(address, false, out_.num_records());
  append(RecordKind::Tag, 0, nullptr, address, instance, name, value, n, 0.0);
}

void Recorder::factor(double log_prob) {
  if (nunits_) flush_units();
  if (failed_) return;
  // -inf is a valid factor (weight zero); NaN and +inf are not log-probabilities of anything
  // and would make every weight of the run NaN after normalization.
  if (std::isnan(log_prob) || log_prob == std::numeric_limits<double>::infinity()) {
    fail(std::string("factor: log-probability is ") + (std::isnan(log_prob) ? "NaN" : "+inf"),
         ErrorCode::InvalidDistribution);
    return;
  }
  log_likelihood_ += log_prob;
  append(RecordKind::Factor, 0, nullptr, 0, 0, 0, &log_prob, 1, log_prob);
}

}  // namespace ppfast
