/* Private to src/mi: the workspace layout and the per-estimator loss/gradient kernels on scores. */
#ifndef WCMI_MI_INTERNAL_H
#define WCMI_MI_INTERNAL_H

#include "wcmi/mi.h"

#include <float.h>
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
