/* Donsker-Varadhan (MINE) lower bound per location, diagonal excluded from the negatives.
 *   E_pos(loc) = mean_i u[i, i, loc]
 *   E_neg(loc) = log( 1/(N(N-1)) * sum_{i != j} exp u[i, j, loc] )
 *   loss = mean_loc (E_neg - E_pos)
 * The authors' code zeroes the diagonal instead, so N terms exp(0) enter the sum; wcmi excludes them.
 * Reductions: each row i produces per-location partials (independent of the thread count), which
 * are combined over i in order in double. */
#include "core/clones.h"
#include "estimator/mi_internal.h"

#include <math.h>

/* The per-row bodies below run in clones for AVX2 (core/clones.h: same bits as the baseline). */
#define DV_CLONES WCMI_CLONES("avx2", "default")

// m[loc] = max_{j != i} u[i, j, loc] for row i
DV_CLONES
static void dv_max_row(const float *u, int N, int L, int i, double *m) {
  for (int loc = 0; loc < L; loc++) m[loc] = -INFINITY;
  for (int j = 0; j < N; j++) {
    if (j == i) continue;
    const float *uij = u + ((size_t)i * N + j) * L;
    for (int loc = 0; loc < L; loc++)
      if (uij[loc] > m[loc]) m[loc] = uij[loc];
  }
}

// row_a[i, loc] = max_{j != i} u[i, j, loc]
static void dv_row_max(const float *u, int N, int L, double *row_max, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) dv_max_row(u, N, L, i, row_max + (size_t)i * L);
}

// s[loc] = sum_{j != i} exp(u[i, j, loc] - shift[loc]) for row i; e: L floats of scratch
DV_CLONES
static void dv_sumexp_row(const float *u, int N, int L, int i, const double *shift, double *s, float *e) {
  for (int loc = 0; loc < L; loc++) s[loc] = 0.0;
  for (int j = 0; j < N; j++) {
    if (j == i) continue;
    const float *uij = u + ((size_t)i * N + j) * L;
    for (int loc = 0; loc < L; loc++) e[loc] = mi_expf((float)((double)uij[loc] - shift[loc]));
    for (int loc = 0; loc < L; loc++) s[loc] += (double)e[loc];
  }
}

// row_b[i, loc] = sum_{j != i} exp(u[i, j, loc] - shift[loc]), the terms in float (mi_expf, over a
// row of L so the loop vectorizes), their sum in double.
static void dv_row_sumexp(const float *u, int N, int L, const double *shift, double *row_sum, float *scratch,
                          int nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++)
    dv_sumexp_row(u, N, L, i, shift, row_sum + (size_t)i * L, scratch + (size_t)i * L /* row i's terms */);
}

double wcmi_mi_dv_loss(const mi_ws *ws, int N, int L, int nt) {
  const float *u = ws->u;
  double *lse = ws->loc; // (L): log sum_{i != j} exp u[i, j, loc], kept for the gradient
  // Max-shifted log-sum-exp: the shift is the largest negative score at each location, so the
  // largest term is exp(0) and scores of any magnitude neither overflow nor all underflow.
  dv_row_max(u, N, L, ws->row_a, nt);
  for (int loc = 0; loc < L; loc++) {
    double m = -INFINITY;
    for (int i = 0; i < N; i++) m = fmax(m, ws->row_a[(size_t)i * L + loc]);
    lse[loc] = m;
  }
  dv_row_sumexp(u, N, L, lse, ws->row_b, ws->du, nt); /* du is free until the gradient */
  const double log_count = log((double)N * (double)(N - 1));
  double total = 0.0;
  for (int loc = 0; loc < L; loc++) {
    double s = 0.0, pos = 0.0;
    for (int i = 0; i < N; i++) {
      s += ws->row_b[(size_t)i * L + loc];
      pos += u[((size_t)i * N + i) * L + loc];
    }
    lse[loc] += log(s);
    total += (lse[loc] - log_count) - pos / N;
  }
  return total / L;
}

// Row i of du: dloss/L * softmax weight of (i, j) among the negatives at loc; the positive gets
// -dloss/(L N).
DV_CLONES
static void dv_grad_row(const float *u, int N, int L, int i, const double *lse, double scale, float *du) {
  const float pos_grad = (float)(-scale / N);
  for (int j = 0; j < N; j++) {
    const float *uij = u + ((size_t)i * N + j) * L;
    float *duij = du + ((size_t)i * N + j) * L;
    if (j == i) {
      for (int loc = 0; loc < L; loc++) duij[loc] = pos_grad;
    } else {
      /* exp(u - lse) <= 1 in float (mi_expf), scaled and flushed by mi_du's rule */
      for (int loc = 0; loc < L; loc++) {
        const float v = (float)scale * mi_expf((float)((double)uij[loc] - lse[loc]));
        duij[loc] = fabsf(v) >= FLT_MIN ? v : 0.0f;
      }
    }
  }
}

void wcmi_mi_dv_grad(const mi_ws *ws, int N, int L, float dloss, int nt) {
  const double scale = (double)dloss / L;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int i = 0; i < N; i++) dv_grad_row(ws->u, N, L, i, ws->loc, scale, ws->du);
}
