/* wcmi core: context and errors, reproducible RNG, threads, tensor shapes, aligned buffers.
 *
 * Conventions used across the whole library:
 *  - Functions that can fail return an int status (WCMI_OK == 0) and record a one-line message in
 *    the wcmi_ctx they were given; callers read it with wcmi_errmsg(). The library never exits.
 *  - Compute kernels that cannot fail (shapes checked earlier) return void.
 *  - Tensors are float32, contiguous, NCHW. Shapes are int64_t; per-call sizes are int.
 */
#ifndef WCMI_CORE_H
#define WCMI_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---------------------------------------------------------------------------- */
enum {
  WCMI_OK = 0,
  WCMI_EINVAL = 1,   /* bad argument or shape mismatch (a user error) */
  WCMI_ENOMEM = 2,   /* allocation failed */
  WCMI_EIO = 3,      /* file missing, unreadable or unwritable */
  WCMI_EFORMAT = 4,  /* file exists but its content is malformed, truncated or hostile */
  WCMI_ENUMERIC = 5, /* NaN or Inf detected */
  WCMI_EINTR = 6,    /* interrupted (Ctrl-C) */
};

/* ---- context --------------------------------------------------------------------------------- */
/* A context carries the last error and the thread setting. It is the only mutable state the
 * library shares between calls; give each concurrent user its own. */
struct wcmi_dist;
typedef struct wcmi_ctx {
  int status;          /* last error code, WCMI_OK if none */
  char msg[512];       /* last error message: one line, names the file / layer and the problem */
  int num_threads;     /* threads for OpenMP regions and the BLAS */
  volatile int interrupt; /* set asynchronously (signal handler) to ask long loops to stop */
  int conv_algo;       /* convolution algorithm for layers built from now on: WCMI_CONV_AUTO (0, the
                          default) or WCMI_CONV_GEMM (wcmi/nn.h) */
  /* Fault injection, for tests: wcmi_alloc/wcmi_calloc through this ctx count their calls in
   * alloc_count, and call number alloc_fail_at (> 0) fails as if memory ran out. wcmi_ctx_init sets
   * alloc_fail_at from the environment variable WCMI_FAULT_ALLOC (tests only; unset: 0, off). */
  int64_t alloc_count, alloc_fail_at;
  struct wcmi_dist *dist; /* data-parallel communicator (wcmi/dist.h): NULL in single-process runs,
                             where every dist hook is skipped */
} wcmi_ctx;

/* Initializes ctx: num_threads from WCMI_NUM_THREADS if set, else all cores. */
void wcmi_ctx_init(wcmi_ctx *ctx);
/* Sets OpenMP and BLAS threads (n <= 0: all cores). */
void wcmi_set_threads(wcmi_ctx *ctx, int n);
/* Static partition: thread t of T owns items [lo, hi) of n, contiguous and fixed by (n, t, T). */
void wcmi_thread_range(int n, int t, int T, int *lo, int *hi);
/* dst[i] += parts[k * stride + i] for k = 0 .. count-1 in that order (i < n): per-thread partial
 * sums combined in a fixed order, so a given thread count gives bit-identical results. */
void wcmi_add_partials(float *dst, const float *parts, int count, size_t stride, size_t n);
/* Records an error and returns code, so callers can write `return wcmi_fail(ctx, WCMI_EINVAL, ...)`.
 * ctx may be NULL (message goes nowhere). */
int wcmi_fail(wcmi_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *wcmi_errmsg(const wcmi_ctx *ctx);
void wcmi_clear_error(wcmi_ctx *ctx);
const char *wcmi_version(void);

/* ---- memory ---------------------------------------------------------------------------------- */
/* 64-byte aligned allocation (cache lines, AVX-512). Returns NULL on overflow or failure and sets
 * the ctx error (ctx may be NULL). wcmi_free(NULL) is a no-op. */
void *wcmi_alloc(wcmi_ctx *ctx, size_t count, size_t elem_size);
void *wcmi_calloc(wcmi_ctx *ctx, size_t count, size_t elem_size);
void wcmi_free(void *p);
/* Overflow-checked size arithmetic: return 0 and leave *out untouched on overflow. */
int wcmi_mul_size(size_t a, size_t b, size_t *out);
int wcmi_add_size(size_t a, size_t b, size_t *out);

/* ---- RNG ------------------------------------------------------------------------------------- */
/* xoshiro256** seeded by splitmix64. The state is 4 words, saved in checkpoints. Streams that must
 * not interfere (init, shuffling, dropout, attack starts) each get their own wcmi_rng derived with
 * wcmi_rng_derive(seed, stream_id), so adding a use of one stream never shifts another. */
typedef struct wcmi_rng {
  uint64_t s[4];
} wcmi_rng;

void wcmi_rng_seed(wcmi_rng *r, uint64_t seed);
void wcmi_rng_derive(wcmi_rng *r, uint64_t seed, uint64_t stream);
uint64_t wcmi_rng_u64(wcmi_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable in float). */
float wcmi_rng_uniform(wcmi_rng *r);
/* Uniform in [lo, hi). */
float wcmi_rng_uniform_range(wcmi_rng *r, float lo, float hi);
/* Standard normal (Box-Muller, no cached second value so the state alone determines the stream). */
float wcmi_rng_normal(wcmi_rng *r);
/* Uniform integer in [0, n), unbiased (rejection). n > 0. */
uint64_t wcmi_rng_below(wcmi_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void wcmi_rng_shuffle(wcmi_rng *r, int64_t *idx, int64_t n);

/* Well-known stream ids for wcmi_rng_derive. */
enum {
  WCMI_STREAM_INIT = 1,
  WCMI_STREAM_SHUFFLE = 2,
  WCMI_STREAM_DROPOUT = 3,
  WCMI_STREAM_ATTACK = 4,
  WCMI_STREAM_AUGMENT = 5,
  WCMI_STREAM_SUBSET = 6,
  WCMI_STREAM_DATA = 7,
};

/* ---- shapes ---------------------------------------------------------------------------------- */
#define WCMI_MAX_DIMS 4
typedef struct wcmi_shape {
  int ndim;
  int64_t d[WCMI_MAX_DIMS];
} wcmi_shape;

wcmi_shape wcmi_shape1(int64_t a);
wcmi_shape wcmi_shape2(int64_t a, int64_t b);
wcmi_shape wcmi_shape3(int64_t a, int64_t b, int64_t c);
wcmi_shape wcmi_shape4(int64_t a, int64_t b, int64_t c, int64_t d);
int64_t wcmi_shape_numel(const wcmi_shape *s);
int wcmi_shape_equal(const wcmi_shape *a, const wcmi_shape *b);
/* Writes e.g. "(128, 64, 14, 14)" into buf. Returns buf. */
char *wcmi_shape_str(const wcmi_shape *s, char *buf, size_t n);

/* A float32 tensor view: data is not owned unless created by wcmi_tensor_new. */
typedef struct wcmi_tensor {
  float *data;
  wcmi_shape shape;
} wcmi_tensor;

int wcmi_tensor_new(wcmi_ctx *ctx, wcmi_tensor *t, wcmi_shape shape); /* zero-filled, owned */
void wcmi_tensor_free(wcmi_tensor *t);
int64_t wcmi_tensor_numel(const wcmi_tensor *t);

/* ---- numerics helpers ------------------------------------------------------------------------ */
/* Returns 1 if all n values are finite. */
int wcmi_all_finite(const float *x, int64_t n);

/* ---- timing ---------------------------------------------------------------------------------- */
double wcmi_now(void); /* monotonic seconds */

#ifdef __cplusplus
}
#endif
#endif
