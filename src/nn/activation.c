/* Elementwise activations: ReLU (torch.nn.ReLU) and inverted dropout (torch.nn.Dropout, train mode). */
#include "wcmi/nn.h"

#define ACT_PARALLEL_MIN 65536

/* The loops below are plain selects that gcc and clang vectorize at -O3 on their own. They carry no
 * `omp simd`: that is a demand, and where instrumentation (the fuzz and sanitizer builds) blocks
 * vectorization clang reports it as -Wpass-failed, an error under -Werror. */

/* y = max(x, 0). Written as x < 0 ? 0 : x so that a NaN input stays NaN (as in torch) and a
 * diverging run is caught by the finiteness checks instead of being silently zeroed. */
void wcmi_relu_forward(int64_t n, const float *x, float *y) {
#pragma omp parallel for schedule(static) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* dx = dy where the forward output was positive (x > 0), else 0. */
void wcmi_relu_backward(int64_t n, const float *y, const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    const float g = dy[i]; /* loaded unconditionally so the select vectorizes */
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

/* Element i is kept when its uniform draw u_i >= p (probability 1 - p). The draws are taken from rng
 * one per element in index order on one thread, so a given rng state always gives the same mask.
 * p <= 0 is the identity and draws nothing; p >= 1 drops everything (torch gives zeros too). */
void wcmi_dropout_forward(int64_t n, float p, wcmi_rng *rng, const float *x, float *y, float *mask) {
  if (p <= 0.0f) {
    for (int64_t i = 0; i < n; i++) {
      mask[i] = 1.0f;
      y[i] = x[i];
    }
    return;
  }
  if (p >= 1.0f) {
    for (int64_t i = 0; i < n; i++) mask[i] = y[i] = 0.0f;
    return;
  }
  const float keep_scale = (float)(1.0 / (1.0 - (double)p));
  for (int64_t i = 0; i < n; i++) mask[i] = wcmi_rng_uniform(rng) >= p ? keep_scale : 0.0f;
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}

void wcmi_dropout_backward(int64_t n, const float *mask, const float *dy, float *dx) {
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
}
