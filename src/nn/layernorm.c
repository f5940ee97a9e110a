/* Layer normalization over the channel axis of x (N, C, S): torch.nn.LayerNorm(C) applied to the
 * channel-last permutation, i.e. at each of the N*S locations the C values x[n, :, s] are
 * normalized with their mean and biased variance, then scaled by gamma[c] and shifted by beta[c].
 *
 * Layout: the C values of one location are S floats apart, while S is contiguous. So locations are
 * processed in blocks of up to LN_BLOCK consecutive s: for each channel the inner loop runs over the
 * contiguous s of the block (vectorizable), and each location keeps its own double accumulator.
 * A location's sums therefore run over c in order 0..C-1 whatever the thread count: reproducible. */
#include <math.h>

#include "core/clones.h"
#include "wcmi/nn.h"

/* The per-unit and per-channel bodies run in clones for AVX2 (core/clones.h: the same bits as the
 * baseline). */
#define LN_CLONES WCMI_CLONES("avx2", "default")

#define LN_BLOCK 64
#define LN_PARALLEL_MIN 32768

/* One work unit: sample n, locations s0 .. s0+len-1. */
typedef struct ln_unit {
  int n, s0, len;
} ln_unit;

static int ln_num_units(int N, int S) { return N * ((S + LN_BLOCK - 1) / LN_BLOCK); }

static ln_unit ln_unit_at(int u, int S) {
  const int nblk = (S + LN_BLOCK - 1) / LN_BLOCK;
  ln_unit r;
  r.n = u / nblk;
  r.s0 = (u % nblk) * LN_BLOCK;
  r.len = S - r.s0 < LN_BLOCK ? S - r.s0 : LN_BLOCK;
  return r;
}

/* Offset of x[n, c, s0] in (N, C, S). */
static inline size_t ln_off(int C, int S, int n, int c, int s0) {
  return ((size_t)n * (size_t)C + (size_t)c) * (size_t)S + (size_t)s0;
}

/* One unit of the forward (sample n, a block of locations). */
LN_CLONES
static void ln_forward_unit(int C, int S, const float *x, const float *gamma, const float *beta, float eps, float *y,
                            float *mean, float *rstd, ln_unit b) {
  double acc[LN_BLOCK];
  for (int j = 0; j < b.len; j++) acc[j] = 0.0;
  for (int c = 0; c < C; c++) {
    const float *xr = x + ln_off(C, S, b.n, c, b.s0);
    for (int j = 0; j < b.len; j++) acc[j] += (double)xr[j];
  }
  double mu[LN_BLOCK];
  for (int j = 0; j < b.len; j++) {
    mu[j] = acc[j] / (double)C;
    acc[j] = 0.0;
  }
  /* Two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels. */
  for (int c = 0; c < C; c++) {
    const float *xr = x + ln_off(C, S, b.n, c, b.s0);
    for (int j = 0; j < b.len; j++) {
      const double d = (double)xr[j] - mu[j];
      acc[j] += d * d;
    }
  }
  float mf[LN_BLOCK], rf[LN_BLOCK];
  float *mean_out = mean + (size_t)b.n * (size_t)S + (size_t)b.s0;
  float *rstd_out = rstd + (size_t)b.n * (size_t)S + (size_t)b.s0;
  for (int j = 0; j < b.len; j++) {
    mf[j] = (float)mu[j];
    rf[j] = (float)(1.0 / sqrt(acc[j] / (double)C + (double)eps));
    mean_out[j] = mf[j];
    rstd_out[j] = rf[j];
  }
  for (int c = 0; c < C; c++) {
    const size_t off = ln_off(C, S, b.n, c, b.s0);
    const float *xr = x + off;
    float *yr = y + off;
    const float g = gamma ? gamma[c] : 1.0f, be = beta ? beta[c] : 0.0f;
    for (int j = 0; j < b.len; j++) yr[j] = (xr[j] - mf[j]) * rf[j] * g + be;
  }
}

/* x, y: (N, C, S); gamma, beta: (C), NULL behaving as 1 / 0; mean, rstd: (N, S). */
void wcmi_layernorm_channel_forward(int N, int C, int S, const float *x, const float *gamma, const float *beta,
                                    float eps, float *y, float *mean, float *rstd) {
  const int units = ln_num_units(N, S);
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= LN_PARALLEL_MIN)
  for (int u = 0; u < units; u++) ln_forward_unit(C, S, x, gamma, beta, eps, y, mean, rstd, ln_unit_at(u, S));
}

/* dx at each location, with g = gamma * dy and xhat = (x - mean) * rstd over that location's C values:
 *   dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)). */
LN_CLONES
static void ln_backward_input_unit(int C, int S, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, const float *dy, float *dx, ln_unit b) {
  const float *mf = mean + (size_t)b.n * (size_t)S + (size_t)b.s0;
  const float *rf = rstd + (size_t)b.n * (size_t)S + (size_t)b.s0;
  double sum_g[LN_BLOCK], sum_gx[LN_BLOCK];
  for (int j = 0; j < b.len; j++) sum_g[j] = sum_gx[j] = 0.0;
  for (int c = 0; c < C; c++) {
    const size_t off = ln_off(C, S, b.n, c, b.s0);
    const float *xr = x + off, *dyr = dy + off;
    const double gc = gamma ? (double)gamma[c] : 1.0;
    for (int j = 0; j < b.len; j++) {
      const double g = gc * (double)dyr[j];
      sum_g[j] += g;
      sum_gx[j] += g * (((double)xr[j] - (double)mf[j]) * (double)rf[j]);
    }
  }
  /* dx = rstd*g - offset - xhat * slope, per location. */
  float offset[LN_BLOCK], slope[LN_BLOCK];
  for (int j = 0; j < b.len; j++) {
    offset[j] = (float)((double)rf[j] * sum_g[j] / (double)C);
    slope[j] = (float)((double)rf[j] * sum_gx[j] / (double)C);
  }
  for (int c = 0; c < C; c++) {
    const size_t off = ln_off(C, S, b.n, c, b.s0);
    const float *xr = x + off, *dyr = dy + off;
    float *dxr = dx + off;
    const float gc = gamma ? gamma[c] : 1.0f;
    for (int j = 0; j < b.len; j++) {
      const float xhat = (xr[j] - mf[j]) * rf[j];
      dxr[j] = rf[j] * gc * dyr[j] - offset[j] - xhat * slope[j];
    }
  }
}

static void ln_backward_input(int N, int C, int S, const float *x, const float *gamma, const float *mean,
                              const float *rstd, const float *dy, float *dx) {
  const int units = ln_num_units(N, S);
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= LN_PARALLEL_MIN)
  for (int u = 0; u < units; u++) ln_backward_input_unit(C, S, x, gamma, mean, rstd, dy, dx, ln_unit_at(u, S));
}

/* dgamma[c] += sum over locations of dy * xhat; dbeta[c] += sum of dy. Channels in blocks of
 * LN_CH_BLOCK per thread, so that each sample's rows of the block are one contiguous read (a channel
 * alone is S floats every C*S); each channel's sums in LN_LANES partial sums by location index mod
 * LN_LANES (independent chains: one running double sum would wait on the adder at every term),
 * combined in order at the end. The order per channel depends on nothing else: reproducible. */
enum { LN_LANES = 8, LN_CH_BLOCK = 8 };

LN_CLONES
static void ln_backward_params_block(int N, int C, int S, const float *x, const float *mean, const float *rstd,
                                     const float *dy, int c0, int nc, float *dgamma, float *dbeta) {
  double sg[LN_CH_BLOCK][LN_LANES] = {{0}}, sb[LN_CH_BLOCK][LN_LANES] = {{0}};
  for (int n = 0; n < N; n++) {
    const float *mf = mean + (size_t)n * (size_t)S, *rf = rstd + (size_t)n * (size_t)S;
    for (int k = 0; k < nc; k++) {
      const size_t off = ln_off(C, S, n, c0 + k, 0);
      const float *xr = x + off, *dyr = dy + off;
      int s = 0;
      for (; s + LN_LANES <= S; s += LN_LANES)
        for (int j = 0; j < LN_LANES; j++) {
          sb[k][j] += (double)dyr[s + j];
          sg[k][j] += (double)dyr[s + j] * (((double)xr[s + j] - (double)mf[s + j]) * (double)rf[s + j]);
        }
      for (int j = 0; s < S; s++, j++) {
        sb[k][j] += (double)dyr[s];
        sg[k][j] += (double)dyr[s] * (((double)xr[s] - (double)mf[s]) * (double)rf[s]);
      }
    }
  }
  for (int k = 0; k < nc; k++) {
    double tg = 0.0, tb = 0.0;
    for (int j = 0; j < LN_LANES; j++) tg += sg[k][j], tb += sb[k][j];
    if (dgamma) dgamma[c0 + k] += (float)tg;
    if (dbeta) dbeta[c0 + k] += (float)tb;
  }
}

static void ln_backward_params(int N, int C, int S, const float *x, const float *mean, const float *rstd,
                               const float *dy, float *dgamma, float *dbeta) {
  const int blocks = (C + LN_CH_BLOCK - 1) / LN_CH_BLOCK;
#pragma omp parallel for schedule(static) if ((int64_t)N * C * S >= LN_PARALLEL_MIN)
  for (int k = 0; k < blocks; k++) {
    const int c0 = k * LN_CH_BLOCK, nc = C - c0 < LN_CH_BLOCK ? C - c0 : LN_CH_BLOCK;
    ln_backward_params_block(N, C, S, x, mean, rstd, dy, c0, nc, dgamma, dbeta);
  }
}

void wcmi_layernorm_channel_backward(int N, int C, int S, const float *x, const float *gamma, const float *mean,
                                     const float *rstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
  /* Parameters first: then dx may overwrite x or dy (each location's dx is written after all of
   * that location's x and dy were read). */
  if (dgamma || dbeta) ln_backward_params(N, C, S, x, mean, rstd, dy, dgamma, dbeta);
  if (dx) ln_backward_input(N, C, S, x, gamma, mean, rstd, dy, dx);
}
