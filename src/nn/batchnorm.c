/* Batch normalization kernels (torch.nn.BatchNorm1d / BatchNorm2d) over x (N, C, S), where S = H*W
 * for 2d and S = 1 for 1d. Statistics are per channel over the M = N*S values of that channel.
 *
 * Reproducibility: each channel is handled by exactly one thread and its sums are accumulated in
 * double in an order fixed by the indices alone (never by the thread count, vector width or buffer
 * alignment), so results are identical for any thread count. */
#include <math.h>

#include "core/clones.h"
#include "nn/batchnorm_internal.h"
#include "wcmi/dist.h"
#include "wcmi/nn.h"

/* Starting a parallel region costs microseconds; below this many elements one thread is faster. */
#define BN_PARALLEL_MIN 32768

/* Partial sums per lane: lane j adds the elements whose index is j mod BN_LANES. The lanes are
 * independent, so the compiler can keep them in vector registers without reassociating anything. */
#define BN_LANES 8

/* Row (n, c) of x (N, C, S): S contiguous floats. */
static inline const float *bn_row(const float *x, int C, int S, int n, int c) {
  return x + ((size_t)n * (size_t)C + (size_t)c) * (size_t)S;
}

static double bn_combine_lanes(const double *acc) {
  double t = 0.0;
  for (int j = 0; j < BN_LANES; j++) t += acc[j];
  return t;
}

/* sum_s row[s], in double, fixed order. */
static double bn_sum(const float *row, int len) {
  double acc[BN_LANES] = {0};
  int s = 0;
  for (; s + BN_LANES <= len; s += BN_LANES)
    for (int j = 0; j < BN_LANES; j++) acc[j] += (double)row[s + j];
  for (int j = 0; s < len; s++, j++) acc[j] += (double)row[s];
  return bn_combine_lanes(acc);
}

/* sum_s (row[s] - mu)^2, in double, fixed order. */
static double bn_sum_sqdev(const float *row, int len, double mu) {
  double acc[BN_LANES] = {0};
  int s = 0;
  for (; s + BN_LANES <= len; s += BN_LANES)
    for (int j = 0; j < BN_LANES; j++) {
      double d = (double)row[s + j] - mu;
      acc[j] += d * d;
    }
  for (int j = 0; s < len; s++, j++) {
    double d = (double)row[s] - mu;
    acc[j] += d * d;
  }
  return bn_combine_lanes(acc);
}

/* *sum_dy += sum_s dy[s];  *sum_dy_xmu += sum_s dy[s] * (x[s] - mu). Double, fixed order. */
static void bn_sum_dy_dyxmu(const float *x, const float *dy, int len, double mu, double *sum_dy,
                            double *sum_dy_xmu) {
  double a[BN_LANES] = {0}, b[BN_LANES] = {0};
  int s = 0;
  for (; s + BN_LANES <= len; s += BN_LANES)
    for (int j = 0; j < BN_LANES; j++) {
      double g = (double)dy[s + j];
      a[j] += g;
      b[j] += g * ((double)x[s + j] - mu);
    }
  for (int j = 0; s < len; s++, j++) {
    double g = (double)dy[s];
    a[j] += g;
    b[j] += g * ((double)x[s] - mu);
  }
  *sum_dy += bn_combine_lanes(a);
  *sum_dy_xmu += bn_combine_lanes(b);
}

/* One output row: y = (x - shift_mean) * scale + beta, then max(., 0) when relu (as
 * wcmi_relu_forward: v < 0 ? 0 : v, so NaN stays NaN). Subtracting the (float) mean before scaling
 * avoids the cancellation of x*scale + (beta - mean*scale) when |mean| >> std. */
static inline void bn_row_apply(const float *xr, int S, float mean, float scale, float beta, int relu, float *yr) {
  if (relu)
    for (int s = 0; s < S; s++) yr[s] = bn_relu(bn_affine(xr[s], mean, scale, beta));
  else
    for (int s = 0; s < S; s++) yr[s] = bn_affine(xr[s], mean, scale, beta);
}

/* The train-mode scale gamma * rstd, from the stored (float) rstd so that bn_relu_coefficients can
 * reproduce it exactly after the forward. */
static float bn_train_scale(const float *gamma, const float *rstd, int c) {
  return (float)((gamma ? (double)gamma[c] : 1.0) * (double)rstd[c]);
}

/* x, y: (N, C, S); gamma, beta, running_mean, running_var, mean, rstd: (C).
 * gamma/beta NULL behave as 1/0 (affine=False); running stats / counter NULL are not updated. */
/* Channel c's statistics from its sums over the M values (sum: of x; sq: of (x - sum / M)^2): mean and
 * rstd saved for the backward, running statistics updated as torch does. */
static void bn_channel_stats(int c, double sum, double sq, int64_t M, float *running_mean, float *running_var,
                             float momentum, float eps, float *mean, float *rstd) {
  const double mu = sum / (double)M;
  const double var = sq / (double)M; /* biased: used for normalization, as torch does */
  const double rs = 1.0 / sqrt(var + (double)eps);
  mean[c] = (float)mu;
  rstd[c] = (float)rs;
  /* torch stores the unbiased variance in running_var. With M == 1 torch refuses to train;
   * the kernel cannot fail, so it falls back to the biased value instead of dividing by 0. */
  const double var_unbiased = M > 1 ? var * (double)M / (double)(M - 1) : var;
  const double m = (double)momentum;
  if (running_mean) running_mean[c] = (float)((1.0 - m) * (double)running_mean[c] + m * mu);
  if (running_var) running_var[c] = (float)((1.0 - m) * (double)running_var[c] + m * var_unbiased);
}

/* BatchNorm1d (S == 1) in blocks of BN_COL_BLOCK channels walked sample by sample in memory order:
 * channel by channel, each value would be a float alone in its cache line, C floats from the next.
 * Every channel's sums still run over n in increasing order in double, as bn_sum does over rows of
 * one float, so the results are the same bits as the per-channel loops. */
enum { BN_COL_BLOCK = 64 };

static void bn_forward_train_cols(int N, int C, const float *x, const float *gamma, const float *beta,
                                  float *running_mean, float *running_var, float momentum, float eps, int relu,
                                  float *y, float *mean, float *rstd) {
  const int blocks = (C + BN_COL_BLOCK - 1) / BN_COL_BLOCK;
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= BN_PARALLEL_MIN)
  for (int blk = 0; blk < blocks; blk++) {
    const int c0 = blk * BN_COL_BLOCK, nc = C - c0 < BN_COL_BLOCK ? C - c0 : BN_COL_BLOCK;
    double sum[BN_COL_BLOCK] = {0}, sq[BN_COL_BLOCK] = {0}, mu[BN_COL_BLOCK];
    float scale[BN_COL_BLOCK], bias[BN_COL_BLOCK];
    for (int n = 0; n < N; n++)
      for (int j = 0; j < nc; j++) sum[j] += (double)x[(size_t)n * C + c0 + j];
    for (int j = 0; j < nc; j++) mu[j] = sum[j] / (double)N;
    for (int n = 0; n < N; n++)
      for (int j = 0; j < nc; j++) {
        const double d = (double)x[(size_t)n * C + c0 + j] - mu[j];
        sq[j] += d * d;
      }
    for (int j = 0; j < nc; j++) {
      bn_channel_stats(c0 + j, sum[j], sq[j], N, running_mean, running_var, momentum, eps, mean, rstd);
      scale[j] = bn_train_scale(gamma, rstd, c0 + j);
      bias[j] = beta ? beta[c0 + j] : 0.0f;
    }
    for (int n = 0; n < N; n++) {
      const float *xr = x + (size_t)n * C + c0;
      float *yr = y + (size_t)n * C + c0;
      for (int j = 0; j < nc; j++) {
        const float v = bn_affine(xr[j], mean[c0 + j], scale[j], bias[j]);
        yr[j] = relu ? bn_relu(v) : v;
      }
    }
  }
}

/* The per-channel bodies of the train-mode passes run in clones for AVX2 (core/clones.h: the same
 * bits as the baseline; the double-precision sums are twice as wide there). */
#define BN_CLONES WCMI_CLONES("avx2", "default")

typedef struct bn_train_args {
  int N, C, S;
  const float *x, *gamma, *beta;
  float *running_mean, *running_var;
  float momentum, eps;
  int relu;
  float *y, *mean, *rstd;
} bn_train_args;

/* The train-mode backward takes channels in blocks of up to BN_CH_BLOCK, about BN_BLOCK_FLOATS floats
 * of x: a block's rows of one sample are contiguous (a channel alone is S floats every C*S floats).
 * Measured: 1.9-2.4 -> 1.6-1.8 ms for 256 channels of 7x7 maps (128 samples), none for 64 of 14x14. The
 * forward stays one channel at a time (its three passes reuse the channel from L2; blocks measured
 * 5-20% slower). Each channel's sums run as before (rows in order of n): the same bits either way. */
enum { BN_CH_BLOCK = 8, BN_BLOCK_FLOATS = 32768 };

static int bn_backward_block_channels(int N, int S) {
  const int64_t per = (int64_t)N * S, k = BN_BLOCK_FLOATS / (per > 0 ? per : 1);
  return k < 1 ? 1 : k > BN_CH_BLOCK ? BN_CH_BLOCK : (int)k;
}

BN_CLONES
static void bn_forward_train_channel(const bn_train_args *a, int c) {
  const int64_t M = (int64_t)a->N * a->S;
  double sum = 0.0;
  for (int n = 0; n < a->N; n++) sum += bn_sum(bn_row(a->x, a->C, a->S, n, c), a->S);
  const double mu = sum / (double)M;
  double sq = 0.0;
  for (int n = 0; n < a->N; n++) sq += bn_sum_sqdev(bn_row(a->x, a->C, a->S, n, c), a->S, mu);
  bn_channel_stats(c, sum, sq, M, a->running_mean, a->running_var, a->momentum, a->eps, a->mean, a->rstd);
  const float scale = bn_train_scale(a->gamma, a->rstd, c), bias = a->beta ? a->beta[c] : 0.0f;
  for (int n = 0; n < a->N; n++) {
    const float *xr = bn_row(a->x, a->C, a->S, n, c);
    bn_row_apply(xr, a->S, a->mean[c], scale, bias, a->relu, a->y + (xr - a->x));
  }
}

static void bn_forward_train(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                             float *running_mean, float *running_var, int64_t *num_batches_tracked, float momentum,
                             float eps, int relu, float *y, float *mean, float *rstd) {
  const int64_t M = (int64_t)N * S;
  if (S == 1) {
    bn_forward_train_cols(N, C, x, gamma, beta, running_mean, running_var, momentum, eps, relu, y, mean, rstd);
  } else {
    const bn_train_args a = {N, C, S, x, gamma, beta, running_mean, running_var, momentum, eps, relu, y, mean, rstd};
#pragma omp parallel for schedule(static) if (M * C >= BN_PARALLEL_MIN)
    for (int c = 0; c < C; c++) bn_forward_train_channel(&a, c);
  }
  if (num_batches_tracked) ++*num_batches_tracked;
}

void wcmi_batchnorm_forward_train(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                  float *running_mean, float *running_var, int64_t *num_batches_tracked,
                                  float momentum, float eps, float *y, float *mean, float *rstd) {
  bn_forward_train(N, C, S, x, gamma, beta, running_mean, running_var, num_batches_tracked, momentum, eps, 0, y, mean,
                   rstd);
}

void wcmi_batchnorm_relu_forward_train(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                       float *running_mean, float *running_var, int64_t *num_batches_tracked,
                                       float momentum, float eps, float *y, float *mean, float *rstd) {
  bn_forward_train(N, C, S, x, gamma, beta, running_mean, running_var, num_batches_tracked, momentum, eps, 1, y, mean,
                   rstd);
}

/* Eval mode is a per-channel affine map, so it runs in memory order (one (n, c) row of S floats per
 * iteration) rather than channel by channel: at the paper's 3x3 and 7x7 maps a channel's rows are
 * 9-49 floats scattered C*S floats apart, which defeats the prefetcher. The per-row scale is the same
 * expression as in the per-channel loops, so the results do not change. */
static float bn_eval_scale(const float *gamma, const float *running_var, float eps, int c) {
  const double rs = 1.0 / sqrt((double)running_var[c] + (double)eps);
  return (float)((gamma ? (double)gamma[c] : 1.0) * rs);
}

/* The per-channel scales computed once into buf when C fits (a square root and a division per row
 * cost as much as the row itself at 3x3 maps); NULL otherwise, and the rows compute their own. */
enum { BN_SCALE_STACK = 4096 };
static const float *bn_eval_scales(const float *gamma, const float *running_var, float eps, int C, float *buf) {
  if (C > BN_SCALE_STACK) return NULL;
  for (int c = 0; c < C; c++) buf[c] = bn_eval_scale(gamma, running_var, eps, c);
  return buf;
}

/* The scale of channel c: from the precomputed table when there is one. */
static inline float bn_scale_of(const float *scales, const float *gamma, const float *running_var, float eps, int c) {
  return scales ? scales[c] : bn_eval_scale(gamma, running_var, eps, c);
}

static void bn_forward_eval(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, float eps, int relu, float *y) {
  const int64_t rows = (int64_t)N * C;
  float buf[BN_SCALE_STACK];
  const float *scales = bn_eval_scales(gamma, running_var, eps, C, buf);
#pragma omp parallel for schedule(static) if (rows * S >= BN_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const int c = (int)(r % C);
    const float scale = bn_scale_of(scales, gamma, running_var, eps, c);
    bn_row_apply(x + r * S, S, running_mean[c], scale, beta ? beta[c] : 0.0f, relu, y + r * S);
  }
}

void wcmi_batchnorm_forward_eval(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps, float *y) {
  bn_forward_eval(N, C, S, x, gamma, beta, running_mean, running_var, eps, 0, y);
}

void wcmi_batchnorm_relu_forward_eval(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var, float eps, float *y) {
  bn_forward_eval(N, C, S, x, gamma, beta, running_mean, running_var, eps, 1, y);
}

/* dx = k*dy - k*mean(dy) - (x - mean) * k*rstd*mean(dy*xhat), k = gamma*rstd: the coefficients of
 * channel c from its sums over the M values. */
typedef struct bn_grad_coef {
  float k, offset, slope;
} bn_grad_coef;

static bn_grad_coef bn_grad_coefficients(const float *gamma, const float *rstd, int c, double sum_dy,
                                         double sum_dy_xmu, int64_t M) {
  const double rs = (double)rstd[c], k = (gamma ? (double)gamma[c] : 1.0) * rs;
  const bn_grad_coef r = {(float)k, (float)(k * sum_dy / (double)M), (float)(k * rs * rs * sum_dy_xmu / (double)M)};
  return r;
}

/* The train-mode backward for S == 1, blocked as bn_forward_train_cols (each channel's sums in the
 * same order as the per-channel loops: the same bits). */
static void bn_backward_train_cols(int N, int C, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
  const int blocks = (C + BN_COL_BLOCK - 1) / BN_COL_BLOCK;
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= BN_PARALLEL_MIN)
  for (int blk = 0; blk < blocks; blk++) {
    const int c0 = blk * BN_COL_BLOCK, nc = C - c0 < BN_COL_BLOCK ? C - c0 : BN_COL_BLOCK;
    double a[BN_COL_BLOCK] = {0}, b[BN_COL_BLOCK] = {0};
    bn_grad_coef co[BN_COL_BLOCK];
    for (int n = 0; n < N; n++)
      for (int j = 0; j < nc; j++) {
        const size_t i = (size_t)n * C + c0 + j;
        const double g = (double)dy[i];
        a[j] += g;
        b[j] += g * ((double)x[i] - (double)mean[c0 + j]);
      }
    for (int j = 0; j < nc; j++) {
      if (dbeta) dbeta[c0 + j] += (float)a[j];
      if (dgamma) dgamma[c0 + j] += (float)(b[j] * (double)rstd[c0 + j]);
      co[j] = bn_grad_coefficients(gamma, rstd, c0 + j, a[j], b[j], N);
    }
    if (!dx) continue;
    for (int n = 0; n < N; n++) {
      const size_t i0 = (size_t)n * C + c0;
      for (int j = 0; j < nc; j++)
        dx[i0 + j] = co[j].k * dy[i0 + j] - co[j].offset - (x[i0 + j] - mean[c0 + j]) * co[j].slope;
    }
  }
}

typedef struct bn_grad_args {
  int N, C, S;
  const float *x, *gamma, *mean, *rstd, *dy;
  float *dx, *dgamma, *dbeta;
} bn_grad_args;

BN_CLONES
static void bn_backward_train_block(const bn_grad_args *a, int c0, int nc) {
  const int N = a->N, C = a->C, S = a->S;
  const int64_t M = (int64_t)N * S;
  double sum_dy[BN_CH_BLOCK] = {0}, sum_dy_xmu[BN_CH_BLOCK] = {0};
  for (int n = 0; n < N; n++)
    for (int k = 0; k < nc; k++)
      bn_sum_dy_dyxmu(bn_row(a->x, C, S, n, c0 + k), bn_row(a->dy, C, S, n, c0 + k), S, (double)a->mean[c0 + k],
                      &sum_dy[k], &sum_dy_xmu[k]);
  bn_grad_coef co[BN_CH_BLOCK];
  for (int k = 0; k < nc; k++) {
    const int c = c0 + k;
    if (a->dbeta) a->dbeta[c] += (float)sum_dy[k];
    if (a->dgamma) a->dgamma[c] += (float)(sum_dy_xmu[k] * (double)a->rstd[c]);
    co[k] = bn_grad_coefficients(a->gamma, a->rstd, c, sum_dy[k], sum_dy_xmu[k], M);
  }
  if (!a->dx) return;
  for (int n = 0; n < N; n++)
    for (int k = 0; k < nc; k++) {
      const float *xr = bn_row(a->x, C, S, n, c0 + k);
      const float *dyr = a->dy + (xr - a->x);
      float *dxr = a->dx + (xr - a->x);
      const float muf = a->mean[c0 + k];
      for (int s = 0; s < S; s++) dxr[s] = co[k].k * dyr[s] - co[k].offset - (xr[s] - muf) * co[k].slope;
    }
}

/* Train-mode backward: the batch statistics depend on x, so with xhat = (x - mean) * rstd,
 *   dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 *   dgamma += sum(dy * xhat),  dbeta += sum(dy)   (sums and means over the channel's M values). */
void wcmi_batchnorm_backward_train(int N, int C, int S, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
  if (S == 1) {
    bn_backward_train_cols(N, C, x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
    return;
  }
  const int64_t M = (int64_t)N * S;
  const bn_grad_args a = {N, C, S, x, gamma, mean, rstd, dy, dx, dgamma, dbeta};
  const int bc = bn_backward_block_channels(N, S), blocks = (C + bc - 1) / bc;
#pragma omp parallel for schedule(static) if (M * C >= BN_PARALLEL_MIN)
  for (int b = 0; b < blocks; b++) bn_backward_train_block(&a, b * bc, C - b * bc < bc ? C - b * bc : bc);
}

/* dx = scale[c] * dy, in memory order; with relu_y, only where the following ReLU's output is
 * positive (the ReLU's backward folded in). */
static void bn_eval_input_grad(int N, int C, int S, const float *gamma, const float *running_var, float eps,
                               const float *relu_y, const float *dy, float *dx) {
  const int64_t rows = (int64_t)N * C;
  float buf[BN_SCALE_STACK];
  const float *scales = bn_eval_scales(gamma, running_var, eps, C, buf);
#pragma omp parallel for schedule(static) if (rows * S >= BN_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const int c = (int)(r % C);
    const float k = bn_scale_of(scales, gamma, running_var, eps, c);
    const float *dyr = dy + r * S;
    float *dxr = dx + r * S;
    if (!relu_y) {
      for (int s = 0; s < S; s++) dxr[s] = k * dyr[s];
    } else {
      const float *yr = relu_y + r * S;
      for (int s = 0; s < S; s++) {
        const float g = dyr[s]; /* loaded unconditionally so the select vectorizes */
        dxr[s] = k * (yr[s] > 0.0f ? g : 0.0f);
      }
    }
  }
}

/* Eval-mode backward: the running statistics are constants, so BN is an affine map per channel. */
void wcmi_batchnorm_backward_eval(int N, int C, int S, const float *x, const float *gamma,
                                  const float *running_mean, const float *running_var, float eps,
                                  const float *dy, float *dx, float *dgamma, float *dbeta) {
  const int64_t M = (int64_t)N * S;
  if (dgamma || dbeta) {
#pragma omp parallel for schedule(static) if (M * C >= BN_PARALLEL_MIN)
    for (int c = 0; c < C; c++) {
      const double rs = 1.0 / sqrt((double)running_var[c] + (double)eps);
      double sum_dy = 0.0, sum_dy_xmu = 0.0;
      for (int n = 0; n < N; n++)
        bn_sum_dy_dyxmu(bn_row(x, C, S, n, c), bn_row(dy, C, S, n, c), S, (double)running_mean[c], &sum_dy,
                        &sum_dy_xmu);
      if (dbeta) dbeta[c] += (float)sum_dy;
      if (dgamma) dgamma[c] += (float)(sum_dy_xmu * rs);
    }
  }
  if (dx) bn_eval_input_grad(N, C, S, gamma, running_var, eps, NULL, dy, dx);
}

void wcmi_batchnorm_relu_backward_eval(int N, int C, int S, const float *gamma, const float *running_var, float eps,
                                       const float *relu_y, const float *dy, float *dx) {
  bn_eval_input_grad(N, C, S, gamma, running_var, eps, relu_y, dy, dx);
}

/* ---- BN+ReLU recomputed from the BN input (batchnorm_internal.h) ------------------------------ */

void bn_relu_coefficients(int C, int train, const float *gamma, const float *beta, const float *mean,
                          const float *rstd, const float *running_mean, const float *running_var, float eps,
                          float *shift, float *scale, float *bias) {
  for (int c = 0; c < C; c++) {
    shift[c] = train ? mean[c] : running_mean[c];
    scale[c] = train ? bn_train_scale(gamma, rstd, c) : bn_eval_scale(gamma, running_var, eps, c);
    bias[c] = beta ? beta[c] : 0.0f;
  }
}

void bn_relu_mask_grad(int N, int C, int S, const float *x, const float *shift, const float *scale,
                       const float *bias, float *dy) {
  const int64_t rows = (int64_t)N * C;
#pragma omp parallel for schedule(static) if (rows * S >= BN_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const int c = (int)(r % C);
    const float m = shift[c], k = scale[c], be = bias[c];
    const float *xr = x + r * S;
    float *g = dy + r * S;
    for (int s = 0; s < S; s++) {
      const float gs = g[s]; /* loaded unconditionally so the select vectorizes */
      g[s] = bn_affine(xr[s], m, k, be) > 0.0f ? gs : 0.0f; /* the forward's ReLU input */
    }
  }
}

/* ---- synchronized BatchNorm (data-parallel runs, docs/distributed.md) ------------------------ */
/* The train-mode statistics of the global batch when each of K ranks holds a slice of it: every
 * per-channel sum (of x, of the squared deviations from the global mean, and in the backward of dy
 * and dy * (x - mean)) is summed over the ranks (wcmi_dist_sum_f64, rank order) before it is used,
 * so mean, rstd, the running statistics and dx are those one process computes on the whole batch,
 * up to the order of the double additions. The parameter gradients take this rank's sums only: the
 * gradient all-reduce adds the ranks' contributions afterwards. Only called with a communicator; the
 * single-process kernels above are untouched. */

/* Local per-channel sums of x (into s[0..C)) or, with mu, of (x - mu[c])^2. */
static void bn_local_sums(int N, int C, int S, const float *x, const double *mu, double *s) {
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= BN_PARALLEL_MIN)
  for (int c = 0; c < C; c++) {
    double acc = 0.0;
    for (int n = 0; n < N; n++)
      acc += mu ? bn_sum_sqdev(bn_row(x, C, S, n, c), S, mu[c]) : bn_sum(bn_row(x, C, S, n, c), S);
    s[c] = acc;
  }
}

void bn_forward_train_sync(wcmi_dist *dist, int N, int C, int S, const float *x, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, int64_t *num_batches_tracked, float momentum,
                           float eps, int relu, float *y, float *mean, float *rstd) {
  double *sum = wcmi_dist_scratch_f64(dist, 3 * (size_t)C + 1), *sq = sum + C + 1, *mu = sq + C;
  bn_local_sums(N, C, S, x, NULL, sum);
  sum[C] = (double)N * (double)S; /* the global M: ranks may hold slices of different sizes */
  wcmi_dist_sum_f64(dist, WCMI_DIST_BN, sum, (size_t)C + 1);
  const int64_t M = (int64_t)sum[C];
  for (int c = 0; c < C; c++) mu[c] = sum[c] / (double)M;
  bn_local_sums(N, C, S, x, mu, sq);
  wcmi_dist_sum_f64(dist, WCMI_DIST_BN, sq, (size_t)C);
  for (int c = 0; c < C; c++) bn_channel_stats(c, sum[c], sq[c], M, running_mean, running_var, momentum, eps, mean, rstd);
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= BN_PARALLEL_MIN)
  for (int c = 0; c < C; c++) {
    const float scale = bn_train_scale(gamma, rstd, c), bias = beta ? beta[c] : 0.0f;
    for (int n = 0; n < N; n++) {
      const float *xr = bn_row(x, C, S, n, c);
      bn_row_apply(xr, S, mean[c], scale, bias, relu, y + (xr - x));
    }
  }
  if (num_batches_tracked) ++*num_batches_tracked;
}

void bn_backward_train_sync(wcmi_dist *dist, int N, int C, int S, const float *x, const float *gamma,
                            const float *mean, const float *rstd, const float *dy, float *dx, float *dgamma,
                            float *dbeta) {
  double *sums = wcmi_dist_scratch_f64(dist, 2 * (size_t)C + 1), *sdy = sums, *sdyx = sums + C;
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= BN_PARALLEL_MIN)
  for (int c = 0; c < C; c++) {
    double a = 0.0, b = 0.0;
    for (int n = 0; n < N; n++)
      bn_sum_dy_dyxmu(bn_row(x, C, S, n, c), bn_row(dy, C, S, n, c), S, (double)mean[c], &a, &b);
    sdy[c] = a;
    sdyx[c] = b;
    if (dbeta) dbeta[c] += (float)a; /* this rank's share; the gradient all-reduce adds the rest */
    if (dgamma) dgamma[c] += (float)(b * (double)rstd[c]);
  }
  sums[2 * C] = (double)N * (double)S;
  wcmi_dist_sum_f64(dist, WCMI_DIST_BN, sums, 2 * (size_t)C + 1);
  if (!dx) return;
  const int64_t M = (int64_t)sums[2 * C];
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= BN_PARALLEL_MIN)
  for (int c = 0; c < C; c++) {
    const bn_grad_coef co = bn_grad_coefficients(gamma, rstd, c, sdy[c], sdyx[c], M);
    for (int n = 0; n < N; n++) {
      const float *xr = bn_row(x, C, S, n, c), *dyr = dy + (xr - x);
      float *dxr = dx + (xr - x);
      for (int s = 0; s < S; s++) dxr[s] = co.k * dyr[s] - co.offset - (xr[s] - mean[c]) * co.slope;
    }
  }
}
