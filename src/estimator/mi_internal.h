/* Private to src/estimator: the workspace layout and the per-estimator loss/gradient kernels on scores. */
#ifndef WCMI_MI_INTERNAL_H
#define WCMI_MI_INTERNAL_H

#include "wcmi/mi.h"

#include <float.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>

/* Views into the caller's workspace (see wcmi_mi_workspace_bytes). */
typedef struct mi_ws {
  float *u;       /* scores (N, N, L), written by forward */
  float *du;      /* d loss / d u (N, N, L), written by backward */
  double *row_a;  /* per-row statistics (N, L) */
  double *row_b;  /* per-row statistics (N, L) */
  double *row_c;  /* per-row statistics (N) */
  double *loc;    /* per-location statistics (L) */
  float *blk;     /* scratch of the blocked score GEMMs (scores.c) */
  int blk_threads; /* threads that scratch is laid out for */
} mi_ws;

/* Splits ws into the regions above for up to nt threads; returns 0 if ws_bytes is too small (for
 * one thread) or the sizes overflow. Fewer threads than nt are used when the scratch is smaller. */
int wcmi_mi_ws_layout(int N, int H, int L, int nt, void *ws, size_t ws_bytes, mi_ws *out);

/* Scratch floats the blocked score GEMMs need with up to T threads, and how many threads fit in
 * floats_available (at least 1). */
size_t wcmi_mi_block_floats(int N, int H, int L, int T);
int wcmi_mi_block_threads(int N, int H, int L, int nt, size_t floats_available);

/* u (N, N, L) as wcmi_mi_scores computes it, through blocked GEMMs on T threads with scratch blk. */
void wcmi_mi_scores_blocked(int N, int H, int L, const float *Lx, const float *Gz, float *u, float *blk, int T);

/* dLx (N, H, L) and dGz (N, H) from du (N, N, L); either may be NULL. Overwrites. */
void wcmi_mi_scores_backward(int N, int H, int L, const float *Lx, const float *Gz, const float *du, float *dLx,
                             float *dGz, float *blk, int T);

/* Stores one entry of du. Entries smaller than FLT_MIN would be float denormals: every GEMM that
 * then reads du (dGz and dLx, in each attack step) falls onto the CPU's microcode-assisted path and
 * runs ~100x slower (measured: 2.5x on a whole worst-case iteration at H = 2048, where large scores
 * make most softmax weights underflow). Such entries are > 1e30 times smaller than the positives'
 * terms, so 0 is exact to float precision. */
static inline float mi_du(double v) {
  float f = (float)v;
  return fabsf(f) >= FLT_MIN ? f : 0.0f;
}

/* exp(x) in float, written so that loops over it vectorize (no libm call, no branches; the file
 * that uses it is compiled with -fno-trapping-math so the clamps become vector selects). Cody-Waite
 * reduction x = n ln2 + r, |r| <= ln2/2, a degree-7 Taylor polynomial for exp(r) (truncation
 * < 5e-9 relative), then 2^n through the exponent bits. Within 1e-7 relative of exp for x in
 * [-87, 88] (tested); x below -87 gives exp(-87) ~ 1.6e-38 instead of a smaller value or 0, x above
 * 88 gives exp(88), NaN stays NaN. Three times faster than double exp per element on SSE2 alone;
 * the DV bound calls it N*N*L times per loss and again per gradient (0.8M at N = 128, L = 49). */
static inline float mi_expf(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f; /* ln2 = hi + lo */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union {
    float f;
    uint32_t u;
  } bits = {t}, scale;
  /* n + 127 in the exponent field: 2^n. Unsigned, so a NaN's bits wrap instead of overflowing (the
   * NaN in p decides the result then). */
  scale.u = (bits.u - 0x4B400000u + 127u) << 23;
  return p * scale.f;
}

/* Each loss function reads ws->u, leaves what its gradient needs in the ws statistics and returns
 * the loss in double. Each gradient function writes ws->du = dloss * d loss / d u.
 * nt: OpenMP threads. */
double wcmi_mi_dv_loss(const mi_ws *ws, int N, int L, int nt);
void wcmi_mi_dv_grad(const mi_ws *ws, int N, int L, float dloss, int nt);
double wcmi_mi_fd_loss(const mi_ws *ws, int N, int L, wcmi_mi_measure m, int nt);
void wcmi_mi_fd_grad(const mi_ws *ws, int N, int L, wcmi_mi_measure m, float dloss, int nt);
double wcmi_mi_nce_loss(const mi_ws *ws, int N, int L, int nt);
void wcmi_mi_nce_grad(const mi_ws *ws, int N, int L, float dloss, int nt);

#endif
