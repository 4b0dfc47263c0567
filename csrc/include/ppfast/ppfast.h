/* ppfast C ABI: the one contract between a simulator (C, C++, Fortran, numba) and the
 * ppfast recorder.  No Python, no C++ types.  Calls made outside a ppfast run sample
 * from the prior, so a simulator keeps working standalone. */
#ifndef PPFAST_H
#define PPFAST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PPFAST_ABI_VERSION 2u

/* Distribution kinds; 1..11 match the PPX protocol's Distribution union. */
enum ppfast_dist_kind {
  PPFAST_NORMAL = 1,
  PPFAST_UNIFORM = 2,
  PPFAST_CATEGORICAL = 3,
  PPFAST_POISSON = 4,
  PPFAST_BERNOULLI = 5,
  PPFAST_BETA = 6,
  PPFAST_EXPONENTIAL = 7,
  PPFAST_GAMMA = 8,
  PPFAST_LOGNORMAL = 9,
  PPFAST_BINOMIAL = 10,
  PPFAST_WEIBULL = 11,
  PPFAST_TRUNCATED_NORMAL = 12,
  PPFAST_MIXTURE = 13,
  PPFAST_VON_MISES = 14,
  PPFAST_MULTIVARIATE_NORMAL = 15
};

/* Sample flags. */
enum ppfast_flags { PPFAST_CONTROL = 1, PPFAST_REPLACE = 2 };

/* A non-owning view of a distribution: `size` value elements, `nparams` doubles of
 * parameters laid out as documented in csrc/core/distributions.hpp. */
typedef struct ppfast_dist {
  uint8_t kind;
  uint32_t size;
  uint32_t nparams;
  const double* params;
} ppfast_dist;

/* The recorder's entry points, as a table so that a simulator loaded into a host
 * process reaches the host's recorder, not a private copy (see ppfast_bind). */
typedef struct ppfast_api {
  uint32_t abi_version;
  /* Interns an address (or observe name) string; ids are stable within a process. */
  uint32_t (*intern)(const char* address);
  /* Draws a value (writes d->size doubles to out, returns out[0]). */
  double (*sample)(const ppfast_dist* d, uint32_t address, uint32_t name, uint32_t flags, double* out);
  /* Conditions on the value given in the run's observation map under `name`, else on
   * `value` (n doubles, may be NULL). Returns the log-likelihood term. */
  double (*observe)(const ppfast_dist* d, uint32_t address, uint32_t name, const double* value, uint32_t n);
  void (*tag)(uint32_t address, uint32_t name, const double* value, uint32_t n);
  void (*factor)(double log_prob);
  /* Non-zero once the current trace has failed (invalid parameters, missing
   * observation, ...): the simulator should stop early; C++ callers get an exception. */
  int (*failed)(void);
  /* Marks the current trace as failed with a message (e.g. a simulator-side error). */
  void (*fail)(const char* message);
  /* Records where an address lives in the simulator's source ("file.cpp:42"). */
  void (*locate)(uint32_t address, const char* location);
} ppfast_api;

/* The recorder reached by this binary's calls (the standalone one until bound). */
const ppfast_api* ppfast_current_api(void);
/* Routes this binary's calls to another recorder (used when a host loads a simulator). */
void ppfast_bind(const ppfast_api* api);

/* Convenience wrappers over the current table. */
uint32_t ppfast_intern(const char* address);
double ppfast_sample(const ppfast_dist* d, uint32_t address, uint32_t name, uint32_t flags, double* out);
double ppfast_observe(const ppfast_dist* d, uint32_t address, uint32_t name, const double* value, uint32_t n);
void ppfast_tag(uint32_t address, uint32_t name, const double* value, uint32_t n);
void ppfast_factor(double log_prob);
int ppfast_failed(void);
void ppfast_fail(const char* message);
void ppfast_locate(uint32_t address, const char* location);

/* Capture at the generator, for existing simulators: every call is a controlled
 * Uniform(0, 1) draw (MH replays and proposes it, inference compilation proposes it)
 * whose address is the caller's call stack: demangled function names with offsets,
 * module-relative, so the same in every process.  Outside a run it is an ordinary
 * uniform generator.  Build the simulator with -fno-omit-frame-pointer for the fast path. */
double ppfast_uniform(void);
/* Stack addresses: `depth` calling functions (1..64, default 8) after skipping `skip`
 * frames above the caller of ppfast_uniform (e.g. a generator wrapper's own); method
 * PPFAST_STACK_AUTO walks frame pointers, checked once per new stack against the
 * general unwinder, PPFAST_STACK_UNWIND always uses the unwinder. Per binary. */
enum ppfast_stack_method { PPFAST_STACK_AUTO = 0, PPFAST_STACK_UNWIND = 1 };
void ppfast_stack_options(uint32_t depth, uint32_t skip, int method);

/* Entry point a simulator library exports for embedded mode (see PPFAST_MODEL):
 * returns the model name, the function that runs one execution and the model's flags. */
typedef double (*ppfast_model_fn)(void);
typedef struct ppfast_model_info {
  uint32_t abi_version;
  const char* name;
  ppfast_model_fn run;
  void (*bind)(const ppfast_api* api);
  uint32_t flags; /* PPFAST_MODEL_* below */
} ppfast_model_info;

/* The simulator keeps per-thread or global state across an execution (an event
 * generator object, a static random engine...): two executions must never interleave on
 * one thread.  Guided runs, which otherwise interleave many executions per thread as
 * fibers, then run one execution per worker thread (embedded) or per process (shared
 * memory); more threads or processes give the network step its batch. */
#define PPFAST_MODEL_ONE_EXECUTION_PER_THREAD 1u

#ifdef __cplusplus
}
#endif
#endif /* PPFAST_H */
