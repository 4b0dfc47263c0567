#include "core/mcmc.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace ppfast {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr uint32_t kNoRecord = UINT32_MAX;

bool is_sample_site(const TraceBatch& b, size_t r) {
  const uint8_t f = b.rec_flags[r];
  return b.rec_kind[r] == uint8_t(RecordKind::Sample) && (f & kControl) && !(f & kDiscarded);
}

/// Uniform integer in [0, n).
uint64_t below(Rng& rng, uint64_t n) {
  const auto k = static_cast<uint64_t>(rng.uniform() * static_cast<double>(n));
  return k < n ? k : n - 1;
}

double log_add_exp(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::fabs(a - b)));
}

/// The values of record r of b (element 0 lives in rec_value, tensors in the arena).
const double* record_values(const TraceBatch& b, uint32_t r) {
  return b.rec_value_len[r] > 1 ? b.value_arena.data() + b.rec_value_offset[r] : &b.rec_value[r];
}

Dist record_dist(const TraceBatch& b, uint32_t r) {
  return Dist{DistKind(b.rec_dist[r]), b.rec_value_len[r], b.rec_param_len[r],
              b.param_arena.data() + b.rec_param_offset[r]};
}

/// The random-walk kernel at one site: per element a Normal step (unbounded reals), a
/// Normal truncated to the support (bounded reals), a flip (Bernoulli), a jump to
/// another category (Categorical) or an integer step of at most m (other integers);
/// tensor sites move every real element (step / sqrt(size)) and each integer element
/// with probability 1 / size.
class LocalKernel {
 public:
  LocalKernel(double scale, std::vector<double> (&scratch)[3])
      : scale_(scale), lo_(scratch[0]), hi_(scratch[1]), sd_(scratch[2]) {}

  void sample(const Dist& d, const double* x, Rng& rng, double* y) {
    load(d);
    const bool discrete = dist_is_discrete(d);
    const double move = 1.0 / d.size;
    for (uint32_t j = 0; j < d.size; ++j) {
      if (!discrete) {
        const double s = width(j, d.size);
        if (std::isinf(lo_[j]) && std::isinf(hi_[j])) {
          y[j] = x[j] + s * rng.normal();
        } else {
          const double p[4] = {x[j], s, lo_[j], hi_[j]};
          ppfast::sample(Dist{DistKind::TruncatedNormal, 1, 4, p}, rng, y + j);
        }
      } else if (d.kind == DistKind::Categorical) {
        const uint64_t k = d.nparams;
        const auto xi = static_cast<uint64_t>(x[j]);
        if (k <= 1) {
          y[j] = x[j];
        } else {
          const uint64_t u = below(rng, k - 1);
          y[j] = static_cast<double>(u < xi ? u : u + 1);
        }
      } else if (move < 1.0 && rng.uniform() >= move) {
        y[j] = x[j];
      } else if (d.kind == DistKind::Bernoulli) {
        y[j] = 1.0 - x[j];
      } else {
        const double m = steps(j);
        const double u = 1.0 + static_cast<double>(below(rng, static_cast<uint64_t>(m)));
        y[j] = rng.uniform() < 0.5 ? x[j] - u : x[j] + u;
      }
    }
  }

  /// log k(y | x) for the kernel built on distribution d.
  double log_density(const Dist& d, const double* x, const double* y) {
    load(d);
    const bool discrete = dist_is_discrete(d);
    const double move = 1.0 / d.size;
    double lp = 0;
    for (uint32_t j = 0; j < d.size && lp > kNegInf; ++j) {
      if (!discrete) {
        const double s = width(j, d.size);
        if (std::isinf(lo_[j]) && std::isinf(hi_[j])) {
          const double z = (y[j] - x[j]) / s;
          lp += -0.5 * z * z - std::log(s) - 0.91893853320467274178;  // log sqrt(2 pi)
        } else {
          const double p[4] = {x[j], s, lo_[j], hi_[j]};
          lp += log_prob(Dist{DistKind::TruncatedNormal, 1, 4, p}, y + j);
        }
      } else if (d.kind == DistKind::Categorical) {
        const double k = d.nparams;
        if (k <= 1)
          lp += y[j] == x[j] ? 0.0 : kNegInf;
        else
          lp += y[j] != x[j] && y[j] >= 0 && y[j] < k && y[j] == std::floor(y[j]) ? -std::log(k - 1) : kNegInf;
      } else if (y[j] == x[j]) {
        lp += move < 1.0 ? std::log1p(-move) : kNegInf;
      } else if (d.kind == DistKind::Bernoulli) {
        lp += y[j] == 1.0 - x[j] ? std::log(move) : kNegInf;
      } else {
        const double m = steps(j), step = std::fabs(y[j] - x[j]);
        lp += step >= 1 && step <= m && step == std::floor(step) ? std::log(move) - std::log(2 * m) : kNegInf;
      }
    }
    return lp;
  }

 private:
  void load(const Dist& d) {
    lo_.resize(d.size);
    hi_.resize(d.size);
    sd_.resize(d.size);
    support(d, lo_.data(), hi_.data());
    stddev(d, sd_.data());
  }
  /// Step of a real element: the distribution's spread, at most the support's width.
  double width(uint32_t j, uint32_t size) const {
    const double range = hi_[j] - lo_[j];
    double s = scale_ * sd_[j] / std::sqrt(static_cast<double>(size));
    if (!(s > 0) || !std::isfinite(s)) s = std::isfinite(range) ? scale_ * range / 4 : scale_;
    if (std::isfinite(range) && s > range) s = range;
    return s;
  }
  /// Largest integer step: the distribution's spread, at least 1.
  double steps(uint32_t j) const {
    const double m = std::round(scale_ * sd_[j]);
    return m >= 1 && m < 1e15 ? m : 1.0;
  }

  double scale_;
  std::vector<double>&lo_, &hi_, &sd_;  // the policy's, reused across steps
};

}  // namespace

// ---------------------------------------------------------------------------------- SiteIndex

void SiteIndex::build(const TraceBatch& batch, uint32_t trace) {
  for (uint32_t a : touched_) by_address_[a].clear();
  touched_.clear();
  sites_.clear();
  log_prob_ = 0;
  const uint64_t begin = batch.trace_begin[trace], end = batch.trace_end[trace];
  for (uint64_t r = begin; r < end; ++r) {
    if (!is_sample_site(batch, r)) continue;
    const uint32_t a = batch.rec_address[r], i = batch.rec_instance[r];
    if (a >= by_address_.size()) by_address_.resize(std::max<size_t>(64, 2 * size_t(a) + 1));
    auto& v = by_address_[a];
    if (v.empty()) touched_.push_back(a);
    if (i >= v.size()) v.resize(size_t(i) + 1, 0);
    v[i] = static_cast<uint32_t>(r) + 1;
    sites_.push_back(static_cast<uint32_t>(r));
    log_prob_ += batch.rec_log_prob[r];
  }
}

// ------------------------------------------------------------------------------- ReplayPolicy

void ReplayPolicy::load(const TraceBatch* batch, const SiteIndex* index) {
  batch_ = batch;
  index_ = index;
  chosen_record_ = kNoRecord;
  for (uint32_t r : consumed_list_)
    if (r < consumed_.size()) consumed_[r] = 0;
  consumed_list_.clear();
  if (batch_ && consumed_.size() < batch_->num_records()) consumed_.resize(batch_->num_records(), 0);
}

void ReplayPolicy::choose(uint32_t record) {
  chosen_record_ = record;
  if (record != kNoRecord && batch_) {
    chosen_address_ = batch_->rec_address[record];
    chosen_instance_ = batch_->rec_instance[record];
    chosen_replace_ = batch_->rec_flags[record] & kReplace;
  }
}

void ReplayPolicy::begin_trace(uint64_t) {
  for (uint32_t r : consumed_list_) consumed_[r] = 0;
  consumed_list_.clear();
  invalid_ = chosen_hit_ = false;
  log_forward_ = log_reverse_ = 0;
}

bool ReplayPolicy::propose(uint32_t address, uint32_t instance, const Dist& d, Rng& rng, double* out,
                           double* log_q) {
  *log_q = 0;  // the recorder's importance weight means nothing for MH; finish() does the ratio
  if (!index_) return false;
  const uint32_t found = index_->find(address, instance);
  if (!found) return false;  // a site the replayed trace lacks: fresh prior draw
  const uint32_t r = found - 1;
  if (r == chosen_record_) return propose_chosen(d, rng, out);
  // A second visit to a replayed site is a rejection loop's retry: the replayed value
  // was turned down, so the loop draws afresh.
  if (consumed_[r]) return false;
  consumed_[r] = 1;
  consumed_list_.push_back(r);
  if (batch_->rec_value_len[r] != d.size) return false;  // another shape: another variable
  const double* x = record_values(*batch_, r);
  if (d.size == 1)
    out[0] = x[0];
  else
    std::memcpy(out, x, sizeof(double) * d.size);
  // A replayed value with zero density under its new distribution: the recorder fails
  // the execution and the proposal is rejected.  Normal densities never vanish.
  if (d.kind != DistKind::Normal) {
    const bool ok = dist_is_discrete(d) ? log_prob(d, out) > kNegInf : in_support(d, out);
    if (!ok) invalid_ = true;
  }
  return true;
}

bool ReplayPolicy::propose_chosen(const Dist& d, Rng& rng, double* out) {
  chosen_hit_ = true;
  const uint32_t r = chosen_record_;
  if (batch_->rec_value_len[r] != d.size) {  // the site changed shape: no move is defined
    invalid_ = true;
    return false;
  }
  const double* x = record_values(*batch_, r);
  const Dist old = record_dist(*batch_, r);
  const double w = options_.prior_mix;
  // A rejection loop may retry the chosen site; only prior draws keep its density
  // proportional to the prior there, so those sites always use the prior.
  if (options_.kernel == MHKernel::Prior || chosen_replace_ || w >= 1) {
    ppfast::sample(d, rng, out);
    log_forward_ = log_prob(d, out);
    log_reverse_ = log_prob(old, x);
  } else {
    LocalKernel local(options_.scale, scratch_);
    if (w > 0 && rng.uniform() < w)
      ppfast::sample(d, rng, out);
    else
      local.sample(d, x, rng, out);
    const double lw = w > 0 ? std::log(w) : kNegInf, l1w = std::log1p(-w);
    const double prior_fwd = log_prob(d, out);
    log_forward_ = log_add_exp(lw + prior_fwd, l1w + local.log_density(d, x, out));
    log_reverse_ = log_add_exp(lw + log_prob(old, x), l1w + local.log_density(old, out, x));
    if (!(prior_fwd > kNegInf)) invalid_ = true;  // outside the support: rejected
  }
  return true;
}

// ------------------------------------------------------------------------------------ MHChain

MHChain::MHChain(const MHOptions& options, uint64_t seed, uint32_t chain_id)
    : options_(options), seed_(seed), chain_id_(chain_id), policy_(options) {
  if (options_.thinning == 0) options_.thinning = 1;
  rng_.seed(seed, ~uint64_t(0) - chain_id);  // far from every trace's stream
  current_ = std::make_shared<TraceBatch>();
  output_ = BatchPool::global().acquire();
}

void MHChain::set_start(std::shared_ptr<const TraceBatch> batch, uint32_t trace) {
  start_ = std::move(batch);
  start_index_.build(*start_, trace);
}

uint64_t MHChain::initial_index(uint32_t attempt) const {
  return (uint64_t(chain_id_) << 40) | (uint64_t(1) << 39) | attempt;
}

void MHChain::prepare_initial() {
  if (start_)
    policy_.load(start_.get(), &start_index_);
  else
    policy_.load(nullptr, nullptr);
  policy_.choose(kNoRecord);
}

int MHChain::offer_initial(TraceBatch& batch, ErrorCode code) {
  const size_t row = batch.num_traces() - 1;
  if (batch.status[row] != uint8_t(TraceStatus::Ok)) {
    last_error_ = batch.messages[batch.message[row]];
    last_error_code_ = code;
    if (policy_.invalid() || code == ErrorCode::OutOfSupport || code == ErrorCode::Proposal)
      return kMHRejectedInvalid;
    return kMHError;
  }
  if (!(batch.log_likelihood[row] > kNegInf)) {
    last_error_ = "the log-likelihood is -inf";
    last_error_code_ = ErrorCode::None;
    return kMHRejectedInvalid;
  }
  adopt(batch);
  started_ = true;
  start_.reset();
  return kMHAccepted;
}

void MHChain::adopt(TraceBatch& batch) {
  std::swap(*current_, batch);  // swaps the columns' buffers, copies nothing
  index_.build(*current_, static_cast<uint32_t>(current_->num_traces() - 1));
  current_log_joint_ = index_.log_prob() + current_->log_likelihood.back();
  policy_.load(current_.get(), &index_);
}

uint64_t MHChain::prepare() {
  const auto& sites = index_.sites();
  has_choice_ = !sites.empty();
  if (has_choice_) {
    const uint32_t r = sites[below(rng_, sites.size())];
    policy_.choose(r);
    chosen_old_log_prob_ = current_->rec_log_prob[r];
  } else {
    policy_.choose(kNoRecord);
  }
  return (uint64_t(chain_id_) << 40) | (steps_ + 1);
}

int MHChain::finish(TraceBatch& batch, ErrorCode code) {
  ++steps_;
  int flags = 0;
  const size_t row = batch.num_traces() - 1;
  if (batch.status[row] != uint8_t(TraceStatus::Ok)) {
    if (policy_.invalid() || code == ErrorCode::OutOfSupport || code == ErrorCode::Proposal) {
      ++invalid_;
      flags |= kMHRejectedInvalid;
    } else {
      ++errors_;
      last_error_ = batch.messages[batch.message[row]];
      last_error_code_ = code;
      flags |= kMHError;
    }
  } else if (policy_.invalid()) {
    ++invalid_;
    flags |= kMHRejectedInvalid;
  } else if (has_choice_ && policy_.chosen_hit()) {
    // Classify the new trace's sites: the chosen one, replayed ones (same value as in
    // the state) and fresh ones; old sites that were not replayed are stale.
    const uint32_t ca = policy_.chosen_address(), ci = policy_.chosen_instance();
    double log_joint = 0, fresh = 0, replayed_old = 0;
    size_t n_new = 0;
    for (uint64_t r = batch.trace_begin[row], end = batch.trace_end[row]; r < end; ++r) {
      if (!is_sample_site(batch, r)) continue;
      ++n_new;
      const double lp = batch.rec_log_prob[r];
      log_joint += lp;
      if (batch.rec_flags[r] & kProposed) {
        const uint32_t a = batch.rec_address[r], i = batch.rec_instance[r];
        if (a == ca && i == ci) continue;
        if (const uint32_t o = index_.find(a, i)) replayed_old += current_->rec_log_prob[o - 1];
      } else {
        fresh += lp;
      }
    }
    log_joint += batch.log_likelihood[row];
    const double stale = index_.log_prob() - chosen_old_log_prob_ - replayed_old;
    const double n_old = static_cast<double>(index_.sites().size());
    const double log_alpha = log_joint - current_log_joint_ + std::log(n_old) -
                             std::log(static_cast<double>(n_new)) + policy_.log_reverse() -
                             policy_.log_forward() + stale - fresh;
    if (std::log(rng_.uniform()) < log_alpha) {
      adopt(batch);
      ++accepted_;
      flags |= kMHAccepted;
    }
  }
  keep_if_due(flags);
  return flags;
}

void MHChain::keep_if_due(int& flags) {
  if (steps_ <= options_.burn_in || (steps_ - options_.burn_in) % options_.thinning != 0) return;
  output_->append(*current_);
  output_->log_weight.back() = 0;  // MCMC states are equally weighted
  flags |= kMHKept;
}

std::shared_ptr<TraceBatch> MHChain::take_output() {
  auto out = std::move(output_);
  output_ = BatchPool::global().acquire();
  return out;
}

// ------------------------------------------------------------------------------ MHNativeRunner

MHNativeRunner::MHNativeRunner(ppfast_model_fn fn, int threads, std::shared_ptr<Observations> observations,
                               uint64_t seed)
    : fn_(fn), pool_(threads), observations_(std::move(observations)), seed_(seed) {}

void mh_initialize_chain(MHChain& chain, ppfast_model_fn fn, Recorder& r, TraceBatch& scratch, uint32_t max_attempts,
                         bool stop_on_error) {
  for (uint32_t a = 0; a < max_attempts && !chain.started(); ++a) {
    chain.prepare_initial();
    scratch.clear();
    r.begin_trace(chain.initial_index(a));
    const double result = execute(fn, r);
    r.end_trace(result);
    if ((chain.offer_initial(scratch, r.error_code()) & kMHError) && stop_on_error) break;
  }
}

void mh_run_chain(MHChain& chain, ppfast_model_fn fn, Recorder& r, TraceBatch& scratch, uint64_t steps,
                  bool stop_on_error, void (*after_step)(void*), void* context) {
  if (!chain.started() || chain.steps() >= chain.target_steps) return;
  const uint64_t n = std::min(steps, chain.target_steps - chain.steps());
  for (uint64_t k = 0; k < n; ++k) {
    const uint64_t index = chain.prepare();
    scratch.clear();
    r.begin_trace(index);
    const double result = execute(fn, r);
    r.end_trace(result);
    const int flags = chain.finish(scratch, r.error_code());
    if (after_step) after_step(context);
    if ((flags & kMHError) && stop_on_error) break;
  }
}

void MHNativeRunner::initialize(const std::vector<MHChain*>& chains, uint32_t max_attempts, bool stop_on_error) {
  pool_.run(chains.size(), [&](size_t c, int) {
    MHChain& chain = *chains[c];
    if (chain.started()) return;
    auto scratch = BatchPool::global().acquire();
    Recorder r(*scratch, observations_.get(), seed_, chain.policy());
    RecorderScope scope(&r);
    mh_initialize_chain(chain, fn_, r, *scratch, max_attempts, stop_on_error);
  });
}

void MHNativeRunner::run(const std::vector<MHChain*>& chains, uint64_t steps, bool stop_on_error) {
  pool_.run(chains.size(), [&](size_t c, int) {
    MHChain& chain = *chains[c];
    if (!chain.started() || chain.steps() >= chain.target_steps) return;
    auto scratch = BatchPool::global().acquire();
    Recorder r(*scratch, observations_.get(), seed_, chain.policy());
    RecorderScope scope(&r);
    mh_run_chain(chain, fn_, r, *scratch, steps, stop_on_error);
  });
}

}  // namespace ppfast
