/* Context, errors, checked allocation, timing. */
#include "wcmi/core.h"
#include "wcmi/blas.h"

#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *wcmi_version(void) { return WCMI_VERSION; }

static int online_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

void wcmi_ctx_init(wcmi_ctx *ctx) {
  memset(ctx, 0, sizeof *ctx);
  int n = 0;
  const char *env = getenv("WCMI_NUM_THREADS");
  if (env && *env) {
    char *end = NULL;
    long v = strtol(env, &end, 10);
    if (end && *end == '\0' && v > 0 && v <= 4096) n = (int)v;
  }
  wcmi_set_threads(ctx, n);
  const char *fault = getenv("WCMI_FAULT_ALLOC");
  if (fault && *fault) ctx->alloc_fail_at = strtoll(fault, NULL, 10);
}

void wcmi_set_threads(wcmi_ctx *ctx, int n) {
  if (n <= 0) n = online_cores();
  ctx->num_threads = n;
  omp_set_num_threads(n);
  wcmi_blas_set_threads(n);
}

void wcmi_thread_range(int n, int t, int T, int *lo, int *hi) {
  *lo = (int)((int64_t)n * t / T);
  *hi = (int)((int64_t)n * (t + 1) / T);
}

void wcmi_add_partials(float *dst, const float *parts, int count, size_t stride, size_t n) {
  for (int k = 0; k < count; k++) {
    const float *p = parts + (size_t)k * stride;
    for (size_t i = 0; i < n; i++) dst[i] += p[i];
  }
}

int wcmi_fail(wcmi_ctx *ctx, int code, const char *fmt, ...) {
  if (!ctx) return code;
  ctx->status = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
  va_end(ap);
  /* Keep messages on one line whatever the caller passed in (file names with newlines, etc.). */
  for (char *p = ctx->msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return code;
}

const char *wcmi_errmsg(const wcmi_ctx *ctx) { return ctx && ctx->status ? ctx->msg : ""; }

void wcmi_clear_error(wcmi_ctx *ctx) {
  if (!ctx) return;
  ctx->status = WCMI_OK;
  ctx->msg[0] = '\0';
}

int wcmi_mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return 0;
  *out = a * b;
  return 1;
}

int wcmi_add_size(size_t a, size_t b, size_t *out) {
  if (b > SIZE_MAX - a) return 0;
  *out = a + b;
  return 1;
}

void *wcmi_alloc(wcmi_ctx *ctx, size_t count, size_t elem_size) {
  size_t bytes;
  if (!wcmi_mul_size(count, elem_size, &bytes) || !wcmi_add_size(bytes, 63, &bytes)) {
    wcmi_fail(ctx, WCMI_ENOMEM, "allocation of %zu x %zu bytes overflows", count, elem_size);
    return NULL;
  }
  bytes &= ~(size_t)63;
  if (bytes == 0) bytes = 64;
  /* The counter lives in the caller's ctx (no process-wide state); atomic because a ctx is shared
   * by the threads of one task. */
  if (ctx && __atomic_add_fetch(&ctx->alloc_count, 1, __ATOMIC_RELAXED) == ctx->alloc_fail_at) {
    wcmi_fail(ctx, WCMI_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
  void *p = aligned_alloc(64, bytes);
  if (!p) wcmi_fail(ctx, WCMI_ENOMEM, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *wcmi_calloc(wcmi_ctx *ctx, size_t count, size_t elem_size) {
  void *p = wcmi_alloc(ctx, count, elem_size);
  if (p) memset(p, 0, count * elem_size);
  return p;
}

void wcmi_free(void *p) { free(p); }

double wcmi_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int wcmi_all_finite(const float *x, int64_t n) {
  /* Sum-free check so that one NaN cannot hide behind an Inf - Inf cancellation. */
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    ok &= (v - v == 0.0f);
  }
  return ok;
}
